"""Stand-ins for the real datasets: the synthetic objects written in CUB's, ImageNet's and OpenImages' own layouts.

The demo's set (`satlib.data.synthetic`) is square PNGs at the model's side; real photos are JPEGs of
every size and shape. A stand-in is the real thing's layout filled with synthetic photos, so that the
real readers, transforms and box arithmetic (resize of a non-square image, crop, GT boxes in original
pixels) are what runs when a chapter or a recipe is rehearsed without the real data:

    cub         the official CUB-200-2011 layout (`satlib.data.cub`): images/<NNN.name>/<name>_<k>.jpg,
                the five tables, segmentations/<...>.png
    imagenet    what data_scripts/prepare_imagenet.py writes: train/<wnid>/<wnid>_<k>.JPEG,
                val/ILSVRC2012_val_<n>.JPEG and metadata/test/ (from ILSVRC-style val XMLs, by the same
                converter), some val images with two objects (two boxes)
    openimages  wsolevaluation's OpenImages30k layout: train/<class>/<id>.jpg, test/<class>/<id>.jpg,
                test masks <id>_m<class>_<k>.png (several for two objects), <id>_ignore.png, and
                metadata/{train,test}/

Each photo is a synthetic scene (`draw_example`) of random width and height (`sides`, aspect up to
5:3 either way) cropped around its object, saved as JPEG; boxes and masks come from the object's own
pixels. `standin.json` describes the set; same arguments, same bytes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from satlib.data.convert import imagenet_val_metadata
from satlib.data.cub import CubRow, write_cub_tables
from satlib.data.metadata import write_metadata
from satlib.data.synthetic import SynthConfig, draw_example, mask_box
from satlib.files import atomic_dir, atomic_write_text

LAYOUTS = ("cub", "imagenet", "openimages")
MARKER = "standin.json"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Photo:
    """One stand-in photo: (h, w, 3) uint8 pixels and one (h, w) bool mask per object."""

    image: np.ndarray
    masks: list[np.ndarray]

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Each object's tight inclusive box (x0, y0, x1, y1), in the masks' order."""
        return [mask_box(mask) for mask in self.masks]

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) in pixels."""
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class StandinConfig:
    """What a stand-in holds: `num_classes` x `per_class` photos (`test_fraction` of each class in the test
    split), longest side uniform in `sides`, every `multi_every`-th test photo with a second object
    (ImageNet, OpenImages), objects drawn as the synthetic set's `variant`."""

    layout: str = "cub"
    num_classes: int = 4
    per_class: int = 10
    seed: int = 0
    sides: tuple[int, int] = (200, 400)
    variant: str = "shapes"
    test_fraction: float = 0.2
    multi_every: int = 3

    def check(self) -> "StandinConfig":
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if not 32 <= self.sides[0] <= self.sides[1]:
            raise ValueError(f"sides must satisfy 32 <= low <= high, got {self.sides}")
        SynthConfig(num_classes=self.num_classes, per_class=self.per_class, variant=self.variant,
                    test_fraction=self.test_fraction).resolved()  # the same limits as the synthetic set
        return self

    @property
    def test_count(self) -> int:
        """Test photos per class."""
        return max(1, round(self.per_class * self.test_fraction))


def draw_photo(cfg: StandinConfig, label: int, index: int, *, objects: int = 1) -> Photo:
    """Photo `index` of class `label`: a scene of random (w, h) cropped around its `objects` objects."""
    rng = np.random.default_rng([cfg.seed, LAYOUTS.index(cfg.layout), label, index])
    side = int(rng.integers(cfg.sides[0], cfg.sides[1] + 1))
    short = int(round(side / rng.uniform(1.0, 5 / 3)))
    w, h = (side, short) if rng.random() < 0.5 else (short, side)
    scene = SynthConfig(size=side, variant=cfg.variant, num_classes=cfg.num_classes,
                        object_size=(0.25, 0.55)).resolved()
    image, mask, _ = draw_example(scene, label, rng)
    masks = [mask]
    for _ in range(objects - 1):  # another object of the class, pasted from a second scene
        other, other_mask, _ = draw_example(scene, label, rng)
        image = np.where(other_mask[..., None], other, image)
        masks = [m & ~other_mask for m in masks] + [other_mask]
    union = np.logical_or.reduce(masks)
    x0, y0, x1, y1 = mask_box(union)
    left = _offset(rng, low=x0, high=x1, window=w, side=side)
    top = _offset(rng, low=y0, high=y1, window=h, side=side)
    crop = np.s_[top:top + h, left:left + w]
    masks = [m[crop] for m in masks if m[crop].any()]
    return Photo(image=np.ascontiguousarray(image[crop]), masks=masks)


def _offset(rng: np.random.Generator, *, low: int, high: int, window: int, side: int) -> int:
    """Start of a `window` of a `side`-long axis that keeps [low, high] inside (random among those), or
    centred on it when it does not fit."""
    first, last = max(0, high - window + 1), min(low, side - window)
    if first <= last:
        return int(rng.integers(first, last + 1))
    return int(np.clip((low + high + 1 - window) // 2, 0, side - window))  # too big: centred on it


def make_standin(out: str | Path, layout: str = "cub", *, num_classes: int = 4, per_class: int = 10, seed: int = 0,
                 sides: tuple[int, int] = (200, 400), variant: str = "shapes", test_fraction: float = 0.2) -> Path:
    """Write a stand-in for the real `layout` dataset ("cub", "imagenet", "openimages") to `out`; returns `out`.

    `out` is then a `data.root` for that dataset (`build_dataset(layout, out, split)`): the official CUB
    layout, prepare_imagenet.py's ImageNet layout, wsolevaluation's OpenImages layout. Written to a
    temporary sibling folder and moved into place (an existing `out` is replaced only if it is empty
    or an earlier stand-in).
    """
    cfg = StandinConfig(layout=layout, num_classes=num_classes, per_class=per_class, seed=seed,
                        sides=tuple(sides), variant=variant, test_fraction=test_fraction).check()
    writer = {"cub": _write_cub, "imagenet": _write_imagenet, "openimages": _write_openimages}[layout]

    def generate(root: Path) -> None:
        writer(cfg, root)
        description = {"generator": "satlib.data.standins", **asdict(cfg)}
        atomic_write_text(root / MARKER, json.dumps(description, indent=2, sort_keys=True) + "\n")

    return atomic_dir(out, generate, replaces=MARKER)


def iter_photos(cfg: StandinConfig, *, multi: bool) -> Iterator[tuple[int, int, bool, Photo]]:
    """(label, index within class, train?, photo) for every photo of a stand-in, class by class, in the
    order the writers save them; with `multi`, every `multi_every`-th test photo has two objects."""
    n_test = cfg.test_count
    for label in range(cfg.num_classes):
        for index in range(cfg.per_class):
            train = index < cfg.per_class - n_test
            objects = 2 if multi and not train and (index - cfg.per_class + n_test) % cfg.multi_every == 0 else 1
            yield label, index, train, draw_photo(cfg, label, index, objects=objects)


def _save(array: np.ndarray, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def _save_jpeg(photo: Photo, path: Path) -> None:
    _save(photo.image, path, format="JPEG", quality=JPEG_QUALITY)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    _save(mask.astype(np.uint8) * 255, path, format="PNG", compress_level=6, optimize=False)


def _class_names(cfg: StandinConfig) -> list[str]:
    return SynthConfig(num_classes=cfg.num_classes, variant=cfg.variant).class_names


def _write_cub(cfg: StandinConfig, root: Path) -> None:
    """images/<NNN.name>/<name>_<k>.jpg, segmentations/ (binary), and the five official tables."""
    folders = [f"{label + 1:03d}.{name}" for label, name in enumerate(_class_names(cfg))]
    rows = []
    for label, index, train, photo in iter_photos(cfg, multi=False):
        relpath = f"{folders[label]}/{folders[label][4:]}_{index + 1:04d}.jpg"
        _save_jpeg(photo, root / "images" / relpath)
        _save_mask(photo.masks[0], root / "segmentations" / Path(relpath).with_suffix(".png"))
        rows.append(CubRow(path=relpath, label=label, train=train, box=photo.boxes[0]))
    write_cub_tables(root, rows, class_names=folders)


def _wnid(label: int) -> str:
    return f"n{9000000 + label:08d}"


def _write_imagenet(cfg: StandinConfig, root: Path) -> None:
    """train/<wnid>/ and val/ JPEGs; metadata/test/ converted from ILSVRC-style XMLs by prepare_imagenet's converter."""
    wnids = [_wnid(label) for label in range(cfg.num_classes)]
    val = 0
    with tempfile.TemporaryDirectory() as xml_dir:
        for label, index, train, photo in iter_photos(cfg, multi=True):
            if train:
                _save_jpeg(photo, root / "train" / wnids[label] / f"{wnids[label]}_{index + 1}.JPEG")
                continue
            val += 1
            name = f"ILSVRC2012_val_{val:08d}"
            _save_jpeg(photo, root / "val" / f"{name}.JPEG")
            Path(xml_dir, f"{name}.xml").write_text(_ilsvrc_xml(name, photo, wnids[label]))
        imagenet_val_metadata(xml_dir, wnids, root / "metadata" / "test")


def _ilsvrc_xml(name: str, photo: Photo, wnid: str) -> str:
    """An ILSVRC2012_bbox_val_v3 annotation: <filename>, <size>, one <object> per box."""
    w, h = photo.size
    objects = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1 in photo.boxes)
    return (f"<annotation><folder>val</folder><filename>{name}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objects}</annotation>\n")


def _write_openimages(cfg: StandinConfig, root: Path) -> None:
    """train/ and test/ JPEGs by class folder, test masks and ignore masks beside them, metadata/{train,test}/."""
    rows = {"train": [], "test": []}
    for label, index, train, photo in iter_photos(cfg, multi=True):
        split, folder = ("train" if train else "test"), f"0std{label:02d}"
        stem = f"{split}/{folder}/{cfg.seed:04x}{label:04x}{index:08x}"
        _save_jpeg(photo, root / f"{stem}.jpg")
        row = {"image_id": f"{stem}.jpg", "label": label}
        if not train:
            row["masks"] = [f"{stem}_m{folder}_{k:08x}.png" for k in range(len(photo.masks))]
            for mask, relpath in zip(photo.masks, row["masks"]):
                _save_mask(mask, root / relpath)
            row["ignore"] = f"{stem}_ignore.png"
            _save_mask(_ignore_region(photo), root / row["ignore"])
        rows[split].append(row)
    for split, split_rows in rows.items():
        write_metadata(root / "metadata" / split, split_rows)


def _ignore_region(photo: Photo) -> np.ndarray:
    """An ignore mask as OpenImages has one: here a band along the bottom edge (the reader drops its overlap
    with the objects)."""
    h = photo.image.shape[0]
    ignore = np.zeros(photo.image.shape[:2], dtype=bool)
    ignore[h - max(1, h // 10):] = True
    return ignore
