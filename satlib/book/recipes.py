"""The recipes a chapter asks for: the tiny SAT on the stand-in, the paper's CUB and ImageNet recipes on a
reader's folders, the baselines of a recipe, and the notes that say where a run differs from the official code.

    config = tiny_recipe(stand_in(cache), "train.seed=1")       # chapter 0's tiny SAT, another seed
    config = cub_recipe(cub_root, full_run=False)                # configs/cub.yaml, 2 epochs
    print(recipe_notes(config))

`satlib.book.Settings` fills in the folders and the switches (`settings.shared_recipe()`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from satlib.config import Config, load_config
from satlib.data.synthetic import ensure_synthetic_dataset
from satlib.models import baseline_name
from satlib.recipes import official_differences

# The tiny SAT the chapters share on the stand-in (chapter 0 introduces it): 64 px, 4 blocks of width 64,
# 20 epochs of the 320 training images of the 4-class synthetic set, from scratch on a CPU in seconds.
TINY_SAT = ("data.dataset=cub", "data.img_size=64", "data.resize_size=64", "model.num_classes=4",
            "model.kwargs={stem_widths: [16, 32, 64], embed_dim: 64, depth: 4, num_heads: 4}",
            "train.epochs=20", "train.lr=2e-3", "train.warmup_epochs=1",
            "train.area_thr=0.30")  # its own target, tuned with the chapters (the demo's differs)
SHORT_RUN = ("train.epochs=2", "train.eval_every=1")  # a paper recipe without SATLIB_FULL_RUN
OFFICIAL_IMAGENET_GPUS = 4  # train_ImageNet.py: 4 DDP processes, each with its own area constraint
BASELINES = ("cam", "tscam")  # the methods `baseline_recipe` builds a recipe for
GPU_COST = ("a full run's time and memory on a GPU: python bench/cost.py <recipe> --gpu <card> estimates them "
            "from FLOPs, python bench/gpu_suite.py measures them")


def stand_in(cache: Path, *, size: int = 64, per_class: int = 100, num_classes: int = 4) -> Path:
    """The embedded synthetic set (CUB layout, seed 0) in the folder `cache`, generated once; returns its root."""
    root = cache / f"synthetic-{size}px-{num_classes}x{per_class}"
    return ensure_synthetic_dataset(root, num_classes=num_classes, per_class=per_class, size=size, seed=0)


def book_recipe(*overrides: str) -> Config:
    """configs/synthetic_book.yaml: the book's shared run on the stand-in, the demo's conv-stem SAT fine-tuned
    for 3 epochs from the stand-in backbone (satlib/pretrained); its data generated into $SATLIB_CACHE."""
    return load_config("synthetic_book", list(overrides))


def fewshot_recipe(per_class: int, *overrides: str) -> Config:
    """configs/synthetic_fewshot.yaml on `per_class` training images a class (every step the whole set)."""
    return load_config("synthetic_fewshot", [f"data.per_class={per_class}", *overrides])


def cublike_recipe(*overrides: str) -> Config:
    """configs/synthetic_book_cublike.yaml: the shared recipe on objects at CUB's scale (box 40 % of the image)."""
    return load_config("synthetic_book_cublike", list(overrides))


def tiny_recipe(data_root: Path, *overrides: str) -> Config:
    """The tiny SAT of chapter 0 (`TINY_SAT` over configs/synthetic_cpu.yaml) on the stand-in at `data_root`."""
    return load_config("synthetic_cpu", [*TINY_SAT, f"data.root={data_root}", *overrides])


def cub_recipe(data_root: Path, *overrides: str, full_run: bool) -> Config:
    """configs/cub.yaml on the CUB-200-2011 folder `data_root`: the paper's 30 epochs with `full_run`, else
    `SHORT_RUN`."""
    short = () if full_run else SHORT_RUN
    return load_config("cub", [f"data.root={data_root}", *short, *overrides])


def imagenet_recipe(data_root: Path, *overrides: str) -> Config:
    """configs/imagenet.yaml (the paper's one epoch) on the ILSVRC folder `data_root`, as one process runs it.

    The official run spreads each step's 512 images over 4 GPUs, 128 each, and computes the area loss on
    each GPU's share; one process does the same with 4 accumulated micro-batches of 128.
    """
    gpus = OFFICIAL_IMAGENET_GPUS
    per_gpu = load_config("imagenet").train.batch_size // gpus
    return load_config("imagenet", [f"data.root={data_root}", f"train.batch_size={per_gpu}",
                                    f"train.grad_accum={gpus}", *overrides])


def baseline_recipe(recipe: Callable[..., Config], method: str, *overrides: str) -> Config:
    """`recipe(*overrides)` for a baseline of the same backbone: method "cam" or "tscam" (`cam_tiny_convstem`,
    `tscam_deit_small_patch16_224`, ...), the same data, schedule and evaluation."""
    if method not in BASELINES:
        raise ValueError(f"method={method!r}: the baselines are {' and '.join(map(repr, BASELINES))}")
    return recipe(f"model.name={baseline_name(recipe().model.name, method)}", *overrides)


def recipe_notes(config: Config, *, measured: str | None = None) -> str:
    """Where a run of `config` differs from the official code (`satlib.recipes.official_differences`), what
    was `measured` on this machine (a line, if any), and where a GPU run's cost is estimated and measured."""
    lines = [f"where this run differs from the official {config.data.dataset} code:"]
    lines += [f"  - {line}" for line in official_differences(config)]
    return "\n".join([*lines, *([measured] if measured else []), GPU_COST])
