"""The executable book's machinery, imported by the chapters (and their tests) only: `import satlib` never
imports it, and nothing else in satlib does.

    from satlib.book import setup
    settings = setup()                   # the SATLIB_* switches, checked; seeds; the figure style
    run = settings.run(settings.shared_recipe())   # trained only when no finished run of it exists
    model, info = run.load()             # a satlib.LoadedModel: info.threshold, info.metrics, info.config

One module per question:

    settings.py   the switches: SATLIB_* environment -> a checked `Settings`, the chapters' one handle
    recipes.py    the recipes a chapter asks for: the tiny SAT, CUB, ImageNet, a recipe's baselines; notes
    runs.py       the run cache: runs keyed by their config, their ids, how a chapter cites them, runs side by side
    evidence.py   a recipe over seeds: every seed and mean ± sd beside the paper's numbers; where a map's mass sits
    probe.py      the probe images' maps after every epoch of a run
    fit.py        a paper recipe's step split into micro-batches that fit this GPU, measured on it
    widgets.py    `explore`: a figure with controls (ipywidgets, the `book` extra, imported when called)
    source.py     code on the page: satlib's own source, whole or as an excerpt with statements left out

Importing it imports matplotlib (the figure style) and the training loop (the run cache trains).
"""

from satlib.book.evidence import (
    BOOK_LABEL,
    PAPER_CUB,
    PAPER_FEWSHOT,
    PAPER_IMAGENET,
    PAPER_LABEL,
    PAPER_SOURCE,
    SEEDS,
    final_metrics,
    map_mass,
    mean_sd,
    seed_cell,
    seed_plot,
    seed_table,
)
from satlib.book.fit import DoesNotFit, StepMemory, fit_to_device, micro_batches_to_fit
from satlib.book.probe import EPOCH_MAPS, Probe, probe_indices
from satlib.book.recipes import SHORT_RUN, TINY_SAT, recipe_notes
from satlib.book.runs import FINISHED, RUN_CITATION, BookRun, RunCache, RunStoppedEarly, cited_runs
from satlib.book.settings import FIGURE_STYLE, Settings, SettingsError, read_settings, setup
from satlib.book.source import excerpt, source
from satlib.book.widgets import WIDGET_VIEW, explore

__all__ = ["setup", "read_settings", "Settings", "SettingsError", "FIGURE_STYLE", "TINY_SAT", "SHORT_RUN",
           "recipe_notes", "BookRun", "RunCache", "cited_runs", "RUN_CITATION", "FINISHED", "Probe",
           "probe_indices", "EPOCH_MAPS", "fit_to_device", "micro_batches_to_fit", "StepMemory", "DoesNotFit",
           "explore", "WIDGET_VIEW", "source", "excerpt", "RunStoppedEarly", "SEEDS", "PAPER_SOURCE", "PAPER_LABEL",
           "BOOK_LABEL", "PAPER_CUB", "PAPER_IMAGENET", "PAPER_FEWSHOT", "final_metrics", "mean_sd", "seed_cell",
           "seed_table", "seed_plot", "map_mass"]
