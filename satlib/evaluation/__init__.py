"""WSOL evaluation on maps, boxes and logits: batched boxes, IoU, MaxBoxAcc(V2), Top-1/5 Loc, PxAP.

Never imports the model. numba and matplotlib load lazily, on first use.
"""

from satlib.evaluation.boxes import boxes_from_maps
from satlib.evaluation.checks import PROTOCOLS
from satlib.evaluation.iou import box_iou
from satlib.evaluation.masks import PixelAPMeter, combine_masks
from satlib.evaluation.metrics import LocalizationEvaluator
from satlib.evaluation.normalize import normalize_maps
from satlib.evaluation.tencrop import ten_crop_probs
from satlib.evaluation.thresholds import SAT_THRESHOLDS, WSOLEVAL_THRESHOLDS, default_thresholds

__all__ = ["PROTOCOLS", "SAT_THRESHOLDS", "WSOLEVAL_THRESHOLDS", "LocalizationEvaluator", "PixelAPMeter",
           "box_iou", "boxes_from_maps", "combine_masks", "default_thresholds", "normalize_maps",
           "resize_boxes_wsoleval", "resize_crop_boxes", "show_localization", "show_localization_grid",
           "ten_crop_probs", "trivial_baselines"]

_LAZY = {
    "resize_crop_boxes": "satlib.data.transforms",  # the data package owns the GT box transforms
    "resize_boxes_wsoleval": "satlib.data.transforms",
    "show_localization": "satlib.evaluation.visualize",
    "show_localization_grid": "satlib.evaluation.visualize",
    "trivial_baselines": "satlib.evaluation.baselines",  # reads a dataset's boxes (satlib.data)
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'satlib.evaluation' has no attribute {name!r}")
