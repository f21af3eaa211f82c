"""Training SAT: one readable loop, top to bottom.

    config -> (DDP) -> data -> model, loss, optimizer -> [resume] -> epochs of steps -> evaluate -> save

The recipe is the official one (train.py / train_ImageNet.py of the SAT release): AdamW with no
weight decay on 1-D parameters and biases; loss = cross-entropy + |batch-mean map - area_thr| +
mean(s(1-s)) of the smoothed map. The position embedding and the cls/loc tokens are decayed too in
the official runs (their optimizer is built on the DataParallel/DDP wrapper, where the model's
`no_weight_decay()` is never found): `train.decay_tokens: true` does the same (configs/cub.yaml and
imagenet.yaml), false (the default) keeps them out of decay as timm and DeiT do. The official code
builds a warmup+cosine schedule but never applies it, so its learning rate is constant:
`train.schedule: constant` reproduces that, `cosine` (default) applies the schedule it built.
The CAM and TS-CAM baselines (`cam_*`, `tscam_*` models) train with cross-entropy alone
(`satlib.losses.build_loss` follows the model's method). With `model.freeze_backbone` only the
trainable parameters (loc token, loc embedding, head) reach the optimizer; their count is printed.

The schedules are measured in optimizer steps (`learning_rate`, `constraint_ramp`), never in seconds,
so on a CPU a seed fixes the run: same seed and thread count on one machine, same metrics. On a GPU
that holds only with `train.deterministic: true` (same GPU model, driver, torch, batch size and
process count): torch, cuDNN and cuBLAS then use deterministic kernels (an op without one raises), at
some cost in speed (the GPU suite's model section measures it). Without it the backward passes'
atomic additions (attention, convolutions, scatters) and cuDNN's kernel choice change the last bits
of the gradients from run to run, so two runs of one seed drift apart and their metrics differ a
little: the same recipe, not the same run.

The data order depends on (seed, epoch) and each image's crop and flip on (seed, epoch, image) alone
(`satlib.data.SeededSampler`), whatever rank, worker or process loads it; everything else (drop-path)
draws from each rank's generators, seeded seed + rank. `--resume` restores the weights, the optimizer
and every rank's generators from the last epoch's checkpoint, so a resumed run continues as the
uninterrupted one would have. With `train.grad_accum` a step gathers that many micro-batches; an
epoch's trailing ones form one last, smaller step (`accumulation`).

`train.time_budget` is a safety cap only: when the wall clock reaches it the run finishes its
optimizer step, evaluates, saves, warns (`TimeBudgetExceeded`) and records `stopped_early` in its
metrics; such a result is not the recipe's reference one.

Multi-GPU: launch with `torchrun --nproc_per_node N -m satlib train ...`. Each rank sees
batch_size / N images per step (as the official DDP script), rank 0 logs and saves, training and
evaluation metrics are summed across ranks. As in the official code the area constraint is computed
on each rank's share of the batch. A process's GPU is LOCAL_RANK (torchrun), else SLURM_LOCALID
(srun), else RANK modulo the GPUs (`satlib.runtime.local_rank`); a run destroys the process group it
created when it ends.

Outputs in `train.out`: checkpoint.pt (written atomically at the end of every epoch), best.pt (the
evaluated epoch with the highest GT-known + Top-1 Loc, as the official "best_loc"), metrics.json
(the last record at the top level and the history of every epoch, rewritten atomically), config.yaml.
"""

from __future__ import annotations

import contextlib
import contextvars
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
from tqdm.auto import tqdm

from satlib.build import build_datasets, build_loss, build_model, prepare_data, test_loader, train_loader
from satlib.checkpoint import load_checkpoint, save_checkpoint
from satlib.config import Config
from satlib.evaluate import evaluate_model
from satlib.files import atomic_write_text, write_metrics
from satlib.models import count_parameters
from satlib.runtime import (
    Dist,
    allow_tf32,
    any_rank,
    bf16_autocast,
    deterministic_algorithms,
    gather_rng_states,
    seed_everything,
    set_rng_state,
    setup_distributed,
    teardown_distributed,
    unwrap_model,
)
from satlib.tensorboard import RunBoard, open_board


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TimeBudgetExceeded(UserWarning):
    """train.time_budget stopped the run before its last step: the result is not the reference one."""


# ----------------------------------------------------------------------------------------------
# optimizer and schedules (in optimizer steps)


def param_groups(model: nn.Module, weight_decay: float, *, decay_tokens: bool = False) -> list[dict]:
    """AdamW's groups: no decay for 1-D parameters, biases and, unless `decay_tokens`, the model's
    `no_weight_decay()` names (position embedding, cls/loc tokens).

    `decay_tokens=True` is what the official scripts run: their `create_optimizerv2(args, model)` gets
    the DataParallel/DDP wrapper, which has no `no_weight_decay`, so only 1-D parameters and biases skip
    decay (DeiT-S: 76,800 more decayed values, 0.4% of the decayed ones).
    """
    skip = set() if decay_tokens or not hasattr(model, "no_weight_decay") else model.no_weight_decay()
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


def accumulation(micro: int, micro_batches: int, grad_accum: int) -> tuple[int, bool]:
    """(the micro-batches in micro-batch `micro`'s optimizer step, whether the step is taken after it), for
    micro-batch `micro` (0-based) of an epoch of `micro_batches`.

    Steps gather `grad_accum` micro-batches; when the epoch's count is not a multiple of it, the trailing
    ones form one last, smaller step whose losses are divided by their own count (timm's rule), so no
    gradient is carried into the next epoch. 7 micro-batches at grad_accum 4: 4 + 3, two steps.
    """
    trailing = micro_batches % grad_accum
    in_step = trailing if trailing and micro >= micro_batches - trailing else grad_accum
    return in_step, (micro + 1) % grad_accum == 0 or micro + 1 == micro_batches


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
    board: RunBoard | None = None  # TensorBoard, rank 0 with train.tensorboard (satlib.tensorboard)
    time_is_up: bool = False  # the train.time_budget cap was reached (every rank agrees)
    work_capped: bool = False  # train.max_steps was reached (SATLIB_SMOKE sets it: satlib.config.apply_smoke)

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
        self._posted: tuple | None = None  # the last reading sent to the other ranks: (pending all-reduce, flag)

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        """Whether to stop after this optimizer step. Alone: whether the budget is spent. With several
        processes: whether any rank had spent it at the previous check. Each check posts this rank's reading
        as a non-blocking all-reduce over the CPU control group and acts on the one posted before, so every
        rank stops after the same step and no step waits for the GPU or for the other ranks (a run of
        several processes stops one step after the budget is spent)."""
        if self.budget <= 0:
            return False
        spent = self.seconds() >= self.budget
        if not self.ddp.enabled:
            return spent
        decided = self.collect()
        flag = torch.tensor(float(spent))
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.ddp.control, async_op=True)
        self._posted = (work, flag)
        return decided

    def spent_everywhere(self) -> bool:
        """Whether the budget is spent on any rank, now (a blocking all-reduce: the start of a resumed run)."""
        return self.budget > 0 and any_rank(self.seconds() >= self.budget, self.ddp)

    def collect(self) -> bool:
        """The last posted reading (whether any rank had spent the budget); False when none is pending. Every
        rank calls it once at the end of a run, as each posted the same readings."""
        if self._posted is None:
            return False
        work, flag = self._posted
        self._posted = None
        work.wait()
        return bool(flag.item())


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
    run.board = open_board(config, run.test_set, run.out_dir, master=run.ddp.master)  # stops here without the package
    try:
        return _train_run(run, config, resume=resume, progress=progress, on_epoch=on_epoch)
    finally:
        if run.board is not None:
            run.board.close()
        teardown_distributed(run.ddp)  # the process group this run created, if it did


def _train_run(run: Run, config: Config, *, resume: bool, progress: bool,
               on_epoch: Callable[[dict], None] | None) -> dict:
    # TF32 and (train.deterministic) deterministic kernels for this run only: the flags are restored after it
    with allow_tf32(run.ddp.device), deterministic_algorithms(config.train.deterministic):
        if resume:
            resume_run(run)
        write_config(run)
        clock = Clock(config.train.time_budget, run.ddp, run.elapsed)
        record: dict = run.history[-1] if run.history else {}
        stopped = resume and clock.spent_everywhere()  # a resumed run whose budget earlier sessions spent
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
        clock.collect()  # the reading still in flight, on every rank
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
    steps_per_epoch = math.ceil(len(loader) / t.grad_accum)  # a shorter last step takes the trailing micro-batches
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images give no full micro-batch of train.batch_size="
                         f"{t.batch_size} over {ddp.world} process(es)")
    model = build_model(config).to(ddp.device)
    trainable, total = count_parameters(model)
    _log(ddp, f"{config.model.name}: {trainable:,} trainable parameters of {total:,}"
              + (" (frozen backbone)" if config.model.freeze_backbone else ""))
    loss_fn = build_loss(config, model.method).to(ddp.device)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay, decay_tokens=t.decay_tokens), lr=t.lr)
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
    """One pass over the training loader, or up to the time cap; returns the `SUMS` (6,) on the device.

    A micro-batch whose every image was unreadable (data.skip_bad) is skipped; with several processes
    every rank skips it together (one CPU all-reduce per micro-batch, only with data.skip_bad), so
    their gradient all-reduces stay paired, and a step whose synchronising micro-batch was skipped
    averages its gradients across ranks itself. A step with no readable image changes nothing but
    still counts, so the schedules keep their place.
    """
    config, t, ddp = run.config, run.config.train, run.ddp
    run.loader.sampler.set_epoch(run.epoch)
    run.model.train()
    sums = torch.zeros(len(SUMS), device=ddp.device)
    bar = _progress_bar(run, progress)
    for micro, batch in enumerate(bar):
        in_step, steps = accumulation(micro, len(run.loader), t.grad_accum)
        skipped = batch is None  # every image of this micro-batch was unreadable (data.skip_bad)
        if config.data.skip_bad and ddp.enabled:
            skipped = any_rank(skipped, ddp)
        if not skipped:
            sums += micro_step(run, batch, in_step, sync=steps)
        if not steps:
            continue
        if skipped and ddp.enabled:
            average_gradients(run)  # the micro-batch that would have all-reduced them was skipped
        lr = optimizer_step(run)
        if run.step % t.log_every == 0:  # the only host sync inside an epoch
            _check_finite(sums[0], run)
            loss = (sums[0] / sums[5]).item()
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            if run.board is not None:
                run.board.step(run.step, loss=loss, lr=lr)
        if clock.out_of_time():  # a safety cap: stop after this optimizer step
            run.time_is_up = True
            break
        if t.max_steps and run.step >= t.max_steps:  # SATLIB_SMOKE: a few steps of every code path
            run.work_capped = True
            break
    if ddp.enabled:
        dist.all_reduce(sums)
    _check_finite(sums[0], run)
    run.epoch += 1
    return sums


def micro_step(run: Run, batch: dict, in_step: int, *, sync: bool) -> Tensor:
    """Forward and backward of one micro-batch, its loss divided by the `in_step` micro-batches of its step
    (gradients all-reduced across ranks when `sync`); returns its `SUMS` (6,) on the device."""
    config, ddp = run.config, run.ddp
    images = batch["images"].to(ddp.device, non_blocking=True)
    labels = batch["labels"].to(ddp.device, non_blocking=True)
    with bf16_autocast(ddp.device, enabled=config.train.amp), _no_sync(run.model, ddp.enabled and not sync):
        out = run.step_model(images)
        loss, terms = run.loss_fn(out, labels,
                                  constraint_weight=constraint_ramp(run.step, run.total_steps, config))
        (loss / in_step).backward()
    with torch.no_grad():  # running sums stay on the device: no host sync per step
        n = len(labels)
        correct = (out.logits.argmax(-1) == labels).sum()
        return torch.stack([loss.detach() * n, terms["cls"] * n, terms["area"] * n, terms["norm"] * n,
                            correct.float(), torch.full((), float(n), device=ddp.device)])


def average_gradients(run: Run) -> None:
    """Each gradient averaged across ranks, as DDP's all-reduce does (the same parameters hold one on every
    rank: the ranks ran the same micro-batches)."""
    for param in run.model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(run.ddp.world)


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
        record["smoke"] = True  # train.max_steps capped the work: a check of the code paths, not a result
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
    if run.board is not None:
        run.board.epoch(record, unwrap_model(run.model))


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
    return tqdm(run.loader, desc=f"epoch {run.epoch + 1}/{run.config.train.epochs}", leave=False,
                disable=not (progress and run.ddp.master))


_QUIET = contextvars.ContextVar("satlib_train_quiet", default=False)  # train(quiet=True) while it runs


def _log(ddp: Dist, text: str) -> None:
    if ddp.master and not _QUIET.get():
        tqdm.write(text)


def _summary(record: dict) -> str:
    text = (f"epoch {record['epoch']}: loss {record['loss']:.3f} (cls {record['loss_cls']:.3f}, "
            f"area {record['loss_area']:.3f}, norm {record['loss_norm']:.3f}), "
            f"train top-1 {record['train_top1']:.1f}%")
    if "gt_known" in record:
        text += (f" | test top-1 {record['top1_cls']:.1f}, GT-known {record['gt_known']:.1f}, "
                 f"top-1 loc {record['top1_loc']:.1f} @ thr {record['best_threshold']:g}")
    return text + f" [{record['time']:.0f}s]" + (" (stopped early: time budget)" if record.get("stopped_early") else "")
