"""What the whole book costs on a GPU with CUB and ImageNet and SATLIB_FULL_RUN=1: the runs each chapter trains
there and their GPU-minutes, estimated by bench/cost.py from FLOPs (not measured). book/index.md quotes the
table this prints; run it again when a chapter's recipes change.

    python book/gpu_cost.py                 markdown table, one H100
    python book/gpu_cost.py --gpu A100      another card of bench/cost.py's list

A run is counted in the first chapter that asks for it, as the run cache does (`satlib.book.runs`): chapters
that show a run trained before load it. The runs per chapter mirror the chapters' real-data branches
(`CHAPTER_RUNS`); the estimate per run is `bench.cost.estimate_gpu_run`, scaled to the images a few-shot
subset trains on (the estimator counts whole splits).
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ is not installed with satlib

from bench.cost import SPLIT_SIZES, ModelCost, estimate_gpu_run, model_cost  # noqa: E402
from satlib.book import SEEDS, Settings  # noqa: E402
from satlib.config import Config  # noqa: E402

NEEDS = {  # what a chapter reads beyond its runs' datasets
    "01_token_injection": "CUB (one test photo, no training)",
    "03_constraints": "CUB (the parts experiment stays on the CPU stand-in)",
    "06_cub": "CUB (or the authors' checkpoint, SATLIB_OFFICIAL_CHECKPOINT: no training)",
}
IMAGENET_SHOTS = (1, 3, 5, 10)  # chapter 7's subsets, images a class (and all of them, the paper's recipe)
IMAGENET_SEEDS = (0, 1, 2)  # chapter 7 trains every run with each of these seeds (satlib.book.evidence.SEEDS)
SUBSET_STEPS = 100  # chapter 7 sizes every subset run to about this many optimizer steps


@dataclass(frozen=True)
class Run:
    """One training run a chapter asks for: its config and, for a few-shot subset, the images it trains on."""

    name: str
    config: Config
    train_images: int | None = None  # None: the whole split, every epoch (the estimator's own count)


def gpu_settings() -> Settings:
    """The switches of the full GPU run: CUB and ImageNet set, the paper's recipes at full length."""
    return Settings(device=torch.device("cpu"), cub_root=Path("CUB_200_2011"), imagenet_root=Path("ILSVRC"),
                    full_run=True)


def imagenet_subset(settings: Settings, per_class: int, method: str, seed: int) -> Run:
    """Chapter 7's run of `method` on `per_class` ImageNet images a class, sized to about SUBSET_STEPS steps."""
    config = copy.deepcopy(settings.imagenet_recipe("train.eval_every=0"))
    config.model.name = f"{method}_deit_small_patch16_224"
    t = config.train
    t.seed = seed
    images = per_class * 1000
    config.data.per_class = per_class
    t.batch_size = max(1, min(t.batch_size, images // t.grad_accum))
    t.epochs = max(1, round(SUBSET_STEPS * t.batch_size * t.grad_accum / images))
    steps = images // (t.batch_size * t.grad_accum) * t.epochs
    return Run(f"{method.upper()}, {per_class} a class, seed {seed}", config, steps * t.batch_size * t.grad_accum)


def chapter_runs(settings: Settings) -> dict[str, list[Run]]:
    """The runs each chapter's real-data branch trains, in book order, before the cache removes repeats."""
    shared = settings.shared_recipe
    thr = shared().train.area_thr
    keep = 30 - 5  # chapter 6: CUB's smallest class keeps all but 5 of its training images (about 30)
    full_imagenet = settings.imagenet_recipe("train.eval_every=0")
    return {
        "00_wsol": [Run("SAT", shared()), Run("CAM", settings.shared_baseline("cam")),
                    Run("TS-CAM", settings.shared_baseline("tscam"))],
        "01_token_injection": [],
        "02_attention_querying": [Run("SAT", shared())],
        "03_constraints": [Run("both constraints", shared()), Run("no area loss", shared("train.lambda_area=0")),
                           Run("no normalization loss", shared("train.lambda_norm=0")),
                           *(Run(f"area_thr {round(thr * f, 4)}", shared(f"train.area_thr={round(thr * f, 4)}"))
                             for f in (0.5, 1.0, 2.0))],
        "04_training": [Run("SAT", shared()), Run("TS-CAM", settings.shared_baseline("tscam")),
                        *_seeds(settings, "SAT", "CAM", "TS-CAM")],
        "05_measuring": [Run("SAT", shared())],
        "06_cub": [Run("SAT", shared()), Run("CAM", settings.shared_baseline("cam")),
                   Run("TS-CAM", settings.shared_baseline("tscam")),
                   Run("SAT, held-out split", shared(f"data.per_class={keep}"), train_images=keep * 200 * 30)],
        "07_imagenet": [*(imagenet_subset(settings, n, method, seed) for n in IMAGENET_SHOTS
                          for method in ("sat", "cam") for seed in IMAGENET_SEEDS),
                        *(Run(f"{method.upper()}, all, seed {seed}", _named(full_imagenet, method, seed))
                          for method in ("sat", "cam") for seed in IMAGENET_SEEDS)],
        "08_your_work": [Run("SAT (train() into its own folder: not cached)", _fresh(shared()))],
        "09_gradcam": [Run("SAT", shared()), Run("CAM", settings.shared_baseline("cam")),
                       *_seeds(settings, "SAT", "CAM")],
        "10_making_it_fast": [Run("SAT", shared())],
    }


def _seeds(settings: Settings, *methods: str) -> list[Run]:
    """The shared run of each method ("SAT", "CAM", "TS-CAM") on every seed of the book's evidence tables."""
    recipes = {"SAT": settings.shared_recipe, "CAM": lambda *o: settings.shared_baseline("cam", *o),
               "TS-CAM": lambda *o: settings.shared_baseline("tscam", *o)}
    return [Run(f"{method}, seed {seed}", recipes[method](f"train.seed={seed}"))
            for method in methods for seed in SEEDS]


def _named(config: Config, method: str, seed: int) -> Config:
    config = copy.deepcopy(config)
    config.model.name = f"{method}_deit_small_patch16_224"
    config.train.seed = seed
    return config


def _fresh(config: Config) -> Config:
    """A config no other chapter's run has (chapter 8 calls train() itself, outside the run cache)."""
    config = copy.deepcopy(config)
    config.train.out = "runs/chapter-8"
    return config


def run_minutes(run: Run, gpu: str, costs: dict[str, ModelCost]) -> float:
    """Estimated minutes of `run` on one `gpu`: training and its evaluations."""
    name = run.config.model.name
    costs.setdefault(name, model_cost(run.config))
    estimate = estimate_gpu_run(run.config, gpu=gpu, cost=costs[name])
    train_hours = estimate.train_hours
    if run.train_images is not None:
        train_hours *= run.train_images / estimate.train_images
    return 60 * (train_hours + estimate.eval_hours)


def cost_table(gpu: str = "H100") -> list[tuple[str, int, float, str]]:
    """(chapter, new runs, estimated GPU-minutes, data it needs) for every chapter, in book order."""
    settings = gpu_settings()
    seen, costs, rows = set(), {}, []
    for chapter, runs in chapter_runs(settings).items():
        new = []
        for run in runs:
            key = repr(sorted(run.config.to_dict().items())) + str(run.train_images)
            if key not in seen:
                seen.add(key)
                new.append(run)
        data = NEEDS.get(chapter) or " and ".join(sorted({_dataset(run.config) for run in runs}))
        rows.append((chapter, len(new), sum(run_minutes(run, gpu, costs) for run in new), data))
    return rows


def _dataset(config: Config) -> str:
    return {"cub": "CUB", "imagenet": "ImageNet"}[config.data.dataset] if config.data.dataset in SPLIT_SIZES \
        else config.data.dataset


def markdown(rows: list[tuple[str, int, float, str]], gpu: str) -> str:
    """The table book/index.md quotes."""
    lines = [f"| chapter | runs trained on the GPU | estimated GPU-minutes (one {gpu}) | needs |",
             "|---|---:|---:|---|"]
    for chapter, runs, minutes, data in rows:
        lines.append(f"| {{doc}}`{chapter}` | {runs} | {minutes:.0f} | {data} |")
    total_runs, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines.append(f"| the whole book | {total_runs} | {total:.0f} (about {total / 60:.1f} hours) | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", default="H100", help="a card of bench/cost.py's list (default H100)")
    args = parser.parse_args(argv)
    print(markdown(cost_table(args.gpu), args.gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
