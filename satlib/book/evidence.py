"""The book's evidence: a recipe's runs over seeds, each seed shown with the mean and sd, beside the paper's
numbers, and where a map's mass sits against the GT box.

    runs = settings.run_all([settings.shared_recipe(f"train.seed={s}") for s in SEEDS])
    print(seed_table({"SAT": runs, "CAM": cam_runs}, paper=PAPER_CUB))
    seed_plot(ax, {"SAT": runs, "CAM": cam_runs}, "gt_known")

The paper's numbers are quoted from the official repository's result images (`PAPER_SOURCE`): DeiT-S on
CUB-200-2011 and ILSVRC. The book's own are from the stand-in on a CPU: they are set beside the paper's to
compare what each method does against the others, never to be read as the same experiment.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import torch

from satlib.book.runs import BookRun
from satlib.build import build_datasets, prepare_data
from satlib.config import smoke
from satlib.data import build_loader
from satlib.evaluate import scored_maps
from satlib.evaluation.box_mass import box_mass

# Every evidence table's seeds. Under SATLIB_SMOKE one: a capped run checks code paths, and one seed covers them
# (the rehearsal runs every chapter's real-data branch this way; `satlib.config.smoke` reads the switch).
SEEDS = (0,) if smoke() else (0, 1, 2)
PAPER_SOURCE = "the official repository wpy1999/SAT: img/result.png (main table), img/fig1.png (limited data)"
PAPER_LABEL = "paper: DeiT-S"
BOOK_LABEL = "this book: stand-in, CPU"
# (GT-known, Top-1 Loc) on CUB-200-2011, DeiT-S methods and CAM (VGG16); img/result.png
PAPER_CUB = {"SAT": (98.45, 80.96), "TS-CAM": (87.70, 71.30), "CAM": (55.10, 41.06)}
# (GT-known, Top-1 Loc) on ILSVRC; img/result.png
PAPER_IMAGENET = {"SAT": (73.13, 60.15), "TS-CAM": (67.60, 53.40), "CAM": (59.00, 42.80)}
# SAT's GT-known on ILSVRC trained on n images a class from a pretrained DeiT-S; img/fig1.png, "Few-shot"
PAPER_FEWSHOT = {1: 70.9, 3: 71.9, 5: 72.6, 10: 72.9, "all": 73.1}
COLUMNS = (("top1_cls", "top-1 cls"), ("gt_known", "GT-known"), ("top1_loc", "Top-1 Loc"),
           ("best_threshold", "best thr"))


def final_metrics(run: BookRun) -> dict:
    """The run's closing evaluation (the last record of its metrics.json that holds GT-known)."""
    history = [record for record in run.history() if "gt_known" in record]
    if not history:
        raise ValueError(f"{run.folder}: no evaluation in metrics.json (a run with eval.max_batches=0?)")
    return history[-1]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def seed_cell(values: Sequence[float], digits: int = 1) -> str:
    """Every seed's value, then mean ± sd: "77.2 / 82.8 / 77.5 (79.2 ± 3.1)" (one seed: the value)."""
    shown = " / ".join(f"{v:.{digits}f}" for v in values)
    if len(values) == 1:
        return shown
    mean, sd = mean_sd(values)
    return f"{shown} ({mean:.{digits}f} ± {sd:.{digits}f})"


def seed_table(rows: Mapping[str, Sequence[BookRun]], *, columns: Sequence[tuple[str, str]] = COLUMNS,
               paper: Mapping[str, tuple[float, float]] | None = None, paper_label: str = PAPER_LABEL) -> str:
    """A text table, one row per label: each column's value on every run (seed) of the row, and mean ± sd.

    With `paper` ({label: (GT-known, Top-1 Loc)}), two more columns quote the paper's numbers for the rows
    it has, headed with `paper_label` (the paper's backbone and data differ: see the module doc)."""
    header = ["", "seeds", *(title for _, title in columns)]
    if paper is not None:
        header += [f"{paper_label} GT-known", f"{paper_label} Top-1 Loc"]
    body = []
    for label, runs in rows.items():
        records = [final_metrics(run) for run in runs]
        seeds = ", ".join(str(run_seed(run)) for run in runs)
        cells = [label, seeds, *metric_cells(records, columns)]
        if paper is not None:
            quoted = paper.get(label)
            cells += [f"{quoted[0]:.2f}", f"{quoted[1]:.2f}"] if quoted else ["", ""]
        body.append(cells)
    return text_table(header, body)


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Rows of text cells as aligned columns, a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def metric_cells(records: Sequence[Mapping], columns: Sequence[tuple[str, str]] = COLUMNS) -> list[str]:
    """One `seed_cell` a column over the records of a row's runs (thresholds to 2 digits, the rest to 1)."""
    return [seed_cell([float(r[key]) for r in records], 2 if key == "best_threshold" else 1) for key, _ in columns]


def run_seed(run: BookRun) -> int:
    """The seed the run was trained with (its config)."""
    return int(run.config().train.seed)


def seed_plot(ax, rows: Mapping[str, Sequence[BookRun]], key: str = "gt_known", *, title: str | None = None,
              paper: Mapping[str, float] | None = None) -> None:
    """One bar a row at the mean of `key` over its runs, a dot for every seed (so the spread is seen), and
    with `paper` ({label: value}) a hollow diamond at the paper's number."""
    labels = list(rows)
    for i, label in enumerate(labels):
        values = [float(final_metrics(run)[key]) for run in rows[label]]
        mean, sd = mean_sd(values)
        ax.bar(i, mean, color="#9ecae1", edgecolor="#3182bd", width=0.6, label="mean over seeds" if i == 0 else None)
        ax.errorbar(i, mean, yerr=sd, color="#3182bd", capsize=4)
        ax.plot([i] * len(values), values, "o", color="black", ms=4, label="one seed" if i == 0 else None)
        ax.text(i, mean, f"{mean:.1f}", ha="center", va="bottom", fontsize=8, color="#08519c")
        if paper and label in paper:
            ax.plot(i + 0.2, paper[label], "D", mfc="none", mec="#e6550d", ms=6,
                    label=PAPER_LABEL if i == next(j for j, name in enumerate(labels) if name in paper) else None)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 100)
    ax.set_ylabel(dict(COLUMNS).get(key, key) + " (%)")
    if title:
        ax.set_title(title)


@torch.no_grad()
def map_mass(run: BookRun, *, batch_size: int = 128) -> dict[str, float]:
    """Where the run's scored maps (SAT's loc-token map, a baseline's map of the GT class) put their mass on
    its test split (`satlib.evaluation.box_mass`): the mean share of the min-max normalised map's mass inside
    the GT box, the box's mean share of the image (what an even map would put there), and the share of
    images whose mean inside the box beats the mean outside."""
    model, info = run.load()
    config = info.config
    _, test_set = build_datasets(config, prepare_data(config), train=False)
    inside, boxes, above = [], [], []
    for batch in build_loader(test_set, batch_size, train=False, workers=0):
        out = model(batch["images"].to(run.device))
        found = box_mass(scored_maps(out, batch["labels"].to(run.device)).float().cpu(), batch["boxes"],
                         config.data.img_size, config.eval.protocol)
        inside.append(found.inside_share)
        boxes.append(found.box_share)
        above.append(found.inside_mean > found.outside_mean)
    return {"inside_share": 100 * torch.cat(inside).mean().item(), "box_share": 100 * torch.cat(boxes).mean().item(),
            "inside_beats_outside": 100 * torch.cat(above).float().mean().item()}


# A measurement along an axis (images a class, ...): method -> x -> that method's runs at x, one a seed.
Curves = Mapping[str, Mapping[object, Sequence[BookRun]]]
CURVE_COLOURS = ("#3182bd", "#31a354", "#756bb1", "#636363")  # one a method, in the order of `Curves`


def curve_table(curves: Curves, *, x_title: str = "images a class", columns: Sequence[tuple[str, str]] = COLUMNS,
                paper: Mapping[object, float] | None = None, paper_method: str = "SAT", paper_key: str = "gt_known",
                paper_label: str = PAPER_LABEL) -> str:
    """A text table, one row per (method, x): each column's value on every run (seed) at x, and mean ± sd.

    With `paper` ({x: value of `paper_key`}), one more column quotes the paper's number on `paper_method`'s
    rows (the paper reports that method alone along this axis), headed with `paper_label`."""
    header = ["", x_title, "seeds", *(title for _, title in columns)]
    if paper is not None:
        header.append(f"{paper_label} {dict(COLUMNS).get(paper_key, paper_key)}")
    body = []
    for method, along in curves.items():
        for x, runs in along.items():
            cells = [method, str(x), ", ".join(str(run_seed(run)) for run in runs),
                     *metric_cells([final_metrics(run) for run in runs], columns)]
            if paper is not None:
                cells.append(f"{paper[x]:.1f}" if method == paper_method and x in paper else "")
            body.append(cells)
    return text_table(header, body)


def curve_plot(ax, curves: Curves, key: str = "gt_known", *, paper: Mapping[object, float] | None = None,
               paper_method: str = "SAT", paper_label: str = PAPER_LABEL, book_label: str = BOOK_LABEL,
               title: str | None = None) -> None:
    """`key` along the x of `curves` (evenly spaced, in the first method's order): a line a method through its
    means over seeds, a dot for every seed (the methods' dots side by side), and with `paper` ({x: value})
    a hollow diamond at the paper's `paper_method`, its own marker, labelled `paper_label`."""
    xs = list(next(iter(curves.values())))
    spread = 0.08  # how far apart the methods' seed dots sit at one x
    for m, (method, along) in enumerate(curves.items()):
        colour = CURVE_COLOURS[m % len(CURVE_COLOURS)]
        values = [[float(final_metrics(run)[key]) for run in along[x]] for x in xs]
        ax.plot(range(len(xs)), [mean_sd(v)[0] for v in values], "-", color=colour, lw=1.5,
                label=f"{method}, {book_label}: mean")
        offset = (m - (len(curves) - 1) / 2) * spread
        for i, seeds in enumerate(values):
            ax.plot([i + offset] * len(seeds), seeds, "o", color=colour, ms=3.5, alpha=0.8,
                    label=f"{method}: one seed" if i == 0 else None)
    if paper:
        shown = [i for i, x in enumerate(xs) if x in paper]
        ax.plot(shown, [paper[xs[i]] for i in shown], "D", mfc="none", mec="#e6550d", ms=6, ls="none",
                label=f"{paper_method}, {paper_label}")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_ylim(0, 100)
    ax.set_ylabel(dict(COLUMNS).get(key, key) + " (%)")
    if title:
        ax.set_title(title)
