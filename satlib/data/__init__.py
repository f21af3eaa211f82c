"""Datasets for weakly supervised object localization: synthetic, CUB, ImageNet, OpenImages.

Entry points: `build_dataset(name, root, split, ...)`, `build_loader(dataset, batch_size, train=...)`
and `collate`; `satlib.data.synthetic.make_synthetic_dataset` writes the embedded synthetic set.
"""

from satlib.data.dataset import DATASETS, WSOLDataset, build_dataset
from satlib.data.loader import DeviceLoader, build_loader, collate, default_workers
from satlib.data.records import DataError
from satlib.data.subsets import few_shot_indices
from satlib.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, denormalize, resize_boxes_wsoleval,
                                    resize_crop_boxes)

__all__ = ["DATASETS", "DataError", "DeviceLoader", "IMAGENET_MEAN", "IMAGENET_STD", "WSOLDataset",
           "build_dataset", "build_loader", "collate", "default_workers", "denormalize",
           "few_shot_indices", "resize_boxes_wsoleval", "resize_crop_boxes"]
