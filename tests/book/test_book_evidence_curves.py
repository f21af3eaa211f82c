"""The evidence along an axis (satlib.book.evidence.curve_table, curve_plot) on hand-written runs: a row per
(method, x) with every seed and mean ± sd, the paper's number on its method's rows only; the figure's lines
through the means, a dot a seed, the paper as its own marker."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest
import torch
import yaml

from satlib.book.evidence import curve_plot, curve_table
from satlib.book.runs import BookRun
from satlib.config import load_config


def written_run(folder, *, seed: int, gt_known: float, top1_loc: float) -> BookRun:
    """A finished run's folder as the cache holds it: its config and a metrics.json with one evaluation."""
    folder.mkdir(parents=True)
    config = load_config("synthetic_fewshot", [f"train.seed={seed}"])
    (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    record = {"epoch": 1, "top1_cls": 90.0, "gt_known": gt_known, "top1_loc": top1_loc, "best_threshold": 0.5}
    (folder / "metrics.json").write_text(json.dumps({"history": [{"epoch": 0, "loss": 1.0}, record]}))
    return BookRun(folder, trained=False, device=torch.device("cpu"))


@pytest.fixture
def curves(tmp_path):
    def runs(name, gt_known):
        return [written_run(tmp_path / f"{name}-{seed}", seed=seed, gt_known=g, top1_loc=g / 2)
                for seed, g in enumerate(gt_known)]

    return {"SAT": {1: runs("sat1", [20.0, 70.0, 90.0]), "all": runs("satall", [80.0, 82.0, 84.0])},
            "CAM": {1: runs("cam1", [4.0, 6.0, 8.0]), "all": runs("camall", [5.0, 5.0, 5.0])}}


def test_the_table_has_a_row_per_method_and_x_with_every_seed_and_the_paper_on_its_method(curves):
    table = curve_table(curves, paper={1: 70.9, "all": 73.1}, paper_label="paper: DeiT-S, ImageNet")
    header, rule, *rows = table.splitlines()
    assert "paper: DeiT-S, ImageNet GT-known" in header and set(rule) <= {"-", " "}
    assert [row.split()[:2] for row in rows] == [["SAT", "1"], ["SAT", "all"], ["CAM", "1"], ["CAM", "all"]]
    assert "20.0 / 70.0 / 90.0 (60.0 ± 36.1)" in rows[0] and "10.0 / 35.0 / 45.0 (30.0 ± 18.0)" in rows[0]
    assert rows[0].endswith("70.9") and rows[1].endswith("73.1")
    assert all(row.endswith("(0.50 ± 0.00)") for row in rows[2:])  # no paper number on CAM's rows
    assert "0, 1, 2" in rows[2] and "5.0 / 5.0 / 5.0 (5.0 ± 0.0)" in rows[3]


def test_the_figure_draws_the_means_every_seed_and_the_paper_apart(curves):
    fig, ax = plt.subplots()
    curve_plot(ax, curves, "gt_known", paper={1: 70.9, "all": 73.1}, paper_label="paper: DeiT-S, ImageNet")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["SAT, this book: stand-in, CPU: mean"].get_ydata()) == [60.0, 82.0]
    assert list(lines["CAM, this book: stand-in, CPU: mean"].get_ydata()) == [6.0, 5.0]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(y for line in dots for y in line.get_ydata()) == sorted(
        [20.0, 70.0, 90.0, 80.0, 82.0, 84.0, 4.0, 6.0, 8.0, 5.0, 5.0, 5.0])
    paper = lines["SAT, paper: DeiT-S, ImageNet"]
    assert paper.get_marker() == "D" and list(paper.get_ydata()) == [70.9, 73.1]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1", "all"]
    plt.close(fig)
