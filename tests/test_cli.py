"""The command line end to end on a tiny synthetic set: data synth -> train -> evaluate -> visualize."""

import json
import subprocess
import sys

import pytest

from satlib.cli import main

from tiny_recipe import TINY_MODEL


@pytest.mark.trains
def test_synth_train_evaluate_visualize(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["data", "synth", "--out", str(data), "--num-classes", "3", "--per-class", "10",
                 "--size", "32"]) == 0
    assert "trivial GT-known" in capsys.readouterr().out

    kwargs = ",".join(f"{k}: {v}" for k, v in TINY_MODEL.items())
    assert main(["train", "--config", "configs/synthetic_cpu.yaml", "--dataset", "cub", "--data-root", str(data),
                 "--epochs", "1", "--batch-size", "8", "--img-size", "32", "--out", str(run), "--quiet",
                 f"model.kwargs={{{kwargs}}}", "--eval.thresholds=[0.3,0.6]", "data.workers=0"]) == 0
    printed = capsys.readouterr().out
    trained = json.loads(printed[printed.index("{\n"):])  # the run's summary follows its log lines
    assert trained["epoch"] == 1 and "gt_known" in trained

    metrics_file = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--data-root", str(data),
                 "--json", str(metrics_file)]) == 0
    metrics = json.loads(metrics_file.read_text())
    assert metrics["images"] == 6  # 3 classes x 10 images, a fifth held out
    assert metrics["gt_known"] == trained["gt_known"] and metrics["top1_cls"] == trained["top1_cls"]
    assert set(metrics) >= {"top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known", "maxboxacc",
                            "maxboxacc_v2", "best_threshold", "iou30", "iou50", "iou70"}

    png = tmp_path / "grid.png"
    assert main(["visualize", "--checkpoint", str(run / "checkpoint.pt"), "--data-root", str(data),
                 "--out", str(png), "--num", "4"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_override_and_bad_paths_are_clear_errors(tmp_path, capsys):
    assert main(["train", "--config", "synthetic_cpu", "train.lrr=1", "--data-root", str(tmp_path)]) == 2
    assert "unknown key 'train.lrr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", "synthetic_cpu", "not-an-override"])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data-root", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.spawns
def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "satlib", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "data", "train", "evaluate", "visualize", "predict"):
        assert command in result.stdout


@pytest.mark.slow  # DeiT-S with ten-crop classification: ~10 s on 2 idle cores
def test_evaluate_an_official_checkpoint(tiny_data, tmp_path, capsys):
    """A checkpoint saved as the official train.py saves it (DataParallel keys, the Gaussian kernel)
    evaluates like the same weights in satlib's own checkpoint."""
    import torch

    import satlib
    from satlib.assess import evaluate_checkpoint
    from satlib.config import load_config
    from satlib.models.weights import official_state_dict

    torch.manual_seed(0)
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3)
    torch.save({"model": official_state_dict(model), "best_thr": 0.35, "epoch": 27}, tmp_path / "official.pth.tar")
    config = load_config("cub", ["model.name=sat_deit_tiny_patch16_224", "model.num_classes=3", "model.pretrained="])
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, tmp_path / "satlib.pt")

    assert main(["evaluate", "--official", "--checkpoint", str(tmp_path / "official.pth.tar"),
                 "--data-root", str(tiny_data), "--json", str(tmp_path / "official.json")]) == 0
    official = json.loads((tmp_path / "official.json").read_text())
    ours = evaluate_checkpoint(tmp_path / "satlib.pt", data_root=tiny_data, dataset="cub", device="cpu")
    assert official["images"] == ours["images"] == 6
    for key in ("top1_cls", "gt_known", "top1_loc", "best_threshold"):
        assert official[key] == ours[key], key


def test_official_checkpoint_of_unknown_width_is_refused(tmp_path):
    import torch

    import satlib
    from satlib.checkpoint import CheckpointError

    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3, embed_dim=64, num_heads=4, depth=3)
    torch.save({"model": model.state_dict()}, tmp_path / "odd.pth.tar")
    with pytest.raises(CheckpointError, match=r"odd.pth.tar: cls_token width 64 .*\[192, 384, 768\]"):
        satlib.load(tmp_path / "odd.pth.tar", official=True)


def test_train_choices_and_recipes_come_from_the_code(capsys):
    from satlib.config import choices, packaged_recipes

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "book_parts" in packaged_recipes() and all(name in help_text for name in packaged_recipes())
    assert "{" + ",".join(choices("data.dataset")) + "}" in help_text
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", "x.pt", "--data-root", ".", "--dataset", "coco"])
    assert "invalid choice: 'coco'" in capsys.readouterr().err
