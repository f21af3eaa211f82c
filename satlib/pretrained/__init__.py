"""A small pretrained backbone for the stand-in: the demo's conv-stem ViT trained on 64 synthetic classes.

The paper fine-tunes an ImageNet-pretrained DeiT-S. On a CPU the stand-in for that start is `STANDIN`:
the backbone of `cam_tiny_convstem` at the demo's widths (stem 16-32-64, width 64), trained for
classification on the synthetic "fills" set (64 classes, 8 silhouettes x 8 fill patterns, none of them
the demo's shapes; `satlib.data.synthetic`) by the recipe configs/pretrain_fills.yaml:

    python -m satlib.pretrained            # one torch thread; writes STANDIN and its JSON (PROVENANCE)

(`satlib/pretrained/__main__.py`, a driver of the training loop as the CLI is.)
Every tensor of the network but the classifier head (`head.*`) is kept, so it loads into any
`sat_`/`cam_`/`tscam_tiny_convstem` of those widths with only the loc token, loc embedding and head
new: `model.pretrained: convstem_fills64.safetensors` (a file name found here when it is no path).
The JSON beside the file records the command, the resolved recipe, the thread count, the torch version,
the pretraining's held-out accuracy, and two checksums: the file's sha256 and `tensors_sha256` (names,
shapes, dtypes and bytes of the tensors, independent of the file's layout). Same recipe, seed and thread
count on one machine: the same tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

HERE = Path(__file__).parent
STANDIN = HERE / "convstem_fills64.safetensors"
PROVENANCE = STANDIN.with_suffix(".json")
RECIPE = "pretrain_fills"
COMMAND = "python -m satlib.pretrained"
HEAD = "head."  # the classifier of the pretraining classes, not kept


def resolve_weights(name: str) -> str:
    """A `model.pretrained` value: an existing path as it is, else a file of this folder by its name."""
    if not name or name == "timm" or Path(name).expanduser().exists():
        return name
    packaged = HERE / Path(name).name
    return str(packaged) if packaged.is_file() else name


def backbone_state(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A model's state dict without its classifier head (`HEAD`), every tensor contiguous on the CPU."""
    return {key: value.detach().cpu().contiguous() for key, value in model_state.items() if not key.startswith(HEAD)}


def tensors_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (not the file's layout)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-d tensors too
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike, provenance: dict) -> dict:
    """Write a trained run's backbone (`backbone_state` of checkpoint.pt's model) to `out` (.safetensors) and
    its provenance JSON beside it (`provenance` + tensor count, parameters and both checksums); returns it."""
    from safetensors.torch import save

    from satlib.checkpoint import load_checkpoint
    from satlib.files import atomic_write, atomic_write_text

    state = backbone_state(load_checkpoint(checkpoint)["model"])
    out = Path(out)
    atomic_write(out, lambda f: f.write(save(state, metadata={"recipe": RECIPE, "command": COMMAND})))
    record = {**provenance, "file": out.name, "sha256": file_sha256(out), "tensors_sha256": tensors_sha256(state),
              "tensors": len(state), "parameters": sum(v.numel() for v in state.values() if v.is_floating_point()),
              "shapes": {key: list(value.shape) for key, value in state.items()}}
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    return record
