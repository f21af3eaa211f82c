"""Score finished evidence runs again with their recipe's current threshold sweep, where it changed.

    python bench/evidence_reeval.py NAME [NAME ...]

A run evaluates once, after its last step, so `satlib evaluate` of its checkpoint.pt with a new
`eval.thresholds` list gives what the run would have reported with that list. For each seed of each
NAME in bench/evidence.json whose run folder's config.yaml holds another list than the recipe (its
file + the recorded overrides) now holds, the checkpoint is scored again and the summary's evaluator
keys are replaced; `reevaluated` records the list used.
"""

from __future__ import annotations

import argparse
import json

import yaml
from evidence_runs import RESULTS, record

from satlib.assess import evaluate_checkpoint
from satlib.build import resolve_data_root
from satlib.config import load_config

KEYS = ("top1_cls", "gt_known", "top1_loc", "best_threshold", "maxboxacc")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--runs", default="runs/evidence")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text())
    for name in args.names:
        entry = results[name]
        recipe = load_config(entry["config"], entry["overrides"])
        wanted = [float(t) for t in recipe.eval.thresholds]
        for seed, summary in entry["seeds"].items():
            folder = f"{args.runs}/{name}/seed{seed}"
            with open(f"{folder}/config.yaml") as f:
                used = [float(t) for t in yaml.safe_load(f)["eval"]["thresholds"]]
            if used == wanted:
                continue
            metrics = evaluate_checkpoint(f"{folder}/checkpoint.pt", data_root=resolve_data_root(recipe),
                                          thresholds=wanted, device="cpu")
            before = {key: summary.get(key) for key in ("gt_known", "best_threshold")}
            summary.update({key: metrics[key] for key in KEYS}, reevaluated=wanted)
            record(name, {k: v for k, v in entry.items() if k != "seeds"}, int(seed), summary)
            print(f"{name} seed {seed}: GT-known {before['gt_known']:.1f} @ {before['best_threshold']:g} -> "
                  f"{metrics['gt_known']:.1f} @ {metrics['best_threshold']:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
