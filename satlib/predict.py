"""Using a trained checkpoint: evaluate it on a dataset, draw a grid of its maps, localize your own images."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from satlib.files import atomic_write_text
from satlib.checkpoint import model_from_checkpoint
from satlib.config import Config
from satlib.train import Dist, build_datasets, evaluate, resolve_device, test_loader

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def _checkpoint_model(checkpoint: str | Path, official: bool, device: str) -> tuple[torch.nn.Module, Config, dict, torch.device]:
    device_ = resolve_device(device)
    model, config, payload = model_from_checkpoint(checkpoint, official=official, device=device_)
    return model, config, payload, device_


def _point_at_data(config: Config, data_root: str | Path, dataset: str | None) -> None:
    config.data.root = str(data_root)
    if dataset:
        config.data.dataset = dataset
    elif config.data.dataset == "synthetic":
        config.data.dataset = "cub"  # a synthetic set on disk is a CUB-layout folder


def evaluate_checkpoint(checkpoint: str | Path, *, data_root: str | Path, dataset: str | None = None,
                        official: bool = False, protocol: str | None = None, tencrop: bool | None = None,
                        thresholds: list[float] | None = None, device: str = "auto",
                        skip_bad: bool = False) -> dict:
    """Localization metrics of a checkpoint on the test split of `data_root`.

    Model, input size, protocol and thresholds come from the checkpoint's stored config unless given.
    An official checkpoint (`official=True`) is evaluated as the official evaluator does: 224 crops of
    256-resized images, the SAT protocol and thresholds, ten-crop classification.
    """
    model, config, _, device_ = _checkpoint_model(checkpoint, official, device)
    _point_at_data(config, data_root, dataset or ("cub" if official else None))
    if official:
        config.eval.tencrop = True
    if protocol:
        config.eval.protocol = config.data.protocol = protocol
    if tencrop is not None:
        config.eval.tencrop = tencrop
    if thresholds:
        config.eval.thresholds = list(thresholds)
    config.data.skip_bad = skip_bad
    _, test_set = build_datasets(config, Path(config.data.root), train=False)
    metrics = evaluate(model, test_loader(test_set, config, Dist(device=device_)), config, device_, progress=True)
    metrics["images"] = len(test_set)
    if skip_bad:
        metrics["skipped"] = test_set.skipped
    return metrics


@torch.no_grad()
def visualize_checkpoint(checkpoint: str | Path, *, data_root: str | Path, out: str | Path,
                         dataset: str | None = None, official: bool = False, num: int = 16,
                         device: str = "auto") -> Path:
    """A PNG grid of the first `num` test images: map overlay, predicted box (at the checkpoint's best
    threshold) and GT boxes, IoU in each title."""
    from satlib.files import atomic_write
    from satlib.data import collate, denormalize
    from satlib.evaluation import box_iou, boxes_from_maps, default_thresholds, show_localization_grid

    model, config, payload, device_ = _checkpoint_model(checkpoint, official, device)
    _point_at_data(config, data_root, dataset or ("cub" if official else None))
    _, test_set = build_datasets(config, Path(config.data.root), train=False)
    batch = collate([test_set[i] for i in range(min(num, len(test_set)))])
    output = model(batch["images"].to(device_))
    threshold = payload.get("best_threshold") or default_thresholds(config.eval.protocol)[0]
    boxes = boxes_from_maps(output.loc_map.float(), [threshold], config.data.img_size,
                            protocol=config.eval.protocol)[:, 0]
    names = test_set.class_names
    titles = [names[int(p)] if names else str(int(p)) for p in output.logits.argmax(-1).tolist()]
    ious = [float(box_iou(box[None].cpu(), gt).max()) for box, gt in zip(boxes, batch["boxes"])]
    figure = show_localization_grid(denormalize(batch["images"]), output.loc_map.float().cpu(), boxes.cpu(),
                                    batch["boxes"], ious=ious, titles=titles)
    out = Path(out)
    atomic_write(out, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    _close(figure)
    return out


def list_images(inputs: list[str | Path]) -> tuple[list[Path], list[dict]]:
    """Image files named or inside the named folders (sorted), and entries for names that do not exist."""
    files, missing = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            missing.append({"file": str(path), "error": "no such file or folder"})
    return files, missing


@torch.no_grad()
def predict_paths(checkpoint: str | Path, inputs: list[str | Path], out: str | Path, *, official: bool = False,
                  threshold: float | None = None, device: str = "auto") -> dict:
    """Class, score and box (original-image pixels, xyxy) for every image; overlays and predictions.json in `out`.

    Each image is resized whole to the model's input (no crop), so the box maps back by scaling.
    Unreadable files are reported under "skipped" and never stop the run.
    """
    from torchvision.transforms import v2

    from satlib.files import atomic_write
    from satlib.data import IMAGENET_MEAN, IMAGENET_STD
    from satlib.data.io import decode_rgb, read_bytes
    from satlib.evaluation import boxes_from_maps, default_thresholds, show_localization

    model, config, payload, device_ = _checkpoint_model(checkpoint, official, device)
    threshold = threshold if threshold is not None else (
        payload.get("best_threshold") or default_thresholds(config.eval.protocol)[0])
    names = payload.get("class_names") or []
    size = config.data.img_size
    prepare = v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                          v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = list_images(inputs)
    predictions = []
    for path in files:
        try:
            image = decode_rgb(read_bytes(path), path)
        except (ValueError, OSError, RuntimeError) as err:
            skipped.append({"file": str(path), "error": str(err)})
            continue
        h, w = image.shape[-2:]
        output = model(prepare(image)[None].to(device_))
        probs = output.logits.float().softmax(-1)[0]
        score, label = probs.max(-1)
        box = boxes_from_maps(output.loc_map.float(), [threshold], (h, w), protocol=config.eval.protocol)[0, 0]
        record = {"file": str(path), "class_index": int(label), "class_name": names[int(label)] if names else None,
                  "score": float(score), "box_xyxy": [int(v) for v in box.tolist()], "threshold": float(threshold),
                  "image_size_wh": [int(w), int(h)]}
        overlay = out / f"{len(predictions):04d}_{path.stem}.png"
        figure = show_localization(image, output.loc_map[0].float().cpu(), box,
                                   title=f"{record['class_name'] or label.item()} ({score:.2f})").figure
        atomic_write(overlay, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
        _close(figure)
        record["overlay"] = overlay.name
        predictions.append(record)
    report = {"checkpoint": str(checkpoint), "predictions": predictions, "skipped": skipped}
    atomic_write_text(out / "predictions.json", json.dumps(report, indent=2) + "\n")
    return report


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
