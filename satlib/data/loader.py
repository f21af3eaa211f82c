"""Batching: `collate`, `build_loader` (workers, pinned memory, distributed sampling), device decoding.

A batch is a dict::

    images          (B, 3, H, W) float32
    labels          (B,) int64
    boxes           list of B (K_i, 4) float32 tensors
    image_ids       list of B str
    masks, ignores  (B, H, W) bool            when the items carry them
    images_resized  (B, 3, R, R) float32      when the items carry them (ten-crop)
    skipped         int, items dropped because they failed to load (skip_bad=True)

On a CPU run the workers decode (torchvision.io). With `decode_device="cuda"` the workers only read
the encoded bytes and each batch's JPEGs are decoded in one nvJPEG call on the GPU, then transformed
there (`DeviceLoader`). A batch the batched call cannot decode (no nvJPEG, out of memory, a CMYK JPEG)
is decoded image by image on the CPU instead: warned once per process (`DecodeFallbackWarning`) and
counted per loader (`DeviceLoader.fallbacks`) and per process (`FALLBACKS`).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from satlib.data.dataset import WSOLDataset
from satlib.data.io import decode_jpegs, decode_rgb
from satlib.data.records import DataError, log

_STACKED = (("mask", "masks"), ("ignore", "ignores"), ("image_resized", "images_resized"))


def collate(batch: list[dict | None]) -> dict | None:
    """Items -> batch dict (see the module docstring); None items (skipped) are dropped and counted.

    Returns None when every item of the batch was skipped.
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    out = {"images": torch.stack([item["image"] for item in items]),
           "labels": torch.tensor([item["label"] for item in items], dtype=torch.long),
           "boxes": [item["boxes"] for item in items],
           "image_ids": [item["image_id"] for item in items]}
    for key, batch_key in _STACKED:
        if key in items[0]:
            out[batch_key] = torch.stack([item[key] for item in items])
    out["skipped"] = len(batch) - len(items)
    return out


def cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers() -> int:
    """Loader worker processes: none on a small CPU box (the model needs the cores), more on a GPU box.

    With CUDA: the CPUs per visible GPU minus one for the training process, at most 8. Without: 0 up to
    4 CPUs, then a quarter of them (at most 4).
    """
    cpus = cpu_count()
    if torch.cuda.is_available():
        per_gpu = cpus // max(1, torch.cuda.device_count())
        return max(1, min(8, per_gpu - 1))
    return 0 if cpus <= 4 else min(4, cpus // 4)


def build_loader(dataset: WSOLDataset, batch_size: int, *, train: bool, workers: int | None = None,
                 distributed: bool = False, seed: int = 0, decode_device: str | torch.device | None = None,
                 drop_last: bool | None = None, num_replicas: int | None = None,
                 rank: int | None = None) -> "DataLoader | DeviceLoader":
    """A DataLoader over `dataset`: shuffled (seeded) and drop_last when `train`, sequential otherwise.

    `distributed` uses a `SeededSampler` for training (call `loader.sampler.set_epoch(epoch)` every
    epoch); `num_replicas`/`rank` give its shard without a process group (one process: 1 and 0), so
    the order of an epoch and each image's random crop and flip depend on (seed, epoch) alone, which
    an exactly resumed run needs. The loader's own generator (worker seeds, a plain shuffle) is seeded
    seed + rank, as the official DDP script seeds each rank. `decode_device` (e.g. "cuda") decodes
    JPEGs batched on that device (a `DeviceLoader`).
    """
    workers = default_workers() if workers is None else workers
    drop_last = train if drop_last is None else drop_last
    on_device = decode_device is not None and torch.device(decode_device).type != "cpu"
    if on_device:
        dataset = copy.copy(dataset)
        dataset.deferred_decode = True
    if rank is None and distributed:
        rank = dist.get_rank()
    generator = torch.Generator().manual_seed(seed + (rank or 0))
    sampler = None
    if distributed and train:
        sampler = SeededSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=drop_last)
    elif distributed:  # evaluation: every image exactly once over all ranks (no padding repeats)
        sampler = ShardSampler(len(dataset), num_replicas, rank)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                        num_workers=workers, collate_fn=list if on_device else collate,
                        pin_memory=torch.cuda.is_available() and not on_device, drop_last=drop_last,
                        persistent_workers=workers > 0, generator=generator)
    return DeviceLoader(loader, dataset, decode_device) if on_device else loader


class SeededSampler(DistributedSampler):
    """A shuffled DistributedSampler whose every index comes with the seed of its augmentation: (index, seed).

    The seed is drawn from (sampler seed, epoch, index) alone (`augmentation_seed`), so an image's random
    crop and flip are the same whichever rank, worker or process loads it: no two ranks share a stream
    of crops, and a resumed run draws what the uninterrupted one drew in that epoch.
    """

    def __init__(self, dataset, *, num_replicas: int | None = None, rank: int | None = None, seed: int = 0,
                 drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=drop_last)

    def __iter__(self):
        return ((index, augmentation_seed(self.seed, self.epoch, index)) for index in super().__iter__())


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of image `index`'s random augmentation in `epoch` of a run seeded `seed` (a 63-bit int)."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


class ShardSampler(Sampler):
    """Indices rank, rank + world, ... of a dataset: an evaluation shard, no image repeated or dropped."""

    def __init__(self, length: int, num_replicas: int | None = None, rank: int | None = None):
        self.world = num_replicas if num_replicas is not None else dist.get_world_size()
        self.rank = rank if rank is not None else dist.get_rank()
        self.length = length

    def __iter__(self):
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


class DecodeFallbackWarning(UserWarning):
    """Batched device decoding failed; the batch was decoded image by image on the CPU (slower)."""


@dataclass
class DecodeFallbacks:
    """Batches (and their images) that the batched device decode failed on and the CPU decoded instead."""

    batches: int = 0
    images: int = 0
    first_error: str = ""

    def add(self, images: int, error: BaseException) -> None:
        self.batches += 1
        self.images += images
        self.first_error = self.first_error or f"{type(error).__name__}: {error}"


FALLBACKS = DecodeFallbacks()  # every device loader of this process (the GPU suite's data section reports it)


class DeviceLoader:
    """Wraps a DataLoader of encoded samples: each batch is decoded (nvJPEG) and transformed on `device`;
    `fallbacks` counts the batches decoded on the CPU instead."""

    def __init__(self, loader: DataLoader, dataset: WSOLDataset, device: str | torch.device):
        self.loader, self.dataset, self.device = loader, dataset, torch.device(device)
        self.fallbacks = DecodeFallbacks()

    @property
    def sampler(self):
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for samples in self.loader:
            yield finish_on_device(self.dataset, samples, self.device, fallbacks=self.fallbacks)


def finish_on_device(dataset: WSOLDataset, samples: list[dict | None], device: torch.device, *,
                     fallbacks: DecodeFallbacks | None = None) -> dict | None:
    """Encoded samples -> batch on `device`: one batched JPEG decode, then each item's transform.

    When the batched decode fails (no nvJPEG, out of memory, one CMYK or broken file), every image is
    decoded on the CPU and moved (a broken file is then named); counted in `fallbacks` and `FALLBACKS`,
    warned the first time in the process.
    """
    kept = [s for s in samples if s is not None]
    try:
        images = decode_jpegs([s["data"] for s in kept], device)
    except RuntimeError as error:
        _fell_back(len(kept), error, fallbacks)
        images = [None] * len(kept)
    items: list[dict | None] = [None] * (len(samples) - len(kept))
    for sample, image in zip(kept, images):
        record = sample["record"]
        try:
            if image is None:
                image = decode_rgb(sample["data"], record.path, record.source).to(device)
            items.append(dataset.finish({**sample, "image": image}))
        except DataError as err:
            if not dataset.skip_bad:
                raise
            log.warning("skipped while loading: %s", err)
            items.append(None)
    return collate(items)


def _fell_back(images: int, error: RuntimeError, fallbacks: DecodeFallbacks | None) -> None:
    """Count a batch decoded on the CPU (in the loader's record and the process's); warn on the first."""
    if fallbacks is not None:
        fallbacks.add(images, error)
    FALLBACKS.add(images, error)
    if FALLBACKS.batches == 1:
        warnings.warn(f"batched JPEG decoding on the device failed ({type(error).__name__}: {error}); this batch "
                      f"and any later one that fails are decoded image by image on the CPU (slower). Counted in "
                      f"satlib.data.loader.FALLBACKS; set data.gpu_decode=false to decode on the CPU workers",
                      DecodeFallbackWarning, stacklevel=3)
