"""Scoring any method's maps (satlib.maps): a checkpoint's saved maps score exactly as the checkpoint, maps of
any size and range, thresholds chosen on a held-out split, and bad input named by its image id."""

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import satlib
from satlib.build import build_test_split, test_loader
from satlib.cli import main
from satlib.data import build_dataset
from satlib.data.cub import read_cub
from satlib.data.metadata import write_metadata
from satlib.data.records import Problems
from satlib.evaluate import evaluate_model
from satlib.evaluation import LocalizationEvaluator
from satlib.info import LoadedModel
from satlib.mapfile import MapSet, model_maps, read_maps, save_maps
from satlib.maps import evaluate_maps, heldout_indices
from satlib.runtime import Dist


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_saved_maps_score_exactly_as_the_checkpoint(trained_run, tiny_data, tmp_path, protocol):
    """`satlib evaluate --checkpoint ... --save-maps` then `--maps`: the same metrics, to the last bit."""
    checkpoint_json, maps_json, maps = tmp_path / "checkpoint.json", tmp_path / "maps.json", tmp_path / "maps.npz"
    common = ["--data-root", str(tiny_data), "--protocol", protocol]
    assert main(["evaluate", "--checkpoint", str(trained_run.checkpoint), *common, "--json", str(checkpoint_json),
                 "--save-maps", str(maps), "--device", "cpu"]) == 0
    assert main(["evaluate", "--maps", str(maps), *common, "--json", str(maps_json)]) == 0
    from_checkpoint = json.loads(checkpoint_json.read_text())
    scores = json.loads(maps_json.read_text())
    assert scores["geometry"] == protocol
    ours = scores["test"][protocol]
    assert ours == from_checkpoint
    other = scores["test"]["sat" if protocol == "wsoleval" else "wsoleval"]
    assert {"top1_loc", "gt_known", "maxboxacc_v2"} <= set(other)
    assert ("pxap" in other) == (protocol == "sat")  # the synthetic set's masks, under wsoleval's own thresholds
    assert scores["heldout_split"].startswith("test-part") and scores["heldout"][protocol]["images"] < ours["images"]


def box_maps(data_root, *, scale: float = 1.0, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Each test image's GT box painted into a map at the image's resolution (32 px), `scale` * box + `offset`."""
    test = build_dataset("cub", data_root, "test", train=False)
    maps = {}
    for index in range(len(test)):
        targets = test.targets(index)
        canvas = np.zeros((test.img_size, test.img_size), dtype=np.float64)
        for x0, y0, x1, y1 in targets["boxes"].round().int().tolist():
            canvas[y0:y1, x0:x1] = 1.0
        maps[targets["image_id"]] = scale * canvas + offset
    return maps


def test_maps_of_any_range_and_resolution_score_the_same(tiny_data):
    """Another method's maps at image resolution, in any value range: the GT boxes score 100 under both
    protocols; the same maps scaled by 1000 and shifted score the same."""
    plain = evaluate_maps(box_maps(tiny_data), tiny_data)
    shifted = evaluate_maps(box_maps(tiny_data, scale=1e3, offset=-7.0), tiny_data)
    for protocol in ("sat", "wsoleval"):
        assert plain.test[protocol]["gt_known"] == 100.0 and plain.heldout[protocol]["gt_known"] == 100.0
        assert shifted.test[protocol]["gt_known"] == 100.0
        assert "top1_loc" not in plain.test[protocol]  # no logits given
    assert any("no logits" in note for note in plain.notes)
    ids = list(box_maps(tiny_data))
    swapped = dict(zip(ids, np.roll(np.stack(list(box_maps(tiny_data).values())), 1, axis=0)))
    assert evaluate_maps(swapped, tiny_data).test["sat"]["gt_known"] < 100.0  # a wrong map misses


def test_a_folder_of_npy_files_reads_as_the_npz(trained_run, tiny_data, tmp_path):
    npz = tmp_path / "maps.npz"
    assert main(["evaluate", "--checkpoint", str(trained_run.checkpoint), "--data-root", str(tiny_data),
                 "--save-maps", str(npz), "--device", "cpu"]) == 0
    folder = tmp_path / "maps"
    with np.load(npz) as archive:
        for key in archive.files:
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{key}.npy", archive[key])
    assert evaluate_maps(folder, tiny_data).to_dict() == evaluate_maps(npz, tiny_data).to_dict()


def test_heldout_threshold_comes_from_the_val_split(tiny_data, tmp_path):
    """With a val split (wsolevaluation metadata) the held-out column's thresholds are the ones the val maps
    choose, and its numbers are read on the whole test split."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    train_records, _ = read_cub(root, "train", Problems())
    write_metadata(root / "metadata" / "val", [{"image_id": r.image_id, "label": r.label, "boxes": r.boxes.tolist()}
                                              for r in train_records[::3]])
    test = build_dataset("cub", root, "test", train=False)
    val = build_dataset("cub", root, "val", train=False)
    rng = np.random.default_rng(0)
    ids = [r.image_id for r in test.records + val.records]
    maps = MapSet(maps={i: rng.random((4, 4)) for i in ids}, logits={i: rng.normal(size=3) for i in ids})
    scores = evaluate_maps(maps, root, thresholds=[0.2, 0.4, 0.6, 0.8])
    assert scores.heldout_split.startswith("val")
    for protocol in ("sat", "wsoleval"):
        chooser = LocalizationEvaluator(thresholds=[0.2, 0.4, 0.6, 0.8] if protocol == "sat" else None,
                                        image_size=test.img_size, protocol=protocol)
        targets = [val.targets(i) for i in range(len(val))]
        chooser.update(torch.stack([torch.from_numpy(maps.maps[t["image_id"]]).float() for t in targets]),
                       [t["boxes"] for t in targets],
                       logits=torch.stack([torch.from_numpy(maps.logits[t["image_id"]]).float() for t in targets]),
                       labels=torch.tensor([t["label"] for t in targets]))
        held = scores.heldout[protocol]
        assert held["best_threshold"] == chooser.compute()["best_threshold"]
        assert held["images"] == scores.test[protocol]["images"] == len(test)
    with pytest.raises(ValueError, match="heldout='val' but the dataset has no val split"):
        evaluate_maps(box_maps(tiny_data), tiny_data, heldout="val")


def test_heldout_part_of_the_test_split_is_seeded_and_per_class():
    labels = [0] * 10 + [1] * 5 + [2] * 2 + [3]
    held = heldout_indices(labels)
    assert held == heldout_indices(labels) != heldout_indices(labels, seed=1)
    per_class = np.bincount(np.asarray(labels)[held], minlength=4)
    assert per_class.tolist() == [2, 1, 1, 0]  # 20 % of each, at least one, never a whole class


def _bad(maps: MapSet, image_id: str, case: str) -> MapSet:
    if case == "missing":
        del maps.maps[image_id]
    elif case == "extra":
        maps.maps["not/an/image.png"] = maps.maps[image_id]
    elif case == "shape":
        maps.maps[image_id] = np.zeros((3, 8, 8))
    elif case == "nan":
        maps.maps[image_id] = np.full((8, 8), np.nan)
    elif case == "logits":
        maps.logits[image_id] = np.array([1.0, np.inf, 0.0])
    elif case == "label":
        maps.labels[image_id] = (maps.labels[image_id] + 1) % 3
    return maps


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no map for image id '{id}'"), ("extra", "image id 'not/an/image.png' is not in the dataset's test"),
    ("shape", "the map of image id '{id}' has shape (3, 8, 8), expected (h, w)"),
    ("nan", "the map of image id '{id}' holds NaN or inf"), ("logits", "the logits of image id '{id}' hold NaN"),
    ("label", "image id '{id}' has label"),
])
def test_bad_input_is_one_line_naming_the_id(tiny_data, tmp_path, capsys, case, message):
    maps = box_maps(tiny_data)
    image_id = sorted(maps)[1]
    labels = {r.image_id: r.label for r in build_dataset("cub", tiny_data, "test", train=False).records}
    mapset = _bad(MapSet(maps=maps, logits={i: np.zeros(3) for i in maps}, labels=labels), image_id, case)
    save_maps(tmp_path / "bad.npz", mapset)
    assert main(["evaluate", "--maps", str(tmp_path / "bad.npz"), "--data-root", str(tiny_data)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message.format(id=image_id) in error and "bad.npz" in error


def test_a_maps_file_round_trips(tmp_path):
    maps = MapSet(maps={"a/b.jpg": np.eye(3, dtype=np.float32), "c": np.ones((2, 5), dtype=np.float16)},
                  logits={"a/b.jpg": np.arange(4.0), "c": -np.arange(4.0)}, labels={"a/b.jpg": 1, "c": 3},
                  meta={"protocol": "wsoleval", "img_size": 64})
    back = read_maps(save_maps(tmp_path / "m.npz", maps))
    assert back.meta == maps.meta and back.labels == maps.labels
    assert all(np.array_equal(back.maps[k], maps.maps[k]) and back.maps[k].dtype == maps.maps[k].dtype
               for k in maps.maps)
    assert all(np.array_equal(back.logits[k], maps.logits[k]) for k in maps.logits)


def test_a_capped_run_maps_and_scores_its_first_images(trained_run, tiny_data):
    """A config with eval.max_batches (a smoke run) maps the first batches, as its evaluation scores them, and
    evaluate_maps scores those images only, with the numbers the capped evaluation gives."""
    loaded = satlib.load(trained_run.checkpoint)
    config = copy.deepcopy(loaded.info.config)
    config.data.root, config.eval.max_batches, config.eval.batch_size = str(tiny_data), 1, 4
    capped = LoadedModel(loaded.model, dataclasses.replace(loaded.info, config=config))
    maps = model_maps(capped, tiny_data)
    assert len(maps.maps) == 4 and maps.meta["max_images"] == 4
    scores = evaluate_maps(maps, tiny_data)
    expected = evaluate_model(loaded.model, test_loader(build_test_split(config), config, Dist()), config,
                              torch.device("cpu"))
    assert scores.test[config.eval.protocol] == expected and expected["images"] == 4
    assert any(note.startswith("capped: the first 4 images") for note in scores.notes)
