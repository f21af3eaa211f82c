"""Tiny datasets written by the tests: CUB official layout, wsolevaluation metadata, ImageNet folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def coordinate_image(w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8 whose red channel is 2x and green channel is 2y (for w, h <= 128)."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([2 * xs, 2 * ys, np.full_like(xs, 77)], axis=-1).astype(np.uint8)


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def rectangle(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int], value: int = 255) -> np.ndarray:
    """(h, w) uint8 mask, `value` on rows[0]:rows[1] x cols[0]:cols[1], 0 elsewhere."""
    mask = np.zeros(shape, np.uint8)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = value
    return mask


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


# Four images, two classes; (relative path, w, h, class id, train?, (x, y, width, height)).
CUB_IMAGES = [
    ("001.Red/red_1.png", 40, 30, 1, 1, (4.0, 3.0, 20.0, 15.0)),
    ("001.Red/red_2.png", 50, 60, 1, 0, (10.0, 12.0, 30.0, 40.0)),
    ("002.Blue/blue_1.png", 64, 64, 2, 1, (0.0, 0.0, 63.0, 31.0)),
    ("002.Blue/blue_2.png", 100, 50, 2, 0, (20.0, 5.0, 60.0, 40.0)),
]


def make_cub(root: Path) -> Path:
    """Official CUB layout with coordinate images and soft segmentations (200 inside the box, 100 at one pixel)."""
    rows = {k: [] for k in ("images", "labels", "split", "boxes")}
    for i, (rel, w, h, cls, train, (x, y, bw, bh)) in enumerate(CUB_IMAGES, start=1):
        save(coordinate_image(w, h), root / "images" / rel)
        seg = np.zeros((h, w), np.uint8)
        seg[int(y):int(y + bh), int(x):int(x + bw)] = 200
        seg[0, w - 1] = 100  # below half the annotators: background
        save(seg, root / "segmentations" / Path(rel).with_suffix(".png"))
        rows["images"].append(f"{i} {rel}")
        rows["labels"].append(f"{i} {cls}")
        rows["split"].append(f"{i} {train}")
        rows["boxes"].append(f"{i} {x} {y} {bw} {bh}")
    write(root / "images.txt", rows["images"])
    write(root / "image_class_labels.txt", rows["labels"])
    write(root / "train_test_split.txt", rows["split"])
    write(root / "bounding_boxes.txt", rows["boxes"])
    write(root / "classes.txt", ["1 001.Red", "2 002.Blue"])
    return root


def make_openimages(root: Path) -> Path:
    """wsolevaluation OpenImages-style split "test": two images, one with two masks and an ignore mask."""
    save(coordinate_image(40, 20), root / "test" / "c1" / "a.jpg", quality=95)
    save(coordinate_image(30, 30), root / "test" / "c2" / "b.jpg", quality=95)
    save(rectangle((20, 40), rows=(2, 6), cols=(3, 10)), root / "test" / "c1" / "a_m1.png")
    save(rectangle((20, 40), rows=(10, 15), cols=(20, 30)), root / "test" / "c1" / "a_m2.png")
    save(rectangle((20, 40), rows=(0, 8), cols=(0, 12)), root / "test" / "c1" / "a_ignore.png")  # overlaps m1: fg wins
    save(rectangle((30, 30), rows=(5, 25), cols=(5, 25), value=1), root / "test" / "c2" / "b_m1.png")  # nonzero: fg
    meta = root / "metadata" / "test"
    write(meta / "image_ids.txt", ["test/c1/a.jpg", "test/c2/b.jpg"])
    write(meta / "class_labels.txt", ["test/c1/a.jpg,0", "test/c2/b.jpg,1"])
    write(meta / "localization.txt", ["test/c1/a.jpg,test/c1/a_m1.png,test/c1/a_ignore.png",
                                      "test/c1/a.jpg,test/c1/a_m2.png,",
                                      "test/c2/b.jpg,test/c2/b_m1.png,"])
    return root


def make_imagenet(root: Path) -> Path:
    """ImageNet: train class folders (3 classes, 1-4 images) and a val split with multi-box metadata."""
    counts = {"n01440764": 4, "n01443537": 1, "n01484850": 3}
    for wnid, n in counts.items():
        for k in range(n):
            save(coordinate_image(24 + k, 20), root / "train" / wnid / f"{wnid}_{k}.JPEG", format="JPEG")
    save(coordinate_image(50, 40), root / "val" / "ILSVRC2012_val_00000001.JPEG", format="JPEG")
    save(coordinate_image(60, 30), root / "val" / "ILSVRC2012_val_00000002.JPEG", format="JPEG")
    meta = root / "metadata" / "test"
    write(meta / "image_ids.txt", ["val/ILSVRC2012_val_00000001.JPEG", "val/ILSVRC2012_val_00000002.JPEG"])
    write(meta / "class_labels.txt", ["val/ILSVRC2012_val_00000001.JPEG,2", "val/ILSVRC2012_val_00000002.JPEG,0"])
    write(meta / "image_sizes.txt", ["val/ILSVRC2012_val_00000001.JPEG,50,40",
                                     "val/ILSVRC2012_val_00000002.JPEG,60,30"])
    write(meta / "localization.txt", ["val/ILSVRC2012_val_00000001.JPEG,5,4,45,36",
                                      "val/ILSVRC2012_val_00000002.JPEG,0,0,30,15",
                                      "val/ILSVRC2012_val_00000002.JPEG,31,10,59,29"])
    return root
