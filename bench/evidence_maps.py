"""Where trained maps put their mass on the test split: the CAM's failure on small objects, measured.

    python bench/evidence_maps.py runs/evidence/t1_cam/seed0/checkpoint.pt [...] [--json out.json]

For each checkpoint, the maps the evaluator scores (SAT's loc-token map; a baseline's map of the GT
class) on the test split of the data it was trained on, read against the GT boxes with
`satlib.evaluation.box_mass`: the mean share of the (min-max normalised) map's mass inside the box,
the mean box share of the image (what an even map would put inside), and the share of images whose
inside-box mean beats the outside mean. Adds the run's GT-known from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from satlib.checkpoint import model_from_checkpoint
from satlib.data import build_loader
from satlib.data.from_config import build_datasets
from satlib.evaluation.box_mass import box_mass
from satlib.evaluation.evaluate import scored_maps


@torch.no_grad()
def map_mass(checkpoint: str | Path) -> dict:
    """The `box_mass` summary of one checkpoint's maps on its test split."""
    model, config, payload = model_from_checkpoint(checkpoint)
    _, test_set = build_datasets(config, train=False)
    shares, boxes_share, above = [], [], []
    for batch in build_loader(test_set, 128, train=False, workers=0):
        out = model(batch["images"])
        found = box_mass(scored_maps(out, batch["labels"]), batch["boxes"], config.data.img_size,
                         config.eval.protocol)
        shares.append(found.inside_share)
        boxes_share.append(found.box_share)
        above.append(found.inside_mean > found.outside_mean)
    metrics = payload["metrics"]
    return {"model": config.model.name, "images": len(test_set),
            "inside_share": torch.cat(shares).mean().item(), "box_share": torch.cat(boxes_share).mean().item(),
            "inside_beats_outside": torch.cat(above).float().mean().item(),
            "gt_known": metrics["gt_known"], "top1_cls": metrics["top1_cls"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = {str(path): map_mass(path) for path in args.checkpoints}
    for path, found in results.items():
        print(f"{path}: {found['model']}, mass inside box {100 * found['inside_share']:.1f} % "
              f"(box {100 * found['box_share']:.1f} % of the image), inside mean > outside on "
              f"{100 * found['inside_beats_outside']:.1f} % of images; GT-known {found['gt_known']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
