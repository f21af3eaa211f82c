"""Loader throughput: images/s per worker count, so a run can tell whether the input keeps up with the model.

Each configuration times a fixed number of batches from a fresh iterator (as at an epoch start, its
workers started by an untimed warm-up); configurations alternate in rounds and the median is printed,
with the ratio to the first one.
Without --root a dataset is made in a temporary folder: the synthetic set (96 px PNGs, the CPU demo's
input) or, with --fake-jpeg N, N JPEGs of 500x375 in the CUB layout (CUB/ImageNet-like decode cost).

    python bench/bench_data.py                                  # synthetic, workers 0 1 2, ~1 min on 2 cores
    python bench/bench_data.py --fake-jpeg 2000 --img-size 224 --resize-size 256 --workers 0 2 4 8
    python bench/bench_data.py --fake-jpeg 2000 --img-size 224 --resize-size 256 --decode-device cuda
    python bench/bench_data.py --name cub --root data/CUB_200_2011 --split train --workers 4 8 16
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from satlib.data import build_dataset, build_loader
from satlib.data.synthetic import make_synthetic_dataset

from _common import make_fake_jpegs


def batches_from(loader):
    """Endless batches: a new pass (a fresh iterator, as at an epoch start) when one ends."""
    while True:
        yield from loader


def images_per_second(loader, batches: int, device: torch.device | None) -> float:
    """Images/s over `batches` batches from a fresh iterator (workers already started by a warm-up)."""
    count, start = 0, time.perf_counter()
    for _, batch in zip(range(batches), batches_from(loader)):
        if device is not None and device.type == "cuda":
            batch["images"].to(device, non_blocking=True)
            torch.cuda.synchronize()
        count += len(batch["images"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="cub", help="dataset name for --root (cub, imagenet, openimages)")
    parser.add_argument("--root", type=Path, help="an existing dataset; default: a temporary one")
    parser.add_argument("--split", default="train")
    parser.add_argument("--fake-jpeg", type=int, default=0, help="make this many 500x375 JPEGs instead")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--resize-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decode-device", default=None, help="e.g. cuda: batched nvJPEG decode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root, name = args.root, args.name
        if root is None and args.fake_jpeg:
            root = make_fake_jpegs(Path(tmp) / "jpeg", args.fake_jpeg)
        elif root is None:
            start = time.perf_counter()
            root, name = make_synthetic_dataset(Path(tmp) / "synthetic"), "synthetic"
            print(f"synthetic set generated in {time.perf_counter() - start:.1f} s")
        dataset = build_dataset(name, root, args.split, img_size=args.img_size, resize_size=args.resize_size)
        device = torch.device(args.decode_device) if args.decode_device else None
        configs = [(w, None) for w in args.workers]
        if device is not None and device.type != "cpu":
            configs += [(w, device) for w in args.workers]
        loaders = {c: build_loader(dataset, args.batch_size, train=args.split == "train", workers=c[0],
                                   decode_device=c[1]) for c in configs}
        for config, loader in loaders.items():  # warm-up: start the workers, touch the files
            images_per_second(loader, 2, config[1] or device)
        results: dict = {c: [] for c in configs}
        for _ in range(args.rounds):
            for config, loader in loaders.items():
                results[config].append(images_per_second(loader, args.batches, config[1] or device))
        print(f"{name} {args.split}: {len(dataset)} images, {dataset.img_size}px crop, batch {args.batch_size}, "
              f"{args.threads} main thread(s), median of {args.rounds} rounds x {args.batches} batches")
        base = statistics.median(results[configs[0]])
        print(f"{'workers':>8} {'decode':>8} {'images/s':>10} {'ratio':>7}")
        for (workers, dev), values in results.items():
            median = statistics.median(values)
            print(f"{workers:>8} {('cpu' if dev is None else str(dev)):>8} {median:>10.0f} {median / base:>7.2f}")


if __name__ == "__main__":
    main()
