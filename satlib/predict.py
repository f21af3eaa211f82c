"""Localizing your own images with a trained checkpoint: files in, class, map, box and overlay out.

Each image is resized whole to the model's input (no crop), so its map and box scale back to the
original image's pixels. `satlib predict` is `predict_paths`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from satlib.checkpoint import model_from_checkpoint
from satlib.files import atomic_write, atomic_write_text
from satlib.runtime import resolve_device

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class Localization:
    """One image's prediction: class probabilities (classes,), map (rows, cols), box (4,) xyxy in
    the original image's pixels."""

    probs: Tensor
    loc_map: Tensor
    box_xyxy: Tensor


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


def whole_image_transform(img_size: int):
    """uint8 (3, H, W) -> float (3, img_size, img_size): resized whole (no crop), ImageNet-normalized."""
    from torchvision.transforms import v2

    from satlib.data import IMAGENET_MEAN, IMAGENET_STD

    return v2.Compose([v2.Resize((img_size, img_size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@torch.no_grad()
def localize(model: torch.nn.Module, image: Tensor, *, img_size: int, threshold: float, protocol: str,
             device: torch.device | str = "cpu") -> Localization:
    """Class probabilities, map and box of one uint8 (3, H, W) image; the box in (H, W) pixels."""
    from satlib.evaluation import boxes_from_maps

    h, w = image.shape[-2:]
    output = model(whole_image_transform(img_size)(image)[None].to(device))
    loc_map = output.loc_map.float()
    box = boxes_from_maps(loc_map, [threshold], (h, w), protocol=protocol)[0, 0]
    return Localization(output.logits.float().softmax(-1)[0].cpu(), loc_map[0].cpu(), box.cpu())


@torch.no_grad()
def predict_paths(checkpoint: str | Path, inputs: list[str | Path], out: str | Path, *, official: bool = False,
                  threshold: float | None = None, device: str = "auto") -> dict:
    """Class, score and box (original-image pixels, xyxy) for every image; overlays and predictions.json in `out`.

    The threshold defaults to the checkpoint's best one. Unreadable files are reported under
    "skipped" and never stop the run.
    """
    from satlib.data.io import decode_rgb, read_bytes
    from satlib.evaluation import default_thresholds

    device_ = resolve_device(device)
    model, config, payload = model_from_checkpoint(checkpoint, official=official, device=device_)
    threshold = threshold if threshold is not None else (
        payload.get("best_threshold") or default_thresholds(config.eval.protocol)[0])
    names = payload.get("class_names") or []
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
        found = localize(model, image, img_size=config.data.img_size, threshold=threshold,
                         protocol=config.eval.protocol, device=device_)
        score, label = found.probs.max(-1)
        h, w = image.shape[-2:]
        record = {"file": str(path), "class_index": int(label), "class_name": names[int(label)] if names else None,
                  "score": float(score), "box_xyxy": [int(v) for v in found.box_xyxy.tolist()],
                  "threshold": float(threshold), "image_size_wh": [int(w), int(h)]}
        record["overlay"] = _write_overlay(out / f"{len(predictions):04d}_{path.stem}.png", image, found,
                                           title=f"{record['class_name'] or int(label)} ({float(score):.2f})")
        predictions.append(record)
    report = {"checkpoint": str(checkpoint), "predictions": predictions, "skipped": skipped}
    atomic_write_text(out / "predictions.json", json.dumps(report, indent=2) + "\n")
    return report


def _write_overlay(path: Path, image: Tensor, found: Localization, *, title: str) -> str:
    """The image with its map and box, as a PNG at `path`; returns the file name."""
    import matplotlib.pyplot as plt

    from satlib.evaluation import show_localization

    figure = show_localization(image, found.loc_map, found.box_xyxy, title=title).figure
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return path.name
