"""The rehearsal (`make rehearsal`, run by `make test`): every real-data branch of the book and the command
line's paper recipes, executed on a CPU in minutes.

    python book/rehearse.py                      everything, in a temporary scratch folder
    python book/rehearse.py --scratch DIR --keep keep the stand-ins, runs and executed chapters in DIR
    python book/rehearse.py --chapters 06_cub    only these chapters (--no-cli: no CLI, --no-book: no chapter)
    python book/rehearse.py --passes small       only these passes of the chapters (real-data, official, small)

Nobody's GPU or dataset is needed: the stand-ins (`satlib data synth --layout cub|imagenet|openimages`)
hold synthetic photos in the real datasets' own layouts, and `SATLIB_SMOKE=1` keeps every model, recipe,
reader and code path while capping the work (train.max_steps, eval.max_batches: satlib.config.apply_smoke). In order:

1. the three stand-ins and a checkpoint in the official SAT release's format (DeiT-S, DataParallel keys,
   the Gaussian kernel) are written into the scratch folder;
2. every chapter runs with SATLIB_SMOKE=1, SATLIB_FULL_RUN=1 and SATLIB_CUB_ROOT / SATLIB_IMAGENET_ROOT
   on the stand-ins, chapter 6 a second time with SATLIB_OFFICIAL_CHECKPOINT; the executed notebooks are
   written to the scratch folder (the committed ones keep their CPU-default outputs), and each must show
   the marks of its real-data branch (`BRANCH_MARKS`), so a branch that was silently skipped fails;
   then every chapter that reads SATLIB_CUB_ROOT runs once more on a small CUB-layout set (`SMALL_SET`:
   6 classes, 6 training and 3 test photos a class), offline: SATLIB_PRETRAINED names a DeiT-S weights
   file, so the paper recipes start from a local file as on a GPU node without internet;
3. the CLI: train + evaluate with configs/cub.yaml and configs/imagenet.yaml, evaluate --official,
   evaluate on the OpenImages stand-in (PxAP), visualize and predict.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from run_notebooks import ROOT, execute, toc_notebooks

STANDINS = {"cub": ["--per-class", "80"],  # 64 test photos: the chapters' figures pick among the first 64
            "imagenet": ["--per-class", "30"],  # 24 training photos a class: the 10-a-class subset is real
            "openimages": []}

# The small pass: a CUB-layout set as small as a reader's first try (6 classes, 6 training and 3 test photos a
# class, each photo of its own size), and the chapters that read SATLIB_CUB_ROOT (chapter 7 reads ImageNet).
SMALL_SET = {"num_classes": 6, "per_class": 9, "test_fraction": 1 / 3}
SMALL_CHAPTERS = ("00_wsol", "01_token_injection", "02_attention_querying", "03_constraints", "04_training",
                  "05_measuring", "06_cub", "08_your_work", "09_gradcam", "10_making_it_fast")
OFFLINE = r"pretrained backbone deit_small_patch16_224"  # settings.summary() with SATLIB_PRETRAINED
WEIGHTS_USED = r"model\.pretrained\s*=\s*'[^']*deit_small_patch16_224-cd65a155\.pth'"  # in the recipe notes
# What each chapter prints on its real-data branch (regular expressions over its outputs' text).
NOTES = r"where this run differs from the official cub code"  # settings.recipe_notes on a CUB recipe
# Per chapter (and pass): what its real-data branch does, and what it prints there (regular expressions
# over the executed notebook's text outputs). A branch that was skipped misses its marks and fails.
BRANCH_MARKS = {
    "00_wsol": ("the shared run: configs/cub.yaml, DeiT-S, on the CUB stand-in; the notes, which point to bench/",
                [r"model: sat_deit_small_patch16_224", NOTES, r"bench/cost\.py"]),
    "01_token_injection": ("a CUB test photo through the untrained DeiT-S",
                           [r"photo (?!224x224)\d+x\d+ -> x"]),  # a photo of its own size, not the 224-px square
    "02_attention_querying": ("the shared CUB run's attention", [r"sat_deit_small_patch16_224: GT-known"]),
    "03_constraints": ("the constraint ablation: four DeiT-S runs on CUB, neither, each and both constraints (the "
                       "parts experiment stays synthetic)", [r"sat_deit_small_patch16_224: \{'none'"]),
    "04_training": ("the CUB recipe's run, its curves and probe maps",
                    [r"model sat_deit_small_patch16_224, 224 px", NOTES]),
    "05_measuring": ("every metric on the shared CUB run", [r"sat_deit_small_patch16_224 trained for"]),
    "06_cub": ("configs/cub.yaml trained, best.pt evaluated, the figure",
               [r"CUB-200-2011; DeiT-S, pretrained; epoch \d+ \(best\.pt\)", NOTES]),
    "06_cub+official": ("the official-format checkpoint evaluated as evaluator.py, the figure",
                        [r"CUB-200-2011; DeiT-S, the authors' weights; official checkpoint"]),
    "07_imagenet": ("configs/imagenet.yaml as 4 x 128 on one process: SAT and CAM at 1, 3, 5, 10 images a class and "
                    "all (one epoch), seed 0 (a smoke run takes one seed: satlib.book.evidence.SEEDS)",
                    [r"where this run differs from the official imagenet code", r"train\.grad_accum = 4",
                     r"run cam_deit_small_patch16_224-[0-9a-f]{12}", r"SAT\s+all\s+0\s"]),
    "08_your_work": ("train(configs/cub.yaml) on the CUB-layout folder, predict and export", [NOTES]),
    "09_gradcam": ("Grad-CAM on the shared CUB run and its CAM baseline, scored by evaluate_maps",
                   [r"SAT: sat_deit_small_patch16_224, 224 px", r"highest MaxBoxAccV2: "]),
    "10_making_it_fast": ("the explicit and fused attention paths on the shared CUB run",
                          [r"sat_deit_small_patch16_224: GT-known"]),
}


@dataclass
class Step:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)

    def timed(self, name: str, action, detail: str = ""):
        print(f"rehearsal: {name} ...", flush=True)
        started = time.perf_counter()
        result = action()
        self.steps.append(Step(name, time.perf_counter() - started, detail))
        print(f"rehearsal: {name} done in {self.steps[-1].seconds:.0f} s", flush=True)
        return result

    def summary(self) -> str:
        lines = [f"{step.seconds:6.0f} s  {step.name}" + (f"  ({step.detail})" if step.detail else "")
                 for step in self.steps]
        total = sum(step.seconds for step in self.steps)
        return "\n".join(["rehearsal passed:", *lines, f"{total:6.0f} s  in all"])


def satlib_command(*args: str | Path, env: dict[str, str]) -> str:
    """Run `python -m satlib ARGS` from the repository root; returns its stdout, fails with its output."""
    result = subprocess.run([sys.executable, "-m", "satlib", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"satlib {' '.join(map(str, args))} exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


DEIT_S_FILE = "deit_small_patch16_224-cd65a155.pth"  # the name of timm's DeiT-S download


def write_deit_weights(path: Path) -> Path:
    """A random DeiT-S saved as the file a reader downloads for SATLIB_PRETRAINED: {"model": timm's keys}."""
    import timm
    import torch

    torch.manual_seed(0)
    torch.save({"model": timm.create_model("deit_small_patch16_224", pretrained=False).state_dict()}, path)
    return path


def write_small_set(out: Path) -> Path:
    """The small CUB-layout set of the small pass (`SMALL_SET`), photos of their own sizes."""
    from satlib.data.standins import make_standin

    return make_standin(out, "cub", **SMALL_SET)


def write_official_checkpoint(path: Path, num_classes: int = 200) -> Path:
    """A random DeiT-S SAT saved as the official train.py saves one: {"model": DataParallel keys + kernel}."""
    import torch

    import satlib
    from satlib.models.weights import official_state_dict

    torch.manual_seed(0)
    model = satlib.create_model("sat_deit_small_patch16_224", num_classes=num_classes)
    torch.save({"model": official_state_dict(model), "best_thr": 0.35, "epoch": 30}, path)
    return path


def output_text(nb: nbformat.NotebookNode) -> str:
    """Everything a notebook's code cells printed or displayed as text; a cell's stdout as one text, however
    its lines were split between outputs (a warning on stderr cuts a print in two)."""
    parts = []
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        for stream in ("stdout", "stderr"):
            parts.append("".join(o.get("text", "") for o in outputs
                                 if o.get("output_type") == "stream" and o.get("name", "stdout") == stream))
        parts += ["".join(o.get("data", {}).get("text/plain", "")) for o in outputs]
    return "\n".join(parts)


def check_marks(executed: Path, key: str, extra: tuple[str, ...] = ()) -> None:
    """Fail unless the executed notebook shows every mark of its real-data branch (and the `extra` marks)."""
    text = output_text(nbformat.read(executed, as_version=4))
    unwrapped = re.sub(r"\s+", "", text)  # a mark that a chapter's textwrap broke over lines (long paths)
    missing = [mark for mark in (*BRANCH_MARKS[key][1], *extra)
               if not re.search(mark, text) and not re.search(mark, unwrapped)]
    if missing:
        raise RuntimeError(f"{executed}: the real-data branch did not run (missing {missing})")


@dataclass(frozen=True)
class Pass:
    """One pass of the chapters: its name, the suffix of its `BRANCH_MARKS` keys, what it sets in the
    environment (None: removes), which chapters it runs (None: every chapter with marks) and what else
    every chapter must print."""

    name: str
    suffix: str
    env: dict[str, str | None]
    chapters: tuple[str, ...] | None = None
    marks: tuple[str, ...] = ()


def book_passes(scratch: Path) -> list[Pass]:
    """The passes of the chapters, in order: the stand-ins with the paper's recipes, the official checkpoint,
    the small set offline."""
    return [Pass("real data", "", {}),  # SATLIB_FULL_RUN=1: the paper's recipes
            Pass("official checkpoint", "+official",  # and the short CUB recipe, which it builds but need not train
                 {"SATLIB_OFFICIAL_CHECKPOINT": str(scratch / "official" / "SAT_CUB.pth.tar"), "SATLIB_FULL_RUN": "0"}),
            Pass("small", "", {"SATLIB_CUB_ROOT": str(scratch / "cub-small"), "SATLIB_IMAGENET_ROOT": None,
                               "SATLIB_PRETRAINED": str(scratch / "official" / DEIT_S_FILE)},
                 chapters=SMALL_CHAPTERS, marks=(OFFLINE,))]


def pass_environment(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """`env` with a pass's changes: a value sets a variable, None removes it."""
    out = {**env, **{name: value for name, value in changes.items() if value is not None}}
    return {name: value for name, value in out.items() if changes.get(name, "") is not None}


def rehearse_book(scratch: Path, env: dict[str, str], chapters: list[Path], report: Report,
                  passes: list[Pass] | None = None) -> None:
    """Every chapter on the stand-ins; chapter 6 again with the official checkpoint; the CUB chapters on the
    small set."""
    for chapter_pass in passes or book_passes(scratch):
        out = scratch / "notebooks" / chapter_pass.name.replace(" ", "-")
        pass_env = pass_environment(env, chapter_pass.env)
        for path in chapters:
            key = path.stem + chapter_pass.suffix
            if key not in BRANCH_MARKS or (chapter_pass.chapters and path.stem not in chapter_pass.chapters):
                continue
            report.timed(f"{path.stem} ({chapter_pass.name})",
                         lambda p=path, o=out, e=pass_env: execute(p, out=o, env=e), detail=BRANCH_MARKS[key][0])
            notes = NOTES in BRANCH_MARKS[key][1] and chapter_pass.marks  # the recipe notes show the file
            check_marks(out / path.name, key, extra=(*chapter_pass.marks, *((WEIGHTS_USED,) if notes else ())))


def rehearse_cli(scratch: Path, env: dict[str, str], report: Report) -> None:
    """The paper recipes and the official checkpoint through `satlib`, as a user runs them."""
    cli = scratch / "cli"
    for recipe, data in (("cub", "cub"), ("imagenet", "imagenet")):
        report.timed(f"satlib train --config configs/{recipe}.yaml", lambda r=recipe, d=data: satlib_command(
            "train", "--config", f"configs/{r}.yaml", "--data-root", scratch / d, "--out", cli / r, "--quiet",
            env=env))
        metrics = cli / f"{recipe}-metrics.json"
        report.timed(f"satlib evaluate ({recipe})", lambda r=recipe, d=data, m=metrics: satlib_command(
            "evaluate", "--checkpoint", cli / r / "checkpoint.pt", "--data-root", scratch / d, "--json", m,
            env=env))
        _require_keys(metrics, ("gt_known", "top1_loc", "top1_cls"))
    official = cli / "official-metrics.json"
    report.timed("satlib evaluate --official", lambda: satlib_command(
        "evaluate", "--official", "--checkpoint", scratch / "official" / "SAT_CUB.pth.tar",
        "--data-root", scratch / "cub", "--json", official, env=env))
    _require_keys(official, ("gt_known", "top1_loc", "top5_loc"))
    openimages = cli / "openimages-metrics.json"  # masks and PxAP; the ImageNet run classifies without ten crops
    report.timed("satlib evaluate --dataset openimages", lambda: satlib_command(
        "evaluate", "--checkpoint", cli / "imagenet" / "checkpoint.pt", "--data-root", scratch / "openimages",
        "--dataset", "openimages", "--protocol", "wsoleval", "--json", openimages, env=env))
    _require_keys(openimages, ("pxap",))
    report.timed("satlib visualize", lambda: satlib_command(
        "visualize", "--checkpoint", cli / "cub" / "checkpoint.pt", "--data-root", scratch / "cub",
        "--out", cli / "grid.png", "--num", "4", "--cam", env=env))
    one_class = sorted(p for p in (scratch / "openimages" / "train").iterdir() if p.is_dir())[0]  # 8 photos of any size
    report.timed("satlib predict", lambda: satlib_command(
        "predict", "--checkpoint", cli / "cub" / "checkpoint.pt", one_class, "--out", cli / "predictions",
        env=env))
    predictions = json.loads((cli / "predictions" / "predictions.json").read_text())
    if len(predictions["predictions"]) != len(list(one_class.iterdir())):
        raise RuntimeError(f"satlib predict localized {len(predictions['predictions'])} of the "
                           f"{len(list(one_class.iterdir()))} images in {one_class}")


def _require_keys(path: Path, keys: tuple[str, ...]) -> None:
    metrics = json.loads(path.read_text())
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise RuntimeError(f"{path}: no {missing} among the metrics (keys: {sorted(metrics)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--chapters", nargs="*", help="chapter names (e.g. 06_cub); default: every chapter")
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line part")
    parser.add_argument("--no-book", action="store_true", help="skip the chapters")
    parser.add_argument("--passes", nargs="*", choices=["real-data", "official", "small"],
                        help="which passes of the chapters (default: all three)")
    args = parser.parse_args(argv)
    chapters = [p for p in toc_notebooks() if not args.chapters or p.stem in args.chapters]
    if args.chapters and len(chapters) != len(args.chapters):
        parser.error(f"unknown chapter among {args.chapters} (chapters: {[p.stem for p in toc_notebooks()]})")
    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="satlib-rehearsal-"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    report = Report()
    started = time.perf_counter()
    try:
        env = {**os.environ, "SATLIB_SMOKE": "1", "SATLIB_FULL_RUN": "1", "SATLIB_CACHE": str(scratch / "cache"),
               "SATLIB_CUB_ROOT": str(scratch / "cub"), "SATLIB_IMAGENET_ROOT": str(scratch / "imagenet")}
        for name in ("SATLIB_OFFICIAL_CHECKPOINT", "SATLIB_DEVICE", "SATLIB_PRETRAINED"):
            env.pop(name, None)
        for layout, options in STANDINS.items():
            if not (scratch / layout / "standin.json").is_file():
                report.timed(f"satlib data synth --layout {layout}", lambda lay=layout, opt=options: satlib_command(
                    "data", "synth", "--layout", lay, "--out", scratch / lay, *opt, env=env))
        (scratch / "official").mkdir(exist_ok=True)
        report.timed("official-format checkpoint",
                     lambda: write_official_checkpoint(scratch / "official" / "SAT_CUB.pth.tar"))
        report.timed("a DeiT-S weights file (SATLIB_PRETRAINED)",
                     lambda: write_deit_weights(scratch / "official" / DEIT_S_FILE))
        if not (scratch / "cub-small" / "standin.json").is_file():
            report.timed("the small CUB-layout set", lambda: write_small_set(scratch / "cub-small"))
        if not args.no_book:
            names = {"real-data": "real data", "official": "official checkpoint", "small": "small"}
            chosen = {names[name] for name in args.passes} if args.passes else set(names.values())
            rehearse_book(scratch, env, chapters, report,
                          [p for p in book_passes(scratch) if p.name in chosen])
        if not args.no_cli:
            rehearse_cli(scratch, env, report)
    finally:
        if not (args.keep or args.scratch):
            shutil.rmtree(scratch, ignore_errors=True)
    print(report.summary())
    print(f"(wall clock {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
