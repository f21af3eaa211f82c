"""Format conversion: CUB official layout <-> wsolevaluation metadata; ILSVRC XML -> metadata."""

from __future__ import annotations

from pathlib import Path

from satlib.data.cub import CubRow, read_cub, write_cub_tables
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
    rows: list[CubRow] = []
    names: dict[int, str] = {}
    for split, records in splits.items():
        for record in records:
            if len(record.boxes) == 0:
                raise DataError(f"{record.source}: {record.image_id!r} has no box in localization.txt")
            if len(record.boxes) > 1:
                log.warning("%s: %d boxes, bounding_boxes.txt keeps the first", record.image_id, len(record.boxes))
            names.setdefault(record.label, _class_name(record.image_id, record.label))
            rows.append(CubRow(path=record.image_id, label=record.label, train=split == "train",
                               box=record.boxes[0].tolist()))
    num_classes = max(names) + 1 if names else 0
    write_cub_tables(out, rows, class_names=[names.get(k, _class_name("", k)) for k in range(num_classes)])
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
