"""The book's switches and its cache of training runs: one call at the top of every chapter.

    settings = satlib.notebook.setup()   # reads the SATLIB_* environment, seeds, sets the figure style
    run = settings.run(config)           # trains only when no finished run of exactly this config exists
    model, config, payload = run.load()

The switches, all optional (unset: a CPU, the embedded synthetic stand-in, short runs, as the
committed outputs show):

    SATLIB_DEVICE               auto | cpu | cuda | cuda:N   (default cpu)
    SATLIB_CUB_ROOT             a CUB-200-2011 folder in the official layout
    SATLIB_IMAGENET_ROOT        an ILSVRC-2012 folder as data_scripts/prepare_imagenet.py writes it
    SATLIB_FULL_RUN             1: the paper's recipes at full length (0 or unset: short runs)
    SATLIB_OFFICIAL_CHECKPOINT  the authors' released CUB checkpoint (.pth.tar), evaluated by chapter 6
    SATLIB_SMOKE                1: every training run and evaluation capped to a few batches (satlib.runtime)
    SATLIB_CACHE                where generated data and runs are kept (default ~/.cache/satlib)

A run is keyed by its full config (minus the output folder) and the smoke switch, so a chapter that
asks for a run another chapter trained gets that run, and a changed recipe never shows a stale one.

Citing a run: a chapter that shows a cached run prints `run.cite()` (one line, `RUN_CITATION`:
"run <model>-<12 hex digits of its key>", the run's folder name) in a cell marked
`# NBVAL_CHECK_OUTPUT`. The id does not depend on where the cache is (a data folder inside it is keyed
by its place in the cache), so tests/book/test_book_runs.py recomputes, without training, the id of
every recipe a chapter uses (`settings.run_dir(settings.shared_recipe()).name`, ...) and fails when a
chapter shows another run, or uses the shared run without citing it (`cited_runs` reads the lines back).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from satlib.config import Config, load_config
from satlib.files import atomic_write_text
from satlib.recipes import GPUS, ModelCost, estimate_gpu_run, model_cost, official_differences
from satlib.runtime import resolve_device, seed_everything, smoke

# The tiny SAT the chapters share on the stand-in (chapter 0 introduces it): 64 px, 4 blocks of width 64,
# 20 epochs of the 320 training images of the 4-class synthetic set, from scratch on a CPU in seconds.
TINY_SAT = ("data.dataset=cub", "data.img_size=64", "data.resize_size=64", "model.num_classes=4",
            "model.kwargs={stem_widths: [16, 32, 64], embed_dim: 64, depth: 4, num_heads: 4}",
            "train.epochs=20", "train.lr=2e-3", "train.warmup_epochs=1",
            "train.area_thr=0.30")  # its own target, tuned with the chapters (the demo's differs)
SHORT_RUN = ("train.epochs=2", "train.eval_every=1")  # a paper recipe without SATLIB_FULL_RUN
OFFICIAL_IMAGENET_GPUS = 4  # train_ImageNet.py: 4 DDP processes, each with its own area constraint
FINISHED = "finished.json"  # written into a run's folder once train() returned; holds the run's key
EPOCH_MAPS = "epoch_maps.pt"  # the probe images' maps after every epoch (`Probe`)
FIGURE_STYLE = {"figure.dpi": 80, "font.size": 9, "image.interpolation": "nearest"}
RUN_CITATION = re.compile(r"^run (?P<id>[\w.]+-[0-9a-f]{12})$", re.M)  # `BookRun.cite`'s line
CACHE_PLACEHOLDER = "$SATLIB_CACHE"  # a run key's stand-in for the cache folder


class SettingsError(ValueError):
    """A SATLIB_* environment variable holds a value the book cannot use; the message names it."""


@dataclass(frozen=True)
class BookRun:
    """A finished training run in the book's cache: its folder and how to load it."""

    folder: Path
    trained: bool  # True: this call trained it; False: it came from the cache
    device: torch.device

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def load(self, *, best: bool = False) -> tuple[torch.nn.Module, Config, dict]:
        """(model in eval mode on the settings' device, its config, the checkpoint payload)."""
        from satlib.checkpoint import model_from_checkpoint

        return model_from_checkpoint(self.best if best else self.checkpoint, device=self.device)

    @property
    def id(self) -> str:
        """The run's name in the cache: `<model>-<12 hex digits of its key>`."""
        return self.folder.name

    def cite(self) -> str:
        """The one line a chapter prints to say which run it shows (`RUN_CITATION`; see the module doc)."""
        return f"run {self.id}"

    def history(self) -> list[dict]:
        """Every epoch's record, from metrics.json."""
        return json.loads((self.folder / "metrics.json").read_text())["history"]

    def epoch_maps(self) -> dict:
        """The probe images' maps after every epoch: "indices" (into the test split, see `probe_indices`),
        "sat" and "cam" (epochs, images, rows, cols), the CAM being the conv head's map of the GT class."""
        from satlib.checkpoint import load_checkpoint

        return load_checkpoint(self.folder / EPOCH_MAPS)


@dataclass(frozen=True)
class Settings:
    """What the SATLIB_* switches say, checked; `setup()` returns it."""

    device: torch.device
    cub_root: Path | None = None
    imagenet_root: Path | None = None
    full_run: bool = False
    official_checkpoint: Path | None = None
    smoke: bool = False
    cache_root: Path = Path.home() / ".cache" / "satlib"

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
        return text + ("; SMOKE: every run capped to 2 steps" if self.smoke else "")

    # ------------------------------------------------------------------------------------------
    # data and recipes

    def stand_in(self, *, size: int = 64, per_class: int = 100, num_classes: int = 4) -> Path:
        """The embedded synthetic set (CUB layout, seed 0) in the book's cache, generated once."""
        from satlib.data.synthetic import ensure_synthetic_dataset

        root = self.cache / f"synthetic-{size}px-{num_classes}x{per_class}"
        return ensure_synthetic_dataset(root, num_classes=num_classes, per_class=per_class, size=size, seed=0)

    def tiny_recipe(self, *overrides: str) -> Config:
        """The tiny SAT of chapter 0 (`TINY_SAT` over configs/synthetic_cpu.yaml) on the 64-px stand-in."""
        return load_config("synthetic_cpu", [*TINY_SAT, f"data.root={self.stand_in()}", *overrides])

    def cub_recipe(self, *overrides: str) -> Config:
        """configs/cub.yaml on SATLIB_CUB_ROOT: the paper's 30 epochs with SATLIB_FULL_RUN, else `SHORT_RUN`."""
        if self.cub_root is None:
            raise SettingsError("SATLIB_CUB_ROOT is not set: the CUB recipe needs the CUB-200-2011 folder")
        short = () if self.full_run else SHORT_RUN
        return self.fit_to_device(load_config("cub", [f"data.root={self.cub_root}", *short, *overrides]))

    def imagenet_recipe(self, *overrides: str) -> Config:
        """configs/imagenet.yaml (the paper's one epoch) on SATLIB_IMAGENET_ROOT, as one process runs it.

        The official run spreads each step's 512 images over 4 GPUs, 128 each, and computes the area
        loss on each GPU's share; one process does the same with 4 accumulated micro-batches of 128.
        """
        if self.imagenet_root is None:
            raise SettingsError("SATLIB_IMAGENET_ROOT is not set: the ImageNet recipe needs the ILSVRC folder")
        gpus = OFFICIAL_IMAGENET_GPUS
        per_gpu = load_config("imagenet").train.batch_size // gpus
        return self.fit_to_device(load_config("imagenet", [
            f"data.root={self.imagenet_root}", f"train.batch_size={per_gpu}", f"train.grad_accum={gpus}", *overrides]))

    def shared_recipe(self, *overrides: str) -> Config:
        """The run chapters 0, 2, 3 and 5 share: `cub_recipe` with SATLIB_CUB_ROOT, else `tiny_recipe`."""
        return self.cub_recipe(*overrides) if self.cub_root else self.tiny_recipe(*overrides)

    def shared_baseline(self, method: str, *overrides: str) -> Config:
        """`shared_recipe` for a baseline of the same backbone: method "cam" or "tscam" (`cam_tiny_convstem`,
        `tscam_deit_small_patch16_224`, ...), the same data, schedule and evaluation."""
        if method not in ("cam", "tscam"):
            raise ValueError(f"method={method!r}: the baselines are 'cam' and 'tscam'")
        backbone = self.shared_recipe().model.name.removeprefix("sat_")
        return self.shared_recipe(f"model.name={method}_{backbone}", *overrides)

    def fit_to_device(self, config: Config) -> Config:
        """On a GPU, split a paper recipe's step into as many accumulated micro-batches as its memory needs
        (`satlib.recipes.estimate_gpu_run`; the same images per step), in place; returns `config`."""
        gpu = gpu_kind(self.device)
        if gpu is not None:
            accum = estimate_gpu_run(config, gpu=gpu, cost=_model_cost(config)).grad_accum_to_fit
            config.train.batch_size //= accum
            config.train.grad_accum *= accum
        return config

    def recipe_notes(self, config: Config) -> str:
        """Where a run of `config` here differs from the official code (`satlib.recipes.official_differences`)
        and what a full run needs on this GPU, or an H100 when there is none (an estimate, labelled as one)."""
        lines = [f"where this run differs from the official {config.data.dataset} code:"]
        lines += [f"  - {line}" for line in official_differences(config)]
        gpu = gpu_kind(self.device) or "H100"
        lines.append(estimate_gpu_run(config, gpu=gpu, cost=_model_cost(config)).describe())
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------
    # runs

    def run_key(self, config: Config) -> dict:
        """What identifies a run: the full config on this device without its output folder, and the smoke switch.

        A data folder inside the cache (the stand-in) is keyed by its place there ("$SATLIB_CACHE/book/..."),
        so a run's id is the same in every cache.
        """
        resolved = config.to_dict()
        resolved["train"] = {**{k: v for k, v in resolved["train"].items() if k != "out"}, "device": str(self.device)}
        root = Path(resolved["data"]["root"]).expanduser()
        if root.is_relative_to(self.cache_root):
            resolved["data"]["root"] = f"{CACHE_PLACEHOLDER}/{root.relative_to(self.cache_root).as_posix()}"
        return {"config": resolved, "smoke": self.smoke}

    def run_dir(self, config: Config) -> Path:
        """The cache folder of `config`'s run: `<cache>/runs/<model>-<12 hex digits of its key>`."""
        key = json.dumps(self.run_key(config), sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.cache / "runs" / f"{config.model.name}-{digest}"

    def run(self, config: Config, *, on_epoch: Callable[[dict], None] | None = None,
            quiet: bool = True) -> BookRun:
        """The finished run of exactly `config` on this device, trained now unless the cache has it.

        Sets `config.train.device` to the settings' device and `config.train.out` to the run's cache
        folder (so an `on_epoch` callback finds the epoch's checkpoint there); trains a copy, so the
        caller's config is not changed by training (e.g. `model.num_classes` read from the data).
        `quiet` (default) keeps the epoch log out of the chapter: it prints what it needs from the run.
        """
        from satlib.train import train

        config.train.device = str(self.device)
        folder = self.run_dir(config)
        config.train.out = str(folder)
        key = self.run_key(config)
        marker = folder / FINISHED
        if (marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(key))
                and (folder / EPOCH_MAPS).is_file()):
            return BookRun(folder, trained=False, device=self.device)
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted run of this key: start over
        probe = Probe(config, self.device)

        def after_epoch(record: dict) -> None:
            probe.record(folder)
            if on_epoch is not None:
                on_epoch(record)

        train(copy.deepcopy(config), progress=False, quiet=quiet, on_epoch=after_epoch)
        atomic_write_text(marker, json.dumps(key, indent=1) + "\n")
        return BookRun(folder, trained=True, device=self.device)


def cited_runs(text: str) -> list[str]:
    """The run ids a chapter's output cites, in order: every `BookRun.cite` line in `text`."""
    return [match["id"] for match in RUN_CITATION.finditer(text)]


def probe_indices(test_set) -> list[int]:
    """The test images every book run maps after each epoch: the first two of each of the first four
    classes (for test splits listed class by class, as CUB's and the synthetic sets' are)."""
    per_class = len(test_set) // test_set.num_classes
    return [c * per_class + i for c in range(min(4, test_set.num_classes)) for i in (0, 1)]


class Probe:
    """Maps of the `probe_indices` test images after every epoch of a run, saved as <run>/epoch_maps.pt."""

    def __init__(self, config: Config, device: torch.device) -> None:
        from satlib.data import collate
        from satlib.data.from_config import build_datasets, prepare_data

        _, test_set = build_datasets(config, prepare_data(config), train=False)
        self.indices = probe_indices(test_set)
        batch = collate([test_set[i] for i in self.indices])
        self.images, self.labels = batch["images"].to(device), batch["labels"].to(device)
        self.device, self.sat, self.cam = device, [], []

    @torch.no_grad()
    def record(self, folder: Path) -> None:
        """Map the probe images with the epoch's checkpoint; the run's random streams are left untouched."""
        from satlib.checkpoint import model_from_checkpoint, save_checkpoint

        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model, _, _ = model_from_checkpoint(folder / "checkpoint.pt", device=self.device)
            out = model(self.images)
        self.sat.append(out.loc_map.float().cpu())
        self.cam.append(out.class_maps[torch.arange(len(self.labels)), self.labels].float().cpu())
        save_checkpoint(folder / EPOCH_MAPS, {"indices": torch.tensor(self.indices),
                                              "sat": torch.stack(self.sat), "cam": torch.stack(self.cam)})


def read_settings() -> Settings:
    """Parse and check the SATLIB_* variables of this process's environment (SATLIB_SMOKE through
    `satlib.runtime.smoke`, the one reader of that switch)."""

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
        smoke=smoke(),
        cache_root=Path(value("SATLIB_CACHE") or Path.home() / ".cache" / "satlib").expanduser(),
    )
    if settings.official_checkpoint and not settings.cub_root:
        raise SettingsError("SATLIB_OFFICIAL_CHECKPOINT is evaluated on CUB: set SATLIB_CUB_ROOT too")
    return settings


def setup(seed: int = 0) -> Settings:
    """A chapter's first call: the checked switches, every generator seeded, the book's figure style."""
    import matplotlib.pyplot as plt

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
    """On/off in the words `satlib.runtime.smoke` accepts for SATLIB_SMOKE."""
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


def _file(name: str, text: str) -> Path | None:
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise SettingsError(f"{name}={text!r}: no such file")
    return path


def gpu_kind(device: torch.device) -> str | None:
    """The `satlib.recipes.GPUS` entry of a CUDA device: the longest card name its name contains, and of
    those the memory nearest its own (A100 or A100-40GB); None on a CPU or for a card not listed."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    found = [kind for kind in GPUS if kind.split("-")[0] in name]
    if not found:
        return None
    longest = max(len(kind.split("-")[0]) for kind in found)
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30
    return min((kind for kind in found if len(kind.split("-")[0]) == longest),
               key=lambda kind: abs(GPUS[kind][1] - memory))


_COSTS: dict[str, ModelCost] = {}


def _model_cost(config: Config) -> ModelCost:
    """`satlib.recipes.model_cost`, once per model and input size in a kernel (a few seconds for DeiT-S)."""
    key = json.dumps([config.model.name, config.model.kwargs, config.data.img_size], sort_keys=True)
    if key not in _COSTS:
        _COSTS[key] = model_cost(config)
    return _COSTS[key]


# ----------------------------------------------------------------------------------------------
# widgets

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a live control; stripped from the saved chapters


def explore(draw: Callable[..., "matplotlib.figure.Figure"], **controls) -> dict:  # noqa: F821
    """A figure with controls: `draw(**values)` returns a matplotlib figure for one choice of `values`.

    `controls` are what `ipywidgets.interact` takes (a list of options, a `(min, max, step)` tuple, a
    widget, ...). The figure for the controls' initial values (as ipywidgets picks them: the middle of a
    range, the first option) is shown as a plain image: that is what the built book shows (the saved
    chapters keep no live widgets). In a running notebook the controls are
    shown under it and every change redraws the figure in place. Returns the values drawn first.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    panel = widgets.interactive(lambda **values: None, **controls)

    def render() -> Image:
        figure = draw(**panel.kwargs)
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(figure)
        return Image(buffer.getvalue())

    first = dict(panel.kwargs)
    handle = display(render(), display_id=True)

    def changed(_) -> None:
        image = render()
        if handle is not None:  # None outside IPython (display ids need a frontend)
            handle.update(image)

    inputs = [child for child in panel.children if not isinstance(child, widgets.Output)]
    for child in inputs:
        child.observe(changed, names="value")
    display(widgets.VBox(inputs))
    return first
