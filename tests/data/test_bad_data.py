"""Every bad-data case names the file and line; skip_bad=True drops, logs and counts instead."""

import logging

import pytest

from satlib.data import DataError, build_dataset, build_loader

from data_fixtures import make_imagenet, make_openimages, write


def replace_line(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    write(path, lines)


def build(root, split="train", **kwargs):
    return build_dataset("cub", root, split, img_size=32, resize_size=40, **kwargs)


def test_malformed_row_names_file_and_line(cub_root):
    replace_line(cub_root / "bounding_boxes.txt", 3, "3 0.0 0.0")
    with pytest.raises(DataError, match=r"bounding_boxes\.txt:3: expected 5 fields, got 3"):
        build(cub_root)


def test_malformed_row_skipped_with_skip_bad(cub_root, caplog):
    replace_line(cub_root / "bounding_boxes.txt", 3, "3 0.0 0.0")
    with caplog.at_level(logging.WARNING, logger="satlib.data"):
        train = build(cub_root, skip_bad=True)
    assert [r.image_id for r in train.records] == ["001.Red/red_1.png"]
    # the bad row, and the image it leaves without a box
    assert train.skipped == 2
    assert "bounding_boxes.txt:3: expected 5 fields" in train.skipped_messages[0]
    assert "no row for image id 3" in train.skipped_messages[1]
    assert "bounding_boxes.txt:3" in caplog.text


def test_non_numeric_box_and_negative_width(cub_root):
    replace_line(cub_root / "bounding_boxes.txt", 1, "1 a 3.0 20.0 15.0")
    with pytest.raises(DataError, match=r"bounding_boxes\.txt:1: expected numbers"):
        build(cub_root)
    replace_line(cub_root / "bounding_boxes.txt", 1, "1 4.0 3.0 -2.0 15.0")
    with pytest.raises(DataError, match=r"bounding_boxes\.txt:1: box .* not a valid box"):
        build(cub_root)


def test_class_id_out_of_range(cub_root):
    replace_line(cub_root / "image_class_labels.txt", 3, "3 7")
    with pytest.raises(DataError, match=r"image_class_labels\.txt:3: class id 7 out of range 1\.\.2"):
        build(cub_root)
    assert len(build(cub_root, skip_bad=True)) == 1


def test_duplicate_image_id(cub_root):
    write(cub_root / "images.txt", cub_root.joinpath("images.txt").read_text().splitlines()
          + ["2 001.Red/red_1.png"])
    with pytest.raises(DataError, match=r"images\.txt:5: image id 2 listed twice \(first at line 2\)"):
        build(cub_root)


def test_missing_table(cub_root):
    (cub_root / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"missing file: .*classes\.txt"):
        build(cub_root)


def test_box_outside_the_image(cub_root):
    replace_line(cub_root / "bounding_boxes.txt", 1, "1 30.0 3.0 20.0 15.0")  # x1 = 50 > 40
    train = build(cub_root)
    with pytest.raises(DataError, match=r"bounding_boxes\.txt:1: box .* outside the 40x30 image .*red_1\.png"):
        train[0]
    kept = build(cub_root, skip_bad=True)
    assert len(kept) == 1 and kept.skipped == 1
    assert "bounding_boxes.txt:1" in kept.skipped_messages[0]


def test_missing_image(cub_root):
    (cub_root / "images" / "001.Red" / "red_1.png").unlink()
    with pytest.raises(DataError, match=r"red_1\.png: image file missing \(listed at .*images\.txt:1\)"):
        build(cub_root)[0]
    kept = build(cub_root, skip_bad=True)
    assert kept.labels == [1] and kept.skipped == 1


def test_corrupt_image(cub_root):
    (cub_root / "images" / "002.Blue" / "blue_1.png").write_bytes(b"this is not a picture")
    with pytest.raises(DataError, match=r"blue_1\.png: cannot decode image \(listed at .*images\.txt:3\)"):
        build(cub_root)[1]
    kept = build(cub_root, skip_bad=True)
    assert kept.labels == [0] and kept.skipped == 1
    assert "blue_1.png" in kept.skipped_messages[0]


def test_image_broken_past_its_header_is_dropped_from_the_batch(cub_root):
    path = cub_root / "images" / "002.Blue" / "blue_1.png"
    path.write_bytes(path.read_bytes()[:60])  # the header is intact, the pixels are gone
    kept = build(cub_root, skip_bad=True)
    assert len(kept) == 2  # the header check cannot see it...
    batch = next(iter(build_loader(kept, 2, train=False, workers=0)))
    assert batch["skipped"] == 1 and batch["image_ids"] == ["001.Red/red_1.png"]  # ...loading can
    with pytest.raises(DataError, match="blue_1.png: cannot decode image"):
        build(cub_root)[1]


def test_missing_mask(cub_root):
    (cub_root / "segmentations" / "001.Red" / "red_2.png").unlink()
    with pytest.raises(DataError, match=r"red_2\.png: image file missing"):
        build(cub_root, "test", with_masks=True)[0]
    kept = build(cub_root, "test", with_masks=True, skip_bad=True)
    assert kept.labels == [1] and "mask file missing" in kept.skipped_messages[0]


def test_metadata_errors(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    meta = root / "metadata" / "test"
    replace_line(meta / "class_labels.txt", 2, "val/ILSVRC2012_val_00000002.JPEG,1000")
    with pytest.raises(DataError, match=r"class_labels\.txt:2: class label 1000 out of range 0\.\.999"):
        build_dataset("imagenet", root, "test")
    replace_line(meta / "class_labels.txt", 2, "val/ILSVRC2012_val_00000002.JPEG,0")
    replace_line(meta / "localization.txt", 1, "val/ILSVRC2012_val_00000001.JPEG,5,4,45")
    with pytest.raises(DataError, match=r"localization\.txt:1: expected 3 or 5 fields, got 4"):
        build_dataset("imagenet", root, "test")
    replace_line(meta / "localization.txt", 1, "val/ILSVRC2012_val_00000001.JPEG,5,4,45,36")
    replace_line(meta / "image_sizes.txt", 1, "val/ILSVRC2012_val_00000001.JPEG,51,40")
    with pytest.raises(DataError, match=r"image_sizes\.txt:1: size 51x40 but .*val_00000001\.JPEG is 50x40"):
        build_dataset("imagenet", root, "test")[0]
    kept = build_dataset("imagenet", root, "test", skip_bad=True)
    assert [r.image_id for r in kept.records] == ["val/ILSVRC2012_val_00000002.JPEG"]


def test_box_outside_in_metadata(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    replace_line(root / "metadata" / "test" / "localization.txt", 3, "val/ILSVRC2012_val_00000002.JPEG,31,10,61,29")
    with pytest.raises(DataError, match=r"localization\.txt:3: box .* outside the 60x30 image"):
        build_dataset("imagenet", root, "test")[1]


def test_missing_metadata_says_where(tmp_path):
    root = make_openimages(tmp_path / "OpenImages")
    with pytest.raises(DataError, match=r"openimages metadata missing: .*metadata/train/image_ids\.txt"):
        build_dataset("openimages", root, "train")
    with pytest.raises(DataError, match=r"dataset root missing"):
        build_dataset("cub", tmp_path / "nowhere", "train")
