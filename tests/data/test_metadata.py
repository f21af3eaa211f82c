import torch

from satlib.data import build_dataset
from satlib.data.convert import cub_to_metadata, metadata_to_cub
from satlib.data.metadata import read_metadata
from satlib.data.records import Problems

from data_fixtures import make_imagenet, make_openimages


def test_imagenet_val_boxes_several_per_image(tmp_path):
    # image 2 is 60x30 with boxes (0, 0, 30, 15) and (31, 10, 59, 29); R=40, crop=32, shift 4:
    # (0, 0, 30/60*40-4 = 16, 15/30*40-4 = 16); (16.67 -> 16, 9.33 -> 9, 35.33 -> 31, 34.67 -> 31).
    root = make_imagenet(tmp_path / "ILSVRC")
    test = build_dataset("imagenet", root, "test", img_size=32, resize_size=40)
    assert test.labels == [2, 0] and test.num_classes == 1000
    item = test[1]
    assert item["image_id"] == "val/ILSVRC2012_val_00000002.JPEG"
    assert item["boxes"].tolist() == [[0.0, 0.0, 16.0, 16.0], [16.0, 9.0, 31.0, 31.0]]


def test_imagenet_val_boxes_wsoleval_protocol(tmp_path):
    # int(x * 32 / 60), int(y * 32 / 30): (31, 10, 59, 29) -> (16, 10, 31, 30).
    root = make_imagenet(tmp_path / "ILSVRC")
    item = build_dataset("imagenet", root, "test", img_size=32, protocol="wsoleval")[1]
    assert item["boxes"][1].tolist() == [16.0, 10.0, 31.0, 30.0]
    assert item["image"].shape == (3, 32, 32)


def test_imagenet_train_class_folders(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    train = build_dataset("imagenet", root, "train", img_size=16, resize_size=20)
    assert train.class_names == ["n01440764", "n01443537", "n01484850"]
    assert train.labels == [0] * 4 + [1] + [2] * 3
    assert train.records[4].image_id == "train/n01443537/n01443537_0.JPEG"
    item = train[4]
    assert item["image"].shape == (3, 16, 16) and "boxes" not in item  # training never reads boxes
    with_boxes = build_dataset("imagenet", root, "train", img_size=16, resize_size=20, train_boxes=True)
    assert with_boxes[4]["boxes"].shape == (0, 4)  # class folders have none


def test_openimages_masks_and_ignore(tmp_path):
    # a.jpg is 40x20: masks rows 2..5 x cols 3..9 and rows 10..14 x cols 20..29, ignore rows 0..7 x
    # cols 0..11. Resized to 40x40 (nearest: src row floor(i / 2)) the masks cover 8x7 + 10x10 = 156
    # pixels; the ignore region 16x12 = 192 minus the first mask's 56 = 136.
    root = make_openimages(tmp_path / "OpenImages")
    test = build_dataset("openimages", root, "test", img_size=40, protocol="wsoleval", with_masks=True)
    assert test.num_classes == 100
    item = test[0]
    assert item["mask"].sum().item() == 156 and item["ignore"].sum().item() == 136
    assert not (item["mask"] & item["ignore"]).any()
    assert item["mask"][4:12, 3:10].all() and item["mask"][20:30, 20:30].all()
    assert item["boxes"].shape == (0, 4)
    # b.jpg: a mask of value 1 counts (wsolevaluation: > 0.5); 30 -> 40 samples floor(0.75 j): 7..33.
    other = test[1]
    assert other["mask"].sum().item() == 27 * 27 and not other["ignore"].any()


def test_openimages_loader_stacks_masks_and_ignores(tmp_path):
    from satlib.data import build_loader

    root = make_openimages(tmp_path / "OpenImages")
    test = build_dataset("openimages", root, "test", img_size=24, protocol="wsoleval", with_masks=True)
    batch = next(iter(build_loader(test, 2, train=False, workers=0)))
    assert batch["masks"].shape == (2, 24, 24) and batch["ignores"].dtype == torch.bool


def test_cub_official_and_metadata_give_the_same_items(cub_root):
    counts = cub_to_metadata(cub_root, cub_root / "metadata")
    assert counts == {"train": 2, "test": 2}
    assert (cub_root / "metadata" / "test" / "localization.txt").read_text().splitlines() == [
        "001.Red/red_2.png,10,12,40,52", "002.Blue/blue_2.png,20,5,80,45"]
    assert (cub_root / "metadata" / "test" / "image_sizes.txt").read_text().splitlines()[0] == \
        "001.Red/red_2.png,50,60"
    official = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, with_masks=True)
    meta = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, with_masks=True,
                         source="metadata")
    assert [r.image_id for r in meta.records] == [r.image_id for r in official.records]
    for a, b in zip(official, meta):
        assert a["boxes"].tolist() == b["boxes"].tolist() and a["label"] == b["label"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_metadata_back_to_official_layout(cub_root, tmp_path):
    cub_to_metadata(cub_root, tmp_path / "meta")
    out = tmp_path / "again"
    (out).mkdir()
    (out / "images").symlink_to(cub_root / "images")
    metadata_to_cub(tmp_path / "meta", out)
    assert (out / "classes.txt").read_text().splitlines() == ["1 001.Red", "2 002.Blue"]
    for split in ("train", "test"):
        a = build_dataset("cub", cub_root, split, img_size=32, resize_size=40, train=False)
        b = build_dataset("cub", out, split, img_size=32, resize_size=40, train=False)
        assert [r.image_id for r in a.records] == [r.image_id for r in b.records]
        assert [r.boxes.tolist() for r in a.records] == [r.boxes.tolist() for r in b.records]
        assert a.labels == b.labels


def test_read_metadata_keeps_first_ignore_only(tmp_path):
    root = make_openimages(tmp_path / "OpenImages")
    records = read_metadata(root / "metadata" / "test", root, 100, Problems())
    assert [len(r.mask_paths) for r in records] == [2, 1]
    assert records[0].ignore_path.name == "a_ignore.png" and records[1].ignore_path is None


def test_openimages_is_resized_to_the_crop_under_both_protocols(tmp_path):
    # the official SAT OpenImage loader tests on Resize((crop, crop)), like wsolevaluation
    root = make_openimages(tmp_path / "OpenImages")
    sat = build_dataset("openimages", root, "test", img_size=40, resize_size=48, with_masks=True)
    assert sat[0]["mask"].sum().item() == 156  # as in test_openimages_masks_and_ignore
