"""Where trained maps put their mass on the test split: the CAM's failure on small objects, measured.

    python bench/evidence_maps.py runs/evidence/t1_cam/seed0/checkpoint.pt [...] [--as tscam] [--json out.json]

For each checkpoint, the maps the evaluator scores (SAT's loc-token map; a baseline's map of the GT
class) on the test split of the data it was trained on, read against the GT boxes with
`satlib.evaluation.box_mass`: the mean share of the (min-max normalised) map's mass inside the box,
the mean box share of the image (what an even map would put inside), and the share of images whose
inside-box mean beats the outside mean, and the maps' GT-known and Top-1 Loc on the run's threshold sweep.
`--as tscam` reads a CAM run's network as TS-CAM (the same weights: both baselines train the same
network with cross-entropy alone; only the map differs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from satlib.build import build_datasets, build_model, load
from satlib.data import build_loader
from satlib.evaluate import evaluate_model, scored_maps
from satlib.evaluation.box_mass import box_mass


@torch.no_grad()
def map_mass(checkpoint: str | Path, method: str | None = None, thresholds: list[float] | None = None) -> dict:
    """The `box_mass` summary and the evaluator's scores of one checkpoint's maps on its test split (on
    `thresholds` when given, else the run's sweep)."""
    model, info = load(checkpoint)
    config = info.config
    if thresholds:
        config.eval.thresholds = list(thresholds)
    if method is not None:  # the same weights read as another method's network
        config.model.name = f"{method}_{config.model.name.split('_', 1)[1]}"
        state = model.state_dict()
        model = build_model(config, with_pretrained=False).eval()
        model.load_state_dict(state)
    _, test_set = build_datasets(config, train=False)
    shares, boxes_share, above = [], [], []
    for batch in build_loader(test_set, 128, train=False, workers=0):
        out = model(batch["images"])
        found = box_mass(scored_maps(out, batch["labels"]), batch["boxes"], config.data.img_size,
                         config.eval.protocol)
        shares.append(found.inside_share)
        boxes_share.append(found.box_share)
        above.append(found.inside_mean > found.outside_mean)
    metrics = evaluate_model(model, build_loader(test_set, 128, train=False, workers=0), config,
                             torch.device("cpu"))
    return {"model": config.model.name, "images": len(test_set),
            "inside_share": torch.cat(shares).mean().item(), "box_share": torch.cat(boxes_share).mean().item(),
            "inside_beats_outside": torch.cat(above).float().mean().item(),
            **{key: metrics[key] for key in ("gt_known", "top1_loc", "best_threshold", "top1_cls")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--as", dest="method", choices=["sat", "cam", "tscam"], help="read the weights as this method")
    parser.add_argument("--thresholds", type=float, nargs="+", help="the sweep (default: the run's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = {str(path): map_mass(path, args.method, args.thresholds) for path in args.checkpoints}
    for path, found in results.items():
        print(f"{path}: {found['model']}, mass inside box {100 * found['inside_share']:.1f} % "
              f"(box {100 * found['box_share']:.1f} % of the image), inside mean > outside on "
              f"{100 * found['inside_beats_outside']:.1f} % of images; GT-known {found['gt_known']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
