"""Files written safely and read safely: atomic writes and folders, weights-only reads, shape checks.

Every file satlib writes (checkpoints, metrics, dataset tables, figures, reports) goes through
`atomic_write`: the bytes go to a temporary file beside the target, which is flushed, given the
permissions a plain `open(path, "w")` would (mkstemp makes 0600), and renamed onto the target. On any
error the temporary file is removed and the target is left as it was. Every folder satlib fills as
a whole (a generated dataset, an unpacked archive) goes through `atomic_dir` the same way.

Every torch file satlib reads (its checkpoints, official SAT checkpoints, backbone weights) goes
through `read_weights_only`: tensors and plain containers, never pickled code; `check_shapes` names
the file, the key and both shapes when its tensors do not fit a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temporary binary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) to `path` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write each line followed by "\\n" to `path` atomically (the text tables of the datasets)."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def atomic_dir(out: str | os.PathLike, fill: Callable[[Path], os.PathLike | None], *,
               replaces: str | None = None) -> Path:
    """Call `fill(work)` on a fresh temporary folder beside `out`, then rename the folder it returns (`work`
    itself when it returns None; else a folder inside it) onto `out`: `out` is either complete or untouched.

    An existing non-empty `out` is replaced only when it holds the file `replaces` names (the marker of an
    earlier generated folder); anything else is a FileExistsError. Returns `out`.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (replaces and (out / replaces).is_file()):
        kept = f"holds no synthetic dataset ({replaces})" if replaces else "is not a folder satlib wrote"
        raise FileExistsError(f"{out} exists, is not empty and {kept}; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        made = Path(fill(work) or work)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(made, out)
            shutil.rmtree(old)
        else:
            os.replace(made, out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return out


def write_metrics(path: str | os.PathLike, record: dict, history: list[dict], **extra: Any) -> Path:
    """metrics.json: the last epoch's record (evaluator keys at the top level), extras, and the history."""
    return atomic_write_text(path, json.dumps({**record, **extra, "history": history}, indent=2) + "\n")


def read_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain containers, never pickled code.

    A missing file is a FileNotFoundError and an unreadable one (truncated, foreign, or holding pickled
    objects) a ValueError, both naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # UnpicklingError for pickled code, RuntimeError for a damaged zip
        raise ValueError(f"{path}: not a readable checkpoint; satlib loads weights only (weights_only=True) "
                         f"and never runs pickled code ({type(error).__name__}: {error})") from error


def check_shapes(state_dict: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise a ValueError naming the file, the first key whose shape differs from the model's, and both
    shapes (`model_state`: the model's state dict). Keys present on one side only are left to the caller."""
    for key, value in state_dict.items():
        if key in model_state and value.shape != model_state[key].shape:
            hint = " (num_classes differs)" if key.startswith("head.") else ""
            raise ValueError(f"{name}: {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                             f"{tuple(model_state[key].shape)} in the model{hint}")
