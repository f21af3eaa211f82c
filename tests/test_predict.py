import json

import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

import satlib
from satlib.data.io import decode_rgb, read_bytes
from satlib.localize import localize
from satlib.predict import predict_paths


def classes_by_hand(data_root) -> list[str]:
    """classes.txt's names in id order ("1 001.disc" -> "001.disc")."""
    return [line.split(" ", 1)[1] for line in (data_root / "classes.txt").read_text().splitlines()]


def sat_box_by_hand(loc_map: np.ndarray, threshold: float, height: int, width: int) -> list[int]:
    """SAT's box on a map scaled to an image of (height, width): min-max normalise, cv2 bilinear resize,
    pixels above the threshold, the largest 8-connected component's [x0, y0, x1 + 1, y1 + 1]."""
    normalized = (loc_map - loc_map.min()) / (loc_map.max() - loc_map.min() + 1e-5)
    scaled = cv2.resize(normalized.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    labels, count = ndimage.label(scaled > threshold, structure=np.ones((3, 3)))
    if count == 0:
        return [0, 0, width, height]
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, cols = np.nonzero(labels == largest)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def localize_input(image, img_size):
    """A uint8 (3, H, W) image resized whole to the model's input and ImageNet-normalized, (1, 3, S, S)."""
    from torchvision.transforms import v2

    resized = v2.functional.resize(image[None], [img_size, img_size], antialias=True)
    scaled = resized.float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (scaled - mean[:, None, None]) / std[:, None, None]


def test_predict_folder_skips_the_unreadable_file(trained_run, tiny_data, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(images / "wide.png")
    Image.fromarray(rng.integers(0, 255, (120, 40, 3), dtype=np.uint8)).save(images / "tall.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out"
    report = predict_paths(trained_run.checkpoint, [images, tmp_path / "nope.png"], out, threshold=0.5)
    assert [p["file"].rsplit("/", 1)[-1] for p in report["predictions"]] == ["tall.jpg", "wide.png"]
    assert {s["file"].rsplit("/", 1)[-1] for s in report["skipped"]} == {"broken.jpg", "nope.png"}
    names = classes_by_hand(tiny_data)
    for prediction in report["predictions"]:
        w, h = prediction["image_size_wh"]
        x0, y0, x1, y1 = prediction["box_xyxy"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h  # original-image pixels
        assert 1 / 3 <= prediction["score"] <= 1.0  # the top softmax probability of 3 classes
        assert prediction["class_name"] == names[prediction["class_index"]]
        assert Image.open(out / prediction["overlay"]).size == (w, h)  # the overlay at the image's resolution
    assert json.loads((out / "predictions.json").read_text()) == report


def test_predict_boxes_scale_back_to_the_original_image(trained_run, tmp_path):
    rng = np.random.default_rng(1)
    image = np.full((64, 128, 3), 90, dtype=np.uint8)
    image[8:40, 70:120] = rng.integers(150, 255, (32, 50, 3), dtype=np.uint8)  # an object right of centre
    Image.fromarray(image).save(tmp_path / "wide.png")
    threshold = 0.8  # a box smaller than the image: both its corners must scale
    report = predict_paths(trained_run.checkpoint, [tmp_path / "wide.png"], tmp_path / "out", threshold=threshold)
    prediction = report["predictions"][0]
    assert prediction["image_size_wh"] == [128, 64]

    loaded = satlib.load(trained_run.checkpoint)
    model, config = loaded.model, loaded.info.config
    assert config.eval.protocol == "sat"  # the rule sat_box_by_hand follows
    path = tmp_path / "wide.png"
    image = decode_rgb(read_bytes(path), path)
    loc_map = model(localize_input(image, config.data.img_size)).loc_map[0].detach().numpy()
    expected = sat_box_by_hand(loc_map, threshold, 64, 128)
    assert localize(loaded, image[None], threshold=threshold).boxes[0].tolist() == expected
    assert expected != sat_box_by_hand(loc_map, threshold, *[config.data.img_size] * 2)  # the scaling shows
    assert prediction["box_xyxy"] == expected


def test_predict_and_evaluate_take_a_loaded_model(trained_run, tiny_data, tmp_path):
    """A model loaded once (`satlib.load`) predicts and evaluates as its checkpoint file does."""
    from satlib.assess import evaluate_checkpoint

    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    loaded = satlib.load(trained_run.checkpoint)
    from_file = predict_paths(trained_run.checkpoint, [tmp_path / "a.png"], tmp_path / "file", device="cpu")
    from_loaded = predict_paths(loaded, [tmp_path / "a.png"], tmp_path / "loaded")
    assert from_loaded["predictions"] == from_file["predictions"] and from_loaded["checkpoint"] is None
    assert from_loaded["predictions"][0]["threshold"] == loaded.info.threshold
    metrics = evaluate_checkpoint(loaded, data_root=tiny_data, device="cpu")
    assert metrics == evaluate_checkpoint(trained_run.checkpoint, data_root=tiny_data, device="cpu")
    evaluate_checkpoint(loaded, data_root=tiny_data, protocol="wsoleval", device="cpu")
    assert loaded.info.config.eval.protocol == loaded.info.protocol == "sat"  # evaluated with a copy of its config
