"""wsolevaluation metadata (clovaai/wsolevaluation, ``metadata/<dataset>/<split>/``), read and written.

    image_ids.txt      <image id>                       (a path relative to the image root)
    class_labels.txt   <image id>,<class label>         (from 0)
    image_sizes.txt    <image id>,<w>,<h>               (may be empty, e.g. OpenImages)
    localization.txt   <image id>,<x0>,<y0>,<x1>,<y1>   boxes, several rows for several boxes (CUB, ILSVRC)
                   or  <image id>,<mask>,<ignore>       masks (OpenImages), several rows for several
                                                        masks; the ignore mask only on the first row

Image ids, mask and ignore paths are relative to the dataset root. wsolevaluation binarises masks as
``value > 0.5`` after a nearest resize, i.e. any nonzero pixel is foreground; the ignore region is the
ignore mask minus the foreground.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from satlib.data.records import DataError, Problems, Record, check_box, parse_floats, parse_int, read_rows, require_file
from satlib.files import atomic_write_lines

METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
MASK_THRESHOLD = 0


def metadata_dir(root: Path, split: str, metadata_root: Path | None = None) -> Path:
    """Where a split's metadata lives: <metadata_root or root/metadata>/<split>."""
    return Path(metadata_root if metadata_root is not None else Path(root) / "metadata") / split


def has_metadata(root: Path, split: str, metadata_root: Path | None = None) -> bool:
    return (metadata_dir(root, split, metadata_root) / "image_ids.txt").is_file()


def read_metadata(meta: Path, image_root: Path, num_classes: int | None, problems: Problems,
                  mask_root: Path | None = None) -> list[Record]:
    """Records of one wsolevaluation split folder `meta`; images under `image_root`, masks under `mask_root`.

    Labels must lie in 0..num_classes-1 (None: any label >= 0).
    """
    meta = Path(meta)
    mask_root = Path(mask_root) if mask_root is not None else Path(image_root)
    ids_path = require_file(meta / "image_ids.txt", "wsolevaluation metadata; see data_scripts/")
    labels = _read_labels(require_file(meta / "class_labels.txt"), num_classes, problems)
    sizes = _read_sizes(meta / "image_sizes.txt", problems)
    boxes, masks = _read_localization(meta / "localization.txt", mask_root, problems)

    records, seen = [], set()
    for lineno, (image_id,) in read_rows(ids_path, 1, problems, sep="\x00"):
        where = f"{ids_path}:{lineno}"
        if image_id in seen:
            problems.report(f"{where}: image id {image_id!r} listed twice")
            continue
        seen.add(image_id)
        if image_id not in labels:
            problems.report(f"{meta / 'class_labels.txt'}: no label for {image_id!r} ({where})")
            continue
        record = Record(image_id=image_id, path=Path(image_root) / image_id, label=labels[image_id],
                        source=where)
        if image_id in sizes:
            record.size, record.size_source = sizes[image_id]
        if image_id in boxes:
            box_list, record.box_sources = boxes[image_id]
            record.boxes = np.array(box_list, dtype=np.float64).reshape(-1, 4)
        if image_id in masks:
            record.mask_paths, record.ignore_path = masks[image_id]
        records.append(record)
    return records


def _read_labels(path: Path, num_classes: int | None, problems: Problems) -> dict[str, int]:
    labels: dict[str, int] = {}
    for lineno, (image_id, text) in read_rows(path, 2, problems, sep=","):
        where = f"{path}:{lineno}"
        label = parse_int(text, where, problems, "a class label")
        if label is None:
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            top = "" if num_classes is None else f"{num_classes - 1}"
            problems.report(f"{where}: class label {label} out of range 0..{top}")
            continue
        labels[image_id] = label
    return labels


def _read_sizes(path: Path, problems: Problems) -> dict[str, tuple[tuple[int, int], str]]:
    sizes: dict[str, tuple[tuple[int, int], str]] = {}
    if not path.is_file():
        return sizes
    for lineno, (image_id, w, h) in read_rows(path, 3, problems, sep=","):
        where = f"{path}:{lineno}"
        wh = [parse_int(t, where, problems, "an integer size") for t in (w, h)]
        if None in wh:
            continue
        if min(wh) <= 0:
            problems.report(f"{where}: image size must be positive, got {wh[0]}x{wh[1]}")
            continue
        sizes[image_id] = ((wh[0], wh[1]), where)
    return sizes


def _read_localization(path: Path, mask_root: Path, problems: Problems):
    """localization.txt -> ({id: (boxes, sources)}, {id: (mask paths, ignore path)})."""
    boxes: dict[str, tuple[list, list[str]]] = {}
    masks: dict[str, tuple[list[Path], Path | None]] = {}
    if not path.is_file():
        return boxes, masks
    for lineno, parts in read_rows(path, (3, 5), problems, sep=","):
        where = f"{path}:{lineno}"
        image_id = parts[0]
        if len(parts) == 5:
            box = parse_floats(parts[1:], where, problems)
            if box is None or not check_box(box, where, problems):
                continue
            entry = boxes.setdefault(image_id, ([], []))
            entry[0].append(box)
            entry[1].append(where)
        else:
            mask, ignore = parts[1], parts[2]
            if not mask:
                problems.report(f"{where}: empty mask path")
                continue
            if image_id in masks:
                masks[image_id][0].append(mask_root / mask)
                if ignore:
                    problems.report(f"{where}: a second ignore mask for {image_id!r} "
                                    f"(only the first row of an image may name one)")
            else:
                masks[image_id] = ([mask_root / mask], mask_root / ignore if ignore else None)
    return boxes, masks


def write_metadata(meta: str | Path, rows: Sequence[dict]) -> Path:
    """Write one split folder `meta` (the four files above); returns `meta`.

    Each row: "image_id", "label" (from 0), optional "size" (w, h), and "boxes" (xyxy) or "masks" and
    "ignore" (paths). Boxes are written as integers (as wsolevaluation's files hold them), truncated
    like ``int()``. Everything is checked before anything is written: a missing key, an id or path
    that a comma-separated row cannot hold, a negative label, a bad size or box raises DataError
    naming the file and the row.
    """
    meta = Path(meta)
    for index, row in enumerate(rows, start=1):
        _check_row(meta, index, row)
    atomic_write_lines(meta / "image_ids.txt", (r["image_id"] for r in rows))
    atomic_write_lines(meta / "class_labels.txt", (f"{r['image_id']},{int(r['label'])}" for r in rows))
    atomic_write_lines(meta / "image_sizes.txt",
                       (f"{r['image_id']},{int(r['size'][0])},{int(r['size'][1])}" for r in rows if r.get("size")))
    atomic_write_lines(meta / "localization.txt", _localization_lines(rows))
    return meta


def _localization_lines(rows: Sequence[dict]) -> Iterable[str]:
    for r in rows:
        for box in r.get("boxes", ()):
            yield r["image_id"] + "," + ",".join(str(int(v)) for v in box)
        for i, mask in enumerate(r.get("masks", ())):
            ignore = r.get("ignore", "") if i == 0 else ""
            yield f"{r['image_id']},{mask},{ignore or ''}"


def _check_field(text: str, what: str, where: str) -> None:
    if not text or "," in text or "\n" in text or "\r" in text:
        raise DataError(f"{where}: {what} {text!r} cannot be written to a comma-separated row "
                        f"(empty, a comma or a line break)")


def _check_row(meta: Path, index: int, row: dict) -> None:
    """Raise DataError naming the file and the row for anything the reader would refuse or misread."""
    missing = [key for key in ("image_id", "label") if key not in row]
    if missing:
        raise DataError(f"{meta}: row {index} has no {' or '.join(missing)} (keys given: {sorted(row)})")
    _check_field(row["image_id"], "image id", f"{meta / 'image_ids.txt'}: row {index}")
    which = f"row {index} ({row['image_id']})"
    if int(row["label"]) < 0:
        raise DataError(f"{meta / 'class_labels.txt'}: {which}: class label {row['label']} is negative")
    if row.get("size") and min(int(v) for v in row["size"]) <= 0:
        raise DataError(f"{meta / 'image_sizes.txt'}: {which}: image size must be positive, got {row['size']}")
    for box in row.get("boxes", ()):
        check_box([float(int(v)) for v in box], f"{meta / 'localization.txt'}: {which}", Problems())
    for mask in row.get("masks", ()):
        _check_field(str(mask), "mask path", f"{meta / 'localization.txt'}: {which}")
    if row.get("ignore"):
        _check_field(str(row["ignore"]), "ignore path", f"{meta / 'localization.txt'}: {which}")


def check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
