"""Weights into SAT: official SAT checkpoints, DeiT/ViT and any timm ViT backbone's weights, `pretrained=True`.

satlib keeps the official (and timm) parameter names, so an official checkpoint needs only unwrapping,
prefix stripping and the removal of its fixed Gaussian kernel. A backbone's checkpoint goes through
`checkpoint_filter_fn`, the one place that adapts an outside checkpoint to a model, as in timm:
wrappers and prefixes stripped, timm's own layout conversion (OpenAI CLIP, original DINOv2), the
patch and position embeddings resampled to the model's grid, the classifier dropped. Files are read
without running pickled code.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
from timm.models.vision_transformer import checkpoint_filter_fn as timm_checkpoint_filter_fn
from torch import Tensor, nn

from satlib.files import read_weights_only
from satlib.kernels import gaussian_kernel

_logger = logging.getLogger(__name__)

BACKBONE_MISSING = ("loc_token", "loc_embed", "head.weight", "head.bias")  # not in a backbone's weights
# a backbone's classifier (distilled DeiT's second head and token, pooling heads): never loaded into a model
CLASSIFIER_KEYS = ("head.", "head_dist.", "fc_norm.", "attn_pool.", "pre_logits.", "dist_token")
WRAPPER_KEYS = ("model", "state_dict")
PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile
OFFICIAL_KERNEL_KEY = "weight"  # the official model's fixed Gaussian (1, 1, 3, 3), requires_grad=False


class LoadReport(NamedTuple):
    """Which keys a load left alone: missing (kept at init), unexpected (ignored), dropped on purpose."""

    missing: list[str]
    unexpected: list[str]
    dropped: list[str]


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of a .safetensors file or a .pth/.pth.tar torch checkpoint (loaded with weights_only=True)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return read_weights_only(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def unwrap_state_dict(checkpoint: Mapping, name: str = "checkpoint") -> dict[str, Tensor]:
    """The bare state dict: unwrap "model"/"state_dict" and strip "module."/"_orig_mod." prefixes."""
    for key in WRAPPER_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{name}: key {key!r} holds a {type(value).__name__}, not a tensor "
                             f"(expected a state dict, possibly under {' or '.join(WRAPPER_KEYS)!r})")
        for prefix in PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    return state_dict


def convert_official_checkpoint(state_dict: Mapping) -> dict[str, Tensor]:
    """Map an official SAT checkpoint (bare or wrapped, with or without "module.") onto satlib keys.

    The official Gaussian kernel `weight` is checked against `gaussian_kernel(3, 6)` and dropped.
    """
    state_dict = unwrap_state_dict(state_dict, "official SAT checkpoint")
    if "loc_token" not in state_dict:
        raise ValueError(f"official SAT checkpoint: no 'loc_token' key, so not a SAT model "
                         f"(first keys: {list(state_dict)[:5]})")
    kernel = state_dict.pop(OFFICIAL_KERNEL_KEY, None)
    if kernel is not None:
        expected = gaussian_kernel(3, 6.0).reshape(1, 1, 3, 3)
        if kernel.shape != expected.shape:
            raise ValueError(f"official SAT checkpoint: {OFFICIAL_KERNEL_KEY!r} has shape "
                             f"{tuple(kernel.shape)}, expected the Gaussian kernel's {tuple(expected.shape)}")
        if not torch.allclose(kernel.float(), expected, atol=1e-6):
            raise ValueError(f"official SAT checkpoint: {OFFICIAL_KERNEL_KEY!r} is not the Gaussian "
                             f"get_kernel(3, 6): max difference {(kernel.float() - expected).abs().max():.3g}")
    return state_dict


def official_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """A SAT model's weights as the official train.py saves them: DataParallel's "module." keys and the fixed
    Gaussian kernel (`weight`), ready for `torch.save({"model": ...}, path)`; `convert_official_checkpoint`
    reads it back."""
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    state[f"module.{OFFICIAL_KERNEL_KEY}"] = gaussian_kernel(3, 6.0).reshape(1, 1, 3, 3)
    return state


def backbone_layout(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A timm ViT checkpoint (bare state dict) in `model`'s names, its classifier still in: timm's own
    conversion (OpenAI CLIP and original DINOv2 layouts; patch and position embeddings resampled to the
    model's grid).

    A distilled DeiT's position embedding loses its dist token's slot ([cls, dist, patches] ->
    [cls, patches]). A backbone pooled through `fc_norm` (EVA, MAE-style ViTs) has no `norm`; its
    `fc_norm` becomes the norm over the patch tokens.
    """
    state_dict = dict(state_dict)
    pos_embed = state_dict.get("pos_embed")
    if "dist_token" in state_dict and pos_embed is not None and model.num_prefix_tokens == 1:
        state_dict["pos_embed"] = torch.cat([pos_embed[:, :1], pos_embed[:, 2:]], dim=1)
    state_dict = timm_checkpoint_filter_fn(state_dict, model)
    if "norm.weight" not in state_dict and "fc_norm.weight" in state_dict and isinstance(model.norm, nn.LayerNorm):
        state_dict = {("norm." + k.removeprefix("fc_norm.") if k.startswith("fc_norm.") else k): v
                      for k, v in state_dict.items()}
    return state_dict


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, Tensor]:
    """Adapt a backbone's checkpoint to `model`, as timm's filters do: wrappers ("model", "state_dict") and
    prefixes ("module.", "_orig_mod.") stripped, converted to timm's names and the model's grid
    (`backbone_layout`), classifier dropped (`CLASSIFIER_KEYS`)."""
    return drop_classifier(backbone_layout(unwrap_state_dict(state_dict), model))


def drop_classifier(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict without a backbone's classifier (`CLASSIFIER_KEYS`)."""
    return {key: value for key, value in state_dict.items() if not key.startswith(CLASSIFIER_KEYS)}


def check_shapes(state_dict: Mapping[str, Tensor], model_state: Mapping[str, Tensor], name: str) -> None:
    """Raise a ValueError naming the file, the first key whose shape differs from the model's, and both
    shapes (`model_state`: the model's state dict). Keys present on one side only are left to the caller."""
    for key, value in state_dict.items():
        if key in model_state and value.shape != model_state[key].shape:
            hint = " (num_classes differs)" if key.startswith("head.") else ""
            raise ValueError(f"{name}: {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                             f"{tuple(model_state[key].shape)} in the model{hint}")


def is_full_checkpoint(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict is a whole satlib/official model (a loc token, or a conv head), not a backbone."""
    head = state_dict.get("head.weight")
    return "loc_token" in state_dict or (head is not None and head.ndim == 4)


def load_pretrained(model: nn.Module, source: str | os.PathLike | Mapping, *, strict: bool = True) -> LoadReport:
    """Load backbone weights or a full checkpoint (satlib or official SAT) into `model`; returns what was
    new (`missing`), ignored (`unexpected`) and dropped on purpose (`dropped`), and logs it.

    A checkpoint with a `loc_token` or a conv head is a full model and must match exactly (head
    included). Anything else is a backbone's checkpoint, adapted by `checkpoint_filter_fn` (timm's
    conversion, classifier dropped, position embedding resampled to the model's grid); the only keys
    it may lack are the loc token, loc embedding and head. With `strict=False` other missing or
    unexpected keys are reported instead of raising.
    """
    name = "state dict" if isinstance(source, Mapping) else str(source)
    raw = unwrap_state_dict(source if isinstance(source, Mapping) else read_state_dict(source), name)
    if is_full_checkpoint(raw):
        converted = raw
        state_dict = convert_official_checkpoint(raw) if "loc_token" in raw else dict(raw)
        allowed_missing = ()
    else:
        converted = backbone_layout(raw, model)
        state_dict, allowed_missing = drop_classifier(converted), BACKBONE_MISSING
    dropped = sorted(set(converted) - set(state_dict))
    target = model.state_dict()
    check_shapes(state_dict, target, name)
    missing = [key for key in target if key not in state_dict]
    unexpected = [key for key in state_dict if key not in target]
    surprising = [key for key in missing if key not in allowed_missing]
    if surprising or unexpected:
        message = f"{name}: does not fit the model: missing {surprising}, unexpected {unexpected}"
        if strict:
            raise ValueError(message + " (pass strict=False to load anyway)")
        warnings.warn(message, stacklevel=2)
    model.load_state_dict(state_dict, strict=False)
    _logger.info("loaded %s: missing %s, unexpected %s, dropped %s", name, missing, unexpected, dropped)
    return LoadReport(missing, unexpected, dropped)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the url's host opens within `timeout` seconds (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # behind a proxy a direct probe says nothing; the download client has its own timeouts
    import socket

    ok = []

    def probe() -> None:
        try:
            socket.create_connection((urlparse(url).hostname, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)  # a thread so a hanging DNS lookup cannot block
    thread.start()
    thread.join(timeout)
    return bool(ok)


def pretrained_file(variant: str, cfg: Mapping, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local file of a pretrained cfg's weights: its `file` (timm's `pretrained_cfg_overlay=dict(file=...)`; a
    folder, as timm's `local-dir:` names an export, holds model.safetensors), else cached, else downloaded;
    fails in seconds offline."""
    if cfg.get("file"):
        local = Path(cfg["file"])
        return local / "model.safetensors" if local.is_dir() else local
    hf_hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    filename = cfg.get("hf_hub_filename") or "model.safetensors"
    if not (hf_hub_id or url):
        raise ValueError(f"{variant} has no pretrained weights; train it from scratch or pass "
                         f"pretrained=<file> with weights of the same architecture")
    if hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hf_hub_id, filename, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    if url:
        cached = Path(cache_dir or torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if cached.is_file():
            return cached
    where = f"https://huggingface.co/{hf_hub_id}" if hf_hub_id else url
    howto = (f"{variant}: pretrained=True needs the backbone's pretrained weights, which are not cached and "
             f"cannot be downloaded here. Download {url or where + '/resolve/main/' + filename}"
             f"{f' (or {filename} from {where})' if url and hf_hub_id else ''} and pass the file: "
             f"create_model({variant!r}, pretrained='path/to/file') or `--pretrained FILE`.")
    if not _reachable(where):
        raise FileNotFoundError(howto)
    try:
        if hf_hub_id:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(hf_hub_id, filename, cache_dir=cache_dir))
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached))  # writes a temp file, then renames
        return cached
    except Exception as error:
        raise FileNotFoundError(f"{howto} (download failed: {error})") from error
