"""A trained checkpoint on a dataset's test split: its metrics, and a figure of its maps and boxes.

`evaluate_checkpoint` is `satlib evaluate`; `visualize_checkpoint` is `satlib visualize`;
`compare_checkpoints` draws several methods on the same images (the figure `satlib demo` writes: SAT
above the trained CAM baseline).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from satlib.build import build_datasets, load, test_loader
from satlib.config import Config, apply_smoke
from satlib.data import collate, denormalize
from satlib.evaluate import evaluate_model, scored_maps
from satlib.evaluation import box_iou, boxes_from_maps, default_thresholds, show_localization
from satlib.files import atomic_write
from satlib.info import LoadedModel
from satlib.runtime import Dist, resolve_device


def _load_for_test(checkpoint: str | Path | LoadedModel, *, data_root: str | Path, dataset: str | None = None,
                   official: bool = False, device: str = "auto") -> tuple[LoadedModel, Config, torch.device]:
    """(the loaded model, a copy of its config pointed at `data_root`, the device it is on).

    `checkpoint` is a file (`satlib.load` reads it) or a model loaded already. `dataset` overrides the
    checkpoint's data.dataset; an official checkpoint reads a CUB folder.
    """
    loaded = checkpoint if isinstance(checkpoint, LoadedModel) else \
        load(checkpoint, official=official, device=resolve_device(device))
    config = copy.deepcopy(loaded.info.config)
    config.data.root = str(data_root)
    if dataset or official:
        config.data.dataset = dataset or "cub"
    return loaded, config, next(loaded.model.parameters()).device


def evaluate_checkpoint(checkpoint: str | Path | LoadedModel, *, data_root: str | Path, dataset: str | None = None,
                        official: bool = False, protocol: str | None = None, tencrop: bool | None = None,
                        thresholds: list[float] | None = None, device: str = "auto",
                        skip_bad: bool = False) -> dict:
    """Localization metrics of a checkpoint (a file, or a `satlib.load`ed model) on the test split of `data_root`.

    Model, input size, protocol and thresholds come from the checkpoint's stored config unless given.
    An official checkpoint (`official=True`) is evaluated as the official evaluator does: in fp32 (no
    autocast, whatever train.amp says), 224 crops of 256-resized images, the SAT protocol and
    thresholds, ten-crop classification. Under SATLIB_SMOKE
    only the first batches are scored (`satlib.config.apply_smoke`).
    """
    loaded, config, device_ = _load_for_test(checkpoint, data_root=data_root, dataset=dataset,
                                             official=official, device=device)
    if official:
        config.eval.tencrop = True
        config.train.amp = False  # evaluator.py runs fp32
    if protocol:
        config.eval.protocol = protocol
    if tencrop is not None:
        config.eval.tencrop = tencrop
    if thresholds:
        config.eval.thresholds = list(thresholds)
    config.data.skip_bad = skip_bad
    apply_smoke(config)
    _, test_set = build_datasets(config, train=False)
    loader = test_loader(test_set, config, Dist(device=device_))
    metrics = evaluate_model(loaded.model, loader, config, device_, progress=True)
    if skip_bad:
        metrics["skipped"] = test_set.skipped
    return metrics


METHOD_NAMES = {"sat": "SAT", "cam": "CAM", "tscam": "TS-CAM"}  # model.method -> the name figures use


def method_name(model: torch.nn.Module) -> str:
    """SAT, CAM or TS-CAM: what the model's `loc_map` is."""
    return METHOD_NAMES.get(model.method, model.method)


def spread_indices(size: int, num: int) -> list[int]:
    """`num` indices spread evenly over range(size) (all of them when size <= num), first one 0."""
    num = min(num, size)
    return [i * size // num for i in range(num)]


@torch.no_grad()
def visualize_checkpoint(checkpoint: str | Path | LoadedModel, *, data_root: str | Path, out: str | Path,
                         dataset: str | None = None, official: bool = False, num: int = 16, cols: int = 4,
                         cam: bool = False, device: str = "auto") -> Path:
    """A PNG of `num` test images spread over the split: map overlay, predicted box (green) at the checkpoint's
    best threshold, GT boxes (red), predicted class and IoU in each title, `cols` images a row.

    The map is the one the evaluator scores: SAT's loc-token map, or a CAM/TS-CAM baseline's map of the
    GT class. With `cam=True` a second block of rows shows the same images with the network's own CAM (the
    conv head's map of the GT class) at that CAM's best threshold. Returns `out`.
    """
    return compare_checkpoints([checkpoint], data_root=data_root, out=out, dataset=dataset, official=official,
                               num=num, cols=cols, own_cam=cam, device=device)


@torch.no_grad()
def compare_checkpoints(checkpoints: list[str | Path | LoadedModel], *, data_root: str | Path, out: str | Path,
                        dataset: str | None = None, official: bool = False, num: int = 8, cols: int = 8,
                        own_cam: bool = False, device: str = "auto") -> Path:
    """One figure, one block of rows per checkpoint (e.g. SAT above a trained CAM baseline) on the same
    `num` test images spread evenly over the split (sorted by class in CUB and the stand-ins, so
    several classes show), each at its own best threshold and named by its method. `own_cam` adds the
    first checkpoint's own conv-head CAM as a last block (files, or models loaded by `satlib.load`). Returns `out`."""
    blocks, first = [], None
    for path in checkpoints:
        (model, info), config, device_ = _load_for_test(path, data_root=data_root, dataset=dataset,
                                                        official=official, device=device)
        if first is None:
            _, test_set = build_datasets(config, train=False)
            batch = collate([test_set[i] for i in spread_indices(len(test_set), num)])
            labels = batch["labels"].to(device_)
            first = (test_set, batch, config)
        output = model(batch["images"].to(device_))
        metrics = info.metrics
        threshold = info.threshold or default_thresholds(config.eval.protocol)[0]
        names = test_set.class_names
        classes = [names[i] if names else str(i) for i in output.logits.argmax(-1).tolist()]
        maps = scored_maps(output, labels).float()
        blocks.append((method_name(model), maps, threshold, metrics.get("gt_known"), classes,
                       colour_scale(model.method, maps)))
        if own_cam and len(blocks) == 1:
            cams = output.class_maps.float()[torch.arange(len(labels), device=device_), labels]
            own = ("own CAM", cams, metrics.get("cam_best_threshold", threshold), metrics.get("cam_gt_known"),
                   classes, colour_scale("cam", cams))
    if own_cam:
        blocks.append(own)
    test_set, batch, config = first
    figure = _localization_figure(denormalize(batch["images"], *test_set.normalization), batch["boxes"], blocks,
                                  config, cols=cols, named=len(blocks) > 1)
    return _save_png(figure, Path(out))


def colour_scale(method: str, maps: torch.Tensor) -> tuple[float, float]:
    """The fixed colour scale a method's maps (B, rows, cols) are drawn on: SAT's map is a probability, (0, 1);
    a class map has no fixed range, so the range of these maps together (one scale for every image: a weak
    map looks weak, where a per-image min-max would paint it as hot as a strong one)."""
    if method == "sat":
        return 0.0, 1.0
    low, high = float(maps.min()), float(maps.max())
    return low, high if high > low else low + 1.0


def _localization_figure(images: torch.Tensor, gt_boxes: list[torch.Tensor], blocks: list[tuple], config: Config, *,
                         cols: int, named: bool, panel_size: float = 2.4):
    """One block of rows per (name, maps (B, rows, cols), threshold, GT-known or None, predicted class names,
    colour scale); the maps are drawn on their block's own scale (`colour_scale`), and a box that is the
    evaluator's fallback (no pixel above the threshold) is dashed and named."""
    import matplotlib.pyplot as plt  # heavy, and only the figures need it

    cols = min(cols, len(images))
    rows_per_block = math.ceil(len(images) / cols)
    figure, axes = plt.subplots(rows_per_block * len(blocks), cols, squeeze=False,
                                figsize=(cols * panel_size, rows_per_block * len(blocks) * panel_size))
    for b, (name, maps, threshold, _, predicted, value_range) in enumerate(blocks):
        boxes = boxes_from_maps(maps, [threshold], config.data.img_size, protocol=config.eval.protocol)[:, 0].cpu()
        for i, ax in enumerate(axes[b * rows_per_block:(b + 1) * rows_per_block].flat):
            if i >= len(images):
                ax.set_axis_off()
                continue
            iou = float(box_iou(boxes[i:i + 1].float(), gt_boxes[i].float()).max())
            title = f"{name}: {predicted[i]}" if named else predicted[i]
            show_localization(images[i], maps[i].cpu(), boxes[i], gt_boxes[i], iou=iou, ax=ax, title=title,
                              value_range=value_range, threshold=threshold, protocol=config.eval.protocol)
    scores = [f"{name} GT-known {gt_known:.1f}%" for name, _, _, gt_known, *_ in blocks if gt_known is not None]
    figure.suptitle("held-out images: map on its own scale, predicted box (green), GT box (red)"
                    + (f"; {', '.join(scores)}" if scores else ""))
    figure.tight_layout()
    return figure


def _save_png(figure, out: Path) -> Path:
    import matplotlib.pyplot as plt  # heavy, and only the figures need it

    atomic_write(out, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return out
