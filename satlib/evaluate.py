"""A model's localization metrics on a loader: the evaluator (`satlib.evaluation`) fed batch by batch.

The model is anything whose output has `.logits` (B, classes) and `.loc_map` (B, rows, cols), and
`.class_maps` (B, classes, rows, cols) for the CAM comparison.

A class-specific method (the CAM and TS-CAM baselines) also returns `.class_loc_maps` (B, classes,
rows, cols), a map per class: it is scored with the ground-truth class's map, as wsolevaluation
scores CAMs. GT-known then reads the true class's map; Top-1 Loc counts an image when the predicted
class is right, and then that map is the predicted class's too.
"""

from __future__ import annotations

from itertools import islice

import torch
from torch import nn
from tqdm.auto import tqdm

from satlib.build import build_evaluator
from satlib.config import Config
from satlib.evaluation import ten_crop_probs
from satlib.runtime import bf16_autocast, unwrap_model

CAM_KEYS = ("gt_known", "top1_loc", "maxboxacc", "best_threshold")  # reported as cam_<key>


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, config: Config, device: torch.device, *, cam: bool = False,
                   progress: bool = False) -> dict:
    """Localization metrics of `model` on `loader` (satlib.evaluation's keys, percentages).

    With `cam=True` the same images are also scored with the network's own CAM (the conv head's map
    of the ground-truth class), reported as `cam_gt_known`, `cam_top1_loc`, `cam_maxboxacc`,
    `cam_best_threshold`. With several processes the counts are summed across ranks. With
    `eval.max_batches` (SATLIB_SMOKE sets it) only the first batches are scored.
    """
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    sat_eval = build_evaluator(config)
    cam_eval = build_evaluator(config) if cam else None
    batches = islice(loader, config.eval.max_batches or None)
    for batch in tqdm(batches, desc="evaluate", leave=False, disable=not progress):
        if batch is None:  # every image of this batch was unreadable (data.skip_bad)
            continue
        labels = batch["labels"].to(device, non_blocking=True)
        boxes = batch["boxes"]  # the evaluator checks them on the host and moves them once
        out, logits = batch_outputs(net, batch, config, device)
        masks = batch_masks(batch)
        sat_eval.update(scored_maps(out, labels).float(), boxes, logits=logits, labels=labels,
                        gt_masks=None if masks is None else masks.to(device))
        if cam_eval is not None:
            cams = out.class_maps.float()[torch.arange(len(labels), device=device), labels]
            cam_eval.update(cams, boxes, logits=logits, labels=labels)
    sat_eval.all_reduce()
    metrics = sat_eval.compute()
    if cam_eval is not None:
        cam_eval.all_reduce()
        cam_metrics = cam_eval.compute()
        metrics.update({f"cam_{key}": cam_metrics[key] for key in CAM_KEYS})
    net.train(was_training)
    return metrics


def batch_outputs(net: nn.Module, batch: dict, config: Config, device: torch.device) -> tuple:
    """The model's output on a test batch and the logits the evaluator scores, (B, classes) fp32: ten-crop
    probabilities with `eval.tencrop`, in the training step's precision (`train.amp`)."""
    images = batch["images"].to(device, non_blocking=True)
    with bf16_autocast(device, enabled=config.train.amp):  # the training step's precision, ten crops too
        out = net(images)
        logits = out.logits.float()  # scored in fp32 (softmax, top-k), as the maps
        if config.eval.tencrop and "images_resized" in batch:
            logits = ten_crop_probs(lambda x: net(x).logits.float(),
                                    batch["images_resized"].to(device), config.data.img_size)
    return out, logits


def scored_maps(out, labels: torch.Tensor) -> torch.Tensor:
    """The maps the evaluator scores, (B, rows, cols): `out.loc_map`, or for a class-specific method the
    map of each image's ground-truth class (labels (B,)) from `out.class_loc_maps`."""
    if out.class_loc_maps is None:
        return out.loc_map
    return out.class_loc_maps[torch.arange(len(labels), device=labels.device), labels]


def batch_masks(batch: dict) -> torch.Tensor | None:
    """(B, H, W) uint8 masks, 1 foreground, 0 background, 255 ignored (wsolevaluation's convention)."""
    masks = batch.get("masks")
    if masks is None or "ignores" not in batch:
        return masks
    return masks.to(torch.uint8).masked_fill(batch["ignores"], 255)
