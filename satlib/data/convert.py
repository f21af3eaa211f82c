"""Format conversion: CUB official layout <-> wsolevaluation metadata; ILSVRC XML -> metadata."""

from __future__ import annotations

from pathlib import Path

from satlib.files import atomic_write_lines
from satlib.data.cub import read_cub
from satlib.data.imagenet import parse_val_xml
from satlib.data.io import image_size
from satlib.data.metadata import read_metadata, write_metadata
from satlib.data.records import DataError, Problems, log


def cub_to_metadata(root: str | Path, out: str | Path) -> dict[str, int]:
    """Official CUB layout at `root` -> `out`/{train,test}/*.txt; returns images per split.

    Image sizes come from the image headers; boxes are written as wsolevaluation's CUB files hold
    them, ``int(x), int(y), int(x + w), int(y + h)``.
    """
    counts = {}
    for split in ("train", "test"):
        records, _ = read_cub(Path(root), split, Problems())
        rows = [{"image_id": r.image_id, "label": r.label, "size": image_size(r.path),
                 "boxes": r.boxes.tolist()} for r in records]
        write_metadata(Path(out) / split, rows)
        counts[split] = len(rows)
    return counts


def _class_name(image_id: str, label: int) -> str:
    """CUB-style class folder ("001.Black_footed_Albatross") from an image id, else a made-up one."""
    head = image_id.split("/")[0]
    prefix, _, rest = head.partition(".")
    if "/" in image_id and prefix.isdigit() and rest:
        return head
    return f"{label + 1:03d}.class_{label + 1}"


def metadata_to_cub(meta: str | Path, out: str | Path) -> dict[str, int]:
    """wsolevaluation metadata `meta`/{train,test} -> official CUB tables in `out` (images not moved).

    Images are expected at `out`/images/<image id>. An image with several boxes keeps its first
    (bounding_boxes.txt holds one box per image) and a warning says so.
    """
    meta, out = Path(meta), Path(out)
    splits = {split: read_metadata(meta / split, out / "images", None, Problems()) for split in ("train", "test")}
    tables: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes")}
    names: dict[int, str] = {}
    image_id = 0
    for split, records in splits.items():
        for record in records:
            if len(record.boxes) == 0:
                raise DataError(f"{record.source}: {record.image_id!r} has no box in localization.txt")
            if len(record.boxes) > 1:
                log.warning("%s: %d boxes, bounding_boxes.txt keeps the first", record.image_id, len(record.boxes))
            image_id += 1
            x0, y0, x1, y1 = record.boxes[0].tolist()
            names.setdefault(record.label, _class_name(record.image_id, record.label))
            tables["images"].append(f"{image_id} {record.image_id}")
            tables["labels"].append(f"{image_id} {record.label + 1}")
            tables["split"].append(f"{image_id} {int(split == 'train')}")
            tables["boxes"].append(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
    num_classes = max(names) + 1 if names else 0
    classes = [f"{k + 1} {names.get(k, _class_name('', k))}" for k in range(num_classes)]
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("images.txt", tables["images"]), ("image_class_labels.txt", tables["labels"]),
                        ("train_test_split.txt", tables["split"]), ("bounding_boxes.txt", tables["boxes"]),
                        ("classes.txt", classes)):
        atomic_write_lines(out / name, lines)
    return {split: len(records) for split, records in splits.items()}


def imagenet_val_metadata(xml_dir: str | Path, wnids: list[str], out: str | Path,
                          prefix: str = "val/") -> int:
    """ILSVRC val XML annotations -> wsolevaluation metadata in `out` (labels = index in `wnids`).

    Image ids are `prefix` + the XML's <filename> + ".JPEG"; every <object> box becomes a row.
    """
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths = sorted(Path(xml_dir).rglob("*.xml"))
    if not paths:
        raise DataError(f"{xml_dir}: no .xml annotations (expected ILSVRC2012_val_*.xml)")
    rows = []
    for path in paths:
        filename, size, objects = parse_val_xml(path)
        wnid = objects[0][0]
        if wnid not in index:
            raise DataError(f"{path}: class {wnid!r} is not one of the {len(wnids)} training classes")
        name = filename if filename.lower().endswith((".jpeg", ".jpg")) else filename + ".JPEG"
        rows.append({"image_id": prefix + name, "label": index[wnid], "size": size,
                     "boxes": [box for _, box in objects]})
    write_metadata(Path(out), rows)
    return len(rows)
