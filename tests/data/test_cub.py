import torch

from satlib.data import build_dataset, build_loader, denormalize


def test_splits_labels_and_class_names(cub_root):
    train = build_dataset("cub", cub_root, "train", img_size=32, resize_size=40)
    test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40)
    assert [r.image_id for r in train.records] == ["001.Red/red_1.png", "002.Blue/blue_1.png"]
    assert [r.image_id for r in test.records] == ["001.Red/red_2.png", "002.Blue/blue_2.png"]
    assert train.labels == [0, 1] and test.labels == [0, 1]
    assert train.num_classes == 2 and train.class_names == ["001.Red", "002.Blue"]
    assert train.train and not test.train


def test_test_boxes_follow_the_official_formula(cub_root):
    # R=40, crop=32, shift 4. red_2 is 50x60 with box (10, 12, 40, 52):
    # x0 = 10/50*40-4 = 4, y0 = 12/60*40-4 = 4, x1 = 40/50*40-4 = 28, y1 = 52/60*40-4 = 30.67 -> 30.
    # blue_2 is 100x50 with box (20, 5, 80, 45): 4, 0, 28, and 45/50*40-4 = 32 -> clipped to 31.
    test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40)
    assert test[0]["boxes"].tolist() == [[4.0, 4.0, 28.0, 30.0]]
    assert test[1]["boxes"].tolist() == [[4.0, 0.0, 28.0, 31.0]]
    assert test[0]["image"].shape == (3, 32, 32)
    assert test[0]["image_id"] == "001.Red/red_2.png" and test[0]["label"] == 0


def test_wsoleval_protocol_resizes_to_the_crop_without_centre_crop(cub_root):
    # int(x * 32 / w): red_2 (50x60) box (10, 12, 40, 52) -> (6, 6, 25, 27).
    test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, protocol="wsoleval")
    item = test[0]
    assert item["boxes"].tolist() == [[6.0, 6.0, 25.0, 27.0]]
    assert item["image"].shape == (3, 32, 32)


def test_test_masks_follow_resize_and_centre_crop(cub_root):
    # red_2 (50x60) segmentation is 200 on rows 12..51, cols 10..39 and 100 at (0, 49).
    # Nearest resize to 40x40 samples src col floor(1.25 j) and row floor(1.5 i): cols 8..31, rows 8..34;
    # the centre crop (offset 4) leaves cols 4..27, rows 4..30. The 100 pixel is below half: background.
    item = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, with_masks=True)[0]
    mask = item["mask"]
    assert mask.dtype == torch.bool and mask.shape == (32, 32)
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    assert (rows.min().item(), rows.max().item()) == (4, 30)
    assert (cols.min().item(), cols.max().item()) == (4, 27)
    assert mask.sum().item() == 27 * 24
    assert not item["ignore"].any()


def test_tencrop_returns_the_resized_image(cub_root):
    item = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, tencrop=True)[1]
    assert item["image_resized"].shape == (3, 40, 40)
    # the centre crop of the resized image is the image itself
    assert torch.allclose(item["image_resized"][:, 4:36, 4:36], item["image"], atol=1e-6)


def test_train_boxes_follow_random_crop_and_flip(cub_root):
    # blue_1 is a 64x64 coordinate image (red = 2x, green = 2y) with box (0, 0, 63, 31).
    # Resize((64, 64)) is the identity, so the crop offset and the flip can be read off the pixels.
    train = build_dataset("cub", cub_root, "train", img_size=48, resize_size=64, with_masks=True,
                          train_boxes=True).select([1])
    seen_flip = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = train[0]
        pixels = (denormalize(item["image"]) * 255).round()
        x_first, x_second, y_first = pixels[0, 0, 0] / 2, pixels[0, 0, 1] / 2, pixels[1, 0, 0] / 2
        flipped = bool(x_second < x_first)
        ox = int(x_first) - 47 if flipped else int(x_first)
        oy = int(y_first)
        x0, x1 = max(0 - ox, 0), min(63 - ox, 48)
        y0, y1 = max(0 - oy, 0), min(31 - oy, 48)
        expected = [48 - x1, y0, 48 - x0, y1] if flipped else [x0, y0, x1, y1]
        assert item["boxes"].tolist() == [[float(v) for v in expected]], (seed, ox, oy, flipped)
        # the segmentation (rows 0..30, cols 0..62 of the original) moves with the box
        rows, cols = torch.nonzero(item["mask"].any(1)).flatten(), torch.nonzero(item["mask"].any(0)).flatten()
        assert (cols.min().item(), cols.max().item() + 1) == tuple(expected[0::2])
        assert (rows.min().item(), rows.max().item() + 1) == tuple(expected[1::2])
        seen_flip.add(flipped)
    assert seen_flip == {True, False}


def test_resize_stage_scales_boxes(cub_root):
    # red_1 is 40x30 with box (4, 3, 24, 18); the train pipeline with resize 80 and crop 80 is a pure
    # resize (2x, 8/3y) plus a possible flip: (8, 8, 48, 48) or flipped (32, 8, 72, 48).
    train = build_dataset("cub", cub_root, "train", img_size=80, resize_size=80, train_boxes=True)
    boxes = {tuple(train[0]["boxes"][0].tolist()) for _ in range(16)}
    assert boxes <= {(8.0, 8.0, 48.0, 48.0), (32.0, 8.0, 72.0, 48.0)}
    assert len(boxes) == 2


def test_loader_batches_cub(cub_root):
    test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40, with_masks=True)
    batch = next(iter(build_loader(test, 2, train=False, workers=0)))
    assert batch["images"].shape == (2, 3, 32, 32)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1]
    assert [b.shape for b in batch["boxes"]] == [(1, 4), (1, 4)]
    assert batch["masks"].shape == (2, 32, 32) and batch["image_ids"][1] == "002.Blue/blue_2.png"
    assert batch["skipped"] == 0
