"""The book's switches: the SATLIB_* environment of a chapter's kernel, read once and checked, as the
`Settings` every chapter holds.

    settings = setup()                   # a chapter's first call: the switches, seeds, the figure style
    config = settings.shared_recipe()    # the recipes, with the switches' folders filled in
    run = settings.run(config)           # the run cache (satlib.book.runs)

The switches, all optional (unset: a CPU, the embedded synthetic stand-in, short runs, as the
committed outputs show):

    SATLIB_DEVICE               auto | cpu | cuda | cuda:N   (default cpu)
    SATLIB_CUB_ROOT             a CUB-200-2011 folder in the official layout
    SATLIB_IMAGENET_ROOT        an ILSVRC-2012 folder as data_scripts/prepare_imagenet.py writes it
    SATLIB_FULL_RUN             1: the paper's recipes at full length (0 or unset: short runs)
    SATLIB_OFFICIAL_CHECKPOINT  the authors' released CUB checkpoint (.pth.tar), evaluated by chapter 6
    SATLIB_PRETRAINED           a local ImageNet DeiT-S weights file (.pth or .safetensors): the paper's
                                recipes start from it instead of downloading (a machine without internet)
    SATLIB_SMOKE                1: every training run and evaluation capped to a few batches
                                (train.max_steps, eval.max_batches: satlib.config.apply_smoke)
    SATLIB_CACHE                where generated data and runs are kept (default ~/.cache/satlib)

A bad value stops the chapter with a `SettingsError` that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from satlib.book.fit import fit_to_device, memory_note
from satlib.book.recipes import (
    baseline_recipe,
    book_recipe,
    cub_recipe,
    cublike_recipe,
    fewshot_recipe,
    imagenet_recipe,
    recipe_notes,
    stand_in,
    tiny_recipe,
)
from satlib.book.runs import BookRun, RunCache
from satlib.config import Config, smoke
from satlib.runtime import resolve_device, seed_everything

WEIGHT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".safetensors")  # what satlib.models.read_state_dict reads
DEIT_S_WEIGHTS = "deit_small_patch16_224-cd65a155.pth from dl.fbaipublicfiles.com/deit/"  # timm's DeiT-S source
FIGURE_STYLE = {"figure.dpi": 80, "font.size": 9, "image.interpolation": "nearest"}
DEFAULT_CACHE = Path.home() / ".cache" / "satlib"


class SettingsError(ValueError):
    """A SATLIB_* environment variable holds a value the book cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """What the SATLIB_* switches say, checked; `setup()` returns it. The chapters' one handle: the recipes
    (satlib.book.recipes), fitted to the device (satlib.book.fit), and the run cache (satlib.book.runs)."""

    device: torch.device
    cub_root: Path | None = None
    imagenet_root: Path | None = None
    full_run: bool = False
    official_checkpoint: Path | None = None
    pretrained: Path | None = None  # SATLIB_PRETRAINED: the DeiT-S weights file of the paper's recipes
    smoke: bool = False
    cache_root: Path = DEFAULT_CACHE

    @property
    def cache(self) -> Path:
        """The book's own cache folder: generated data and runs (`$SATLIB_CACHE/book`)."""
        return self.cache_root / "book"

    def summary(self) -> str:
        """One line: device, data, recipe length, smoke."""
        data = [f"CUB at {self.cub_root}" if self.cub_root else "",
                f"ImageNet at {self.imagenet_root}" if self.imagenet_root else ""]
        data = ", ".join(d for d in data if d) or "the synthetic stand-in"
        text = f"device {self.device}; data: {data}; runs: {'full (the paper)' if self.full_run else 'short'}"
        if self.official_checkpoint:
            text += f"; official checkpoint {self.official_checkpoint.name}"
        if self.pretrained:
            text += f"; pretrained backbone {self.pretrained.name}"
        return text + ("; SMOKE: every run capped to 2 steps" if self.smoke else "")

    # ------------------------------------------------------------------------------------------
    # recipes (satlib.book.recipes), a paper recipe fitted to the device (satlib.book.fit)

    def stand_in(self, *, size: int = 64, per_class: int = 100, num_classes: int = 4) -> Path:
        """The embedded synthetic set (CUB layout, seed 0) in the book's cache, generated once."""
        return stand_in(self.cache, size=size, per_class=per_class, num_classes=num_classes)

    def tiny_recipe(self, *overrides: str) -> Config:
        """The tiny SAT of chapter 0 on the 64-px stand-in (`satlib.book.recipes.tiny_recipe`)."""
        return tiny_recipe(self.stand_in(), *overrides)

    def cub_recipe(self, *overrides: str) -> Config:
        """configs/cub.yaml on SATLIB_CUB_ROOT, fitted to the device: the paper's 30 epochs with SATLIB_FULL_RUN,
        else `SHORT_RUN`."""
        if self.cub_root is None:
            raise SettingsError("SATLIB_CUB_ROOT is not set: the CUB recipe needs the CUB-200-2011 folder")
        return self.fit_to_device(cub_recipe(self.cub_root, *self.weights_overrides(), *overrides,
                                             full_run=self.full_run))

    def imagenet_recipe(self, *overrides: str) -> Config:
        """configs/imagenet.yaml on SATLIB_IMAGENET_ROOT as one process runs it (4 micro-batches of 128, as the
        official 4 GPUs), fitted to the device."""
        if self.imagenet_root is None:
            raise SettingsError("SATLIB_IMAGENET_ROOT is not set: the ImageNet recipe needs the ILSVRC folder")
        return self.fit_to_device(imagenet_recipe(self.imagenet_root, *self.weights_overrides(), *overrides))

    def book_recipe(self, *overrides: str) -> Config:
        """The book's run on the stand-in (`satlib.book.recipes.book_recipe`, configs/synthetic_book.yaml)."""
        return book_recipe(*overrides)

    def fewshot_recipe(self, per_class: int, *overrides: str) -> Config:
        """The few-shot run on the stand-in: `per_class` images a class (configs/synthetic_fewshot.yaml)."""
        return fewshot_recipe(per_class, *overrides)

    def cublike_recipe(self, *overrides: str) -> Config:
        """The shared run on objects at CUB's scale (configs/synthetic_book_cublike.yaml)."""
        return cublike_recipe(*overrides)

    def shared_recipe(self, *overrides: str) -> Config:
        """The run the chapters share: `cub_recipe` with SATLIB_CUB_ROOT, else `book_recipe`."""
        return self.cub_recipe(*overrides) if self.cub_root else self.book_recipe(*overrides)

    def shared_baseline(self, method: str, *overrides: str) -> Config:
        """`shared_recipe` for a baseline of the same backbone: method "cam" or "tscam" (`cam_tiny_convstem`,
        `tscam_deit_small_patch16_224`, ...), the same data, schedule and evaluation."""
        return baseline_recipe(self.shared_recipe, method, *overrides)

    def weights_overrides(self) -> tuple[str, ...]:
        """With SATLIB_PRETRAINED, the override that starts a paper recipe (`pretrained: timm`, a download) from
        that file instead: `model.pretrained=<file>`; else none. An override given after it wins."""
        return (f"model.pretrained={self.pretrained}",) if self.pretrained else ()

    def fit_to_device(self, config: Config) -> Config:
        """On a GPU, split a paper recipe's step into the fewest accumulated micro-batches that fit its free
        memory, measured (`satlib.book.fit`; the same images per step), in place; returns `config`."""
        return fit_to_device(config, self.device)

    def recipe_notes(self, config: Config) -> str:
        """Where a run of `config` differs from the official code, on a GPU the memory its step was measured
        to hold, and where a full GPU run's time is estimated and measured (bench/)."""
        return recipe_notes(config, measured=memory_note(config, self.device))

    # ------------------------------------------------------------------------------------------
    # runs (satlib.book.runs)

    @property
    def runs(self) -> RunCache:
        """The cache of this device's runs (`$SATLIB_CACHE/book/runs`)."""
        return RunCache(self.cache / "runs", cache_root=self.cache_root, device=self.device, smoke=self.smoke)

    def run_key(self, config: Config) -> dict:
        """What identifies `config`'s run (`RunCache.key`)."""
        return self.runs.key(config)

    def run_dir(self, config: Config) -> Path:
        """The cache folder of `config`'s run: `<cache>/runs/<model>-<12 hex digits of its key>`."""
        return self.runs.run_dir(config)

    def run(self, config: Config, *, on_epoch: Callable[[dict], None] | None = None,
            quiet: bool = True) -> BookRun:
        """The finished run of exactly `config` on this device, trained now unless the cache has it
        (`RunCache.run`)."""
        return self.runs.run(config, on_epoch=on_epoch, quiet=quiet)

    def run_all(self, configs, *, jobs: int | None = None) -> list[BookRun]:
        """The finished runs of `configs`, the missing ones trained side by side (`RunCache.run_all`)."""
        return self.runs.run_all(list(configs), jobs=jobs)


def read_settings() -> Settings:
    """Parse and check the SATLIB_* variables of this process's environment (SATLIB_SMOKE through
    `satlib.config.smoke`, the one reader of that switch)."""

    def value(name: str) -> str:
        return os.environ.get(name, "").strip()

    settings = Settings(
        device=_device(value("SATLIB_DEVICE") or "cpu"),
        cub_root=_folder("SATLIB_CUB_ROOT", value("SATLIB_CUB_ROOT"), "images.txt",
                         "the CUB-200-2011 folder that holds images.txt and images/"),
        imagenet_root=_folder("SATLIB_IMAGENET_ROOT", value("SATLIB_IMAGENET_ROOT"), "train",
                              "the folder data_scripts/prepare_imagenet.py wrote: train/, val/, metadata/"),
        full_run=_switch("SATLIB_FULL_RUN", value("SATLIB_FULL_RUN")),
        official_checkpoint=_file("SATLIB_OFFICIAL_CHECKPOINT", value("SATLIB_OFFICIAL_CHECKPOINT")),
        pretrained=_file("SATLIB_PRETRAINED", value("SATLIB_PRETRAINED"), WEIGHT_SUFFIXES,
                         f"the ImageNet DeiT-S weights, e.g. {DEIT_S_WEIGHTS}"),
        smoke=smoke(),
        cache_root=Path(value("SATLIB_CACHE") or DEFAULT_CACHE).expanduser(),
    )
    if settings.official_checkpoint and not settings.cub_root:
        raise SettingsError("SATLIB_OFFICIAL_CHECKPOINT is evaluated on CUB: set SATLIB_CUB_ROOT too")
    return settings


def setup(seed: int = 0) -> Settings:
    """A chapter's first call: the checked switches, every generator seeded, the book's figure style."""
    settings = read_settings()
    seed_everything(seed)
    plt.rcParams.update(FIGURE_STYLE)
    return settings


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text) if text != "auto" else None
    except RuntimeError:
        raise SettingsError(f"SATLIB_DEVICE={text!r}: expected auto, cpu, cuda or cuda:N") from None
    if device is not None and device.type not in ("cpu", "cuda"):
        raise SettingsError(f"SATLIB_DEVICE={text!r}: expected auto, cpu, cuda or cuda:N")
    try:
        return resolve_device(text)
    except RuntimeError as err:
        raise SettingsError(f"SATLIB_DEVICE={text!r}: {err}") from None


def _switch(name: str, text: str) -> bool:
    """On/off in the words `satlib.config.smoke` accepts for SATLIB_SMOKE."""
    if text.lower() in ("", "0", "false", "no", "off"):
        return False
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={text!r}: expected 1 (on) or 0 (off)")


def _folder(name: str, text: str, inside: str, what: str) -> Path | None:
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_dir():
        raise SettingsError(f"{name}={text!r}: no such folder (expected {what})")
    if not (path / inside).exists():
        raise SettingsError(f"{name}={text!r}: {path / inside} is missing (expected {what})")
    return path


def _file(name: str, text: str, suffixes: tuple[str, ...] = (), what: str = "") -> Path | None:
    """The file a variable names, or None when it is unset; `suffixes`: the names it may end with."""
    if not text:
        return None
    path = Path(text).expanduser()
    expected = f" (expected {what})" if what else ""
    if not path.is_file():
        raise SettingsError(f"{name}={text!r}: no such file{expected}")
    if suffixes and not path.name.endswith(suffixes):
        raise SettingsError(f"{name}={text!r}: {path.name} is not a {' or '.join(suffixes)} file{expected}")
    return path
