"""torchrun with 2 CPU processes (gloo) trains exactly what 1 process does on the same global batch."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from satlib.checkpoint import load_checkpoint

from tiny_recipe import tiny_overrides

# A patch-embedding SAT (no BatchNorm, whose statistics would differ per rank), no drop-path, no flips
# (each rank draws its own random numbers). area_thr is low so both ranks' maps stay above it: the
# official DDP code applies the area constraint per rank, which equals the global one when the signs agree.
DDP_MODEL = {"patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], data, out) -> None:
    overrides = tiny_overrides(data, out, **{"model.name": "sat_deit_tiny_patch16_224", "model.kwargs": DDP_MODEL,
                                             "data.hflip": False, "train.area_thr": 0.05, "train.epochs": 2})
    result = subprocess.run([*command, "-m", "satlib", "train", "--config", "synthetic_cpu", "--quiet",
                             "--device", "cpu", *overrides], capture_output=True, text=True, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tiny_data, tmp_path):
    _run([sys.executable], tiny_data, tmp_path / "one")
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port())], tiny_data, tmp_path / "two")
    one = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    two = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert one["step"] == two["step"] == 6
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for h1, h2 in zip(m1["history"], m2["history"]):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-4)
        assert h2["train_top1"] == h1["train_top1"]
    # the test set (6 images) is split over the ranks and the evaluator's counts are summed
    assert m2["top1_cls"] == m1["top1_cls"] and m2["gt_known"] == m1["gt_known"]


WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parent.parent  # the worker script imports the satlib of this checkout


def _two_ranks(scenario: str, data, out: Path) -> list[dict]:
    """Run tests/ddp_worker.py SCENARIO on 2 gloo processes; each rank's JSON result, in rank order."""
    out.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER),
                             scenario, str(data), str(out)], capture_output=True, text=True, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    ranks = [out / f"rank{r}.json" for r in range(2)]
    assert result.returncode == 0 and all(p.is_file() for p in ranks), result.stderr[-3000:]
    return [json.loads(p.read_text()) for p in ranks]


@pytest.mark.slow
def test_time_budget_stops_every_rank_after_the_same_step(tiny_data, tmp_path):
    """Rank 1's clock runs far ahead from step 2: the ranks still leave together, after step 3 (each step acts on
    the readings every rank posted at the step before, without waiting for them)."""
    zero, one = _two_ranks("time_budget", tiny_data, tmp_path / "out")
    assert "error" not in zero and "error" not in one, (zero, one)
    assert zero == one == {"step": 3, "epoch": 1, "stopped_early": True}  # 3 steps an epoch, 3 epochs asked
    assert load_checkpoint(tmp_path / "out" / "run" / "checkpoint.pt")["step"] == 3


@pytest.mark.slow
def test_evaluation_with_an_empty_shard_on_one_rank(tiny_data, tmp_path):
    """One test image over two ranks: rank 1 evaluates nothing and the counts still agree."""
    from ddp_worker import config_for

    from satlib.build import build_datasets, build_model, test_loader
    from satlib.evaluate import evaluate_model
    from satlib.runtime import Dist

    zero, one = _two_ranks("empty_shard", tiny_data, tmp_path / "out")
    assert "error" not in zero and "error" not in one, (zero, one)
    assert (zero["shard"], one["shard"]) == (1, 0)
    config = config_for(tiny_data, tmp_path / "alone")
    _, test_set = build_datasets(config, train=False)
    torch.manual_seed(0)
    model = build_model(config, num_classes=3)
    alone = evaluate_model(model, test_loader(test_set.select([0]), config, Dist()), config, torch.device("cpu"),
                           cam=True)
    assert zero["metrics"] == one["metrics"] == pytest.approx(alone)


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_stops_every_rank(tiny_data, tmp_path):
    """Rank 1's loss turns NaN: both ranks raise TrainingDiverged at the same check, none is left waiting."""
    zero, one = _two_ranks("nonfinite", tiny_data, tmp_path / "out")
    assert zero.get("diverged") and one.get("diverged"), (zero, one)
    assert "epoch 1 (by step 2)" in zero["diverged"] and "epoch 1 (by step 2)" in one["diverged"]


@pytest.mark.slow
def test_an_unreadable_micro_batch_on_one_rank_is_skipped_by_every_rank(tiny_data, tmp_path):
    """data.skip_bad: rank 1's second micro-batch has no readable image. Both ranks skip it together and average
    the step's gradients themselves (that micro-batch would have all-reduced them): same steps, same weights."""
    zero, one = _two_ranks("empty_micro", tiny_data, tmp_path / "out")
    assert "error" not in zero and "error" not in one, (zero, one)
    assert zero["step"] == one["step"] == 4  # 3 micro-batches an epoch at grad_accum 2: steps of 2 and 1
    assert zero["skipped"] == one["skipped"] == 1  # rank 1's unreadable micro-batch, skipped by both
    assert len(zero["weights"]) == 4 and zero["weights"] == pytest.approx(one["weights"], rel=1e-6)


@pytest.mark.slow
def test_each_rank_draws_its_own_augmentation_and_a_resumed_epoch_draws_the_same(tiny_data, tmp_path):
    """Every image is the same, so only the random crops and flips tell batches apart: the ranks' first
    batches differ (their loader workers do not share one stream), epochs differ, and a fresh loader set
    to epoch 1, as a resumed run builds it, gives what the uninterrupted loader gave in epoch 1."""
    zero, one = _two_ranks("augment", tiny_data, tmp_path / "out")
    assert "error" not in zero and "error" not in one, (zero, one)
    assert zero["epoch0"] != one["epoch0"] and zero["epoch1"] != one["epoch1"]
    assert zero["epoch0"] != zero["epoch1"]
    assert zero["resumed1"] == zero["epoch1"] and one["resumed1"] == one["epoch1"]


@pytest.mark.slow
def test_torchrun_cli_prints_once_and_leaves_no_process_group(tiny_data, tmp_path):
    """`torchrun ... -m satlib train`: rank 0 alone prints the summary, and the run destroys the process
    group it created (both ranks)."""
    zero, one = _two_ranks("cli", tiny_data, tmp_path / "out")
    assert "error" not in zero and "error" not in one, (zero, one)
    assert zero["code"] == one["code"] == 0
    printed = zero["printed"]
    assert json.loads(printed[printed.index("{\n"):])["epoch"] == 1  # the summary follows the log lines
    assert one["printed"] == ""
    assert zero["group_left"] is False and one["group_left"] is False
