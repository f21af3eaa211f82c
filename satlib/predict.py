"""Localizing your own images with a trained checkpoint: files in, class, box and overlay out.

Each image goes whole through `satlib.localize` (resized to the model's input, no crop), so its map
and box come back in the original image's pixels, and its overlay (`satlib.overlay`) is written at the
image's own resolution. `satlib predict` is `predict_paths`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from satlib.build import load
from satlib.data.io import decode_rgb, read_bytes
from satlib.evaluation.visualize import overlay
from satlib.files import atomic_write, atomic_write_text
from satlib.info import LoadedModel
from satlib.localize import localize
from satlib.runtime import resolve_device

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


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
def predict_paths(checkpoint: str | Path | LoadedModel, inputs: list[str | Path], out: str | Path, *,
                  official: bool = False, threshold: float | None = None, device: str = "auto") -> dict:
    """Class, score and box (original-image pixels, xyxy) for every image; overlays (each at its image's
    resolution) and predictions.json in `out`.

    `checkpoint` is a file (`satlib.load` reads it, `official` and `device` as there) or a model loaded
    already. The threshold defaults to the checkpoint's best one (`satlib.localize`). Unreadable files
    are reported under "skipped" and never stop the run.
    """
    loaded = checkpoint if isinstance(checkpoint, LoadedModel) else \
        load(checkpoint, official=official, device=resolve_device(device))
    names = loaded.info.class_names
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
        found = localize(loaded, image[None], threshold=threshold)
        label, box = int(found.labels[0]), found.boxes[0].cpu()
        h, w = image.shape[-2:]
        record = {"file": str(path), "class_index": label, "class_name": names[label] if names else None,
                  "score": float(found.scores[0]), "box_xyxy": [int(v) for v in box.tolist()],
                  "threshold": found.threshold, "image_size_wh": [int(w), int(h)]}
        caption = f"{record['class_name'] or label} {record['score']:.2f}"
        picture = overlay(image, found.maps[0].cpu(), box, label=caption)
        record["overlay"] = _write_png(out / f"{len(predictions):04d}_{path.stem}.png", picture)
        predictions.append(record)
    source = None if isinstance(checkpoint, LoadedModel) else str(checkpoint)  # None: a model loaded already
    report = {"checkpoint": source, "predictions": predictions, "skipped": skipped}
    atomic_write_text(out / "predictions.json", json.dumps(report, indent=2) + "\n")
    return report


def _write_png(path: Path, rgb: np.ndarray) -> str:
    """An (H, W, 3) float RGB array in [0, 1] as an H×W PNG at `path`; returns the file name."""
    pixels = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    atomic_write(path, lambda f: pixels.save(f, format="PNG"))
    return path.name
