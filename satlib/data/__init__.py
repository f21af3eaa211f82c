"""Datasets for weakly supervised object localization: synthetic, CUB, ImageNet, OpenImages.

Entry points: `build_dataset(name, root, split, ...)`, `build_loader(dataset, batch_size, train=...)`
and `collate`; `satlib.data.synthetic.make_synthetic_dataset` writes the embedded synthetic set.
Names are imported on first use, so the data scripts that need no torch start (and fail) fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DATASETS": "satlib.data.dataset",
    "WSOLDataset": "satlib.data.dataset",
    "build_dataset": "satlib.data.dataset",
    "DeviceLoader": "satlib.data.loader",
    "build_loader": "satlib.data.loader",
    "collate": "satlib.data.loader",
    "default_workers": "satlib.data.loader",
    "DataError": "satlib.data.records",
    "few_shot_indices": "satlib.data.subsets",
    "IMAGENET_MEAN": "satlib.data.transforms",
    "IMAGENET_STD": "satlib.data.transforms",
    "denormalize": "satlib.data.transforms",
    "resize_boxes_wsoleval": "satlib.data.transforms",
    "resize_crop_boxes": "satlib.data.transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'satlib.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
