import json

import numpy as np
import pytest
from PIL import Image

from satlib.predict import predict_paths
from satlib.train import train


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    from satlib.config import load_config
    from tiny_recipe import tiny_overrides

    out = tmp_path_factory.mktemp("predict_run")
    train(load_config("synthetic_cpu", tiny_overrides(tiny_data, out, **{"train.epochs": 1})), progress=False)
    return out / "checkpoint.pt"


def test_predict_folder_skips_the_unreadable_file(checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(images / "wide.png")
    Image.fromarray(rng.integers(0, 255, (120, 40, 3), dtype=np.uint8)).save(images / "tall.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out"
    report = predict_paths(checkpoint, [images, tmp_path / "nope.png"], out, threshold=0.5)
    assert [p["file"].rsplit("/", 1)[-1] for p in report["predictions"]] == ["tall.jpg", "wide.png"]
    assert {s["file"].rsplit("/", 1)[-1] for s in report["skipped"]} == {"broken.jpg", "nope.png"}
    for prediction in report["predictions"]:
        w, h = prediction["image_size_wh"]
        x0, y0, x1, y1 = prediction["box_xyxy"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h  # original-image pixels
        assert 0.0 <= prediction["score"] <= 1.0 and prediction["class_name"] in ("circle", "square", "triangle") \
            or prediction["class_name"] is not None
        assert (out / prediction["overlay"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "predictions.json").read_text()) == report


def test_predict_boxes_scale_back_to_the_original_image(checkpoint, tmp_path):
    image = np.full((64, 128, 3), 128, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "flat.png")
    report = predict_paths(checkpoint, [tmp_path / "flat.png"], tmp_path / "out", threshold=0.99)
    assert report["predictions"][0]["image_size_wh"] == [128, 64]
    x0, y0, x1, y1 = report["predictions"][0]["box_xyxy"]
    assert x1 <= 128 and y1 <= 64
