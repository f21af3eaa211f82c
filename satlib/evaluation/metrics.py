"""LocalizationEvaluator: streaming Top-1/5 Cls, Top-1/5 Loc, GT-known, MaxBoxAcc(V2), IoU30/50/70, PxAP.

Memory is bounded by the batch: per-threshold hit counters (and, for PxAP, two per-threshold
histograms) are all that is kept between batches.

How the two protocols read the same counters (percentages 0..100; "loc hit" = IoU >= 0.5):

- ``protocol="sat"`` (official SAT ``evaluator.py``): one box per image and threshold, the
  largest component's. GT-known = loc hit; Top-1/Top-5 Loc = label in the top-1/top-5 scores and
  loc hit (Top-5 Loc uses the same class-agnostic box). The best threshold is the first argmax of
  GT-known + Top-1 Loc (of GT-known alone when no logits are given), and every number is reported
  at it: ``gt_known``, ``top1_loc``, ``top5_loc``, ``iou30/50/70``. SAT prints no MaxBoxAcc;
  here ``maxboxacc`` = max over thresholds of GT-known and ``maxboxacc_v2`` = mean of
  IoU30/50/70 at the best threshold (what the official prints as "Mean").
- ``protocol="wsoleval"`` (wsolevaluation ``BoxEvaluator``): ``maxboxacc`` = max over thresholds
  of the accuracy at IoU 50 with the largest contour's box; ``best_threshold`` is its first
  argmax, where ``gt_known``, ``top1_loc`` and ``top5_loc`` are read. ``iou30/50/70`` = for each IoU
  level, the max over thresholds of the accuracy with any contour's box (multi-contour), and
  ``maxboxacc_v2`` = their mean.

``images`` is the number of images scored (summed over ranks after ``all_reduce``).
``top1_cls``/``top5_cls``/``top1_loc``/``top5_loc`` need ``logits`` and ``labels`` (top-5 is
top-min(5, classes)); ``pxap``
needs ``gt_masks`` (1 foreground, 0 background, 255 ignored, as wsolevaluation's masks) and uses
the protocol's normalised maps. Ten-crop classification is the caller's choice
(`satlib.evaluation.ten_crop_probs` gives probabilities that can be passed as ``logits``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor

from satlib.evaluation.boxes import extents_to_boxes, rows_to_boxes
from satlib.evaluation.checks import (
    check_backend,
    check_gt_boxes,
    check_maps,
    check_protocol,
    check_thresholds,
    image_hw,
)
from satlib.evaluation.components import torch_pool_asleep
from satlib.evaluation.extents import extents_from_maps
from satlib.evaluation.iou import box_iou, max_iou, pad_gt_boxes
from satlib.evaluation.masks import PixelAPMeter, check_masks
from satlib.evaluation.normalize import normalize_maps
from satlib.evaluation.thresholds import default_thresholds

LOC_IOU = 50  # GT-known and Top-k Loc use IoU >= 0.5 in both protocols


class LocalizationEvaluator:
    """Streaming WSOL metrics over batches of localization maps; see the module docstring.

    Args:
        thresholds: map thresholds in [0, 1]; default the protocol's own (SAT: 0.3..0.45,
            wsoleval: 0.00..0.99 step 0.01).
        iou_thresholds: IoU levels in percent for ``iou<k>`` and MaxBoxAccV2.
        image_size: side (or (H, W)) the maps are resized to; GT boxes are in these pixels.
        protocol: "sat" or "wsoleval".
        backend: connected components: "auto", "propagate" (torch), "union_find" (numba) or "host"
            (levels on the device, numba on the host cores, overlapped); see `satlib.evaluation.extents`.
    """

    def __init__(self, thresholds: Sequence[float] | None = None, iou_thresholds: Sequence[int] = (30, 50, 70),
                 image_size: int | Sequence[int] = 224, protocol: str = "sat", backend: str = "auto"):
        self.protocol = check_protocol(protocol)
        chosen = default_thresholds(protocol) if thresholds is None else thresholds
        self.thresholds = tuple(check_thresholds(chosen).tolist())
        self.iou_thresholds = tuple(int(k) for k in iou_thresholds)
        exact = all(k == i and 0 < k <= 100 for k, i in zip(self.iou_thresholds, iou_thresholds))
        if not self.iou_thresholds or not exact:
            raise ValueError(f"iou_thresholds must be integers in (0, 100], got {tuple(iou_thresholds)}")
        self.image_size = image_hw(image_size)
        self.backend = check_backend(backend)
        self._levels = sorted(set(self.iou_thresholds) | {LOC_IOU})
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        T, L = len(self.thresholds), len(self._levels)
        self.count = 0
        self.with_logits: bool | None = None
        self.with_masks: bool | None = None
        self.top1_cls = self.top5_cls = 0
        self.largest_hits = torch.zeros(L, T, dtype=torch.int64)  # largest box IoU >= level
        self.any_hits = torch.zeros(L, T, dtype=torch.int64)  # any box IoU >= level (wsoleval)
        self.top1_loc = torch.zeros(T, dtype=torch.int64)
        self.top5_loc = torch.zeros(T, dtype=torch.int64)
        self.pixel_ap = PixelAPMeter(self.thresholds) if self._pxap_possible() else None

    def _pxap_possible(self) -> bool:
        return all(b > a for a, b in zip(self.thresholds, self.thresholds[1:])) and self.thresholds[-1] < 1

    def _check_batch(self, B: int, logits: Tensor | None, labels: Tensor | None, gt_masks: Tensor | None) -> None:
        if (logits is None) != (labels is None):
            raise ValueError("logits and labels must be given together")
        if logits is not None:
            if logits.dim() != 2 or logits.shape[0] != B:
                raise ValueError(f"logits must be (B, classes) with B = {B}, got shape {tuple(logits.shape)}")
            if labels.shape != (B,):
                raise ValueError(f"labels must be (B,) with B = {B}, got shape {tuple(labels.shape)}")
            if labels.is_floating_point() or (labels < 0).any() or (labels >= logits.shape[1]).any():
                raise ValueError(f"labels must be integer classes in [0, {logits.shape[1]})")
            if not torch.isfinite(logits).all():
                raise ValueError("logits contains NaN or inf")
        for name, given, seen in (("logits", logits is not None, self.with_logits),
                                  ("gt_masks", gt_masks is not None, self.with_masks)):
            if seen is not None and given != seen:
                raise ValueError(f"{name} given in {'earlier' if seen else 'this'} update but not in "
                                 f"{'this' if seen else 'earlier'} one: every batch must have it or none")
        if gt_masks is not None and self.pixel_ap is None:
            raise ValueError(f"PxAP needs increasing thresholds below 1, got {self.thresholds}")

    @torch.no_grad()
    def update(self, loc_maps: Tensor, gt_boxes: Sequence[Tensor] | Tensor, logits: Tensor | None = None,
               labels: Tensor | None = None, gt_masks: Tensor | None = None) -> Tensor:
        """Add a batch: maps (B, h, w), per-image GT boxes (K, 4) xyxy in image pixels, optional
        logits (B, classes) with labels (B,), optional masks (B, H, W). Returns the largest box's
        best IoU with the GT boxes, (B, T) float64. Inputs may require grad (a model's raw output).

        CPU maps are scored on threads of the evaluator's own while torch's ops run on one thread
        (`torch_pool_asleep`), so torch's idle OpenMP workers do not spin beside them."""
        on_cpu = not isinstance(loc_maps, Tensor) or loc_maps.device.type == "cpu"
        with torch_pool_asleep() if on_cpu else contextlib.nullcontext():
            iou, maps, masks = self._score_boxes(loc_maps, gt_boxes, logits, labels, gt_masks)
        if masks is not None:
            normalized = normalize_maps(maps, self.image_size, self.protocol)
            self.pixel_ap.update(normalized, masks.to(normalized.device))
        self.count += maps.shape[0]
        self.with_logits, self.with_masks = logits is not None, masks is not None
        return iou

    def _score_boxes(self, loc_maps, gt_boxes, logits, labels, gt_masks) -> tuple[Tensor, Tensor, Tensor | None]:
        """`update`'s checks, boxes, IoU and counts: (IoU (B, T), the checked maps, the checked masks or None)."""
        maps = check_maps(loc_maps.detach() if isinstance(loc_maps, Tensor) else loc_maps)
        logits = logits.detach() if isinstance(logits, Tensor) else logits
        B = maps.shape[0]
        boxes = check_gt_boxes(gt_boxes, self.image_size, batch=B)
        self._check_batch(B, logits, labels, gt_masks)
        masks = check_masks(gt_masks, (B, *self.image_size)) if gt_masks is not None else None

        gt, _ = pad_gt_boxes(boxes, maps.device)
        wsoleval = self.protocol == "wsoleval"
        extents, rows = extents_from_maps(maps, self.image_size, self.thresholds, self.protocol, backend=self.backend,
                                          want_all=wsoleval)
        iou = max_iou(extents_to_boxes(extents, self.protocol, self.image_size), gt)  # (B, T)
        levels = torch.tensor(self._levels, dtype=torch.float64, device=iou.device)[:, None, None] / 100
        self.largest_hits += (iou >= levels).sum(1).cpu()
        if wsoleval:
            self.any_hits += (self._any_box_iou(rows, gt, iou) >= levels).sum(1).cpu()

        if logits is not None:
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit5 = (top == labels[:, None].to(top.device)).any(1)
            hit1 = top[:, 0] == labels.to(top.device)
            located = iou >= LOC_IOU / 100
            self.top1_cls += int(hit1.sum())
            self.top5_cls += int(hit5.sum())
            self.top1_loc += (hit1.to(iou.device)[:, None] & located).sum(0).cpu()
            self.top5_loc += (hit5.to(iou.device)[:, None] & located).sum(0).cpu()
        return iou, maps, masks

    def _any_box_iou(self, rows: Tensor, gt: Tensor, largest_iou: Tensor) -> Tensor:
        """Best IoU over every contour box of each (image, threshold), (M, 7) rows -> (B, T).

        The largest contour's box is one of them, and it is the empty-prediction box where
        nothing is above the threshold, so the max starts from `largest_iou`.
        """
        T = largest_iou.shape[1]
        boxes = rows_to_boxes(rows, self.protocol, self.image_size)
        best = box_iou(boxes[:, None, :], gt[rows[:, 0]])[:, 0].amax(-1)  # (M,)
        plane = rows[:, 0] * T + rows[:, 1]
        any_iou = rearrange(largest_iou, "batch thresholds -> (batch thresholds)").clone()
        any_iou.scatter_reduce_(0, plane, best, reduce="amax")
        return rearrange(any_iou, "(batch thresholds) -> batch thresholds", thresholds=T)

    def merge(self, other: LocalizationEvaluator) -> LocalizationEvaluator:
        """Add the counters of `other` (same protocol, thresholds and IoU levels) to this one's, as if its
        batches had been given here too; returns self."""
        self._check_chooser(other)
        if other.count == 0:
            return self
        for name, given in (("logits", other.with_logits), ("gt_masks", other.with_masks)):
            seen = self.with_logits if name == "logits" else self.with_masks
            if seen is not None and seen != given:
                raise ValueError(f"merge: {name} given to one evaluator and not the other")
        self.count += other.count
        self.top1_cls += other.top1_cls
        self.top5_cls += other.top5_cls
        for name in ("largest_hits", "any_hits", "top1_loc", "top5_loc"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if self.pixel_ap is not None:
            self.pixel_ap.true_hist = self.pixel_ap.true_hist + other.pixel_ap.true_hist
            self.pixel_ap.false_hist = self.pixel_ap.false_hist + other.pixel_ap.false_hist
        self.with_logits, self.with_masks = other.with_logits, other.with_masks
        return self

    def all_reduce(self) -> None:
        """Sum the counters over the processes of torch.distributed: every rank then computes the whole set.

        A rank that evaluated no image (an empty shard) has no say on logits/gt_masks being given; the
        ranks that did must agree.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parts = [torch.tensor([self.count, self.top1_cls, self.top5_cls, self.count > 0, bool(self.with_logits),
                               bool(self.with_masks)]),
                 self.largest_hits.flatten(), self.any_hits.flatten(), self.top1_loc, self.top5_loc]
        if self.pixel_ap is not None:
            parts += [self.pixel_ap.true_hist, self.pixel_ap.false_hist]
        flat = torch.cat(parts)
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        summed = flat.to(device)
        dist.all_reduce(summed)
        pieces = [piece.clone() for piece in torch.split(summed.cpu(), [p.numel() for p in parts])]
        count, top1, top5, ranks, with_logits, with_masks = (int(v) for v in pieces[0])  # ranks with images
        if with_logits not in (0, ranks) or with_masks not in (0, ranks):
            raise ValueError("LocalizationEvaluator.all_reduce(): ranks disagree on logits/gt_masks being given")
        self.count, self.top1_cls, self.top5_cls = count, top1, top5
        if ranks:
            self.with_logits, self.with_masks = with_logits == ranks, with_masks == ranks
        self.largest_hits = pieces[1].reshape(self.largest_hits.shape)
        self.any_hits = pieces[2].reshape(self.any_hits.shape)
        self.top1_loc, self.top5_loc = pieces[3], pieces[4]
        if self.pixel_ap is not None:
            self.pixel_ap.true_hist, self.pixel_ap.false_hist = pieces[5], pieces[6]

    def compute(self, choose_on: LocalizationEvaluator | None = None) -> dict[str, float]:
        """Metrics in percent (and ``best_threshold``); see the module docstring for each key.

        Every threshold is chosen on this evaluator's counters (the test split, as both published
        protocols do), or on `choose_on`'s: another evaluator with the same protocol and thresholds
        that scored a held-out split. Its argmaxes pick the thresholds (the best one; wsoleval's one
        per IoU level) and the numbers are read from this evaluator's counters at them.
        """
        if self.count == 0:
            raise RuntimeError("LocalizationEvaluator.compute(): no images were evaluated (call update() first)")
        chooser = self if choose_on is None else self._check_chooser(choose_on)
        chosen = chooser._chosen_indices()
        n = float(self.count)

        def pct(hits: Tensor) -> Tensor:
            return hits.double() * 100.0 / n

        at = {level: i for i, level in enumerate(self._levels)}
        known = pct(self.largest_hits[at[LOC_IOU]])
        best = chosen["best"]
        per_level = self.largest_hits if self.protocol == "sat" else self.any_hits
        ious = {k: float(pct(per_level[at[k]])[chosen[k]]) for k in self.iou_thresholds}
        result = {"gt_known": float(known[best]), "maxboxacc": float(known[chosen["maxboxacc"]]),
                  "maxboxacc_v2": sum(ious.values()) / len(ious), "best_threshold": self.thresholds[best],
                  **{f"iou{k}": v for k, v in ious.items()}, "images": int(self.count)}
        if self.with_logits:
            result.update(top1_cls=100.0 * self.top1_cls / n, top5_cls=100.0 * self.top5_cls / n,
                          top1_loc=float(pct(self.top1_loc)[best]), top5_loc=float(pct(self.top5_loc)[best]))
        if self.with_masks:
            result["pxap"] = self.pixel_ap.compute()
        return result

    def _chosen_indices(self) -> dict:
        """Threshold indices this evaluator's counters choose: "best" (where every number is read),
        "maxboxacc", and one per IoU level (SAT: the best one; wsoleval: each level's own argmax).

        SAT: the first argmax of GT-known + Top-1 Loc (the official strict '>' from 0; GT-known alone
        without logits). wsoleval: the first argmax of GT-known (MaxBoxAcc).
        """
        if self.count == 0:
            raise RuntimeError("LocalizationEvaluator: the evaluator that chooses the thresholds scored no image")
        at = {level: i for i, level in enumerate(self._levels)}
        known = self.largest_hits[at[LOC_IOU]].double() * 100.0 / self.count  # in percent, as the official sums
        if self.protocol == "sat":
            top1_loc = self.top1_loc.double() * 100.0 / self.count
            best = int(torch.argmax(known + top1_loc if self.with_logits else known))
            return {"best": best, "maxboxacc": int(torch.argmax(known)), **{k: best for k in self.iou_thresholds}}
        best = int(torch.argmax(known))
        return {"best": best, "maxboxacc": best,
                **{k: int(torch.argmax(self.any_hits[at[k]])) for k in self.iou_thresholds}}

    def _check_chooser(self, other: LocalizationEvaluator) -> LocalizationEvaluator:
        same = (other.protocol, other.thresholds, other.iou_thresholds) == \
            (self.protocol, self.thresholds, self.iou_thresholds)
        if not same:
            raise ValueError(f"choose_on: protocol {other.protocol!r}, thresholds {other.thresholds} and IoU levels "
                             f"{other.iou_thresholds} must equal this evaluator's ({self.protocol!r}, "
                             f"{self.thresholds}, {self.iou_thresholds})")
        if other.with_logits is not None and self.with_logits is not None and other.with_logits != self.with_logits:
            raise ValueError("choose_on: logits were given to one evaluator and not the other")
        return other
