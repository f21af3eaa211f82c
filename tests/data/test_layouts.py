"""Stand-ins in the real layouts, read by the real readers with the real recipes' transforms."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from satlib.build import build_datasets
from satlib.cli import main
from satlib.config import load_config
from satlib.data import build_dataset
from satlib.data.io import JPEG_MAGIC
from satlib.data.standins import LAYOUTS, MARKER, StandinConfig, iter_photos, make_standin
from satlib.data.synthetic import mask_box

KNOBS = dict(num_classes=3, per_class=5, seed=2)  # 4 train and 1 test image per class


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("standins")
    return {layout: make_standin(base / layout, layout, **KNOBS) for layout in LAYOUTS}


def extent_after(mask: np.ndarray, *, resize: int, crop: int) -> list[int]:
    """The object's extent (x0, y0, x1, y1) after Resize((R, R)), shifted by the centre crop and clipped to it,
    as the official test boxes are; a pixel with any object in it counts (thin slivers survive)."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None]
    resized = TF.resize(tensor, [resize, resize], antialias=True)[0].numpy() > 0.02
    shift = (resize - crop) // 2
    return np.clip(np.array(mask_box(resized)) - shift, 0, crop - 1).tolist()


def test_photos_are_jpegs_of_varied_non_square_sizes(standins):
    for layout, root in standins.items():
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        assert len(files) == 3 * 5, layout
        assert all(p.read_bytes()[:3] == JPEG_MAGIC for p in files)
        sizes = [Image.open(p).size for p in files]
        assert len(set(sizes)) > 5 and sum(w != h for w, h in sizes) > 10, (layout, sizes)
        assert all(100 <= min(w, h) and max(w, h) <= 400 for w, h in sizes)
        assert not (root / "synthetic.json").exists() and (root / MARKER).is_file()


def test_same_arguments_same_bytes(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = files(make_standin(tmp_path / "a", "imagenet", num_classes=2, per_class=3))
    assert files(make_standin(tmp_path / "b", "imagenet", num_classes=2, per_class=3)) == first
    other = files(make_standin(tmp_path / "c", "imagenet", num_classes=2, per_class=3, seed=1))
    assert other.keys() == first.keys() and other != first


def test_cub_layout_read_with_the_cub_recipe(standins):
    root = standins["cub"]
    assert (root / "images.txt").is_file() and (root / "segmentations").is_dir()
    config = load_config("cub", [f"data.root={root}"])
    train, test = build_datasets(config)
    assert (len(train), len(test), train.num_classes) == (12, 3, 3)
    assert train.class_names == ["001.disc", "002.triangle", "003.square"]
    item = test[0]
    assert item["image"].shape == (3, 224, 224) and item["image_resized"].shape == (3, 256, 256)  # ten-crop
    assert train[0]["image"].shape == (3, 224, 224)
    for index, record in enumerate(test.records):
        mask = np.asarray(Image.open(record.mask_paths[0])) > 127
        assert record.boxes[0].tolist() == list(mask_box(mask))  # bounding_boxes.txt is the object's extent
        box = test[index]["boxes"][0].tolist()  # the official resize-crop formula, in crop pixels
        assert np.allclose(box, extent_after(mask, resize=256, crop=224), atol=3), (record.image_id, box)


def test_imagenet_layout_read_with_the_imagenet_recipe(standins):
    root = standins["imagenet"]
    assert sorted(p.name for p in (root / "train").iterdir()) == ["n09000000", "n09000001", "n09000002"]
    assert len(list((root / "val").glob("ILSVRC2012_val_*.JPEG"))) == 3
    config = load_config("imagenet", [f"data.root={root}"])
    train, test = build_datasets(config)
    assert (len(train), len(test), train.num_classes) == (12, 3, 3)
    assert train.records[0].image_id == "train/n09000000/n09000000_1.JPEG" and "boxes" not in train[0]
    cfg = StandinConfig(layout="imagenet", **KNOBS)
    photos = [(label, photo) for label, _, is_train, photo in iter_photos(cfg, multi=True) if not is_train]
    assert [len(photo.masks) for _, photo in photos] == [2, 2, 2]  # every multi_every-th test photo: two objects
    for index, (record, (label, photo)) in enumerate(zip(test.records, photos)):
        assert record.label == label and record.size == photo.size
        assert record.boxes.tolist() == [list(box) for box in photo.boxes]  # val XML -> metadata -> reader
        boxes = test[index]["boxes"].tolist()
        expected = [extent_after(mask, resize=256, crop=224) for mask in photo.masks]
        assert np.allclose(sorted(boxes), sorted(expected), atol=3), (record.image_id, boxes, expected)


def test_openimages_layout_read_with_masks(standins):
    root = standins["openimages"]
    train = build_dataset("openimages", root, "train", img_size=224)
    test = build_dataset("openimages", root, "test", img_size=224, with_masks=True)
    assert (len(train), len(test)) == (12, 3) and test.protocol == "wsoleval"
    cfg = StandinConfig(layout="openimages", **KNOBS)
    photos = [photo for _, _, is_train, photo in iter_photos(cfg, multi=True) if not is_train]
    for index, (record, photo) in enumerate(zip(test.records, photos)):
        assert len(record.mask_paths) == len(photo.masks) and record.ignore_path.is_file()
        item = test[index]
        union = torch.from_numpy(np.logical_or.reduce(photo.masks).astype(np.uint8))[None]
        expected = TF.resize(union, [224, 224], interpolation=InterpolationMode.NEAREST)[0] > 0
        assert item["image"].shape == (3, 224, 224)
        assert torch.equal(item["mask"], expected)  # the masks lie on the object's pixels, resized with the image
        assert item["ignore"].any() and not (item["ignore"] & item["mask"]).any()


def test_cli_writes_each_layout(tmp_path):
    for layout in LAYOUTS:
        out = tmp_path / layout
        assert main(["data", "synth", "--layout", layout, "--out", str(out), "--num-classes", "2",
                     "--per-class", "3", "--size", "160"]) == 0
        assert len(build_dataset(layout, out, "test", img_size=64, resize_size=72)) == 2
    assert main(["data", "synth", "--layout", "cub", "--out", str(tmp_path / "imagenet")]) == 0  # replaced


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds no synthetic dataset"):
        make_standin(tmp_path / "mine", "cub", num_classes=2, per_class=3)
    with pytest.raises(ValueError, match="unknown layout 'coco'"):
        make_standin(tmp_path / "other", "coco")
