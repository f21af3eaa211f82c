"""train.tensorboard: a CPU run's event file holds its scalars and its map grids; without the package, one line."""

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from satlib.cli import main
from satlib.config import load_config
from satlib.train import train

from tiny_recipe import tiny_overrides


@pytest.mark.trains
def test_event_file_holds_the_scalars_and_the_map_grid(tiny_data, tmp_path):
    event_processing = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

    out = tmp_path / "run"
    train(load_config("synthetic_cpu", tiny_overrides(tiny_data, out, **{"train.tensorboard": True})),
          progress=False, quiet=True)
    history = json.loads((out / "metrics.json").read_text())["history"]
    events = event_processing.EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/loss", "epoch/loss_area", "epoch/lr", "eval/gt_known",
            "eval/top1_loc", "eval/best_threshold"} <= scalars
    for key in ("gt_known", "top1_loc"):  # the same numbers as metrics.json, at each evaluation's step
        logged = [(e.step, e.value) for e in events.Scalars(f"eval/{key}")]
        assert logged == [(r["step"], pytest.approx(r[key])) for r in history]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, history[-1]["step"] + 1))  # log_every 1
    grids = events.Images("maps")
    assert [g.step for g in grids] == [r["step"] for r in history]
    grid = np.asarray(Image.open(io.BytesIO(grids[-1].encoded_image_string)))
    assert grid.shape[0] > 32 and grid.shape[1] > 4 * 32  # 6 test images of 32 px, 4 a row, padded
    red = (grid[..., 0] > 200) & (grid[..., 1] < 60) & (grid[..., 2] < 60)
    assert red.any()  # the GT boxes are drawn


def test_without_the_package_a_run_stops_at_its_start(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, out, **{"train.tensorboard": True})
    assert main(["train", "--config", "synthetic_cpu", "--quiet", *overrides]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install satlib[tensorboard]" in error
    assert not (out / "checkpoint.pt").exists()
