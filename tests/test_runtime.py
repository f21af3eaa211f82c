"""satlib.runtime: TF32 and deterministic kernels scoped to a run, RNG state per rank's own device."""

import os
import random
import shutil

import numpy as np
import pytest
import torch

from satlib import runtime
from satlib import train as train_module
from satlib.checkpoint import load_checkpoint, save_checkpoint
from satlib.config import load_config
from satlib.runtime import allow_tf32, deterministic_algorithms, local_rank, rng_state, set_rng_state
from satlib.train import train


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def fp32_flags():
    """Start from full fp32 (PyTorch's default) and leave the flags as they were."""
    saved = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_on_inside_the_block_restored_after_return_and_raise(fp32_flags):
    with allow_tf32(torch.device("cuda")):
        assert tf32_flags() == (True, True)
    assert tf32_flags() == (False, False)
    with pytest.raises(KeyError), allow_tf32(torch.device("cuda")):
        raise KeyError("a failing cell")
    assert tf32_flags() == (False, False)
    with allow_tf32(torch.device("cpu")):
        assert tf32_flags() == (False, False)  # nothing on a CPU


@pytest.mark.trains
def test_train_scopes_tf32_to_the_run(tiny_config, fp32_flags, monkeypatch):
    """A notebook cell after train() (returned or raised) computes in full fp32 again."""
    monkeypatch.setattr(runtime, "TF32_DEVICE_TYPES", frozenset({"cuda", "cpu"}))  # as a CUDA run does
    inside = []
    train(tiny_config(**{"train.epochs": 1}), progress=False, on_epoch=lambda record: inside.append(tf32_flags()))
    assert inside == [(True, True)] and tf32_flags() == (False, False)

    def fail(record):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        train(tiny_config(**{"train.epochs": 1}), progress=False, on_epoch=fail)
    assert tf32_flags() == (False, False)


class FakeGPUs:
    """torch.cuda as a machine with `count` GPUs sees it: per-device generator states, and the error a
    missing device index raises."""

    def __init__(self, monkeypatch, count: int):
        self.count, self.states = count, {}
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.get(i) for i in range(count)])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [self.set(s, i) for i, s in
                                                                             enumerate(states)])

    def _index(self, device) -> int:
        index = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if (index.index or 0) >= self.count:
            raise RuntimeError("CUDA error: invalid device ordinal")
        return index.index or 0

    def get(self, device="cuda") -> torch.Tensor:
        return self.states.get(self._index(device), torch.zeros(16, dtype=torch.uint8))

    def set(self, state: torch.Tensor, device="cuda") -> None:
        self.states[self._index(device)] = state.clone()


def cuda_state(value: int) -> torch.Tensor:
    return torch.full((16,), value, dtype=torch.uint8)


def deterministic_flags() -> tuple[bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)


def test_deterministic_kernels_inside_the_block_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = deterministic_flags()
    assert before == (False, False, False)  # PyTorch's defaults
    with deterministic_algorithms():
        assert deterministic_flags() == (True, True, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what cuBLAS needs to be deterministic
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            torch.zeros(3).put_(torch.tensor([0, 0]), torch.ones(2), accumulate=False)  # an op with none
    assert deterministic_flags() == before
    with deterministic_algorithms(enabled=False):
        assert deterministic_flags() == before


@pytest.mark.trains
def test_train_deterministic_holds_for_the_run(tiny_config):
    inside = []
    first = train(tiny_config(**{"train.epochs": 1, "train.deterministic": True}), progress=False,
                  on_epoch=lambda record: inside.append(deterministic_flags()))
    assert inside == [(True, True, False)] and deterministic_flags() == (False, False, False)
    second = train(tiny_config(**{"train.epochs": 1, "train.deterministic": False}), progress=False)
    assert {k: v for k, v in first.items() if k != "time"} == {k: v for k, v in second.items() if k != "time"}


@pytest.mark.parametrize(("environ", "devices", "expected"), [
    ({"RANK": "5", "LOCAL_RANK": "1", "SLURM_LOCALID": "3"}, 4, 1),  # torchrun
    ({"RANK": "5", "SLURM_LOCALID": "3"}, 4, 3),  # srun
    ({"RANK": "5"}, 4, 1),  # RANK alone, 4 GPUs a machine: rank 5 is the second process of the second machine
    ({"RANK": "5"}, 0, 0),  # no GPU
])
def test_local_rank_under_each_launcher(environ, devices, expected):
    assert local_rank(environ, devices) == expected


def test_rank_alone_does_not_put_every_process_on_the_first_gpu(monkeypatch):
    """Under srun (RANK and SLURM_LOCALID, no LOCAL_RANK) each process takes its own device."""
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(runtime.dist, "is_initialized", lambda: True)  # a group the caller made: nothing to join
    monkeypatch.setattr(runtime.dist, "get_backend", lambda: "gloo")
    ddp = runtime.setup_distributed("cpu")
    assert (ddp.rank, ddp.world, ddp.local_rank, ddp.owns_group) == (3, 4, 1, False)


def test_rng_state_holds_only_this_devices_generator(monkeypatch):
    gpus = FakeGPUs(monkeypatch, count=4)
    gpus.states = {i: cuda_state(i) for i in range(4)}
    assert "cuda" not in rng_state(torch.device("cpu"))
    assert torch.equal(rng_state(torch.device("cuda", 2))["cuda"], cuda_state(2))


def test_restore_on_a_machine_with_fewer_gpus(monkeypatch):
    """A state saved by a 4-GPU run (every visible GPU's generator: the saved structure of satlib before
    per-device states) resumes on a 1-GPU machine: this device gets its own entry, nothing else is touched."""
    gpus = FakeGPUs(monkeypatch, count=1)
    saved = {**rng_state(), "cuda": [cuda_state(10 + i) for i in range(4)]}
    set_rng_state(saved, torch.device("cuda", 0))
    assert torch.equal(gpus.states[0], cuda_state(10)) and list(gpus.states) == [0]
    set_rng_state({**rng_state(), "cuda": cuda_state(7)}, torch.device("cuda", 0))  # today's structure
    assert torch.equal(gpus.states[0], cuda_state(7))


def test_restore_brings_back_python_numpy_and_torch_streams():
    state = rng_state(torch.device("cpu"))
    expected = random.random(), np.random.rand(), torch.rand(1)
    set_rng_state(state, torch.device("cpu"))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_resume_from_a_checkpoint_saved_with_more_gpus(trained_run, tmp_path, monkeypatch):
    """A 4-rank run on 4 GPUs saved 4 rank states, each with 4 CUDA generators; resume here continues."""
    out = tmp_path / "resumed"
    out.mkdir()
    state = load_checkpoint(trained_run.checkpoint)
    rank_state = state["rng"][0]
    state["rng"] = [{**rank_state, "cuda": [cuda_state(10 * rank + i) for i in range(4)]} for rank in range(4)]
    save_checkpoint(out / "checkpoint.pt", state)
    shutil.copy(trained_run.out / "metrics.json", out / "metrics.json")
    real_resume, gpus = train_module.resume_run, []

    def resume_with_one_gpu(run):  # one GPU visible while the checkpoint is read (the loaders stay on the CPU)
        with monkeypatch.context() as patch:
            gpus.append(FakeGPUs(patch, count=1))
            real_resume(run)

    monkeypatch.setattr(train_module, "resume_run", resume_with_one_gpu)
    config = load_config("synthetic_cpu", trained_run.overrides(out) + ["train.epochs=4", "train.device=cpu"])
    record = train(config, resume=True, progress=False)
    assert record["epoch"] == 4 and load_checkpoint(out / "checkpoint.pt")["epoch"] == 4
    assert len(gpus) == 1 and gpus[0].states == {}  # a CPU rank leaves the GPUs' generators alone
