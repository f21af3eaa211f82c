"""Batching: `build_loader` (workers, pinned memory, distributed sampling), `collate`, device decoding.

A batch is a dict::

    images          (B, 3, H, W) float32
    labels          (B,) int64
    boxes           list of B (K_i, 4) float32 tensors, on the CPU (test batches; training batches only
                    from a dataset built with train_boxes=True)
    image_ids       list of B str
    masks, ignores  (B, H, W) bool            when the items carry them
    images_resized  (B, 3, R, R) float32      when the items carry them (ten-crop)
    skipped         int, items dropped because they failed to load (skip_bad=True)

On a CPU run the workers read and decode each image (torchvision.io), and each worker finishes its
whole batch at once (`WSOLDataset.finish_batch`: one resize per distinct image size, then the crops,
flips and normalisation of the batch), writing the images straight into shared memory, so the batch
reaches the main process without another copy. With `decode_device="cuda"` the workers only read the
bytes (and decode what nvJPEG cannot: CMYK or progressive JPEGs, other formats), and in the main
process each batch's JPEGs are decoded in one nvJPEG call and finished on the GPU (`DeviceLoader`):
a few kernels a batch, no host synchronisation. When the batched call fails (no nvJPEG, out of
memory, a broken file), each of its images is decoded alone on the GPU, and on the CPU only if that
fails too: warned once per process (`DecodeFallbackWarning`) and counted per loader
(`DeviceLoader.fallbacks`) and per process (`FALLBACKS`).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler, get_worker_info

from satlib.data.dataset import WSOLDataset
from satlib.data.io import decode_jpegs, decode_rgb
from satlib.data.records import DataError, log

_STACKED = (("mask", "masks"), ("ignore", "ignores"), ("image_resized", "images_resized"))


def collate(batch: list[dict | None]) -> dict | None:
    """Finished items (`dataset[i]`) -> batch dict (see the module docstring); None items (skipped) are
    dropped and counted. Returns None when every item of the batch was skipped."""
    items = [item for item in batch if item is not None]
    if not items:
        return None
    out = {"images": torch.stack([item["image"] for item in items]),
           "labels": torch.tensor([item["label"] for item in items], dtype=torch.long),
           "image_ids": [item["image_id"] for item in items]}
    if "boxes" in items[0]:
        out["boxes"] = [item["boxes"] for item in items]
    for key, batch_key in _STACKED:
        if key in items[0]:
            out[batch_key] = torch.stack([item[key] for item in items])
    out["skipped"] = len(batch) - len(items)
    return out


class FinishBatches:
    """A loader's `collate_fn` over samples (`WSOLDataset.sample`): the worker finishes its batch at once
    (`finish_batch`), the images written into shared memory; None when every sample was skipped."""

    def __init__(self, dataset: WSOLDataset):
        self.dataset = dataset

    def __call__(self, samples: list[dict | None]) -> dict | None:
        kept = [s for s in samples if s is not None]
        if not kept:
            return None
        size = self.dataset.img_size
        out = shared_empty((len(kept), 3, size, size)) if get_worker_info() is not None else None
        batch = self.dataset.finish_batch(kept, out=out)
        batch["skipped"] = len(samples) - len(kept)
        return batch


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor in shared memory (what default_collate stacks into in a worker): sending it to
    the main process moves no pixels."""
    proto = torch.empty(0, dtype=dtype)
    storage = proto._typed_storage()._new_shared(math.prod(shape), device=proto.device)
    return proto.new(storage).view(shape)


def cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


MAX_WORKERS = 32  # beyond this a process's workers mostly add memory (each holds a dataset copy and a prefetch)


def default_workers() -> int:
    """Loader worker processes of one training process: none on a small CPU box (the model needs the cores),
    one per core a GPU's process may use on a GPU box.

    With CUDA: the CPUs this process may run on, shared among the processes of this machine (torchrun's
    LOCAL_WORLD_SIZE, else one per visible GPU when they all see every CPU), minus one for the process
    itself, at most `MAX_WORKERS` (16 cores, 1 GPU: 15). Without: 0 up to 4 CPUs, then a quarter of them
    (at most 4). `data.workers` overrides it.
    """
    cpus = cpu_count()
    if torch.cuda.is_available():
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", 0)) or max(1, torch.cuda.device_count())
        return max(1, min(MAX_WORKERS, cpus // processes - 1))
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
    dataset = copy.copy(dataset)
    dataset.deferred_finish = True  # the workers give samples; batches are finished whole
    dataset.deferred_decode = on_device
    if rank is None and distributed:
        rank = dist.get_rank()
    generator = torch.Generator().manual_seed(seed + (rank or 0))
    sampler = None
    if distributed and train:
        sampler = SeededSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=drop_last)
    elif distributed:  # evaluation: every image exactly once over all ranks (no padding repeats)
        sampler = ShardSampler(len(dataset), num_replicas, rank)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                        num_workers=workers, collate_fn=list if on_device else FinishBatches(dataset),
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
    """Batches whose batched device decode failed, and the images a CPU decoded instead (theirs, and those a
    worker decoded because nvJPEG cannot: CMYK or progressive JPEGs, other formats)."""

    batches: int = 0
    images: int = 0
    first_error: str = ""


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
    """Samples from the workers -> a batch finished on `device`: the JPEGs decoded in one batched call (nvJPEG
    on CUDA), the images the workers decoded moved there, then `dataset.finish_batch` on the device.

    When the batched call fails, each of its JPEGs is decoded alone on the device, and on the CPU only if
    that fails too (counted in `fallbacks` and `FALLBACKS`, warned the first time in the process); a file
    no decoder reads is a DataError naming it (skipped under skip_bad).
    """
    kept = [s for s in samples if s is not None]
    encoded = [s for s in kept if "data" in s]
    if encoded:
        try:
            images = decode_jpegs([s["data"] for s in encoded], device)
        except RuntimeError as error:
            _fell_back(error, fallbacks)
            images = [_decode_alone(dataset, s, device, fallbacks) for s in encoded]
        for sample, image in zip(encoded, images):
            sample["image"] = image
    ready = [s for s in kept if s.get("image") is not None]
    for sample in ready:
        sample["image"] = sample["image"].to(device, non_blocking=True)  # decoded by a worker: CMYK, PNG, ...
    _count_images(len(kept) - len(encoded), fallbacks)
    if not ready:
        return None
    batch = dataset.finish_batch(ready)
    batch["skipped"] = len(samples) - len(ready)
    return batch


def _decode_alone(dataset: WSOLDataset, sample: dict, device: torch.device,
                  fallbacks: DecodeFallbacks | None) -> torch.Tensor | None:
    """One JPEG of a batch whose batched decode failed: on the device alone, else on the CPU (counted)."""
    try:
        return decode_jpegs([sample["data"]], device)[0]
    except RuntimeError:
        pass
    record = sample["record"]
    try:
        image = decode_rgb(sample["data"], record.path, record.source)
    except DataError as err:
        if not dataset.skip_bad:
            raise
        log.warning("skipped while loading: %s", err)
        return None
    _count_images(1, fallbacks)
    return image.to(device, non_blocking=True)


def _count_images(images: int, fallbacks: DecodeFallbacks | None) -> None:
    """Images decoded on a CPU instead of by the batched device call."""
    for record in ([fallbacks] if fallbacks is not None else []) + [FALLBACKS]:
        record.images += images


def _fell_back(error: RuntimeError, fallbacks: DecodeFallbacks | None) -> None:
    """Count a batch whose batched device decode failed (in the loader's record and the process's); warn on the
    first."""
    for record in ([fallbacks] if fallbacks is not None else []) + [FALLBACKS]:
        record.batches += 1
        record.first_error = record.first_error or f"{type(error).__name__}: {error}"
    if FALLBACKS.batches == 1:
        warnings.warn(f"batched JPEG decoding on the device failed ({type(error).__name__}: {error}); the images of "
                      f"this batch, and of any later one that fails, are decoded one by one (on the CPU where the "
                      f"device cannot). Counted in satlib.data.loader.FALLBACKS; set data.gpu_decode=false to "
                      f"decode on the CPU workers", DecodeFallbackWarning, stacklevel=3)
