import json

import pytest
import torch

from satlib.config import load_config
from satlib.demo import baseline_recipe, report, run_demo

from tiny_recipe import tiny_overrides

TIMINGS = ("time", "seconds_total", "seconds_data", "seconds_train", "trained_cam_time")


def _tiny_demo(tiny_data, out, **kwargs):
    overrides = [o for o in tiny_overrides(tiny_data, out, **{"train.epochs": 1}) if not o.startswith("train.out")]
    return run_demo(out, seed=1, device="cpu", progress=False, overrides=overrides, **kwargs)


def _without_timings(metrics: dict) -> dict:
    history = [{k: v for k, v in r.items() if k not in TIMINGS} for r in metrics.get("history", [])]
    return {**{k: v for k, v in metrics.items() if k not in TIMINGS}, "history": history}


@pytest.fixture(scope="module")
def demo_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, _tiny_demo(tiny_data, out)


def test_demo_reports_sat_the_trained_cam_and_trivial_boxes(demo_run, capsys):
    out, result = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("top1_cls", "gt_known", "top1_loc", "trained_cam_gt_known", "trained_cam_top1_cls",
                "trained_cam_best_threshold", "baseline_whole_image", "baseline_centred_mean_box", "seconds_total",
                "history"):
        assert key in metrics, key
    assert metrics["trained_cam_model"] == "cam_tiny_convstem"
    assert metrics["seed"] == 1 and result["gt_known"] == metrics["gt_known"]
    cam_run = json.loads((out / "cam" / "metrics.json").read_text())  # the baseline is a run of its own
    assert cam_run["gt_known"] == metrics["trained_cam_gt_known"] and cam_run["loss_area"] == 0.0
    assert (out / "sat" / "checkpoint.pt").is_file() and (out / "cam" / "checkpoint.pt").is_file()
    assert (out / "demo.png").read_bytes()[:4] == b"\x89PNG"
    table = report(metrics, {"whole_image": 1.0}, 9.0, baseline="cam",
                   baseline_record={k.removeprefix("trained_cam_"): v for k, v in metrics.items()
                                    if k.startswith("trained_cam_")})
    for row in ("SAT (loc token map)", "CAM baseline (trained alone)", "trivial box: whole image",
                "aside: SAT net's own head CAM"):
        assert row in table


@pytest.mark.trains
def test_same_seed_same_numbers(demo_run, tiny_data, tmp_path):
    """Two demos with one seed on one machine: identical metrics (the schedule counts steps, not seconds)."""
    out, _ = demo_run
    again = tmp_path / "again"
    _tiny_demo(tiny_data, again)
    first = _without_timings(json.loads((out / "metrics.json").read_text()))
    second = _without_timings(json.loads((again / "metrics.json").read_text()))
    assert first == second


def test_baseline_recipe_is_the_same_recipe_for_the_baseline_model(tmp_path):
    config = load_config("synthetic_cpu", [f"train.out={tmp_path / 'sat'}"])
    cam = baseline_recipe(config, "tscam", tmp_path)
    assert cam.model.name == "tscam_tiny_convstem" and cam.train.out == str(tmp_path / "tscam")
    cam.model.name, cam.train.out = config.model.name, config.train.out
    assert cam.to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="baseline='gradcam'"):
        baseline_recipe(config, "gradcam", tmp_path)


@pytest.mark.trains
def test_sat_alone(tiny_data, tmp_path):
    result = _tiny_demo(tiny_data, tmp_path / "alone", baseline=None)
    assert "trained_cam_gt_known" not in result and not (tmp_path / "alone" / "cam").exists()


@pytest.mark.trains
def test_a_baseline_trained_after_sat_leaves_sat_every_core(tiny_data, tmp_path, monkeypatch):
    # where the two cannot train at once (a GPU), they run one after the other, each on every core, and
    # metrics.json says so (it reported half the cores whenever a baseline was asked for)
    import satlib.demo as demo

    monkeypatch.setattr(demo, "cpu_threads", lambda: 2)
    monkeypatch.setattr(demo, "trains_in_parallel", lambda config: False)
    result = _tiny_demo(tiny_data, tmp_path / "after")
    assert result["threads"] == 2 and "trained_cam_gt_known" in result


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_the_default_device_decides_where_the_baseline_trains(device, monkeypatch):
    # "auto" is the CLI's default: it must resolve (not reach torch.device as a name) and, on a CPU
    # machine with two cores, put the baseline in a process of its own
    import satlib.demo as demo

    monkeypatch.setattr(demo, "cpu_threads", lambda: 2)
    config = load_config("synthetic_cpu", [f"train.device={device}"])
    assert demo.trains_in_parallel(config) is (not torch.cuda.is_available() or device == "cpu")
    monkeypatch.setattr(demo, "cpu_threads", lambda: 1)
    assert not demo.trains_in_parallel(config)
