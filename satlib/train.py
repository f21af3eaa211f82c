"""Training SAT: one readable loop, top to bottom.

    config -> (DDP) -> data -> model, optimizer -> [resume] -> epochs of steps -> evaluate -> checkpoint

The recipe is the official one (train.py / train_ImageNet.py of the SAT release): AdamW with no
weight decay on 1-D parameters, biases, position embeddings and the cls/loc tokens; loss =
cross-entropy + |batch-mean map - area_thr| + mean(s(1-s)) of the smoothed map. The official code
builds a warmup+cosine schedule but never applies it, so its learning rate is constant:
`train.schedule: constant` reproduces that, `cosine` (default) applies the schedule it built.

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
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from satlib.files import atomic_write_text
from satlib.checkpoint import load_checkpoint, save_checkpoint
from satlib.config import Config, config_from_dict


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------
# processes and devices


@dataclass
class Dist:
    """Where this process sits: rank among world processes, and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as torch.device understands it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but no CUDA device is available")
    return device


def setup_distributed(device_name: str) -> Dist:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK), or run alone."""
    if int(os.environ.get("RANK", -1)) == -1:
        return Dist(device=resolve_device(device_name))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a training step draws from, in a form `weights_only` loading accepts."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------------------------
# data


def resolve_data_root(config: Config) -> Path:
    """The dataset folder; for `synthetic` with no root, a cache folder keyed by the generator knobs."""
    if config.data.root:
        return Path(config.data.root).expanduser()
    if config.data.dataset != "synthetic":
        raise ValueError(f"data.root is empty: pass --data-root DIR (the {config.data.dataset} folder)")
    return synthetic_cache_dir(config.data.synth)


def synthetic_cache_dir(knobs: dict) -> Path:
    """~/.cache/satlib/synthetic-<knobs> (or $SATLIB_CACHE/...): generated once, reused after."""
    base = Path(os.environ.get("SATLIB_CACHE", Path.home() / ".cache" / "satlib"))
    tag = "-".join(f"{k}{v}" for k, v in sorted(knobs.items())) or "default"
    return base / f"synthetic-{tag}"


def prepare_data(config: Config, master: bool = True) -> Path:
    """Make sure the dataset exists (generating the synthetic one on the master process)."""
    root = resolve_data_root(config)
    if config.data.dataset == "synthetic" and master:
        from satlib.data.synthetic import ensure_synthetic_dataset

        ensure_synthetic_dataset(root, **config.data.synth)
    if dist.is_initialized():
        dist.barrier()
    return root


def build_datasets(config: Config, root: Path, *, train: bool = True, test: bool = True):
    """(train set or None, test set or None) as the config describes."""
    from satlib.data import build_dataset

    data = config.data
    common = dict(img_size=data.img_size, resize_size=data.resize_size, protocol=data.protocol,
                  skip_bad=data.skip_bad)
    name = "cub" if data.dataset == "synthetic" else data.dataset
    train_set = test_set = None
    if train:
        train_set = build_dataset(name, root, "train", per_class=data.per_class or None,
                                  seed=config.train.seed, hflip=data.hflip, **common)
    if test:
        test_set = build_dataset(name, root, "test", with_masks=data.dataset == "openimages",
                                 tencrop=config.eval.tencrop, **common)
    return train_set, test_set


def _decode_device(config: Config, ddp: Dist) -> torch.device | None:
    return ddp.device if config.data.gpu_decode and ddp.device.type == "cuda" else None


def train_loader(dataset, config: Config, ddp: Dist):
    """Shuffled per epoch from (seed, epoch) alone, so a resumed run sees the same order."""
    from satlib.data import build_loader

    per_rank = config.train.batch_size // ddp.world
    if per_rank * ddp.world != config.train.batch_size:
        raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by "
                         f"{ddp.world} processes")
    return build_loader(dataset, per_rank, train=True, workers=_workers(config), distributed=True,
                        num_replicas=ddp.world, rank=ddp.rank, seed=config.train.seed,
                        decode_device=_decode_device(config, ddp))


def test_loader(dataset, config: Config, ddp: Dist):
    """Sequential; with several processes each evaluates its own shard (metrics are summed)."""
    from satlib.data import build_loader

    return build_loader(dataset, config.eval.batch_size, train=False, workers=_workers(config),
                        distributed=ddp.enabled, num_replicas=ddp.world, rank=ddp.rank,
                        decode_device=_decode_device(config, ddp))


def _workers(config: Config) -> int | None:
    return None if config.data.workers < 0 else config.data.workers


# ----------------------------------------------------------------------------------------------
# model and optimizer


def build_model(config: Config, num_classes: int | None = None) -> nn.Module:
    """create_model from the config (pretrained backbone when model.pretrained is set)."""
    from satlib.models import create_model

    m = config.model
    pretrained: bool | str = True if m.pretrained == "timm" else (m.pretrained or False)
    return create_model(m.name, num_classes=num_classes or m.num_classes, pretrained=pretrained,
                        img_size=config.data.img_size, drop_rate=m.drop_rate,
                        drop_path_rate=m.drop_path_rate, num_query_blocks=m.num_query_blocks,
                        attn_impl=m.attn_impl, **m.kwargs)


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


def learning_rate(step: int, total_steps: int, config: Config, progress: float | None = None) -> float:
    """The lr of optimizer step `step` (0-based) out of `total_steps`.

    cosine: linear warmup from 0 over `warmup_epochs`, then
    min_lr + (lr - min_lr)/2 * (1 + cos(pi * i / n)) for the i-th of the n steps after warmup, as the
    official `cosine_scheduler`. With a wall-clock budget `progress` in [0, 1] replaces step/total.
    """
    t = config.train
    if t.schedule == "constant":
        return t.lr
    if t.schedule != "cosine":
        raise ValueError(f"train.schedule={t.schedule!r}: expected 'cosine' or 'constant'")
    warm_frac = min(t.warmup_epochs / max(t.epochs, 1), 1.0)
    if progress is None:
        warmup = int(round(warm_frac * total_steps))
        if step < warmup:
            return t.lr * step / max(warmup - 1, 1)
        i, n = step - warmup, max(total_steps - warmup, 1)
    else:
        if progress < warm_frac:
            return t.lr * progress / warm_frac
        i, n = progress - warm_frac, max(1.0 - warm_frac, 1e-9)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + math.cos(math.pi * min(i / n, 1.0)))


def constraint_ramp(step: int, total_steps: int, config: Config, progress: float | None = None) -> float:
    """Weight in [0, 1] on the area and normalization constraints: a linear ramp over the first
    `train.constraint_warmup_epochs` (0 = the official constant weight 1)."""
    t = config.train
    if t.constraint_warmup_epochs <= 0:
        return 1.0
    frac = progress if progress is not None else step / max(total_steps, 1)
    return min(1.0, frac / (t.constraint_warmup_epochs / max(t.epochs, 1)))


def _budget_progress(start: float, t, step: int, total_steps: int) -> float | None:
    """With a wall-clock budget, how far the run is: the larger of the budget spent and the steps
    done, so the schedule anneals fully whichever ends first. None without a budget."""
    if t.time_budget <= 0:
        return None
    return max((time.perf_counter() - start) / t.time_budget, step / max(total_steps, 1))


# ----------------------------------------------------------------------------------------------
# evaluation


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate(model: nn.Module, loader, config: Config, device: torch.device, *, cam: bool = False,
             progress: bool = False) -> dict:
    """Localization metrics of `model` on `loader` (satlib.evaluation's keys, percentages).

    With `cam=True` the same images are also scored with the network's own CAM (the conv head's map
    of the ground-truth class), reported as `cam_gt_known`, `cam_top1_loc`, `cam_maxboxacc`.
    """
    from tqdm.auto import tqdm

    from satlib.evaluation import LocalizationEvaluator, ten_crop_probs

    net = _unwrap(model)
    was_training = net.training
    net.eval()
    make = lambda: LocalizationEvaluator(  # noqa: E731
        thresholds=config.eval.thresholds or None, iou_thresholds=tuple(config.eval.iou_thresholds),
        image_size=config.data.img_size, protocol=config.eval.protocol)
    sat_eval, cam_eval = make(), (make() if cam else None)
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        if batch is None:
            continue
        images = batch["images"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        boxes = batch["boxes"]  # the evaluator checks them on the host and moves them once
        masks = batch.get("masks")
        if masks is not None:  # 1 foreground, 0 background, 255 ignored (wsolevaluation's convention)
            masks = masks.to(torch.uint8).masked_fill(batch["ignores"], 255) if "ignores" in batch else masks
        with _autocast(device, config):
            out = net(images)
        logits = out.logits.float()
        if config.eval.tencrop and "images_resized" in batch:
            logits = ten_crop_probs(lambda x: net(x).logits.float(),
                                    batch["images_resized"].to(device), config.data.img_size)
        sat_eval.update(out.loc_map.float(), boxes, logits=logits, labels=labels,
                        gt_masks=None if masks is None else masks.to(device))
        if cam_eval is not None:
            cams = out.class_maps.float()[torch.arange(len(labels), device=device), labels]
            cam_eval.update(cams, boxes, logits=logits, labels=labels)
    sat_eval.all_reduce()
    metrics = sat_eval.compute()
    if cam_eval is not None:
        cam_eval.all_reduce()
        cam_metrics = cam_eval.compute()
        metrics.update({f"cam_{k}": cam_metrics[k] for k in ("gt_known", "top1_loc", "maxboxacc",
                                                              "best_threshold")})
    net.train(was_training)
    return metrics


def _autocast(device: torch.device, config: Config):
    enabled = device.type == "cuda" and config.train.amp
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# ----------------------------------------------------------------------------------------------
# the loop


def _log(ddp: Dist, text: str) -> None:
    if ddp.master:
        from tqdm.auto import tqdm

        tqdm.write(text)


def train(config: Config, *, resume: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train as `config` says; returns the last epoch's record (losses, accuracy, eval metrics)."""
    from tqdm.auto import tqdm

    from satlib.losses import SATLoss

    ddp = setup_distributed(config.train.device)
    t = config.train
    out_dir = Path(t.out)
    seed_everything(t.seed + ddp.rank)
    if ddp.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    root = prepare_data(config, ddp.master)
    train_set, test_set = build_datasets(config, root)
    num_classes = train_set.num_classes
    if config.model.num_classes != num_classes:
        _log(ddp, f"model.num_classes={config.model.num_classes} -> {num_classes} (from the dataset)")
        config.model.num_classes = num_classes
    loader = train_loader(train_set, config, ddp)
    steps_per_epoch = len(loader) // t.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images give no full step of batch_size={t.batch_size} "
                         f"x grad_accum={t.grad_accum}")
    total_steps = steps_per_epoch * t.epochs

    model = build_model(config, num_classes).to(ddp.device)
    loss_fn = SATLoss(t.area_thr, t.lambda_area, t.lambda_norm).to(ddp.device)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr)
    epoch, step, history, elapsed = 0, 0, [], 0.0
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step, history = state["epoch"], state["step"], list(state.get("history", []))
        elapsed = float(state.get("elapsed", 0.0))
        set_rng_state(state["rng"][min(ddp.rank, len(state["rng"]) - 1)])
        _log(ddp, f"resumed {checkpoint_path} at epoch {epoch}, step {step}")

    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None)
    step_model = torch.compile(model) if t.compile else model
    if ddp.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    record: dict = history[-1] if history else {}
    start = time.perf_counter() - elapsed
    while epoch < t.epochs:
        if t.time_budget > 0 and time.perf_counter() - start >= t.time_budget:
            break
        loader.sampler.set_epoch(epoch)
        model.train()
        sums = torch.zeros(6, device=ddp.device)  # loss, cls, area, norm, correct, images
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.epochs}", leave=False,
                   disable=not (progress and ddp.master))
        for micro, batch in enumerate(bar):
            if batch is None:  # every image of this batch was unreadable (data.skip_bad)
                continue
            images = batch["images"].to(ddp.device, non_blocking=True)
            labels = batch["labels"].to(ddp.device, non_blocking=True)
            ramp = constraint_ramp(step, total_steps, config, _budget_progress(start, t, step, total_steps))
            loss_fn.lambda_area, loss_fn.lambda_norm = t.lambda_area * ramp, t.lambda_norm * ramp
            accumulating = (micro + 1) % t.grad_accum != 0
            with _autocast(ddp.device, config), _no_sync(model, ddp.enabled and accumulating):
                out = step_model(images)
                loss, terms = loss_fn(out, labels)
                (loss / t.grad_accum).backward()
            with torch.no_grad():  # running sums stay on the device: no host sync per step
                n = len(labels)
                correct = (out.logits.argmax(-1) == labels).sum()
                sums += torch.stack([loss.detach() * n, terms["cls"] * n, terms["area"] * n, terms["norm"] * n,
                                     correct.float(), torch.full((), float(n), device=ddp.device)])
            if accumulating:
                continue
            lr = learning_rate(step, total_steps, config, _budget_progress(start, t, step, total_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if t.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % t.log_every == 0:  # the only host sync inside an epoch
                _check_finite(sums[0], epoch, step, checkpoint_path)
                bar.set_postfix(loss=f"{(sums[0] / sums[5]).item():.3f}", lr=f"{lr:.2e}")
            if t.time_budget > 0 and time.perf_counter() - start >= t.time_budget:
                break
        if ddp.enabled:
            dist.all_reduce(sums)
        _check_finite(sums[0], epoch, step, checkpoint_path)
        epoch += 1
        loss_sum, cls_sum, area_sum, norm_sum, correct, seen = sums.tolist()
        record = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                  "loss": loss_sum / seen, "loss_cls": cls_sum / seen, "loss_area": area_sum / seen,
                  "loss_norm": norm_sum / seen, "train_top1": 100.0 * correct / seen,
                  "time": time.perf_counter() - start}
        out_of_time = t.time_budget > 0 and record["time"] >= t.time_budget
        last = epoch == t.epochs or out_of_time
        if (t.eval_every and epoch % t.eval_every == 0) or last:
            eval_loader = test_loader(test_set, config, ddp)
            record.update(evaluate(model, eval_loader, config, ddp.device, cam=last))
        history.append(record)
        _log(ddp, _summary(record))
        rngs = _gather_rng(ddp)
        if ddp.master:
            payload = {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                       "config": config.to_dict(), "epoch": epoch, "step": step, "history": history,
                       "elapsed": record["time"], "rng": rngs, "class_names": list(train_set.class_names),
                       "best_threshold": record.get("best_threshold"), "metrics": record}
            save_checkpoint(checkpoint_path, payload)
            if _is_best(record, history):  # the official keeps the best GT-known + Top-1 Loc ("best_loc")
                save_checkpoint(out_dir / "best.pt", {k: v for k, v in payload.items() if k != "optimizer"})
            write_metrics(out_dir / "metrics.json", record, history)
        if on_epoch is not None:
            on_epoch(record)
        if out_of_time:
            break
    if ddp.enabled:
        dist.barrier()
    return record


def _is_best(record: dict, history: list[dict]) -> bool:
    """Whether this evaluated epoch has the highest GT-known + Top-1 Loc so far."""
    score = lambda r: r.get("gt_known", -1.0) + r.get("top1_loc", 0.0)  # noqa: E731
    return "gt_known" in record and all(score(record) > score(r) for r in history if r is not record)


def _no_sync(model: nn.Module, skip: bool):
    """DDP's no_sync() while accumulating gradients (one all-reduce per optimizer step), else nothing."""
    return model.no_sync() if skip else contextlib.nullcontext()


def write_metrics(path: Path, record: dict, history: list[dict], **extra) -> None:
    """metrics.json: the last epoch's record (evaluator keys at the top level), extras, and the history."""
    atomic_write_text(path, json.dumps({**record, **extra, "history": history}, indent=2) + "\n")


def _check_finite(loss_sum: Tensor, epoch: int, step: int, checkpoint: Path) -> None:
    if not torch.isfinite(loss_sum):
        kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint.is_file() else \
            "no checkpoint was written yet"
        raise TrainingDiverged(f"loss became {loss_sum.item()} in epoch {epoch + 1} (by step {step}); "
                               f"training stopped and {kept}. Lower train.lr or check the data.")


def _gather_rng(ddp: Dist) -> list:
    """Every rank's RNG state (rank order), so each rank resumes its own stream."""
    state = rng_state()
    if not ddp.enabled:
        return [state]
    states = [None] * ddp.world
    dist.all_gather_object(states, state)
    return states


def _summary(record: dict) -> str:
    text = (f"epoch {record['epoch']}: loss {record['loss']:.3f} (cls {record['loss_cls']:.3f}, "
            f"area {record['loss_area']:.3f}, norm {record['loss_norm']:.3f}), "
            f"train top-1 {record['train_top1']:.1f}%")
    if "gt_known" in record:
        text += (f" | test top-1 {record['top1_cls']:.1f}, GT-known {record['gt_known']:.1f}, "
                 f"top-1 loc {record['top1_loc']:.1f} @ thr {record['best_threshold']:g}")
    return text + f" [{record['time']:.0f}s]"


def load_train_config(path: str | Path) -> Config:
    """The config a training run stored in its checkpoint."""
    return config_from_dict(load_checkpoint(path)["config"], source=str(path))
