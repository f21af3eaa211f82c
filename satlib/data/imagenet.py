"""ImageNet (ILSVRC 2012): train as class folders, val boxes from the ILSVRC XML annotations.

    root/train/<wnid>/<name>.JPEG     labels = index of the wnid in sorted order (the usual 0..999)
    root/val/ILSVRC2012_val_<n>.JPEG  test split, labels and boxes from root/metadata/test/ (wsolevaluation)

The XML annotations (ILSVRC2012_bbox_val_v3.tgz) hold, per image, <size><width>/<height> and one
<object><name>wnid</name><bndbox><xmin>... per box; data_scripts/prepare_imagenet.py turns them into
wsolevaluation metadata (several rows per image for several boxes).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from satlib.data.records import DataError, Problems, Record

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def class_folders(train_dir: Path) -> list[str]:
    """Sorted class folder names (wnids) of an ImageFolder-like train directory."""
    train_dir = Path(train_dir)
    if not train_dir.is_dir():
        raise DataError(f"ImageNet train folder missing: {train_dir} (expected {train_dir}/<wnid>/*.JPEG; "
                        f"see data_scripts/prepare_imagenet.py)")
    names = sorted(entry.name for entry in os.scandir(train_dir) if entry.is_dir())
    if not names:
        raise DataError(f"{train_dir}: no class folders (expected {train_dir}/<wnid>/*.JPEG)")
    return names


def read_class_folders(root: Path, problems: Problems, folder: str = "train") -> tuple[list[Record], list[str]]:
    """Records of root/<folder>/<class>/<image> with labels by sorted class name; and the class names."""
    root = Path(root)
    classes = class_folders(root / folder)
    records = []
    for label, wnid in enumerate(classes):
        class_dir = root / folder / wnid
        source = f"{class_dir} (class {label})"  # one string shared by the class's records
        names = sorted(e.name for e in os.scandir(class_dir)
                       if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        for name in names:
            image_id = f"{folder}/{wnid}/{name}"
            records.append(Record(image_id=image_id, path=f"{class_dir}/{name}", label=label, source=source))
    return records, classes


def parse_val_xml(path: Path) -> tuple[str, tuple[int, int], list[tuple[str, list[float]]]]:
    """One ILSVRC XML annotation -> (filename, (w, h), [(wnid, [x0, y0, x1, y1]), ...])."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise DataError(f"{path}: not valid XML: {err}") from None
    node = tree.getroot()

    def text(parent: ET.Element, tag: str) -> str:
        child = parent.find(tag)
        if child is None or child.text is None:
            raise DataError(f"{path}: missing <{tag}> in <{parent.tag}>")
        return child.text.strip()

    def number(parent: ET.Element, tag: str) -> float:
        value = text(parent, tag)
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{path}: <{tag}> is not a number: {value!r}") from None

    filename = text(node, "filename")
    size = node.find("size")
    if size is None:
        raise DataError(f"{path}: missing <size>")
    w, h = int(number(size, "width")), int(number(size, "height"))
    objects = []
    for obj in node.findall("object"):
        box_node = obj.find("bndbox")
        if box_node is None:
            raise DataError(f"{path}: <object> without <bndbox>")
        box = [number(box_node, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if box[0] > box[2] or box[1] > box[3] or box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            raise DataError(f"{path}: box {box} is not inside the {w}x{h} image")
        objects.append((text(obj, "name"), box))
    if not objects:
        raise DataError(f"{path}: no <object> boxes")
    return filename, (w, h), objects
