"""Checkpoints: written atomically, read without executing pickled code, rebuilt into a model.

`build_model(config)` is the one path from a config to a model: training builds with it, and
`model_from_checkpoint` rebuilds a trained model with it from the config the checkpoint stores.

A satlib checkpoint is a dict::

    model       state dict
    optimizer   state dict (training checkpoints)
    config      Config.to_dict(): model name, classes, input size, thresholds...
    epoch, step, best_threshold, metrics, rng
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from satlib.config import Config, config_from_dict
from satlib.data.from_config import normalization
from satlib.files import atomic_write, read_weights_only
from satlib.runtime import SMOKE_ENV, work_limits


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


def build_model(config: Config, num_classes: int | None = None, *, with_pretrained: bool = True) -> torch.nn.Module:
    """The model `config.model` describes for `config.data.img_size` inputs (num_classes overrides the config's).

    `model.pretrained` loads backbone weights ("timm": the variant's own, else a local file, or one shipped in
    satlib/pretrained by its name: `satlib.pretrained.resolve_weights`) unless
    `with_pretrained=False` (a checkpoint's weights are about to replace them). Under SATLIB_SMOKE "timm"
    is skipped with a warning: random init, nothing downloaded (a local file still loads).
    """
    from satlib.models import create_model
    from satlib.pretrained import resolve_weights

    m = config.model
    pretrained: bool | str = False
    if with_pretrained and m.pretrained:
        pretrained = True if m.pretrained == "timm" else resolve_weights(m.pretrained)
    if pretrained is True and work_limits().random_init:
        warnings.warn(f"{SMOKE_ENV}=1: model.pretrained=timm skipped, {m.name} starts from random weights "
                      f"(nothing is downloaded; a smoke run checks code paths, not results)", stacklevel=2)
        pretrained = False
    return create_model(m.name, num_classes=num_classes or m.num_classes, pretrained=pretrained,
                        img_size=config.data.img_size, drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate,
                        num_query_blocks=m.num_query_blocks, attn_impl=m.attn_impl,
                        freeze_backbone=m.freeze_backbone, train_query_blocks=m.train_query_blocks, **m.kwargs)


def model_from_checkpoint(path: str | Path, *, official: bool = False, device: str | torch.device = "cpu",
                          config: Config | None = None) -> tuple[torch.nn.Module, Config, dict]:
    """Rebuild the model a checkpoint was trained as; returns (model in eval mode, config, payload).

    The model carries the checkpoint's `best_threshold` (None if it has none) and `eval_protocol`.

    `official=True` reads a checkpoint of the official SAT release (no stored config): the model is
    the official DeiT-T/S/B variant its width names, with the class count read from its head.
    """
    from satlib.models import VARIANTS, convert_official_checkpoint

    payload = load_checkpoint(path)
    if official:
        state = convert_official_checkpoint(payload)
        config = config or Config()
        if config.model.name == Config().model.name:  # the official release: DeiT-T/S/B by width
            by_width = {v["embed_dim"]: name for name, v in VARIANTS.items() if name.startswith("sat_deit_")}
            width = int(state["cls_token"].shape[-1])
            if width not in by_width:
                raise CheckpointError(f"{path}: cls_token width {width} matches no official SAT model "
                                      f"(DeiT-T/S/B: {sorted(by_width)})")
            config.model.name = by_width[width]
        config.model.num_classes = int(state["head.weight"].shape[0])
        config.data.img_size, config.data.resize_size = 224, 256
    else:
        if "model" not in payload or "config" not in payload:
            raise CheckpointError(f"{path}: not a satlib checkpoint (keys: {sorted(payload)[:8]}); "
                                  f"for a checkpoint of the official SAT release pass --official")
        state = payload["model"]
        config = config_from_dict(payload["config"], source=f"{path}: config")
    model = build_model(config, with_pretrained=False)
    _load_state_strict(model, state, path)
    # what satlib.localize reads: the map threshold chosen at evaluation, and the box protocol
    model.best_threshold, model.eval_protocol = payload.get("best_threshold"), config.eval.protocol
    model.input_normalization = normalization(config)  # what its training images were normalised with
    return model.to(device).eval(), config, payload


def _load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """load_state_dict(strict=True) with errors that name the file, the key and both shapes."""
    from satlib.models.weights import check_shapes

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
