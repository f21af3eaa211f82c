"""A paper recipe fitted to this GPU: its optimizer step split into the fewest accumulated micro-batches
whose training step fits the card's free memory, measured on the card itself.

    config = fit_to_device(config, torch.device("cuda"))   # on a CPU: unchanged

A training step holds `fixed + images x per_image` bytes: the weights, their gradients and AdamW's two
moments whatever the batch, plus the activations autograd keeps for each image. `measure_step` runs the
recipe's model forward and backward (and an AdamW step) at two small micro-batches on the card and reads
each peak (`torch.cuda.max_memory_allocated`); `micro_batches_to_fit` is the arithmetic, `MARGIN` of the
free memory left unplanned. The split keeps the images of a step (`batch_size x grad_accum`), and a run's
key records it, so a card with less free memory trains (and caches) its own run of the same recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from satlib.build import build_model
from satlib.config import Config
from satlib.losses import build_loss
from satlib.runtime import bf16_autocast

MARGIN = 0.15  # of the free memory, left for allocator fragmentation, cuDNN workspaces and evaluation
PROBE_IMAGES = 2  # `measure_step` measures micro-batches of 2 and 4 images
GIB = 2**30


class DoesNotFit(ValueError):
    """Not even one image a micro-batch fits the device's free memory."""


@dataclass(frozen=True)
class StepMemory:
    """The memory of one training step of a model: what it holds whatever its batch, and what each image adds."""

    fixed_bytes: float  # weights, gradients, AdamW's moments, workspaces
    bytes_per_image: float  # activations autograd keeps (and their gradients), per image of the micro-batch

    def bytes_for(self, images: int) -> float:
        """Peak bytes of a training step on a micro-batch of `images`."""
        return self.fixed_bytes + images * self.bytes_per_image


def micro_batches_to_fit(batch_size: int, memory: StepMemory, free_bytes: float, *, margin: float = MARGIN) -> int:
    """The fewest micro-batches a step of `batch_size` images splits into so that one micro-batch's training
    step fits in `free_bytes` less `margin` of it: a divisor of `batch_size`, so the step keeps its images
    (1: as configured). Raises `DoesNotFit` when even one image a micro-batch does not fit."""
    budget = free_bytes * (1 - margin)
    for parts in range(1, batch_size + 1):
        if batch_size % parts == 0 and memory.bytes_for(batch_size // parts) <= budget:
            return parts
    raise DoesNotFit(f"one image a micro-batch needs {memory.bytes_for(1) / GIB:.1f} GiB, more than "
                     f"{1 - margin:.0%} of the {free_bytes / GIB:.1f} GiB free")


def measure_step(config: Config, device: torch.device, *, images: int = PROBE_IMAGES) -> StepMemory:
    """`config`'s training step on the CUDA `device`, measured: after one warm-up step (AdamW's moments
    exist from then on), the peaks of a forward + backward + AdamW step at `images` and 2 x `images` images
    of random pixels, above what was allocated before; their difference is what `images` more images add."""
    if device.type != "cuda":
        raise ValueError(f"measure_step measures CUDA memory; device {device} is not a CUDA device")
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    _, small, large = step_peaks(config, device, batches=(images, images, 2 * images))
    torch.cuda.empty_cache()  # the measured model is gone: its memory goes back to the card
    per_image = max(large - small, 0) / images
    return StepMemory(fixed_bytes=small - before - images * per_image, bytes_per_image=per_image)


def step_peaks(config: Config, device: torch.device, *, batches: tuple[int, ...]) -> list[int]:
    """Peak bytes allocated on the CUDA `device` during training steps of `config`'s model (random weights,
    built here and freed on return) on random images, one step a batch size in `batches`, in order."""
    model = build_model(config, with_pretrained=False).to(device).train()
    loss_fn = build_loss(model.method, area_thr=config.train.area_thr).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    side, classes = config.data.img_size, config.model.num_classes
    peaks = []
    for batch in batches:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        pixels = torch.randn(batch, 3, side, side, device=device)
        labels = torch.randint(classes, (batch,), device=device)
        with bf16_autocast(device, enabled=config.train.amp):
            loss, _ = loss_fn(model(pixels), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del pixels, labels, loss
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device))
    return peaks


def free_bytes(device: torch.device) -> int:
    """What a training run in this process may allocate on the CUDA `device`: the card's free memory plus
    what this process's allocator holds (the chapter's own tensors count as free: they are small against
    `MARGIN`, and a recipe asked for again in the same kernel gets the same split)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device)


_MEASURED: dict[str, StepMemory] = {}


def step_memory(config: Config, device: torch.device) -> StepMemory:
    """`measure_step`, once per model, input size, precision and device in a process."""
    key = json.dumps([config.to_dict()["model"], config.data.img_size, config.train.amp, str(device)],
                     sort_keys=True, default=str)
    if key not in _MEASURED:
        _MEASURED[key] = measure_step(config, device)
    return _MEASURED[key]


def fit_to_device(config: Config, device: torch.device) -> Config:
    """On a CUDA `device`, split `config`'s step into the fewest accumulated micro-batches whose training step
    fits (`micro_batches_to_fit`; the same images a step), in place; on a CPU nothing. Returns `config`."""
    if device.type != "cuda":
        return config
    try:
        parts = micro_batches_to_fit(config.train.batch_size, step_memory(config, device), free_bytes(device))
    except DoesNotFit as err:
        raise DoesNotFit(f"{config.model.name} at {config.data.img_size} px does not train on {device}: {err}") \
            from None
    config.train.batch_size //= parts
    config.train.grad_accum *= parts
    return config


def memory_note(config: Config, device: torch.device) -> str | None:
    """One line for a chapter: what a training step of `config` holds on this CUDA `device`, measured, and
    of how much free memory; None on a CPU."""
    if device.type != "cuda":
        return None
    memory, free = step_memory(config, device), free_bytes(device)
    micro = config.train.batch_size
    return (f"measured on {torch.cuda.get_device_name(device)}: a training step of {micro} images holds "
            f"{memory.bytes_for(micro) / GIB:.1f} GiB ({memory.bytes_per_image / 2**20:.0f} MiB an image) of "
            f"{free / GIB:.1f} GiB free; train.batch_size {micro} x train.grad_accum {config.train.grad_accum}")
