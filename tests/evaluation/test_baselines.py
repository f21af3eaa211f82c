from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from satlib.data.cub import read_split_boxes
from satlib.data.records import DataError
from satlib.data.synthetic import make_synthetic_dataset
from satlib.evaluation.baselines import BASELINES, trivial_baselines

# (relative path, w, h, train?, CUB box x, y, width, height)
IMAGES = [
    ("001.A/wide.png", 100, 50, 0, (20.0, 5.0, 60.0, 40.0)),
    ("001.A/tall.png", 50, 60, 0, (10.0, 12.0, 30.0, 40.0)),
    ("002.B/train.png", 64, 64, 1, (0.0, 0.0, 63.0, 31.0)),
]


def write_cub(root: Path, images=IMAGES) -> Path:
    """A CUB-layout folder with blank images of the given sizes (only their headers are read)."""
    tables = {name: [] for name in ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    for i, (rel, w, h, train, (x, y, bw, bh)) in enumerate(images, start=1):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(root / "images" / rel)
        tables["images"].append(f"{i} {rel}")
        tables["image_class_labels"].append(f"{i} {1 + rel.startswith('002')}")
        tables["train_test_split"].append(f"{i} {train}")
        tables["bounding_boxes"].append(f"{i} {x} {y} {bw} {bh}")
    for name, lines in tables.items():
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("1 001.A\n2 002.B\n")
    return root


def test_trivial_baselines_by_hand(tmp_path):
    root = write_cub(tmp_path)
    sizes, boxes = read_split_boxes(root)
    assert sizes.tolist() == [[100, 50], [50, 60]] and [b.tolist() for b in boxes] == [[[20, 5, 80, 45]],
                                                                                        [[10, 12, 40, 52]]]
    # whole image vs GT, +1 IoU: wide 61*41 / (100*50) = 0.5002 (a hit; 0.495 without the +1),
    # tall 31*41 / (50*60) = 0.424 (a miss). Centred box of the mean relative GT size
    # (0.615, 0.752): IoU 0.90 on wide, 0.86 on tall. The train image is not read.
    assert trivial_baselines(sizes, boxes) == {"whole_image": 50.0, "centred_mean_box": 100.0}
    # train: GT = the top half. Whole image: IoU 64*32 / (64*64) = 0.5, a hit; the centred box of
    # the GT's size, [0, 16, 63, 47], overlaps it by a third: a miss.
    assert trivial_baselines(*read_split_boxes(root, split="train")) == {"whole_image": 100.0,
                                                                         "centred_mean_box": 0.0}


def test_trivial_baselines_take_any_number_of_boxes_per_image():
    sizes = np.array([[100.0, 100.0]])
    # one far-off box and one covering the image: the whole image matches the second
    assert trivial_baselines(sizes, [np.array([[0, 0, 9, 9], [0, 0, 99, 99]])])["whole_image"] == 100.0


def test_trivial_baselines_refuse_an_empty_split(tmp_path):
    root = write_cub(tmp_path, [row for row in IMAGES if row[3] == 0])
    with pytest.raises(DataError, match="no images in split 'train'"):
        read_split_boxes(root, split="train")
    with pytest.raises(ValueError, match="0 image sizes and 0 box lists"):
        trivial_baselines(np.zeros((0, 2)), [])


def test_trivial_baselines_stay_low_on_the_synthetic_set(tmp_path):
    baselines = trivial_baselines(*read_split_boxes(make_synthetic_dataset(tmp_path / "shapes", per_class=50)))
    assert tuple(baselines) == BASELINES
    assert baselines["whole_image"] < 30 and baselines["centred_mean_box"] < 30
