"""satlib.book.runs and satlib.book.probe: the book's cache of training runs keyed by config, and the probe
maps every run keeps after each epoch."""

from __future__ import annotations

import json

import pytest
import torch

import satlib.book.runs
import satlib.train
from satlib.book import FINISHED, Settings, probe_indices
from satlib.build import build_datasets
from satlib.checkpoint import load_checkpoint
from satlib.config import load_config

from tiny_recipe import tiny_overrides


@pytest.fixture
def tiny_run_config(tiny_data, tmp_path):
    return lambda **extra: load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "ignored", **extra))


@pytest.mark.trains
def test_a_run_is_trained_once_then_found_by_its_config(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path / "cache")
    epochs_seen = []
    first = settings.run(tiny_run_config(), on_epoch=lambda record: epochs_seen.append(record["epoch"]))
    assert first.trained and epochs_seen == [1, 2]
    assert first.folder.parent == settings.cache / "runs" and first.checkpoint.is_file() and first.best.is_file()
    assert len(first.history()) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(satlib.book.runs, "train", no_training)
    again = tiny_run_config()
    second = settings.run(again)
    assert not second.trained and second.folder == first.folder
    assert again.train.out == str(first.folder) and again.train.device == "cpu"
    model, info = second.load()
    assert info.metrics["epoch"] == 2 and info.config.model.num_classes == 3 and not model.training


def test_the_key_is_the_whole_config_but_the_output_folder(tmp_path, tiny_run_config):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    base = settings.run_dir(tiny_run_config())
    assert settings.run_dir(tiny_run_config(**{"train.out": str(tmp_path / "elsewhere")})) == base
    for change in ({"train.lr": 1e-3}, {"train.epochs": 3}, {"eval.thresholds": [0.5]},
                   {"model.kwargs": {"stem_widths": [8, 16, 16], "embed_dim": 32, "depth": 2, "num_heads": 2}}):
        assert settings.run_dir(tiny_run_config(**change)) != base, change
    smoke = Settings(device=torch.device("cpu"), cache_root=tmp_path, smoke=True)
    assert smoke.run_dir(tiny_run_config()) != base  # a capped run never stands in for a real one


@pytest.mark.trains
def test_an_unfinished_or_foreign_run_is_trained_again(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    folder = settings.run_dir(tiny_run_config())
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"interrupted")  # no finished.json: an interrupted run
    calls = []
    real_train = satlib.train.train
    monkeypatch.setattr(satlib.book.runs, "train",
                        lambda config, **kw: calls.append(config) or real_train(config, **kw))
    run = settings.run(tiny_run_config())
    assert run.trained and len(calls) == 1
    marker = json.loads((folder / FINISHED).read_text())
    assert marker == json.loads(json.dumps(settings.run_key(tiny_run_config())))
    (folder / FINISHED).write_text(json.dumps({"config": {}, "smoke": False}))  # another key in this folder
    assert settings.run(tiny_run_config()).trained and len(calls) == 2


@pytest.mark.trains
def test_training_does_not_change_the_callers_config(tmp_path, tiny_run_config):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    config = tiny_run_config(**{"model.num_classes": 7})  # the data has 3: train() corrects its own copy
    settings.run(config)
    assert config.model.num_classes == 7
    assert not settings.run(tiny_run_config(**{"model.num_classes": 7})).trained


@pytest.mark.trains
def test_every_run_keeps_its_probe_maps_without_changing_the_run(tmp_path, tiny_run_config):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path / "cache")
    run = settings.run(tiny_run_config())
    maps = run.epoch_maps()
    config = run.load().info.config
    _, test_set = build_datasets(config, train=False)
    assert maps["indices"].tolist() == probe_indices(test_set) == [0, 1, 2, 3, 4, 5]  # 3 classes of 2 test images
    assert maps["sat"].shape == maps["cam"].shape == (2, 6, 4, 4)  # 2 epochs, 32 px on a 4x4 grid
    final = load_checkpoint(run.checkpoint)

    plain = tiny_run_config(**{"train.out": str(tmp_path / "plain"), "train.device": "cpu"})
    threads = torch.get_num_threads()
    torch.set_num_threads(satlib.book.runs.CPU_THREADS)  # as the cache trains on a CPU
    try:
        satlib.train.train(plain, progress=False)  # the same run without the probe: the same weights
    finally:
        torch.set_num_threads(threads)
    alone = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    assert all(torch.equal(final["model"][k], alone["model"][k]) for k in alone["model"])
