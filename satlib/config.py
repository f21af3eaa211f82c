"""Run configuration: four dataclasses, loaded from plain YAML and overridden by `section.key=value`.

A config file has up to four sections, each a flat mapping of the fields below:

    model: {name: sat_deit_small_patch16_224, num_classes: 200}
    train: {lr: 1.0e-4, epochs: 30}

Every checkpoint stores the resolved config (`asdict(config)`), so evaluation and prediction rebuild
the same model and input size from the checkpoint alone. A field with a fixed set of choices is typed
`Literal[...]` and checked when the file or override is read (`choices("data.dataset")` lists them).
A key that moved (`MOVED`) is an error naming its new place in a file or override, and is mapped
silently in a checkpoint's stored config, so that older checkpoints still load.

`SATLIB_SMOKE=1` in the environment keeps every model, recipe, dataset reader and code path and only
caps the work, through config fields that `apply_smoke` sets on every config `load_config` returns
(and on the config a checkpoint is evaluated with): `train.max_steps` (2 optimizer steps),
`train.batch_size` (at most 8 images a step), `eval.max_batches` (2 batches), `eval.batch_size` (8),
and `model.pretrained: timm` becomes random init (nothing is downloaded; a local weights file still
loads). `apply_smoke` is the one reader of the switch.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class ModelConfig:
    name: str = "sat_tiny_convstem"
    num_classes: int = 200
    pretrained: str = ""  # "" = random init, "timm" = timm's pretrained cfg, else a local weights file
    drop_path_rate: float = 0.1
    drop_rate: float = 0.0
    num_query_blocks: int = 3
    attn_impl: Literal["sdpa", "explicit"] = "sdpa"  # fused, or every attention matrix materialised
    freeze_backbone: bool = False  # train only the loc token, loc embedding and head
    train_query_blocks: bool = False  # with freeze_backbone: the final num_query_blocks blocks train too
    kwargs: dict = field(default_factory=dict)  # any other create_model kwargs (embed_dim, depth, ...)


@dataclass
class DataConfig:
    dataset: Literal["synthetic", "cub", "imagenet", "openimages"] = "synthetic"
    root: str = ""  # dataset folder; for `synthetic`, where the generated set is cached
    img_size: int = 224  # the crop the model sees
    resize_size: int = 256  # resize before the crop (official: 256 -> 224); the test-time geometry is eval.protocol's
    per_class: int = 0  # > 0: few-shot training subset of that many images per class
    workers: int = -1  # -1 = choose from the machine
    skip_bad: bool = False  # log and skip unreadable images / malformed rows instead of failing
    hflip: bool = True  # random horizontal flips when training (official: on)
    gpu_decode: bool = False  # decode each batch's JPEGs in one nvJPEG call on the training GPU
    synth: dict = field(default_factory=dict)  # make_synthetic_dataset kwargs when dataset=synthetic
    mean: list = field(default_factory=list)  # per-channel normalisation; empty = the model's backbone's own
    std: list = field(default_factory=list)  # (ImageNet's for DeiT/DINOv2/conv stem, OpenAI's for CLIP, ...)


@dataclass
class TrainConfig:
    out: str = "runs/sat"
    epochs: int = 30
    batch_size: int = 256  # images per step; a smaller training set is the whole step (train.fit_batch_to_data)
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    decay_tokens: bool = False  # also decay pos_embed and the cls/loc tokens (the official runs do; timm/DeiT do not)
    warmup_epochs: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"  # the official train.py never applies its cosine
    grad_accum: int = 1
    area_thr: float = 0.25
    lambda_area: float = 1.0
    lambda_norm: float = 1.0
    constraint_warmup_epochs: float = 0.0  # ramp both constraints in from 0 (official: no ramp)
    clip_grad: float = 0.0  # max gradient norm; 0 = no clipping (official)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager" runs on a CPU without a compiler)
    seed: int = 6
    deterministic: bool = False  # deterministic kernels only (torch, cuDNN, cuBLAS): on a GPU, same seed, same metrics
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 1  # epochs between evaluations; 0 = only after the last epoch
    eval_start: int = 0  # no evaluation before this epoch (1-based) but the last; official CUB: from 26
    time_budget: float = 0.0  # seconds; > 0 is a safety cap: the run stops early (not the reference result)
    log_every: int = 20
    tensorboard: bool = False  # rank 0 writes out/tensorboard/ (satlib.tensorboard; pip install satlib[tensorboard])
    max_steps: int = 0  # optimizer steps over all epochs; 0 = no cap (SATLIB_SMOKE: 2; the run is marked "smoke")

    def evaluates_after(self, epoch: int) -> bool:
        """Whether a run evaluates after epoch `epoch` (1-based): the last one, and every `eval_every`-th from
        `eval_start` on (a run the time cap or `max_steps` stops also evaluates where it stops)."""
        return epoch >= self.epochs or (self.eval_every > 0 and epoch >= self.eval_start
                                        and epoch % self.eval_every == 0)


@dataclass
class EvalConfig:
    protocol: Literal["sat", "wsoleval"] = "sat"  # test-time geometry and box convention (satlib.evaluation)
    thresholds: list = field(default_factory=list)  # empty = the protocol's own list
    iou_thresholds: list = field(default_factory=lambda: [30, 50, 70])
    tencrop: bool = False
    batch_size: int = 128
    max_batches: int = 0  # batches of one evaluation (per process); 0 = all (SATLIB_SMOKE: 2)
    backend: Literal["auto", "propagate", "union_find", "host"] = "auto"  # components: satlib.evaluation.components


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return asdict(self)


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


def _field_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check `value` against a field's type; ints pass for floats, None never does."""
    origin = typing.get_origin(kind) or kind
    if origin is Literal:
        if value not in typing.get_args(kind) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected one of {', '.join(typing.get_args(kind))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"{where}: union field types are not supported")
    if origin is float and isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if origin is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if origin is str and value is None:
        return ""
    if not isinstance(value, origin):
        raise ConfigError(f"{where}: expected {origin.__name__}, got {value!r}")
    return value


MOVED = {"data.protocol": "eval.protocol"}  # old key -> where it lives now


def _set(config: Config, dotted: str, value: Any, source: str) -> None:
    if dotted in MOVED:
        raise ConfigError(f"{source}: '{dotted}' moved to '{MOVED[dotted]}' (one field sets both the test-time "
                          f"geometry and the box convention)")
    section_name, _, key = dotted.partition(".")
    section = getattr(config, section_name, None) if section_name in _SECTIONS else None
    if section is None or not key:
        raise ConfigError(f"{source}: unknown key '{dotted}' (sections: {', '.join(_SECTIONS)})")
    if "." in key and key.split(".", 1)[0] in ("kwargs", "synth"):  # model.kwargs.depth=6
        mapping_name, sub_key = key.split(".", 1)
        getattr(section, mapping_name)[sub_key] = value
        return
    types_ = _field_types(section)
    if key not in types_:
        raise ConfigError(f"{source}: unknown key '{dotted}'")
    setattr(section, key, _coerce(value, types_[key], f"{source}: '{dotted}'"))


_SECTIONS = tuple(f.name for f in dataclasses.fields(Config))


def apply_mapping(config: Config, mapping: dict, source: str) -> Config:
    """Set every `section: {key: value}` of `mapping` on `config` (in place)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(mapping).__name__}")
    for section_name, values in mapping.items():
        if section_name not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section_name}' (sections: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section_name}' must be a mapping")
        for key, value in values.items():
            _set(config, f"{section_name}.{key}", value, source)
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """'train.lr=1e-3' -> ('train.lr', 0.001); the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.lstrip("-").partition("=")
    if not sep:
        raise ConfigError(f"override '{text}': expected section.key=value")
    return key.strip(), (yaml.safe_load(raw) if raw != "" else "")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults, then the YAML file at `path`, then each `section.key=value` override in order, then the
    smoke caps when `SATLIB_SMOKE=1` (`apply_smoke`)."""
    config = Config()
    if path is not None:
        path = resolve_config_path(path)
        with open(path) as f:
            mapping = yaml.safe_load(f) or {}
        apply_mapping(config, mapping, str(path))
    for text in overrides:
        key, value = parse_override(text)
        _set(config, key, value, f"override '{text}'")
    return apply_smoke(config)


PACKAGED_CONFIGS = Path(__file__).parent / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A config file by path, or by the name of a packaged recipe ("cub", "synthetic_cpu", ...)."""
    path = Path(path)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if packaged.is_file():
        return packaged
    raise ConfigError(f"config file not found: {path} (packaged recipes: {', '.join(packaged_recipes())})")


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped in satlib/configs, sorted ("cub", "imagenet", ...)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def choices(dotted: str) -> tuple[str, ...]:
    """The values a fixed-choice field accepts, e.g. choices("data.dataset") -> ("synthetic", "cub", ...)."""
    section_name, _, key = dotted.partition(".")
    section = getattr(Config(), section_name, None) if section_name in _SECTIONS else None
    kind = _field_types(section).get(key) if section is not None else None
    if typing.get_origin(kind) is not Literal:
        raise KeyError(f"{dotted!r} is not a config field with a fixed set of choices")
    return typing.get_args(kind)


def config_from_dict(mapping: dict, source: str = "checkpoint") -> Config:
    """Rebuild a Config stored by `Config.to_dict()` (e.g. in a checkpoint); a key that has since moved
    (`MOVED`) is read at its new place unless the mapping also has that one."""
    return apply_mapping(Config(), _moved_keys(mapping), source)


def _moved_keys(mapping: dict) -> dict:
    """`mapping` with each `MOVED` key at its new place (the new one wins when both are there)."""
    if not isinstance(mapping, dict):
        return mapping
    mapping = {name: dict(values) if isinstance(values, dict) else values for name, values in mapping.items()}
    for old, new in MOVED.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        values = mapping.get(old_section)
        if not isinstance(values, dict) or old_key not in values:
            continue
        value = values.pop(old_key)
        target = mapping.setdefault(new_section, {})
        if isinstance(target, dict):
            target.setdefault(new_key, value)
    return mapping


# ----------------------------------------------------------------------------------------------
# the smoke switch: every code path, a capped amount of work

SMOKE_ENV = "SATLIB_SMOKE"
SMOKE_STEPS = 2  # train.max_steps
SMOKE_STEP_IMAGES = 8  # images per optimizer step, over every process and accumulated micro-batch
SMOKE_EVAL_BATCHES = 2  # eval.max_batches
SMOKE_EVAL_BATCH_SIZE = 8  # eval.batch_size


def smoke() -> bool:
    """Whether `SATLIB_SMOKE` asks for a smoke run ("1", "true", "yes", "on"; unset, "", "0", "false" = no)."""
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{SMOKE_ENV}={value!r}: expected 1 (smoke run) or 0")


def apply_smoke(config: Config, *, world: int | None = None) -> Config:
    """Under `SATLIB_SMOKE=1`, cap `config`'s work in place (see the module docstring); else leave it as it is.

    `world` is the number of training processes (default: torchrun's WORLD_SIZE, else 1): a smoke step
    keeps at least one image per process, and its batch a multiple of them.
    """
    if not smoke():
        return config
    t, e = config.train, config.eval
    world = world or int(os.environ.get("WORLD_SIZE", 1))
    t.max_steps = min(t.max_steps, SMOKE_STEPS) if t.max_steps else SMOKE_STEPS
    t.batch_size = min(t.batch_size, max(world, SMOKE_STEP_IMAGES // max(t.grad_accum, 1) // world * world))
    e.max_batches = min(e.max_batches, SMOKE_EVAL_BATCHES) if e.max_batches else SMOKE_EVAL_BATCHES
    e.batch_size = min(e.batch_size, SMOKE_EVAL_BATCH_SIZE)
    if config.model.pretrained == "timm":
        warnings.warn(f"{SMOKE_ENV}=1: model.pretrained=timm skipped, {config.model.name} starts from random "
                      f"weights (nothing is downloaded; a smoke run checks code paths, not results)", stacklevel=2)
        config.model.pretrained = ""
    return config
