"""satlib.book.evidence (a recipe over seeds: every seed, mean ± sd, the paper's numbers) and the run cache's
side-by-side training, its lock and its refusal of a run its time budget cut short."""

from __future__ import annotations

import json
import statistics
import threading
import time

import matplotlib
import pytest
import torch
import yaml

import satlib.book.runs
from satlib.book import FINISHED, BookRun, RunStoppedEarly, Settings, final_metrics, mean_sd, seed_cell, seed_table
from satlib.book.evidence import seed_plot
from satlib.config import load_config

from tiny_recipe import tiny_overrides

matplotlib.use("Agg")


def fake_run(folder, seed: int, **metrics) -> BookRun:
    """A finished run's folder as training leaves it: config.yaml (its seed) and metrics.json (its history)."""
    folder.mkdir(parents=True)
    config = load_config("synthetic_cpu", [f"train.seed={seed}"]).to_dict()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    history = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, **metrics}]
    (folder / "metrics.json").write_text(json.dumps({"history": history}))
    return BookRun(folder, trained=False, device=torch.device("cpu"))


def runs_of(tmp_path, name: str, gt_known: list[float]) -> list[BookRun]:
    return [fake_run(tmp_path / f"{name}{seed}", seed, gt_known=value, top1_loc=value - 1, top1_cls=90.0 + seed,
                     best_threshold=0.45) for seed, value in enumerate(gt_known)]


def test_mean_and_sample_sd_and_the_cell_shows_every_seed():
    assert mean_sd([77.2, 82.8, 77.5]) == pytest.approx((statistics.mean([77.2, 82.8, 77.5]),
                                                         statistics.stdev([77.2, 82.8, 77.5])))
    assert mean_sd([5.0]) == (5.0, 0.0)
    assert seed_cell([70.0, 80.0, 90.0]) == "70.0 / 80.0 / 90.0 (80.0 ± 10.0)"
    assert seed_cell([0.5], digits=2) == "0.50"


def test_the_table_has_a_row_per_method_with_every_seed_and_the_papers_numbers(tmp_path):
    table = seed_table({"SAT": runs_of(tmp_path, "sat", [70.0, 80.0, 90.0]),
                        "CAM": runs_of(tmp_path, "cam", [4.2, 3.1, 3.9])},
                       paper={"SAT": (98.45, 80.96)}, paper_label="paper: DeiT-S, CUB")
    header, rule, sat, cam = table.splitlines()
    assert "GT-known" in header and "paper: DeiT-S, CUB GT-known" in header and set(rule) <= {"-", " "}
    assert sat.startswith("SAT") and "0, 1, 2" in sat and "70.0 / 80.0 / 90.0 (80.0 ± 10.0)" in sat
    assert "69.0 / 79.0 / 89.0" in sat and "98.45" in sat and "80.96" in sat
    assert "4.2 / 3.1 / 3.9 (3.7 ± 0.6)" in cam and "0.45 / 0.45 / 0.45 (0.45 ± 0.00)" in cam and "98.45" not in cam
    assert "90.0 / 91.0 / 92.0 (91.0 ± 1.0)" in sat  # top-1 cls, from each run's own record


def test_the_final_record_is_the_last_evaluation_and_a_run_without_one_is_named(tmp_path):
    run = fake_run(tmp_path / "a", 0, gt_known=50.0)
    assert final_metrics(run)["gt_known"] == 50.0
    bare = tmp_path / "b"
    bare.mkdir()
    (bare / "metrics.json").write_text(json.dumps({"history": [{"epoch": 1, "loss": 1.0}]}))
    with pytest.raises(ValueError, match="b: no evaluation"):
        final_metrics(BookRun(bare, trained=False, device=torch.device("cpu")))


def test_the_plot_draws_a_dot_per_seed_a_bar_per_method_and_the_paper(tmp_path):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    seed_plot(ax, {"SAT": runs_of(tmp_path, "sat", [70.0, 80.0, 90.0]), "CAM": runs_of(tmp_path, "cam", [1, 2, 3])},
              paper={"SAT": 98.45})
    bars = [patch.get_height() for patch in ax.patches]
    assert bars == pytest.approx([80.0, 2.0])
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert sorted(y for line in dots for y in line.get_ydata()) == [1, 2, 3, 70.0, 80.0, 90.0]
    assert [tuple(line.get_ydata()) for line in ax.lines if line.get_marker() == "D"] == [(98.45,)]
    plt.close(figure)


@pytest.fixture
def tiny_run_config(tiny_data, tmp_path):
    return lambda **extra: load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "ignored", **extra))


class NoProbe:
    def __init__(self, *args) -> None:
        pass

    def record(self, folder) -> None:
        pass


def test_a_run_its_time_budget_cut_short_is_not_cached_as_finished(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    monkeypatch.setattr(satlib.book.runs, "Probe", NoProbe)
    monkeypatch.setattr(satlib.book.runs, "train", lambda config, **kw: {
        "stopped_early": True, "stop_reason": "train.time_budget=240 s reached at step 90 of 135"})
    config = tiny_run_config()
    with pytest.raises(RunStoppedEarly, match="step 90 of 135.*not cached as finished.*time_budget=0"):
        settings.run(config)
    assert not (settings.run_dir(config) / FINISHED).exists() and settings.runs.finished(config) is None


def test_a_run_trained_elsewhere_at_the_same_time_is_waited_for_not_trained_twice(tmp_path, tiny_run_config,
                                                                                    monkeypatch):
    """Two callers (kernels, workers) ask for one run at once: the lock makes the second wait and reuse it."""
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    calls, threads = [], []
    monkeypatch.setattr(satlib.book.runs, "Probe", NoProbe)
    monkeypatch.setattr(satlib.book.runs.RunCache, "finished", lambda self, config: (
        BookRun(self.run_dir(config), False, self.device) if (self.run_dir(config) / FINISHED).is_file() else None))

    def slow_train(config, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return {"stopped_early": False}

    monkeypatch.setattr(satlib.book.runs, "train", slow_train)
    results = []
    for _ in range(2):
        threads.append(threading.Thread(target=lambda: results.append(settings.run(tiny_run_config()))))
        threads[-1].start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(run.trained for run in results) == [False, True]


def test_run_all_trains_what_is_missing_once_and_gives_the_runs_in_order(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    trained = []
    monkeypatch.setattr(satlib.book.runs, "Probe", NoProbe)
    monkeypatch.setattr(satlib.book.runs.RunCache, "finished", lambda self, config: (
        BookRun(self.run_dir(config), False, self.device) if (self.run_dir(config) / FINISHED).is_file() else None))

    def record_threads(config, **kwargs):
        trained.append((config.train.seed, torch.get_num_threads()))
        return {"stopped_early": False}

    monkeypatch.setattr(satlib.book.runs, "train", record_threads)
    configs = [tiny_run_config(**{"train.seed": seed}) for seed in (2, 0, 2)]  # one asked for twice
    runs = settings.run_all(configs, jobs=1)
    assert [run.folder for run in runs] == [settings.run_dir(c) for c in configs]
    assert sorted(trained) == [(0, 1), (2, 1)]  # each trained once, on one thread
    assert [run.trained for run in runs] == [True, True, False]
    assert [run.trained for run in settings.run_all(configs, jobs=1)] == [False, False, False]


@pytest.mark.trains
@pytest.mark.spawns
def test_runs_trained_side_by_side_equal_the_runs_trained_one_by_one(tmp_path, tiny_run_config):
    apart = Settings(device=torch.device("cpu"), cache_root=tmp_path / "apart")
    together = Settings(device=torch.device("cpu"), cache_root=tmp_path / "together")
    configs = [tiny_run_config(**{"train.seed": seed}) for seed in (0, 1)]
    one_by_one = [apart.run(c) for c in configs]
    side_by_side = together.run_all([tiny_run_config(**{"train.seed": seed}) for seed in (0, 1)], jobs=2)
    assert all(run.trained for run in side_by_side)
    for a, b in zip(one_by_one, side_by_side):
        first, second = torch.load(a.checkpoint, weights_only=False), torch.load(b.checkpoint, weights_only=False)
        assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
