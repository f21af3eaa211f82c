"""The CUDA paths no CPU run reaches: train() on a GPU (bf16, TF32, deterministic kernels), the inductor
compiler, a checkpoint written on a GPU. `pytest -m gpu` (bench/gpu_check.sh) runs them on a lent GPU."""

import pytest
import torch

import satlib
from satlib.assess import evaluate_checkpoint
from satlib.checkpoint import load_checkpoint
from satlib.runtime import allow_tf32
from satlib.train import train

pytestmark = pytest.mark.gpu

ON_CUDA = {"train.device": "cuda", "train.epochs": 2}


def _without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "time"}


def test_deterministic_training_on_cuda_repeats_every_number(tiny_config, tmp_path):
    """train.deterministic: the same seed gives the same metrics and the same weights on a GPU."""
    runs = [train(tiny_config(**{**ON_CUDA, "train.deterministic": True, "train.out": str(tmp_path / name)}),
                  progress=False) for name in ("a", "b")]
    assert _without_time(runs[0]) == _without_time(runs[1])
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt")["model"] for name in ("a", "b"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_cuda_checkpoint_loads_on_the_cpu_and_back_with_its_metrics(tiny_config, tiny_data, tmp_path):
    """A checkpoint written by a CUDA run: weights-only, on the CPU when read, and evaluated again on the
    GPU it gives the run's own closing metrics (same bf16 evaluation)."""
    record = train(tiny_config(**{**ON_CUDA, "train.out": str(tmp_path / "run")}), progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(not value.is_cuda for value in state["model"].values())
    loaded = satlib.load(tmp_path / "run" / "checkpoint.pt", device="cuda")
    assert next(loaded.model.parameters()).is_cuda
    with allow_tf32(torch.device("cuda")):  # as train() evaluated
        again = evaluate_checkpoint(loaded, data_root=tiny_data, device="cuda")
    for key in ("top1_cls", "gt_known", "top1_loc", "best_threshold"):
        assert again[key] == record[key], key


def test_inductor_compiled_training_step_runs_and_matches_eager(tiny_config, tmp_path):
    """train.compile with the inductor backend (Triton kernels): a run finishes with finite losses, and the
    compiled forward agrees with the eager one in fp32."""
    record = train(tiny_config(**{**ON_CUDA, "train.compile": True, "train.compile_backend": "inductor",
                                  "train.max_steps": 3, "train.out": str(tmp_path / "run")}), progress=False)
    assert record["step"] == 3 and torch.isfinite(torch.tensor(record["loss"]))
    model = satlib.load(tmp_path / "run" / "checkpoint.pt", device="cuda").model
    images = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.no_grad():
        eager = model(images)
        compiled = torch.compile(model, backend="inductor")(images)
    torch.testing.assert_close(compiled.logits, eager.logits, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(compiled.loc_map, eager.loc_map, atol=1e-3, rtol=1e-3)
