"""Training SAT: one readable loop, top to bottom.

    config -> (DDP) -> data -> model, loss, optimizer -> [resume] -> epochs of steps -> evaluate -> save

The recipe is the official one (train.py / train_ImageNet.py of the SAT release): AdamW with no
weight decay on 1-D parameters, biases, position embeddings and the cls/loc tokens; loss =
cross-entropy + |batch-mean map - area_thr| + mean(s(1-s)) of the smoothed map. The official code
builds a warmup+cosine schedule but never applies it, so its learning rate is constant:
`train.schedule: constant` reproduces that, `cosine` (default) applies the schedule it built.
The CAM and TS-CAM baselines (`cam_*`, `tscam_*` models) train with cross-entropy alone
(`satlib.losses.build_loss` follows the model's method). With `model.freeze_backbone` only the
trainable parameters (loc token, loc embedding, head) reach the optimizer; their count is printed.

The schedules are measured in optimizer steps (`learning_rate`, `constraint_ramp`), never in seconds,
so a seed fixes the run: same seed and thread count on one machine, same metrics. `train.time_budget`
is a safety cap only: when the wall clock reaches it the run finishes its optimizer step, evaluates,
saves, warns (`TimeBudgetExceeded`) and records `stopped_early` in its metrics; such a result is not
the recipe's reference one.

Multi-GPU: launch with `torchrun --nproc_per_node N -m satlib train ...`. Each rank sees
batch_size / N images per step (as the official DDP script), rank 0 logs and saves, training and
evaluation metrics are summed across ranks. As in the official code the area constraint is computed
on each rank's share of the batch.

Outputs in `train.out`: checkpoint.pt (written atomically at the end of every epoch), best.pt (the
evaluated epoch with the highest GT-known + Top-1 Loc, as the official "best_loc"), metrics.json
(the last record at the top level and the history of every epoch, rewritten atomically), config.yaml.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from satlib.checkpoint import build_model, load_checkpoint, save_checkpoint
from satlib.config import Config
from satlib.data.from_config import build_datasets, prepare_data, test_loader, train_loader
from satlib.evaluation.evaluate import evaluate_model
from satlib.files import atomic_write_text
from satlib.losses import build_loss
from satlib.models import count_parameters
from satlib.runtime import (
    Dist,
    allow_tf32,
    bf16_autocast,
    gather_rng_states,
    seed_everything,
    set_rng_state,
    setup_distributed,
    unwrap_model,
    work_limits,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TimeBudgetExceeded(UserWarning):
    """train.time_budget stopped the run before its last step: the result is not the reference one."""


# ----------------------------------------------------------------------------------------------
# optimizer and schedules (in optimizer steps)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Official groups: no decay for 1-D parameters, biases, and the model's `no_weight_decay()` names."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, total_steps: int, config: Config) -> float:
    """The lr of optimizer step `step` (0-based) out of `total_steps`.

    cosine: linear warmup from 0 over `warmup_epochs`, then
    min_lr + (lr - min_lr)/2 * (1 + cos(pi * i / n)) for the i-th of the n steps after warmup, as the
    official `cosine_scheduler`. constant: `lr` throughout (what the official train.py runs).
    """
    t = config.train
    if t.schedule == "constant":
        return t.lr
    warmup = int(round(min(t.warmup_epochs / max(t.epochs, 1), 1.0) * total_steps))
    if step < warmup:
        return t.lr * step / max(warmup - 1, 1)
    i, n = step - warmup, max(total_steps - warmup, 1)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + math.cos(math.pi * min(i / n, 1.0)))


def constraint_ramp(step: int, total_steps: int, config: Config) -> float:
    """Weight in [0, 1] on the area and normalization constraints at optimizer step `step`: a linear
    ramp over the first `train.constraint_warmup_epochs` (0 = the official constant weight 1)."""
    t = config.train
    if t.constraint_warmup_epochs <= 0:
        return 1.0
    return min(1.0, (step / max(total_steps, 1)) / (t.constraint_warmup_epochs / max(t.epochs, 1)))


# ----------------------------------------------------------------------------------------------
# the run: what the loop carries from step to step


@dataclass
class Run:
    """Everything one training run holds: process, data, model, loss, optimizer and progress."""

    config: Config
    ddp: Dist
    loader: object
    test_set: object
    class_names: list[str]
    model: nn.Module  # DDP-wrapped with several processes
    step_model: nn.Module  # `model`, compiled when train.compile is set
    loss_fn: nn.Module  # build_loss(model.method): SAT's loss, or cross-entropy for the baselines
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0  # wall-clock seconds spent by earlier sessions of a resumed run
    time_is_up: bool = False  # the train.time_budget cap was reached (every rank agrees)
    work_capped: bool = False  # SATLIB_SMOKE's cap on optimizer steps was reached (see satlib.runtime)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    @property
    def out_dir(self) -> Path:
        return Path(self.config.train.out)


class Clock:
    """Wall-clock seconds of the run (resumed sessions included) against the train.time_budget cap."""

    def __init__(self, budget: float, ddp: Dist, elapsed: float = 0.0) -> None:
        self.budget, self.ddp, self.start = budget, ddp, time.perf_counter() - elapsed

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        """Whether the budget is spent; with several processes, on any rank (one small all-reduce, so that
        all stop at the same step)."""
        if self.budget <= 0:
            return False
        spent = self.seconds() >= self.budget
        if self.ddp.enabled:
            flag = torch.tensor(float(spent), device=self.ddp.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            spent = bool(flag.item())
        return spent


def train(config: Config, *, resume: bool = False, progress: bool = True, quiet: bool = False,
          on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train as `config` says; returns the last epoch's record (losses, accuracy, eval metrics).

    `progress` shows a progress bar per epoch; `quiet` drops the log lines (one per epoch), warnings stay.
    """
    token = _QUIET.set(quiet)
    try:
        return _train(config, resume=resume, progress=progress, on_epoch=on_epoch)
    finally:
        _QUIET.reset(token)


def _train(config: Config, *, resume: bool, progress: bool, on_epoch: Callable[[dict], None] | None) -> dict:
    run = build_run(config)
    with allow_tf32(run.ddp.device):  # TF32 for this run only: the flags are restored after it
        if resume:
            resume_run(run)
        write_config(run)
        clock = Clock(config.train.time_budget, run.ddp, run.elapsed)
        record: dict = run.history[-1] if run.history else {}
        stopped = resume and clock.out_of_time()  # a resumed run whose budget earlier sessions spent
        while run.epoch < config.train.epochs and not stopped:
            sums = run_epoch(run, clock, progress)
            record = epoch_record(run, sums, clock)
            stopped = record["stopped_early"] or run.work_capped
            last = stopped or run.epoch == config.train.epochs
            if last or config.train.evaluates_after(run.epoch):
                record.update(evaluate_run(run, cam=last))
            run.history.append(record)
            _log(run.ddp, _summary(record))
            save_run(run, record)
            if record["stopped_early"] and run.ddp.master:
                warnings.warn(record["stop_reason"], TimeBudgetExceeded, stacklevel=2)
            if on_epoch is not None:
                on_epoch(record)
        if run.ddp.enabled:
            dist.barrier()
        return record


# ----------------------------------------------------------------------------------------------
# the named steps of `train`


def build_run(config: Config) -> Run:
    """Process group, seeds, data (generated if synthetic), model, loss and optimizer of a fresh run."""
    t = config.train
    ddp = setup_distributed(t.device)
    seed_everything(t.seed + ddp.rank)
    train_set, test_set = build_datasets(config, prepare_data(config, ddp.master))
    if config.model.num_classes != train_set.num_classes:
        _log(ddp, f"model.num_classes={config.model.num_classes} -> {train_set.num_classes} (from the dataset)")
        config.model.num_classes = train_set.num_classes
    fit_batch_to_data(config, len(train_set), ddp)
    loader = train_loader(train_set, config, ddp)
    steps_per_epoch = len(loader) // t.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images give no full step of batch_size={t.batch_size} "
                         f"x grad_accum={t.grad_accum}")
    model = build_model(config).to(ddp.device)
    trainable, total = count_parameters(model)
    _log(ddp, f"{config.model.name}: {trainable:,} trainable parameters of {total:,}"
              + (" (frozen backbone)" if config.model.freeze_backbone else ""))
    loss_fn = build_loss(model.method, area_thr=t.area_thr, lambda_area=t.lambda_area,
                         lambda_norm=t.lambda_norm).to(ddp.device)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr)
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None)
    return Run(config=config, ddp=ddp, loader=loader, test_set=test_set, class_names=list(train_set.class_names),
               model=model, step_model=torch.compile(model, backend=t.compile_backend) if t.compile else model,
               loss_fn=loss_fn,
               optimizer=optimizer, steps_per_epoch=steps_per_epoch)


def fit_batch_to_data(config: Config, images: int, ddp: Dist) -> None:
    """A training set smaller than one step (batch_size x grad_accum images) is all of every step: lower
    `train.batch_size` to the largest multiple of the process count that fits, with a log line (in place).

    So a few-shot run (`data.per_class` 1, 3, ...) trains `train.epochs` steps of the whole set with any
    recipe's batch size; the checkpoint's config records the batch that ran."""
    t = config.train
    fitted = images // t.grad_accum // ddp.world * ddp.world
    if t.batch_size * t.grad_accum <= images or fitted == 0:  # fits, or not one image a process: see build_run
        return
    _log(ddp, f"train.batch_size={t.batch_size} -> {fitted} (the training set holds {images} images)")
    t.batch_size = fitted


def resume_run(run: Run) -> None:
    """Continue from train.out/checkpoint.pt: weights, optimizer, progress and every rank's RNG."""
    path = run.out_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    state = load_checkpoint(path)
    unwrap_model(run.model).load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.epoch, run.step, run.history = state["epoch"], state["step"], list(state.get("history", []))
    run.elapsed = float(state.get("elapsed", 0.0))
    set_rng_state(state["rng"][min(run.ddp.rank, len(state["rng"]) - 1)], run.ddp.device)
    _log(run.ddp, f"resumed {path} at epoch {run.epoch}, step {run.step}")


def write_config(run: Run) -> None:
    """train.out/config.yaml: the resolved config (rank 0)."""
    if run.ddp.master:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.out_dir / "config.yaml", yaml.safe_dump(run.config.to_dict(), sort_keys=False))


SUMS = ("loss", "cls", "area", "norm", "correct", "images")  # what an epoch adds up, per image


def run_epoch(run: Run, clock: Clock, progress: bool) -> Tensor:
    """One pass over the training loader, or up to the time cap; returns the `SUMS` (6,) on the device."""
    config, t, ddp = run.config, run.config.train, run.ddp
    steps_cap = work_limits().train_steps  # SATLIB_SMOKE: a few steps of every code path
    run.loader.sampler.set_epoch(run.epoch)
    run.model.train()
    sums = torch.zeros(len(SUMS), device=ddp.device)
    bar = _progress_bar(run, progress)
    for micro, batch in enumerate(bar):
        if batch is None:  # every image of this batch was unreadable (data.skip_bad)
            continue
        images = batch["images"].to(ddp.device, non_blocking=True)
        labels = batch["labels"].to(ddp.device, non_blocking=True)
        accumulating = (micro + 1) % t.grad_accum != 0
        with bf16_autocast(ddp.device, enabled=t.amp), _no_sync(run.model, ddp.enabled and accumulating):
            out = run.step_model(images)
            loss, terms = run.loss_fn(out, labels,
                                      constraint_weight=constraint_ramp(run.step, run.total_steps, config))
            (loss / t.grad_accum).backward()
        with torch.no_grad():  # running sums stay on the device: no host sync per step
            n = len(labels)
            correct = (out.logits.argmax(-1) == labels).sum()
            sums += torch.stack([loss.detach() * n, terms["cls"] * n, terms["area"] * n, terms["norm"] * n,
                                 correct.float(), torch.full((), float(n), device=ddp.device)])
        if accumulating:
            continue
        lr = optimizer_step(run)
        if run.step % t.log_every == 0:  # the only host sync inside an epoch
            _check_finite(sums[0], run)
            bar.set_postfix(loss=f"{(sums[0] / sums[5]).item():.3f}", lr=f"{lr:.2e}")
        if clock.out_of_time():  # a safety cap: stop after this optimizer step
            run.time_is_up = True
            break
        if steps_cap and run.step >= steps_cap:
            run.work_capped = True
            break
    if ddp.enabled:
        dist.all_reduce(sums)
    _check_finite(sums[0], run)
    run.epoch += 1
    return sums


def optimizer_step(run: Run) -> float:
    """Set the step's lr, clip, step and clear the gradients; returns the lr used."""
    t = run.config.train
    lr = learning_rate(run.step, run.total_steps, run.config)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    if t.clip_grad > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_grad)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return lr


def epoch_record(run: Run, sums: Tensor, clock: Clock) -> dict:
    """The epoch's means over its images, its lr and time, and whether the time cap stops the run here."""
    loss, cls, area, norm, correct, seen = sums.tolist()
    stopped_early = run.time_is_up and run.step < run.total_steps
    record = {"epoch": run.epoch, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"],
              "loss": loss / seen, "loss_cls": cls / seen, "loss_area": area / seen, "loss_norm": norm / seen,
              "train_top1": 100.0 * correct / seen, "time": clock.seconds(), "stopped_early": stopped_early}
    if run.work_capped:
        record["smoke"] = True  # SATLIB_SMOKE capped the work: a check of the code paths, not a result
    if stopped_early:
        record["stop_reason"] = (
            f"train.time_budget={clock.budget:g}s reached after optimizer step {run.step} of {run.total_steps}: "
            f"the run stopped early, so its metrics are not the recipe's reference result "
            f"(raise train.time_budget, or set it to 0 for no cap)")
    return record


def evaluate_run(run: Run, *, cam: bool) -> dict:
    """The evaluator's metrics on the test split (each rank scores its shard, counts are summed)."""
    loader = test_loader(run.test_set, run.config, run.ddp)
    return evaluate_model(run.model, loader, run.config, run.ddp.device, cam=cam)


def save_run(run: Run, record: dict) -> None:
    """checkpoint.pt, best.pt when this epoch is the best so far, metrics.json (rank 0 writes)."""
    rngs = gather_rng_states(run.ddp)  # every rank takes part
    if not run.ddp.master:
        return
    payload = {"model": unwrap_model(run.model).state_dict(), "optimizer": run.optimizer.state_dict(),
               "config": run.config.to_dict(), "epoch": run.epoch, "step": run.step, "history": run.history,
               "elapsed": record["time"], "rng": rngs, "class_names": run.class_names,
               "best_threshold": record.get("best_threshold"), "metrics": record}
    save_checkpoint(run.out_dir / "checkpoint.pt", payload)
    if _is_best(record, run.history):  # the official keeps the best GT-known + Top-1 Loc ("best_loc")
        save_checkpoint(run.out_dir / "best.pt", {k: v for k, v in payload.items() if k != "optimizer"})
    write_metrics(run.out_dir / "metrics.json", record, run.history)


def write_metrics(path: Path, record: dict, history: list[dict], **extra) -> None:
    """metrics.json: the last epoch's record (evaluator keys at the top level), extras, and the history."""
    atomic_write_text(path, json.dumps({**record, **extra, "history": history}, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# small helpers


def _is_best(record: dict, history: list[dict]) -> bool:
    """Whether this evaluated epoch has the highest GT-known + Top-1 Loc so far."""
    score = lambda r: r.get("gt_known", -1.0) + r.get("top1_loc", 0.0)  # noqa: E731
    return "gt_known" in record and all(score(record) > score(r) for r in history if r is not record)


def _no_sync(model: nn.Module, skip: bool):
    """DDP's no_sync() while accumulating gradients (one all-reduce per optimizer step), else nothing."""
    return model.no_sync() if skip else contextlib.nullcontext()


def _check_finite(loss_sum: Tensor, run: Run) -> None:
    """TrainingDiverged on every rank when the loss is NaN or infinite on any (one small all-reduce), so no
    rank is left waiting in the next step's collectives."""
    diverged = (~torch.isfinite(loss_sum)).float()
    if run.ddp.enabled:
        dist.all_reduce(diverged, op=dist.ReduceOp.MAX)
    if diverged.item():
        value = loss_sum.item()
        checkpoint = run.out_dir / "checkpoint.pt"
        kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint.is_file() else \
            "no checkpoint was written yet"
        became = f"{value}" if not math.isfinite(value) else "non-finite on another rank"
        raise TrainingDiverged(f"loss became {became} in epoch {run.epoch + 1} (by step {run.step}); "
                               f"training stopped and {kept}. Lower train.lr or check the data.")


def _progress_bar(run: Run, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(run.loader, desc=f"epoch {run.epoch + 1}/{run.config.train.epochs}", leave=False,
                disable=not (progress and run.ddp.master))


_QUIET = contextvars.ContextVar("satlib_train_quiet", default=False)  # train(quiet=True) while it runs


def _log(ddp: Dist, text: str) -> None:
    if ddp.master and not _QUIET.get():
        from tqdm.auto import tqdm

        tqdm.write(text)


def _summary(record: dict) -> str:
    text = (f"epoch {record['epoch']}: loss {record['loss']:.3f} (cls {record['loss_cls']:.3f}, "
            f"area {record['loss_area']:.3f}, norm {record['loss_norm']:.3f}), "
            f"train top-1 {record['train_top1']:.1f}%")
    if "gt_known" in record:
        text += (f" | test top-1 {record['top1_cls']:.1f}, GT-known {record['gt_known']:.1f}, "
                 f"top-1 loc {record['top1_loc']:.1f} @ thr {record['best_threshold']:g}")
    return text + f" [{record['time']:.0f}s]" + (" (stopped early: time budget)" if record.get("stopped_early") else "")
