"""Helpers shared by the bench scripts: atomic writes, number formatting, fake JPEG datasets."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from satlib.files import atomic_write_text


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (satlib's one atomic writer)."""
    atomic_write_text(path, text)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """`payload` as indented JSON at `path`, written atomically."""
    write_text(path, json.dumps(payload, indent=2))


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------
# Fake JPEG datasets in the CUB layout
# ---------------------------------------------------------------------------------------------

CUB_LISTS = (("images.txt", "images"), ("image_class_labels.txt", "labels"),
             ("train_test_split.txt", "split"), ("bounding_boxes.txt", "boxes"))


def write_cub_lists(root: Path, paths: Sequence[str], labels: Sequence[int], train: Sequence[bool],
                    boxes: Sequence[Sequence[float]], classes: int) -> Path:
    """The five CUB text files for images root/images/<path>: labels from 0, boxes as x y w h."""
    root.mkdir(parents=True, exist_ok=True)
    rows = {
        "images": [f"{i} {p}" for i, p in enumerate(paths, 1)],
        "labels": [f"{i} {label + 1}" for i, label in enumerate(labels, 1)],
        "split": [f"{i} {int(t)}" for i, t in enumerate(train, 1)],
        "boxes": [f"{i} " + " ".join(f"{v:.1f}" for v in box) for i, box in enumerate(boxes, 1)],
    }
    for name, key in CUB_LISTS:
        (root / name).write_text("".join(line + "\n" for line in rows[key]))
    (root / "classes.txt").write_text("".join(f"{c} {c:03d}.c\n" for c in range(1, classes + 1)))
    return root


def fake_image(index: int, seed: int, size: tuple[int, int], noise: float) -> np.ndarray:
    """A smooth random (h, w, 3) uint8 image (bicubic-upsampled 6x8 colour cells), plus uniform noise."""
    rng = np.random.default_rng([seed, index])
    cells = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(cells).resize(size, Image.Resampling.BICUBIC))
    if noise <= 0:
        return image
    jitter = rng.integers(-int(noise), int(noise) + 1, size=image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + jitter, 0, 255).astype(np.uint8)


def _save_images(job: tuple[Path, list[tuple[int, str]], int, tuple[int, int], float]) -> None:
    images, items, seed, size, noise = job
    for index, rel in items:
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fake_image(index, seed, size, noise)).save(images / rel, quality=90)


def make_fake_jpegs(root: Path, count: int, seed: int = 0, *, classes: int = 2, test: int = 0,
                    size: tuple[int, int] = (500, 375), noise: float = 0.0, processes: int = 1) -> Path:
    """`count` random JPEGs (quality 90) of `size` (w, h) in the CUB layout, `classes` classes.

    Image i (from 1) is class i % classes; the last `test` images form the test split. Every box is
    (50, 40, 300, 200) x y w h scaled to `size`. `noise` adds uniform pixel noise (photo-like file
    sizes and decode cost: 24 gives about 80 KB at 500x375); `processes` encode in parallel.
    """
    paths = [f"{1 + i % classes:03d}.c/{i:05d}.jpg" for i in range(1, count + 1)]
    items = list(enumerate(paths, 1))
    shards = [items[k::processes] for k in range(processes)]
    jobs = [(root / "images", shard, seed, tuple(size), noise) for shard in shards if shard]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(_save_images, jobs))
    else:
        for job in jobs:
            _save_images(job)
    w, h = size
    box = (50 * w / 500, 40 * h / 375, 300 * w / 500, 200 * h / 375)
    labels = [i % classes for i in range(1, count + 1)]
    train = [i <= count - test for i in range(1, count + 1)]
    return write_cub_lists(root, paths, labels, train, [box] * count, classes)
