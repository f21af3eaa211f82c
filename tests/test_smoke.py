"""SATLIB_SMOKE=1: every code path of a run, capped to a few steps and batches through config fields."""

import json

import pytest
import torch

from satlib.build import build_model
from satlib.checkpoint import load_checkpoint
from satlib.config import SMOKE_ENV, Config, apply_smoke, load_config, smoke
from satlib.evaluation import LocalizationEvaluator
from satlib.losses import SATLoss
from satlib.train import train

from tiny_recipe import tiny_overrides


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """24 training and 18 test images: more than a smoke run reads of either."""
    from satlib.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("smoke") / "set", num_classes=3, per_class=14, size=32,
                                  seed=1, test_fraction=0.4)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("false", False), ("1", True),
                                                 ("yes", True), (" ON ", True)])
def test_switch_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(SMOKE_ENV, value)
    assert smoke() is expected
    assert (apply_smoke(Config()) == Config()) is not expected


def test_unreadable_switch_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv(SMOKE_ENV, "maybe")
    with pytest.raises(ValueError, match="SATLIB_SMOKE='maybe'"):
        smoke()


def test_unset_switch_caps_nothing(monkeypatch):
    monkeypatch.delenv(SMOKE_ENV, raising=False)
    config = load_config("cub")
    assert config == load_config("cub") and config.train.max_steps == 0 and config.eval.max_batches == 0
    assert (config.train.batch_size, config.eval.batch_size, config.model.pretrained) == (256, 128, "timm")


def test_loaded_configs_get_the_caps_as_fields(monkeypatch):
    """The one place: every config `load_config` returns under the switch carries the caps."""
    monkeypatch.setenv(SMOKE_ENV, "1")
    with pytest.warns(UserWarning, match="pretrained=timm skipped"):
        config = load_config("cub", ["train.max_steps=50", "eval.max_batches=1"])
    assert (config.train.max_steps, config.train.batch_size) == (2, 8)
    assert (config.eval.max_batches, config.eval.batch_size, config.model.pretrained) == (1, 8, "")  # a lower cap stays
    assert config.train.epochs == 30 and config.train.lr == 1e-4  # nothing else changes


@pytest.mark.parametrize(("batch", "accum", "world", "capped"), [(256, 1, 1, 8), (256, 1, 2, 8), (256, 4, 1, 2),
                                                                 (256, 2, 4, 4), (256, 16, 2, 2), (4, 1, 1, 4)])
def test_smoke_batch_keeps_steps_at_most_8_images(monkeypatch, batch, accum, world, capped):
    monkeypatch.setenv(SMOKE_ENV, "1")
    config = Config()
    config.train.batch_size, config.train.grad_accum = batch, accum
    size = apply_smoke(config, world=world).train.batch_size
    assert size == capped and size % world == 0
    assert size * accum <= 8 or size == world  # at least one image per rank


def _recorders(monkeypatch):
    """Record the images of every training micro-batch and of every evaluated batch."""
    seen = {"train": [], "eval": []}
    real_loss, real_update = SATLoss.forward, LocalizationEvaluator.update

    def loss(self, out, labels, **kwargs):
        seen["train"].append(len(labels))
        return real_loss(self, out, labels, **kwargs)

    def update(self, maps, boxes, *args, **kwargs):
        seen["eval"].append(len(maps))
        return real_update(self, maps, boxes, *args, **kwargs)

    monkeypatch.setattr(SATLoss, "forward", loss)
    monkeypatch.setattr(LocalizationEvaluator, "update", update)
    return seen


@pytest.mark.trains
def test_smoke_training_stops_after_two_capped_steps_and_evaluates_two_batches(smoke_data, tmp_path, monkeypatch):
    monkeypatch.setenv(SMOKE_ENV, "1")
    seen = _recorders(monkeypatch)
    config = load_config("synthetic_cpu", tiny_overrides(smoke_data, tmp_path / "run", **{
        "train.epochs": 5, "train.batch_size": 16, "train.grad_accum": 2, "train.eval_every": 0}))
    record = train(config, progress=False)
    assert seen["train"] == [4, 4, 4, 4]  # 2 optimizer steps x 2 accumulated micro-batches of 4 images
    assert seen["eval"] == [8, 8] * 2  # SAT's map and the CAM, 2 batches of 8 of the 18 test images
    assert record["step"] == 2 and record["smoke"] is True and record["stopped_early"] is False
    assert "gt_known" in record and "cam_gt_known" in record  # the closing evaluation ran
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["smoke"] is True and len(metrics["history"]) == 1
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["step"] == 2 and saved["config"]["train"]["max_steps"] == 2  # the checkpoint says it was capped


@pytest.mark.trains
def test_without_smoke_the_same_run_trains_every_step(smoke_data, tmp_path, monkeypatch):
    monkeypatch.delenv(SMOKE_ENV, raising=False)
    seen = _recorders(monkeypatch)
    config = load_config("synthetic_cpu", tiny_overrides(smoke_data, tmp_path / "run", **{
        "train.epochs": 1, "train.batch_size": 8, "train.eval_every": 0}))
    record = train(config, progress=False)
    assert seen["train"] == [8, 8, 8] and sum(seen["eval"]) == 2 * 18 and "smoke" not in record


def test_smoke_skips_timm_weights_with_a_warning(tiny_config, monkeypatch):
    import satlib.models.factory as factory

    def no_download(*args, **kwargs):
        raise AssertionError("a smoke run must not look for pretrained weights")

    monkeypatch.setattr(factory, "pretrained_file", no_download)
    monkeypatch.delenv(SMOKE_ENV, raising=False)
    with pytest.raises(AssertionError, match="must not look"):
        build_model(tiny_config(**{"model.pretrained": "timm"}))
    monkeypatch.setenv(SMOKE_ENV, "1")
    with pytest.warns(UserWarning, match="pretrained=timm skipped.*random weights"):
        config = tiny_config(**{"model.pretrained": "timm"})
    assert config.model.pretrained == ""  # the config says what runs: random init
    assert isinstance(build_model(config), torch.nn.Module)


def test_smoke_still_loads_a_local_weights_file(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv(SMOKE_ENV, "1")
    config = tiny_config()
    source = build_model(config)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    config.model.pretrained = str(tmp_path / "weights.pth")
    assert apply_smoke(config).model.pretrained == str(tmp_path / "weights.pth")
    loaded = build_model(config)
    assert torch.equal(loaded.state_dict()["loc_token"], source.state_dict()["loc_token"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["cub", "imagenet"])
def test_cli_runs_a_paper_recipe_on_its_standin_offline(recipe, tmp_path):
    """DeiT-S 224 with the real recipe on the real layout: the CLI a user types, about a minute on a CPU."""
    import os
    import subprocess
    import sys

    from satlib.data.standins import make_standin

    root = make_standin(tmp_path / recipe, recipe)
    env = {"OMP_NUM_THREADS": "2", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), SMOKE_ENV: "1",
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}  # an empty cache: nothing to find, nothing fetched
    result = subprocess.run([sys.executable, "-m", "satlib", "train", "--config", recipe, "--data-root", str(root),
                             "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretrained=timm skipped" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["step"] == 2 and "gt_known" in metrics
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]
    assert saved["model"]["name"] == "sat_deit_small_patch16_224" and saved["data"]["img_size"] == 224



@pytest.mark.trains
def test_smoke_evaluation_reports_the_images_it_scored(smoke_data, tmp_path, monkeypatch):
    """`satlib evaluate` under smoke says how many images it scored (2 batches of 8), not the split's 18."""
    from satlib.assess import evaluate_checkpoint

    train(load_config("synthetic_cpu", tiny_overrides(smoke_data, tmp_path, **{"train.epochs": 1})), progress=False)
    monkeypatch.setenv(SMOKE_ENV, "1")
    metrics = evaluate_checkpoint(tmp_path / "checkpoint.pt", data_root=smoke_data, device="cpu")
    assert metrics["images"] == 16
    monkeypatch.delenv(SMOKE_ENV)
    assert evaluate_checkpoint(tmp_path / "checkpoint.pt", data_root=smoke_data, device="cpu")["images"] == 18
