"""Markdown tables of bench/evidence.json: each named set of runs, every seed, then mean ± sd.

    python bench/evidence_tables.py [NAME ...]      # all names when none is given
"""

from __future__ import annotations

import argparse
import json
import statistics

from evidence_runs import RESULTS

COLUMNS = (("top1_cls", "top-1 cls"), ("gt_known", "GT-known"), ("top1_loc", "Top-1 Loc"),
           ("best_threshold", "best thr"), ("cpu", "cpu s"), ("wall", "wall s"))


def cell(values: list[float], key: str) -> str:
    """Every seed's value, then mean ± sd (thresholds and times: the range / mean alone)."""
    if key == "best_threshold":
        return " / ".join(f"{v:g}" for v in values)
    if key in ("cpu", "wall"):
        return f"{statistics.mean(values):.0f}"
    seeds = " / ".join(f"{v:.1f}" for v in values)
    if len(values) < 2:
        return seeds
    return f"{seeds} (**{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}**)"


def table(names: list[str], results: dict) -> str:
    lines = ["| runs | seeds | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name in names:
        seeds = results[name]["seeds"]
        rows = [seeds[s] for s in sorted(seeds, key=int)]
        cells = [cell([r[key] for r in rows if key in r], key) if any(key in r for r in rows) else ""
                 for key, _ in COLUMNS]
        lines.append(f"| {name} | {', '.join(sorted(seeds, key=int))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text())
    print(table(args.names or list(results), results))
    for name in args.names or list(results):
        print(f"- {name}: `{results[name]['command']}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
