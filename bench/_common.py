"""Helpers shared by the bench scripts: atomic writes, numbers, fake JPEG datasets (CUB layout)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from satlib.data.cub import CubRow, write_cub_tables
from satlib.files import atomic_write_text


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (satlib's one atomic writer)."""
    atomic_write_text(path, text)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """`payload` as indented JSON at `path`, written atomically."""
    write_text(path, json.dumps(payload, indent=2))


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or b is None or b == 0 else a / b


# ---------------------------------------------------------------------------------------------
# Fake JPEG datasets in the CUB layout
# ---------------------------------------------------------------------------------------------

def fake_jpeg_paths(count: int, classes: int) -> list[str]:
    """Image paths under images/ of `make_fake_jpegs`: image i (from 1) in class folder i % classes."""
    return [f"{1 + i % classes:03d}.c/{i:05d}.jpg" for i in range(1, count + 1)]


def fake_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The xyxy box of every fake image: (50, 40) to (350, 240) at 500x375, scaled to `size` (w, h)."""
    w, h = size
    return 50 * w / 500, 40 * h / 375, 350 * w / 500, 240 * h / 375


def fake_class_names(classes: int) -> list[str]:
    return [f"{c:03d}.c" for c in range(1, classes + 1)]


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
    `fake_box(size)`. `noise` adds uniform pixel noise (photo-like file
    sizes and decode cost: 24 gives about 80 KB at 500x375); `processes` encode in parallel.
    """
    paths = fake_jpeg_paths(count, classes)
    items = list(enumerate(paths, 1))
    shards = [items[k::processes] for k in range(processes)]
    jobs = [(root / "images", shard, seed, tuple(size), noise) for shard in shards if shard]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(_save_images, jobs))
    else:
        for job in jobs:
            _save_images(job)
    rows = [CubRow(path=path, label=i % classes, train=i <= count - test, box=fake_box(size))
            for i, path in enumerate(paths, 1)]
    return write_cub_tables(root, rows, class_names=fake_class_names(classes))
