"""Every chapter cites the cached runs it shows, and they are the runs its recipes give today.

A chapter that shows a run prints `run.cite()` ("run <model>-<digest of the full config>") in a cell
marked `# NBVAL_CHECK_OUTPUT`. Here the ids are recomputed from satlib.book without training, for the
settings the committed outputs were executed with (CPU, the synthetic stand-in, short runs, no smoke):
a chapter whose output cites a run its recipes no longer give (a stale output, or a recipe changed
under it) fails, and so does a chapter that uses the shared run without citing it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import torch

import satlib.book.recipes
from satlib.book import SEEDS, BookRun, Settings, cited_runs
from satlib.config import Config, load_config

from book_helpers import chapter_notebooks

CHECKED = "# NBVAL_CHECK_OUTPUT"
SHARED_USE = "shared_recipe("  # a chapter whose code says this shows the shared run

def _constraints_runs(settings: Settings) -> dict[str, Config]:
    """Chapter 3: the ablation (none / area only / normalization only / both x seeds 0-2), area_thr x 0.5 / 1 / 2
    (seeds 0-2), the parts runs (SAT and TS-CAM, seed 0)."""
    variants = {"none": ["train.lambda_area=0", "train.lambda_norm=0"], "area only": ["train.lambda_norm=0"],
                "normalization only": ["train.lambda_area=0"], "both": []}
    runs = {f"{name} seed {seed}": settings.shared_recipe(*extra, f"train.seed={seed}")
            for seed in SEEDS for name, extra in variants.items()}
    shared_thr = settings.shared_recipe().train.area_thr
    runs.update({f"area_thr {f} seed {seed}": settings.shared_recipe(f"train.area_thr={round(shared_thr * f, 4)}",
                                                                     f"train.seed={seed}")
                 for f in (0.5, 1.0, 2.0) for seed in SEEDS})
    parts = [f"data.root={settings.cache / 'synthetic-parts-96px'}", "train.seed=0"]
    runs["parts sat"] = load_config("book_parts", parts)
    runs["parts tscam"] = load_config("book_parts", [*parts, "model.name=tscam_tiny_convstem"])
    return runs


def _seeded(settings: Settings, *methods: str) -> dict[str, Config]:
    """The shared run ("sat") and its baselines (`methods`), seeds 0-2: "<method> seed <s>" -> its recipe."""
    recipes = {"sat": settings.shared_recipe, **{m: lambda *o, m=m: settings.shared_baseline(m, *o) for m in methods}}
    return {f"{name} seed {seed}": make(f"train.seed={seed}") for name, make in recipes.items() for seed in SEEDS}


def _training_runs(settings: Settings) -> dict[str, Config]:
    """Chapter 4: the demo's recipe (configs/synthetic_cpu.yaml, from scratch, no wall-clock cap) and its
    baseline; the shared run and both baselines, seeds 0-2."""
    overrides = ["train.time_budget=0"]
    return {"sat": load_config("synthetic_cpu", overrides),
            "tscam": load_config("synthetic_cpu", [*overrides, "model.name=tscam_tiny_convstem"]),
            **_seeded(settings, "cam", "tscam")}


def _imagenet_runs(settings: Settings) -> dict[str, Config]:
    """Chapter 7, limited data on the stand-in: SAT and CAM at 1, 3, 5 and 10 images a class
    (configs/synthetic_fewshot.yaml) and on every image (the shared recipe and its CAM), seeds 0, 1, 2."""
    runs = {}
    for seed in SEEDS:
        for n in (1, 3, 5, 10):
            runs[f"sat {n} seed {seed}"] = settings.fewshot_recipe(n, f"train.seed={seed}")
            runs[f"cam {n} seed {seed}"] = settings.fewshot_recipe(n, "model.name=cam_tiny_convstem",
                                                                   f"train.seed={seed}")
        runs[f"sat all seed {seed}"] = settings.shared_recipe(f"train.seed={seed}")
        runs[f"cam all seed {seed}"] = settings.shared_baseline("cam", f"train.seed={seed}")
    return runs


def _comparison_runs(settings: Settings) -> dict[str, Config]:
    """Chapters 0 and 6: SAT, CAM and TS-CAM with the shared recipe, seeds 0-2 (evidence table T1)."""
    runs = {f"sat seed {seed}": settings.shared_recipe(f"train.seed={seed}") for seed in SEEDS}
    runs.update({f"{method} seed {seed}": settings.shared_baseline(method, f"train.seed={seed}")
                 for method in ("cam", "tscam") for seed in SEEDS})
    return runs


def _cub_runs(settings: Settings) -> dict[str, Config]:
    """Chapter 6: T1, the held-out run (20 training images a class held out of the stand-in's 240), and SAT
    and CAM on the CUB-like variant, seeds 0-2 (T4)."""
    runs = _comparison_runs(settings)
    runs["held out"] = settings.shared_recipe("data.per_class=220", "train.eval_every=1")
    runs.update({f"cublike sat seed {seed}": settings.cublike_recipe(f"train.seed={seed}") for seed in SEEDS})
    runs.update({f"cublike cam seed {seed}": settings.cublike_recipe("model.name=cam_tiny_convstem",
                                                                     f"train.seed={seed}") for seed in SEEDS})
    return runs


# The runs each chapter may cite, by chapter: name -> the recipe, as the chapter's code builds it (a chapter
# whose recipe changes must change here too, or its citations fail as stale).
RECIPES: dict[str, Callable[[Settings], dict[str, Config]]] = {
    "00_wsol": _comparison_runs,
    "06_cub": _cub_runs,
    "03_constraints": _constraints_runs,
    "04_training": _training_runs,
    "07_imagenet": _imagenet_runs,
    "09_gradcam": lambda settings: {"shared": settings.shared_recipe(), "cam": settings.shared_baseline("cam"),
                                    **_seeded(settings, "cam")},
}


def committed_settings(cache: Path) -> Settings:
    """The switches the committed outputs were executed with: all unset (CPU, stand-in, short runs)."""
    return Settings(device=torch.device("cpu"), cache_root=cache)


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Committed settings on an empty cache; the stand-in's folder is named, not generated."""
    monkeypatch.setattr(satlib.book.recipes, "ensure_synthetic_dataset", lambda root, **_: Path(root))
    return committed_settings(tmp_path / "cache")


def output_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def citation_problems(nb, chapter: str, settings: Settings) -> list[str]:
    """What is wrong with the runs a chapter cites (empty: nothing); `chapter` is its file's stem."""
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    checked = [run for cell in code if CHECKED in cell.source for run in cited_runs(output_text(cell))]
    unchecked = [run for cell in code if CHECKED not in cell.source for run in cited_runs(output_text(cell))]
    recipes = RECIPES.get(chapter, lambda s: {})(settings)
    uses_shared = any(SHARED_USE in cell.source for cell in code)
    if uses_shared:
        recipes.setdefault("shared", settings.shared_recipe())
    expected = {settings.run_dir(config).name: name for name, config in recipes.items()}
    problems = [f"cites run {run} outside a cell marked {CHECKED}" for run in unchecked]
    problems += [f"cites run {run}, which none of its recipes gives today ({', '.join(sorted(expected)) or 'none'}):"
                 f" a stale output, or a recipe missing from RECIPES" for run in checked if run not in expected]
    shared = settings.run_dir(settings.shared_recipe()).name
    if uses_shared and shared not in checked:
        problems.append(f"uses settings.shared_recipe() but does not print its run's id ({shared}): "
                        f"print(run.cite()) in a cell marked {CHECKED}")
    return problems


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in chapter_notebooks()])
def test_every_chapter_cites_the_runs_its_recipes_give(path, settings):
    problems = citation_problems(nbformat.read(path, as_version=4), path.stem, settings)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def chapter(*cells: tuple[str, str]) -> nbformat.NotebookNode:
    """A notebook of code cells, each (source, printed text)."""
    nb = nbformat.v4.new_notebook()
    for source, text in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    return nb


def test_a_stale_or_missing_citation_is_reported(settings):
    shared = BookRun(settings.run_dir(settings.shared_recipe()), trained=False, device=settings.device)
    longer = settings.shared_recipe().train.epochs + 1  # any recipe but the shared one
    stale = BookRun(settings.run_dir(settings.shared_recipe(f"train.epochs={longer}")), trained=False,
                    device=settings.device)
    uses = "run = settings.run(settings.shared_recipe())"
    assert citation_problems(chapter((uses, ""), (f"{CHECKED}\nprint(run.cite())", shared.cite() + "\n")),
                             "02_attention_querying", settings) == []
    problems = citation_problems(chapter((uses, ""), (f"{CHECKED}\nprint(run.cite())", stale.cite() + "\n")),
                                 "02_attention_querying", settings)
    assert len(problems) == 2 and stale.id in problems[0] and shared.id in problems[1]
    problems = citation_problems(chapter((uses, shared.cite() + "\n")), "02_attention_querying", settings)
    assert len(problems) == 2 and "outside a cell marked" in problems[0]
    assert citation_problems(chapter(("print(1)", "1\n")), "01_token_injection", settings) == []


def test_run_ids_do_not_depend_on_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(satlib.book.recipes, "ensure_synthetic_dataset", lambda root, **_: Path(root))
    here, there = committed_settings(tmp_path / "here"), committed_settings(tmp_path / "there")
    assert here.run_dir(here.shared_recipe()).name == there.run_dir(there.shared_recipe()).name
    assert here.run_key(here.tiny_recipe())["config"]["data"]["root"] == "$SATLIB_CACHE/book/synthetic-64px-4x100"
    outside = [here.shared_recipe(f"data.root={tmp_path / name}") for name in ("a", "b")]
    assert here.run_dir(outside[0]).name != here.run_dir(outside[1]).name  # a real dataset's folder is kept


def test_a_citation_is_one_line_read_back_by_cited_runs(settings):
    runs = [BookRun(settings.run_dir(config), trained=True, device=settings.device)
            for config in (settings.shared_recipe(), settings.shared_baseline("cam"))]
    text = "ready in 3 s\n" + "\n".join(run.cite() for run in runs) + "\nrun the next cell\n"
    assert cited_runs(text) == [run.id for run in runs]
    assert runs[0].id.startswith("sat_tiny_convstem-") and runs[1].id.startswith("cam_tiny_convstem-")


def test_the_shared_baselines_share_everything_but_the_model(settings):
    shared = settings.shared_recipe().to_dict()
    for method in ("cam", "tscam"):
        baseline = settings.shared_baseline(method).to_dict()
        assert baseline["model"]["name"] == f"{method}_tiny_convstem"
        assert {**baseline, "model": None} == {**shared, "model": None}
    with pytest.raises(ValueError, match="'gradcam'"):
        settings.shared_baseline("gradcam")
