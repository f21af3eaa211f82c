"""Datasets and loaders for a `Config`: where the data lives, generating the synthetic set, both splits.

A synthetic dataset on disk is a CUB-layout folder: `dataset_layout` says so, here and nowhere else,
so a config that names `synthetic` reads the generated folder as `cub` once it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from satlib.config import Config
from satlib.data.normalization import model_normalization
from satlib.data.transforms import Normalization
from satlib.runtime import Dist, work_limits


def dataset_layout(config: Config) -> str:
    """The layout `build_dataset` reads for `data.dataset`: a generated synthetic set is `cub`."""
    return "cub" if config.data.dataset == "synthetic" else config.data.dataset


def normalization(config: Config) -> Normalization:
    """(mean, std) of the model's input: `data.mean`/`data.std` if set, else the backbone's own (from timm)."""
    data = config.data
    if bool(data.mean) != bool(data.std) or (data.mean and (len(data.mean) != 3 or len(data.std) != 3)):
        raise ValueError(f"data.mean={data.mean} and data.std={data.std}: give both, three values each, or neither")
    if data.mean:
        return tuple(data.mean), tuple(data.std)
    return model_normalization(config.model.name)


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
    """The dataset folder, generating the synthetic set first (on the master process) if needed."""
    root = resolve_data_root(config)
    if config.data.dataset == "synthetic" and master:
        from satlib.data.synthetic import ensure_synthetic_dataset

        ensure_synthetic_dataset(root, **config.data.synth)
    if dist.is_initialized():
        dist.barrier()
    return root


def build_datasets(config: Config, root: str | Path | None = None, *, train: bool = True, test: bool = True):
    """(train set or None, test set or None) as the config describes; root None -> `resolve_data_root`."""
    from satlib.data import build_dataset

    data = config.data
    root = resolve_data_root(config) if root is None else Path(root)
    common = dict(img_size=data.img_size, resize_size=data.resize_size, protocol=data.protocol,
                  skip_bad=data.skip_bad, normalization=normalization(config))
    layout = dataset_layout(config)
    train_set = test_set = None
    if train:
        train_set = build_dataset(layout, root, "train", per_class=data.per_class or None,
                                  seed=config.train.seed, hflip=data.hflip, **common)
    if test:
        test_set = build_dataset(layout, root, "test", with_masks=data.dataset == "openimages",
                                 tencrop=config.eval.tencrop, **common)
    return train_set, test_set


def train_loader(dataset, config: Config, ddp: Dist):
    """Shuffled per epoch from (seed, epoch) alone, so a resumed run sees the same order (batch capped by
    SATLIB_SMOKE, see `satlib.runtime.work_limits`)."""
    from satlib.data import build_loader

    per_rank = config.train.batch_size // ddp.world
    if per_rank * ddp.world != config.train.batch_size:
        raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by "
                         f"{ddp.world} processes")
    batch_size = work_limits().train_batch_size(config.train.batch_size, config.train.grad_accum, ddp.world)
    per_rank = batch_size // ddp.world
    return build_loader(dataset, per_rank, train=True, workers=_workers(config), distributed=True,
                        num_replicas=ddp.world, rank=ddp.rank, seed=config.train.seed,
                        decode_device=_decode_device(config, ddp))


def test_loader(dataset, config: Config, ddp: Dist):
    """Sequential; with several processes each evaluates its own shard (metrics are summed); batch capped
    by SATLIB_SMOKE."""
    from satlib.data import build_loader

    batch_size = work_limits().eval_batch(config.eval.batch_size)
    return build_loader(dataset, batch_size, train=False, workers=_workers(config),
                        distributed=ddp.enabled, num_replicas=ddp.world, rank=ddp.rank,
                        decode_device=_decode_device(config, ddp))


test_loader.__test__ = False  # a loader of the test split, not a test for pytest to collect


def _decode_device(config: Config, ddp: Dist) -> torch.device | None:
    return ddp.device if config.data.gpu_decode and ddp.device.type == "cuda" else None


def _workers(config: Config) -> int | None:
    return None if config.data.workers < 0 else config.data.workers
