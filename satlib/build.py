"""From a config to the objects of a run: model, datasets and loaders, loss, evaluator; and `load`.

The one place that reads a `Config` to make things. Training, evaluation, prediction, the demo and
the book build through it; below it, `satlib.models`, `satlib.data`, `satlib.losses` and
`satlib.evaluation` take plain arguments and never see a config. `load(checkpoint)` (exported as
`satlib.load`) rebuilds a trained model from the config its checkpoint stores, with a `ModelInfo`
of what it was trained with.

A synthetic dataset on disk is a CUB-layout folder (`satlib.data.build_dataset` says so); here it is
generated first, with the config's `data.synth` knobs, into `data.root` or a cache folder.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from satlib import losses
from satlib.checkpoint import CheckpointError, load_checkpoint, load_state_strict
from satlib.config import Config, config_from_dict
from satlib.data import Normalization, WSOLDataset, build_dataset, build_loader
from satlib.data.synthetic import ensure_synthetic_dataset
from satlib.evaluation import LocalizationEvaluator
from satlib.export import read_export
from satlib.info import LoadedModel, ModelInfo
from satlib.models import VARIANTS, convert_official_checkpoint, create_model, model_pretrained_cfg
from satlib.pretrained import resolve_weights
from satlib.runtime import Dist

# ----------------------------------------------------------------------------------------------
# the model, its input, its loss and its evaluator


def normalization(config: Config) -> Normalization:
    """(mean, std) of the model's input: `data.mean`/`data.std` if set, else the backbone's pretrained cfg's."""
    data = config.data
    if bool(data.mean) != bool(data.std) or (data.mean and (len(data.mean) != 3 or len(data.std) != 3)):
        raise ValueError(f"data.mean={data.mean} and data.std={data.std}: give both, three values each, or neither")
    if data.mean:
        return tuple(data.mean), tuple(data.std)
    cfg = model_pretrained_cfg(config.model.name)
    return tuple(cfg["mean"]), tuple(cfg["std"])


def build_model(config: Config, num_classes: int | None = None, *, with_pretrained: bool = True) -> nn.Module:
    """The model `config.model` describes for `config.data.img_size` inputs (num_classes overrides the config's).

    `model.pretrained` loads backbone weights ("timm": the variant's own, else a local file, or one shipped in
    satlib/pretrained by its file name: `satlib.pretrained.resolve_weights`) unless `with_pretrained=False`
    (a checkpoint's weights are about to replace them).
    """
    m = config.model
    pretrained: bool | str = False
    if with_pretrained and m.pretrained:
        pretrained = True if m.pretrained == "timm" else resolve_weights(m.pretrained)
    return create_model(m.name, num_classes=num_classes or m.num_classes, pretrained=pretrained,
                        img_size=config.data.img_size, drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate,
                        num_query_blocks=m.num_query_blocks, attn_impl=m.attn_impl,
                        freeze_backbone=m.freeze_backbone, train_query_blocks=m.train_query_blocks, **m.kwargs)


def build_loss(config: Config, method: str) -> nn.Module:
    """The training loss of a model's `method` with the config's weights (`satlib.losses.build_loss`)."""
    t = config.train
    return losses.build_loss(method, area_thr=t.area_thr, lambda_area=t.lambda_area, lambda_norm=t.lambda_norm)


def build_evaluator(config: Config) -> LocalizationEvaluator:
    """An empty evaluator for the config's protocol, thresholds, IoU thresholds, input size and backend."""
    e = config.eval
    return LocalizationEvaluator(thresholds=e.thresholds or None, iou_thresholds=tuple(e.iou_thresholds),
                                 image_size=config.data.img_size, protocol=e.protocol, backend=e.backend)


# ----------------------------------------------------------------------------------------------
# data: where it lives, the synthetic set, both splits and their loaders


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
        ensure_synthetic_dataset(root, **config.data.synth)
    if dist.is_initialized():
        dist.barrier()
    return root


def build_datasets(config: Config, root: str | Path | None = None, *, train: bool = True,
                   test: bool = True) -> tuple[WSOLDataset | None, WSOLDataset | None]:
    """(train set or None, test set or None) as the config describes; root None -> `resolve_data_root`.

    The test split's geometry is `eval.protocol`'s (the one protocol field of a config).
    """
    data = config.data
    root = resolve_data_root(config) if root is None else Path(root)
    common = dict(img_size=data.img_size, resize_size=data.resize_size, protocol=config.eval.protocol,
                  skip_bad=data.skip_bad, normalization=normalization(config))
    train_set = test_set = None
    if train:
        train_set = build_dataset(data.dataset, root, "train", per_class=data.per_class or None,
                                  seed=config.train.seed, hflip=data.hflip, **common)
    if test:
        test_set = build_test_split(config, root)
    return train_set, test_set


def build_test_split(config: Config, root: str | Path | None = None, split: str = "test") -> WSOLDataset:
    """A split scored as the test split is (`eval.protocol`'s geometry, masks for OpenImages, ten-crop
    inputs with `eval.tencrop`): "test", or "val" where wsolevaluation metadata has it."""
    data = config.data
    root = resolve_data_root(config) if root is None else Path(root)
    return build_dataset(data.dataset, root, split, img_size=data.img_size, resize_size=data.resize_size,
                         protocol=config.eval.protocol, skip_bad=data.skip_bad, normalization=normalization(config),
                         with_masks=data.dataset == "openimages", tencrop=config.eval.tencrop)


def train_loader(dataset: WSOLDataset, config: Config, ddp: Dist):
    """Shuffled per epoch from (seed, epoch) alone, so a resumed run sees the same order; each of the
    processes takes train.batch_size / processes images a step."""
    per_rank = config.train.batch_size // ddp.world
    if per_rank * ddp.world != config.train.batch_size:
        raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by "
                         f"{ddp.world} processes")
    return build_loader(dataset, per_rank, train=True, workers=_workers(config), distributed=True,
                        num_replicas=ddp.world, rank=ddp.rank, seed=config.train.seed,
                        decode_device=_decode_device(config, ddp))


def test_loader(dataset: WSOLDataset, config: Config, ddp: Dist):
    """Sequential; with several processes each evaluates its own shard (metrics are summed)."""
    return build_loader(dataset, config.eval.batch_size, train=False, workers=_workers(config),
                        distributed=ddp.enabled, num_replicas=ddp.world, rank=ddp.rank,
                        decode_device=_decode_device(config, ddp))


test_loader.__test__ = False  # a loader of the test split, not a test for pytest to collect


def _decode_device(config: Config, ddp: Dist) -> torch.device | None:
    return ddp.device if config.data.gpu_decode and ddp.device.type == "cuda" else None


def _workers(config: Config) -> int | None:
    return None if config.data.workers < 0 else config.data.workers


# ----------------------------------------------------------------------------------------------
# a trained model from its checkpoint


def load(checkpoint: str | Path, *, official: bool = False, device: str | torch.device = "cpu",
         config: Config | None = None) -> LoadedModel:
    """The model a checkpoint was trained as (eval mode, on `device`) and a `ModelInfo` of what it was trained
    with: threshold (the checkpoint's best_threshold), protocol, normalisation, classes, config, metrics.

    `checkpoint` is a file, or a folder `satlib export` wrote (`satlib.export`: the same model and info).
    `official=True` reads a checkpoint of the official SAT release (no stored config): the model is the
    official DeiT-T/S/B variant its width names (unless `config` names another), with the class count read
    from its head, 224 crops of 256-resized images, the SAT protocol.
    """
    if Path(checkpoint).is_dir() and not official:
        state, hub = read_export(checkpoint)
        section = hub["satlib"]
        config = config_from_dict(section["config"], source=f"{checkpoint}/config.json: satlib.config")
        return _loaded(config, state, checkpoint, device, class_names=hub.get("label_names") or (),
                       threshold=section["threshold"], metrics=section["metrics"])
    payload = load_checkpoint(checkpoint)
    if official:
        state = convert_official_checkpoint(payload)
        config = _official_config(state, checkpoint, copy.deepcopy(config) if config else Config())
    else:
        if "model" not in payload or "config" not in payload:
            raise CheckpointError(f"{checkpoint}: not a satlib checkpoint (keys: {sorted(payload)[:8]}); "
                                  f"for a checkpoint of the official SAT release pass --official")
        state = payload["model"]
        config = config_from_dict(payload["config"], source=f"{checkpoint}: config")
    return _loaded(config, state, checkpoint, device, class_names=payload.get("class_names") or (),
                   threshold=payload.get("best_threshold"), metrics=payload.get("metrics") or {})


def _loaded(config: Config, state: dict[str, torch.Tensor], source: str | Path, device: str | torch.device, *,
            class_names, threshold: float | None, metrics: dict) -> LoadedModel:
    """The model of `config` with the weights `state` (from `source`), in eval mode on `device`, and its info."""
    model = build_model(config, with_pretrained=False)
    load_state_strict(model, state, source)
    mean, std = normalization(config)
    info = ModelInfo(name=config.model.name, num_classes=config.model.num_classes, class_names=tuple(class_names),
                     img_size=config.data.img_size, threshold=threshold, protocol=config.eval.protocol,
                     mean=tuple(mean), std=tuple(std), config=config, metrics=dict(metrics))
    return LoadedModel(model.to(device).eval(), info)


def _official_config(state: dict[str, torch.Tensor], path: str | Path, config: Config) -> Config:
    """The config an official SAT checkpoint is rebuilt with: DeiT-T/S/B by its width, classes from its head."""
    if config.model.name == Config().model.name:  # the official release: DeiT-T/S/B by width
        by_width = {v["embed_dim"]: name for name, v in VARIANTS.items() if name.startswith("sat_deit_")}
        width = int(state["cls_token"].shape[-1])
        if width not in by_width:
            raise CheckpointError(f"{path}: cls_token width {width} matches no official SAT model "
                                  f"(DeiT-T/S/B: {sorted(by_width)})")
        config.model.name = by_width[width]
    config.model.num_classes = int(state["head.weight"].shape[0])
    config.data.img_size, config.data.resize_size = 224, 256
    return config
