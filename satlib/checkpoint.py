"""Checkpoints: written atomically, read without executing pickled code, loaded strictly into a model.

Pure I/O: turning the config a checkpoint stores back into a model is `satlib.build` (`satlib.load`).

A satlib checkpoint is a dict::

    model       state dict
    optimizer   state dict (training checkpoints)
    config      Config.to_dict(): model name, classes, input size, thresholds...
    epoch, step, best_threshold, class_names, metrics, rng
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from satlib.files import atomic_write, check_shapes, read_weights_only


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save `payload` to `path` atomically (temp file + rename): a crash leaves the old file."""
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (no pickled code runs)."""
    try:
        payload = read_weights_only(path, map_location)
    except (FileNotFoundError, ValueError) as err:  # missing, truncated zip, foreign pickle, ...
        raise CheckpointError(str(err)) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(payload).__name__}")
    return payload


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """load_state_dict(strict=True) with errors that name the file, the key and both shapes."""
    own = model.state_dict()
    try:
        check_shapes(state, own, str(path))
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not fit the model; missing {missing[:6]}, "
                              f"unexpected {unexpected[:6]}")
    model.load_state_dict(state)
