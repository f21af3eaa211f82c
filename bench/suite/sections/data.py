"""Section "data": the fake JPEG stand-ins the sections read, and the loader's images/s (bench_data).

A loader that decodes on the GPU reports its `decode_fallbacks`: batches nvJPEG failed on and the CPU
decoded instead (satlib.data.loader.DecodeFallbacks); a nonzero count means the images/s is not nvJPEG's.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from satlib.data import build_dataset, build_loader, default_workers
from satlib.data.cub import CubRow, write_cub_tables
from satlib.data.loader import cpu_count

import bench_data
from _common import fake_box, fake_class_names, fake_jpeg_paths, make_fake_jpegs
from suite.harness import Suite
from suite.recipes import CUB, recipe_batch


def data_views(suite: Suite) -> dict[str, Path]:
    """The fake JPEG pool (made once) and the CUB-layout views of it that the sections read.

    full:         the CUB stand-in: cub_train train + cub_test test images, cub_classes classes
    cub_run:      its train split and the first run_test test images (a quick closing evaluation)
    imagenet_run: every pool image as train, imagenet_classes classes, run_test test images
    """
    if suite.views is not None:
        return suite.views
    s = suite.sizes
    start = time.perf_counter()
    count = s.cub_train + s.cub_test
    full = make_fake_jpegs(suite.work / "full", count, classes=s.cub_classes, test=s.cub_test,
                           size=s.image_wh, noise=s.jpeg_noise, processes=min(16, cpu_count()))
    paths, box = fake_jpeg_paths(count, s.cub_classes), fake_box(s.image_wh)
    suite.views = {"full": full,
                   "cub_run": view(suite.work / "cub_run", full, paths[:s.cub_train + s.run_test],
                                   classes=s.cub_classes, train=s.cub_train, box=box),
                   "imagenet_run": view(suite.work / "imagenet_run", full, paths + paths[-s.run_test:],
                                        classes=s.imagenet_classes, train=count, box=box)}
    suite.report["data"] = {"images": count, "size": list(s.image_wh), "noise": s.jpeg_noise,
                            "mean_kb": jpeg_kb(full), "seconds": round(time.perf_counter() - start, 2)}
    return suite.views


def view(root: Path, pool: Path, paths: list[str], *, classes: int, train: int,
         box: tuple[float, float, float, float]) -> Path:
    """A CUB-layout folder over `pool`'s images: the first `train` of `paths` train, the rest test;
    path i gets class i % classes and every image the xyxy `box`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").symlink_to((pool / "images").resolve(), target_is_directory=True)
    rows = [CubRow(path=path, label=i % classes, train=i < train, box=box) for i, path in enumerate(paths)]
    return write_cub_tables(root, rows, class_names=fake_class_names(classes))


def jpeg_kb(root: Path, sample: int = 200) -> float:
    files = sorted((root / "images").rglob("*.jpg"))[:sample]
    return sum(f.stat().st_size for f in files) / max(len(files), 1) / 1e3


def loader_configs(suite: Suite) -> list[tuple[int, str | None]]:
    """(workers, decode device): the default loader, all cores, and nvJPEG decoding on the GPU."""
    if not suite.cuda:
        return [(0, None), (1, None)]
    configs = [(default_workers(), None), (max(1, cpu_count() - 1), None), (default_workers(), "cuda")]
    return list(dict.fromkeys(configs))


def section_data(suite: Suite, results: dict) -> None:
    """Loader images/s of the CUB stand-in's train split (train transforms), one epoch-sized run each."""
    s = suite.sizes
    views = data_views(suite)
    results.update(suite.report["data"], loaders=[])
    dataset = build_dataset("cub", views["full"], "train", img_size=s.img_size, resize_size=s.resize_size)
    batch = recipe_batch(suite, CUB)
    for workers, decode in loader_configs(suite):
        loader = build_loader(dataset, batch, train=True, workers=workers, decode_device=decode)
        bench_data.images_per_second(loader, 2, suite.device)  # start the workers
        rate = bench_data.images_per_second(loader, s.loader_batches, suite.device)
        fallbacks = getattr(loader, "fallbacks", None)  # a DeviceLoader's batches decoded on the CPU instead
        results["loaders"].append({"workers": workers, "decode": decode or "cpu", "batch": batch,
                                   "batches": s.loader_batches, "images_per_s": rate,
                                   "decode_fallbacks": None if fallbacks is None else asdict(fallbacks)})
        fell_back = f", {fallbacks.batches} batches decoded on the CPU instead" if fallbacks and fallbacks.batches \
            else ""
        print(f"   loader: {workers} workers, decode {decode or 'cpu'}: {rate:.0f} images/s{fell_back}", flush=True)
        del loader
