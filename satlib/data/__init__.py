"""Datasets for weakly supervised object localization: synthetic, CUB, ImageNet, OpenImages.

Entry points: `build_dataset(name, root, split, ...)`, `build_loader(dataset, batch_size, train=...)`
and `collate`; `satlib.data.synthetic.make_synthetic_dataset` writes the embedded synthetic set.
The datasets of a `Config` are `satlib.build`'s; this package never reads a config or imports a model.
"""

from satlib.data.dataset import DATASETS, WSOLDataset, build_dataset
from satlib.data.loader import DeviceLoader, SeededSampler, build_loader, collate, default_workers
from satlib.data.records import DataError
from satlib.data.subsets import few_shot_indices
from satlib.data.transforms import (
    IMAGENET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalization,
    denormalize,
    resize_boxes_wsoleval,
    resize_crop_boxes,
)

__all__ = ["DATASETS", "IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD", "DataError", "DeviceLoader", "Normalization",
           "SeededSampler", "WSOLDataset", "build_dataset", "build_loader", "collate", "default_workers", "denormalize",
           "few_shot_indices", "resize_boxes_wsoleval", "resize_crop_boxes"]
