"""WSOL evaluation on maps, boxes and logits: batched boxes, IoU, MaxBoxAcc(V2), Top-1/5 Loc, PxAP.

Sees tensors, boxes and plain arguments: never the model, a `Config` or a dataset file (evaluating a
model on a loader is `satlib.evaluate`). numba (the CPU component trees) and matplotlib (the
figures) are imported where they are first used.
"""

from satlib.evaluation.baselines import BASELINES, trivial_baselines
from satlib.evaluation.boxes import boxes_from_maps
from satlib.evaluation.checks import PROTOCOLS
from satlib.evaluation.iou import box_iou
from satlib.evaluation.masks import PixelAPMeter, combine_masks
from satlib.evaluation.metrics import LocalizationEvaluator
from satlib.evaluation.normalize import normalize_maps
from satlib.evaluation.tencrop import ten_crop_probs
from satlib.evaluation.thresholds import SAT_THRESHOLDS, WSOLEVAL_THRESHOLDS, default_thresholds
from satlib.evaluation.visualize import overlay, show_localization, show_localization_grid

__all__ = ["BASELINES", "PROTOCOLS", "SAT_THRESHOLDS", "WSOLEVAL_THRESHOLDS", "LocalizationEvaluator", "PixelAPMeter",
           "box_iou", "boxes_from_maps", "combine_masks", "default_thresholds", "normalize_maps", "overlay",
           "show_localization", "show_localization_grid", "ten_crop_probs", "trivial_baselines"]
