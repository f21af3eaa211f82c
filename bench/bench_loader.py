"""The loader before and after batch finishing, side by side in one process: images/s of the same JPEGs.

The loader at git `--old` (satlib/data as it was: each worker transforms item by item, training items
carry their boxes through the transforms, ten-crop resizes twice, the batch is stacked privately and
copied again into shared memory) is read into a temporary package and timed against this checkout's
(each worker finishes its whole batch at once, straight into shared memory). Both read the same
photo-like JPEGs (500x375, about 80 KB, CUB layout) with the recipes' geometry (Resize 256 -> 224
crops), in each configuration: training batches (random crops and flips, as `train()` builds the
loader) with 0, 1 and 2 workers, and ten-crop test batches (the CUB evaluation). Configurations
alternate old/new in rounds, each round a fresh iterator over `--batches` batches after an untimed
warm-up; the figure is the median over rounds, and new / old is the ratio of the medians. The test
batches of both are checked equal first.

    python bench/bench_loader.py                        # ~3 minutes on 2 cores
    python bench/bench_loader.py --rounds 7 --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import satlib.data as new_data

from _common import make_fake_jpegs, write_json
from bench_data import images_per_second

ROOT = Path(__file__).resolve().parent.parent
OLD = "18dbf20"  # the last commit before batch finishing


def import_old_data(ref: str, folder: Path):
    """satlib/data at git `ref`, imported as the package `former_satlib.data`."""
    package = folder / "former_satlib" / "data"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{ref}:satlib/data"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in (n for n in names if n.endswith(".py")):
        source = subprocess.run(["git", "show", f"{ref}:satlib/data/{name}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        (package / name).write_text(source.replace("satlib.data", "former_satlib.data"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("former_satlib.data")


def loaders(data, root: Path, batch: int, workers: list[int]) -> dict:
    """One version of satlib.data's loaders: training (as train() builds them) and ten-crop test."""
    train = data.build_dataset("cub", root, "train", img_size=224, resize_size=256)
    test = data.build_dataset("cub", root, "test", img_size=224, resize_size=256, tencrop=True)
    found = {f"train, {w} worker{'s' if w != 1 else ''}": data.build_loader(
        train, batch, train=True, workers=w, distributed=True, num_replicas=1, rank=0, seed=0) for w in workers}
    found["test ten-crop, 0 workers"] = data.build_loader(test, batch, train=False, workers=0)
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD, help="a git commit with the former loader")
    parser.add_argument("--images", type=int, default=320, help="fake JPEGs (the last 64 are the test split)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old_data = import_old_data(args.old, Path(tmp) / "old")
        root = make_fake_jpegs(Path(tmp) / "jpeg", args.images, test=64, noise=24.0)
        versions = {"old": loaders(old_data, root, args.batch, args.workers),
                    "new": loaders(new_data, root, args.batch, args.workers)}
        same = [torch.equal(next(iter(versions["old"][c]))["images"], next(iter(versions["new"][c]))["images"])
                for c in versions["new"] if c.startswith("test")]
        for version in versions.values():  # warm-up: start the workers, read the files once
            for loader in version.values():
                images_per_second(loader, 2, None)
        rates: dict = {name: {c: [] for c in versions["new"]} for name in versions}
        for epoch in range(args.rounds):
            for config in versions["new"]:
                for name, version in versions.items():
                    loader = version[config]
                    if hasattr(loader.sampler, "set_epoch"):
                        loader.sampler.set_epoch(epoch)
                    rates[name][config].append(images_per_second(loader, args.batches, None))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {"old": args.old, "images": args.images, "batch": args.batch, "batches": args.batches,
              "rounds": args.rounds, "load_average_end": load, "same_test_batch": all(same), "configs": {}}
    print(f"{args.images} JPEGs 500x375, batch {args.batch}, 224 crops of 256, median of {args.rounds} rounds x "
          f"{args.batches} batches, old = {args.old}; test batches equal: {all(same)}; load average {load}")
    print(f"{'configuration':<28} {'old img/s':>10} {'new img/s':>10} {'new/old':>8}")
    for config in versions["new"]:
        old, new = (statistics.median(rates[name][config]) for name in ("old", "new"))
        report["configs"][config] = {"old": old, "new": new, "ratio": new / old,
                                     "rounds": {name: rates[name][config] for name in rates}}
        print(f"{config:<28} {old:>10.0f} {new:>10.0f} {new / old:>8.2f}")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
