"""Files written safely and read safely: atomic writes, weights-only reads.

Every file satlib writes (checkpoints, metrics, dataset tables, figures, reports) goes through
`atomic_write`: the bytes go to a temporary file beside the target, which is flushed, given the
permissions a plain `open(path, "w")` would (mkstemp makes 0600), and renamed onto the target. On any
error the temporary file is removed and the target is left as it was.

Every torch file satlib reads (its checkpoints, official SAT checkpoints, backbone weights) goes
through `read_weights_only`: tensors and plain containers, never pickled code.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO


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


def read_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain containers, never pickled code.

    A missing file is a FileNotFoundError and an unreadable one (truncated, foreign, or holding pickled
    objects) a ValueError, both naming the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # UnpicklingError for pickled code, RuntimeError for a damaged zip
        raise ValueError(f"{path}: not a readable checkpoint; satlib loads weights only (weights_only=True) "
                         f"and never runs pickled code ({type(error).__name__}: {error})") from error
