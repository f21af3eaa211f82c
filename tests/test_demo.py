import json

from satlib.demo import run_demo

from tiny_recipe import tiny_overrides


def test_demo_reports_sat_cam_and_trivial_boxes(tiny_data, tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = [o for o in tiny_overrides(tiny_data, out, **{"train.epochs": 1}) if not o.startswith("train.out")]
    result = run_demo(out, seed=1, device="cpu", progress=False, overrides=overrides)
    printed = capsys.readouterr().out
    for row in ("SAT (loc token map)", "CAM (same network's head)", "trivial box: whole image",
                "trivial box: centred mean box", "top-1 classification"):
        assert row in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("top1_cls", "gt_known", "top1_loc", "cam_gt_known", "baseline_whole_image",
                "baseline_centred_mean_box", "seconds_total", "history"):
        assert key in metrics, key
    assert metrics["seed"] == 1 and result["gt_known"] == metrics["gt_known"]
    assert (out / "demo.png").read_bytes()[:4] == b"\x89PNG"
