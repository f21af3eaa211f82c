"""What a dataset row becomes (`Record`), how bad rows are reported (`Problems`), and table reading."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger("satlib.data")


class DataError(ValueError):
    """Bad input data; the message starts with the file (and line) at fault."""


_NO_BOXES = np.zeros((0, 4))
_NO_BOXES.setflags(write=False)


@dataclass(slots=True)
class Record:
    """One image of a dataset: where it is, its label and its boxes in original pixels.

    `source` and `box_sources` say where each fact came from ("images.txt:17"), for error messages.
    Kept small (slots, shared empty defaults): ImageNet train holds 1.28M of them in every worker.
    """

    image_id: str
    path: str | Path
    label: int
    source: str
    boxes: np.ndarray = field(default_factory=lambda: _NO_BOXES)  # (K, 4) xyxy float64, shared when empty
    box_sources: Sequence[str] = ()
    mask_paths: Sequence[Path] = ()
    ignore_path: Path | None = None
    size: tuple[int, int] | None = None  # (w, h) when a metadata file states it
    size_source: str | None = None


class Problems:
    """Raise on bad data, or (skip_bad=True) log it, count it and let the caller drop the row/image."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.messages: list[str] = []

    @property
    def count(self) -> int:
        return len(self.messages)

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message)
        self.messages.append(message)
        log.warning("skipped: %s", message)


def require_file(path: Path, hint: str = "") -> Path:
    """`path` if it is a file, else a DataError naming it (and how to get it)."""
    if not path.is_file():
        raise DataError(f"missing file: {path}" + (f" ({hint})" if hint else ""))
    return path


def read_rows(path: Path, fields: int | tuple[int, ...], problems: Problems, *,
              sep: str | None = None, maxsplit: int = -1) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a text table; blank lines are skipped, wrong widths reported.

    `sep=None` splits on whitespace (CUB files), "," for wsolevaluation metadata.
    """
    allowed = (fields,) if isinstance(fields, int) else fields
    expected = " or ".join(str(n) for n in allowed)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(sep, maxsplit) if sep is not None else line.split(None, maxsplit)
            if len(parts) not in allowed:
                problems.report(f"{path}:{lineno}: expected {expected} fields, got {len(parts)}")
                continue
            yield lineno, parts


def parse_int(text: str, where: str, problems: Problems, what: str = "integer") -> int | None:
    """int(text), or report "<where>: expected <what>, got 'text'" and return None."""
    try:
        return int(text)
    except ValueError:
        problems.report(f"{where}: expected {what}, got {text!r}")
        return None


def parse_floats(texts: list[str], where: str, problems: Problems) -> list[float] | None:
    """[float(t) ...] (finite), or report "<where>: expected numbers, got ..." and return None."""
    try:
        values = [float(t) for t in texts]
    except ValueError:
        problems.report(f"{where}: expected numbers, got {' '.join(texts)!r}")
        return None
    if not all(np.isfinite(values)):
        problems.report(f"{where}: expected finite numbers, got {' '.join(texts)!r}")
        return None
    return values


def check_box(box: list[float], where: str, problems: Problems) -> bool:
    """A well-formed xyxy box (x0 <= x1, y0 <= y1, no negative corner), else report it."""
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 < x0 or y1 < y0:
        problems.report(f"{where}: box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) is not a valid "
                        f"box inside an image (need 0 <= x0 <= x1, 0 <= y0 <= y1)")
        return False
    return True


def boxes_outside(record: Record, w: int, h: int) -> str | None:
    """The message for the first box of `record` that leaves the w x h image, or None."""
    for box, where in zip(record.boxes, record.box_sources):
        x0, y0, x1, y1 = box.tolist()
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return (f"{where}: box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) is outside the "
                    f"{w}x{h} image {record.path}")
    return None
