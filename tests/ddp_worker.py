"""One rank of a 2-process gloo scenario, launched by tests/test_ddp.py through torch.distributed.run.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py SCENARIO DATA_ROOT OUT

Each rank writes OUT/rank<r>.json: what it saw (its step, its metrics, or the exception it raised).
Scenarios:
    time_budget   rank 1's clock runs 10^6 s ahead from its third reading: both ranks must stop together
    empty_shard   evaluate a 1-image test set: rank 1's shard is empty
    nonfinite     rank 1's loss becomes NaN at its second optimizer step: both ranks must raise
    augment       each rank's first train batches (epochs 0 and 1, 1 worker) of a set of copies of one image,
                  and those of a fresh loader set to epoch 1 (a resumed run): digests of the images
    cli           `satlib train` as torchrun runs it (the run creates the process group): what each rank printed,
                  and whether a process group is left after it
    empty_micro   (data.skip_bad, grad_accum 2) every image of rank 1's second micro-batch is unreadable: both
                  ranks must finish with the same steps and the same weights after every step
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from satlib.build import build_datasets, build_model, test_loader, train_loader
from satlib.config import load_config
from satlib.evaluate import evaluate_model
from satlib.losses import SATLoss
from satlib.runtime import setup_distributed
from satlib.train import TrainingDiverged, train

from tiny_recipe import tiny_overrides

# A patch-embedding SAT without BatchNorm (as test_ddp.py's), so replicas stay identical.
DDP_MODEL = {"patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2}


def config_for(data_root: str, out: Path, **extra):
    overrides = tiny_overrides(data_root, out, **{"model.name": "sat_deit_tiny_patch16_224", "model.kwargs": DDP_MODEL,
                                                  "data.hflip": False, "train.device": "cpu", **extra})
    return load_config("synthetic_cpu", overrides)


def clock_ahead_on_rank_one(rank: int) -> None:
    if rank != 1:
        return
    real, calls = time.perf_counter, [0]

    def ahead() -> float:
        calls[0] += 1
        return real() + (1e6 if calls[0] > 2 else 0.0)

    time.perf_counter = ahead  # satlib.train reads time.perf_counter through the module


def nan_loss_on_rank_one(rank: int) -> None:
    if rank != 1:
        return
    real, calls = SATLoss.forward, [0]

    def poisoned(self, out, labels, **kwargs):
        total, terms = real(self, out, labels, **kwargs)
        calls[0] += 1
        return (total * float("nan") if calls[0] == 2 else total), terms

    SATLoss.forward = poisoned


def unreadable_second_micro_batch_on_rank_one(rank: int) -> None:
    if rank != 1:
        return
    import satlib.data.loader as loader_module

    real, calls = loader_module.FinishBatches.__call__, [0]

    def finish(self, samples):
        calls[0] += 1
        return None if calls[0] == 2 else real(self, samples)  # what it returns when every sample was skipped

    loader_module.FinishBatches.__call__ = finish  # the train loader's collate_fn


def losses_per_rank() -> list:
    """Every micro-batch this rank computes a loss for (SATLoss calls), as a growing list."""
    seen: list = []
    real = SATLoss.forward

    def counted(self, out, labels, **kwargs):
        seen.append(len(labels))
        return real(self, out, labels, **kwargs)

    SATLoss.forward = counted
    return seen


def weights_after_every_step() -> list:
    """An optimizer-step hook's record: the sum of every parameter after each step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    sums: list = []

    def record(optimizer, args, kwargs) -> None:
        sums.append(sum(float(p.detach().double().sum()) for group in optimizer.param_groups for p in group["params"]))

    register_optimizer_step_post_hook(record)
    return sums


def first_batches(loader, epochs: tuple[int, ...]) -> list[str]:
    """A digest of the images of the first batch of each of `epochs`, in order."""
    digests = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        images = next(iter(loader))["images"]
        digests.append(hashlib.sha1(images.numpy().tobytes()).hexdigest())
    return digests


def cli_run(data_root: str, out: Path) -> dict:
    """`satlib train` on this rank, its standard output captured."""
    import contextlib
    import io

    from satlib.cli import main as cli_main

    from tiny_recipe import tiny_overrides

    printed = io.StringIO()
    overrides = tiny_overrides(data_root, out / "run", **{"model.name": "sat_deit_tiny_patch16_224",
                                                          "model.kwargs": DDP_MODEL, "train.epochs": 1})
    with contextlib.redirect_stdout(printed):
        code = cli_main(["train", "--config", "synthetic_cpu", "--quiet", "--device", "cpu", *overrides])
    return {"code": code, "printed": printed.getvalue(), "group_left": dist.is_initialized()}


OWN_GROUP = ("cli",)  # scenarios whose process group the code under test creates


def run(scenario: str, data_root: str, out: Path) -> dict:
    if scenario == "cli":
        return cli_run(data_root, out)
    rank = dist.get_rank()
    if scenario == "time_budget":
        clock_ahead_on_rank_one(rank)
        config = config_for(data_root, out / "run", **{"train.epochs": 3, "train.time_budget": 1000.0})
        record = train(config, progress=False)
        return {"step": record["step"], "epoch": record["epoch"], "stopped_early": record["stopped_early"]}
    if scenario == "empty_shard":
        config = config_for(data_root, out / "run")
        ddp = setup_distributed("cpu")
        _, test_set = build_datasets(config, train=False)
        one_image = test_set.select([0])
        loader = test_loader(one_image, config, ddp)
        torch.manual_seed(0)
        model = build_model(config, num_classes=3)
        return {"shard": len(loader.sampler), "metrics": evaluate_model(model, loader, config, ddp.device, cam=True)}
    if scenario == "nonfinite":
        nan_loss_on_rank_one(rank)
        config = config_for(data_root, out / "run", **{"train.epochs": 2, "train.log_every": 1})
        try:
            train(config, progress=False)
        except TrainingDiverged as err:
            return {"diverged": str(err)}
        return {"diverged": None}
    if scenario == "augment":
        config = config_for(data_root, out / "run", **{"data.hflip": True, "data.resize_size": 40, "data.workers": 1})
        ddp = setup_distributed("cpu")
        train_set, _ = build_datasets(config, test=False)
        copies = train_set.select([0] * len(train_set))  # one image everywhere: only the augmentation differs
        straight = first_batches(train_loader(copies, config, ddp), epochs=(0, 1))
        resumed = first_batches(train_loader(copies, config, ddp), epochs=(1,))
        return {"epoch0": straight[0], "epoch1": straight[1], "resumed1": resumed[0]}
    if scenario == "empty_micro":
        unreadable_second_micro_batch_on_rank_one(rank)
        sums = weights_after_every_step()
        config = config_for(data_root, out / "run", **{"data.skip_bad": True, "train.grad_accum": 2,
                                                       "train.epochs": 2, "train.eval_every": 0})
        losses = losses_per_rank()
        record = train(config, progress=False)
        return {"step": record["step"], "weights": sums, "skipped": 2 * 3 - len(losses)}
    raise ValueError(f"unknown scenario {scenario!r}")


def main() -> None:
    scenario, data_root, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if scenario not in OWN_GROUP:
        dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # a rank left alone fails in a minute
    rank = int(os.environ["RANK"])
    try:
        result = run(scenario, data_root, out)
    except Exception as err:  # noqa: BLE001 - the test reads what each rank raised
        result = {"error": f"{type(err).__name__}: {err}"}
    (out / f"rank{rank}.json").write_text(json.dumps(result, default=str))
    sys.exit(0)


if __name__ == "__main__":
    main()
