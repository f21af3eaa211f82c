"""CUB-200-2011 in its official layout (also the layout of the synthetic dataset), read and written.

    root/
      images/<class dir>/<name>.jpg
      images.txt                 <image id> <relative path>             (ids from 1)
      image_class_labels.txt     <image id> <class id>                  (class ids from 1)
      train_test_split.txt       <image id> <1 = train, 0 = test>
      bounding_boxes.txt         <image id> <x> <y> <width> <height>    (floats, pixels)
      classes.txt                <class id> <class name>
      segmentations/<class dir>/<name>.png   (optional, CUB's separate download)

Boxes become xyxy as (x, y, x + width, y + height) when read; `write_cub_tables` writes xyxy boxes
back as x, y, width, height with one decimal, as CUB's own file holds them. CUB segmentations are soft (the fraction of
annotators who marked the pixel, 0..255); a pixel is foreground when more than half did (> 127).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satlib.data.io import image_size
from satlib.data.records import DataError, Problems, Record, check_box, parse_floats, parse_int, read_rows, require_file
from satlib.files import atomic_write_lines

CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
             "classes.txt")
MASK_THRESHOLD = 127


def is_cub_layout(root: Path) -> bool:
    return (Path(root) / "images.txt").is_file()


def read_classes(path: Path, problems: Problems) -> list[str]:
    """classes.txt -> class names in id order; ids must run 1..C."""
    names: dict[int, str] = {}
    for lineno, (cid, name) in read_rows(path, 2, problems, maxsplit=1):
        class_id = parse_int(cid, f"{path}:{lineno}", problems, "a class id")
        if class_id is None:
            continue
        if class_id in names:
            problems.report(f"{path}:{lineno}: class id {class_id} listed twice")
            continue
        names[class_id] = name.strip()
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DataError(f"{path}: class ids must run 1..{len(names)}, got {sorted(names)[:5]}...")
    return [names[i] for i in range(1, len(names) + 1)]


def read_id_table(path: Path, problems: Problems, width: int = 2, maxsplit: int = -1
                   ) -> dict[int, tuple[int, list[str]]]:
    """<image id> <fields...> -> {image id: (line number, fields)}; duplicate ids reported."""
    table: dict[int, tuple[int, list[str]]] = {}
    for lineno, parts in read_rows(path, width, problems, maxsplit=maxsplit):
        image_id = parse_int(parts[0], f"{path}:{lineno}", problems, "an image id")
        if image_id is None:
            continue
        if image_id in table:
            problems.report(f"{path}:{lineno}: image id {image_id} listed twice "
                            f"(first at line {table[image_id][0]})")
            continue
        table[image_id] = (lineno, parts[1:])
    return table


def read_cub(root: Path, split: str, problems: Problems) -> tuple[list[Record], list[str]]:
    """Records of one split ("train" or "test") of an official-layout CUB root, and the class names."""
    root = Path(root)
    if split not in ("train", "test"):
        raise DataError(f"{root}: the official CUB layout has splits 'train' and 'test', not {split!r} "
                        f"(CUBV2 'val' comes as wsolevaluation metadata: metadata/val/*.txt)")
    paths = {name: require_file(root / name, "official CUB-200-2011 layout") for name in CUB_FILES}
    classes = read_classes(paths["classes.txt"], problems)
    images = read_id_table(paths["images.txt"], problems, maxsplit=1)
    labels = read_id_table(paths["image_class_labels.txt"], problems)
    splits = read_id_table(paths["train_test_split.txt"], problems)
    boxes = read_id_table(paths["bounding_boxes.txt"], problems, width=5)
    want = 1 if split == "train" else 0

    records = []
    for image_id, (lineno, (relpath,)) in images.items():
        where = f"{paths['images.txt']}:{lineno}"
        if image_id not in splits:
            problems.report(f"{paths['train_test_split.txt']}: no row for image id {image_id} ({where})")
            continue
        if _parse_flag(splits[image_id], paths["train_test_split.txt"], problems) != want:
            continue
        parts = {}
        for name, table in (("image_class_labels.txt", labels), ("bounding_boxes.txt", boxes)):
            if image_id not in table:
                problems.report(f"{paths[name]}: no row for image id {image_id} ({where})")
                break
            parts[name] = table[image_id]
        else:
            record = _make_record(root, image_id, relpath.strip(), where, parts, paths, len(classes),
                                  problems)
            if record is not None:
                records.append(record)
    return records, classes


def read_split_boxes(root: str | Path, split: str = "test") -> tuple[np.ndarray, list[np.ndarray]]:
    """Every image of a split of a CUB-layout folder as (N, 2) sizes (w, h) and its GT boxes, each (K, 4)
    inclusive xyxy in the image's pixels (what the trivial baselines are scored on; only image headers are read)."""
    records, _ = read_cub(Path(root), split, Problems())
    if not records:
        raise DataError(f"{root}: no images in split {split!r}")
    sizes = np.array([image_size(r.path) for r in records], dtype=np.float64)
    return sizes, [r.boxes for r in records]


def _parse_flag(row: tuple[int, list[str]], path: Path, problems: Problems) -> int | None:
    lineno, (text,) = row
    if text not in ("0", "1"):
        problems.report(f"{path}:{lineno}: expected 1 (train) or 0 (test), got {text!r}")
        return None
    return int(text)


def _make_record(root: Path, image_id: int, relpath: str, where: str, parts: dict, paths: dict,
                 num_classes: int, problems: Problems) -> Record | None:
    label_line, (label_text,) = parts["image_class_labels.txt"]
    label_where = f"{paths['image_class_labels.txt']}:{label_line}"
    class_id = parse_int(label_text, label_where, problems, "a class id")
    if class_id is None:
        return None
    if not 1 <= class_id <= num_classes:
        problems.report(f"{label_where}: class id {class_id} out of range 1..{num_classes} (classes.txt)")
        return None
    box_line, box_texts = parts["bounding_boxes.txt"]
    box_where = f"{paths['bounding_boxes.txt']}:{box_line}"
    xywh = parse_floats(box_texts, box_where, problems)
    if xywh is None:
        return None
    x, y, w, h = xywh
    box = [x, y, x + w, y + h]
    if not check_box(box, box_where, problems):
        return None
    return Record(image_id=relpath, path=root / "images" / relpath, label=class_id - 1, source=where,
                  boxes=np.array([box], dtype=np.float64), box_sources=[box_where],
                  mask_paths=[root / "segmentations" / Path(relpath).with_suffix(".png")])


# -- writing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CubRow:
    """One image of the official tables: its path under images/, class index from 0, split, xyxy box."""

    path: str
    label: int
    train: bool
    box: Sequence[float]  # (4,) x0, y0, x1, y1 in pixels


def _xywh_text(box: Sequence[float]) -> str:
    x0, y0, x1, y1 = (float(v) for v in box)
    return f"{x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}"


def write_box_table(path: str | Path, boxes: Iterable[tuple[int, Sequence[float]]]) -> Path:
    """(image id, (4,) xyxy box) pairs -> `<image id> <x> <y> <width> <height>` rows at `path`.

    The format of bounding_boxes.txt (and of the synthetic set's part_boxes.txt); boxes are checked
    as the reader checks them, and a bad one raises DataError naming the file and the image id.
    """
    path = Path(path)
    lines = []
    for image_id, box in boxes:
        check_box([float(v) for v in box], f"{path}: image id {image_id}", Problems())
        lines.append(f"{image_id} {_xywh_text(box)}")
    return atomic_write_lines(path, lines)


def _check_text(text: str, what: str, where: str) -> None:
    """A path or class name must survive a whitespace-split table row unchanged."""
    if not text or text != text.strip() or "\n" in text or "\r" in text:
        raise DataError(f"{where}: {what} {text!r} cannot be written to a CUB table "
                        f"(empty, a line break, or whitespace at an end)")


def write_cub_tables(root: str | Path, rows: Sequence[CubRow], class_names: Sequence[str]) -> Path:
    """The five official tables in `root` for `rows` (image ids 1..N in order); returns `root`.

    classes.txt lists `class_names` as ids 1..C, so row labels index into it. Everything is checked
    before anything is written: a label outside the classes, a bad box, or a path or class name the
    tables cannot hold raises DataError naming the table and the row. Images are not written.
    """
    root = Path(root)
    for class_id, name in enumerate(class_names, start=1):
        _check_text(name, "class name", f"{root / 'classes.txt'}: class id {class_id}")
    for image_id, row in enumerate(rows, start=1):
        where = f"{root / 'images.txt'}: image id {image_id}"
        _check_text(row.path, "image path", where)
        if not 0 <= row.label < len(class_names):
            raise DataError(f"{where} ({row.path}): class index {row.label} outside the "
                            f"{len(class_names)} classes of classes.txt")
        check_box([float(v) for v in row.box], f"{root / 'bounding_boxes.txt'}: image id {image_id} ({row.path})",
                  Problems())
    atomic_write_lines(root / "images.txt", (f"{i} {row.path}" for i, row in enumerate(rows, start=1)))
    atomic_write_lines(root / "image_class_labels.txt",
                       (f"{i} {row.label + 1}" for i, row in enumerate(rows, start=1)))
    atomic_write_lines(root / "train_test_split.txt",
                       (f"{i} {int(bool(row.train))}" for i, row in enumerate(rows, start=1)))
    write_box_table(root / "bounding_boxes.txt", ((i, row.box) for i, row in enumerate(rows, start=1)))
    atomic_write_lines(root / "classes.txt", (f"{i} {name}" for i, name in enumerate(class_names, start=1)))
    return root
