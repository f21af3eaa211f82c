"""Object scale of a generated synthetic set: how much of the image the GT boxes and the object masks cover.

    python bench/evidence_data.py --config synthetic_book [--config synthetic_book_cublike ...] [--split test]

For each recipe's data (generated into the cache if needed, as training would): the mean and quartiles of
the GT box's share of the image and of the object mask's, and the trivial boxes' GT-known
(`satlib.evaluation.trivial_baselines`: the whole image, a centred box of the split's mean size).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from satlib.build import prepare_data
from satlib.config import load_config
from satlib.data.cub import read_cub
from satlib.data.records import Problems
from satlib.evaluation.baselines import trivial_baselines


def object_scale(root, split: str) -> dict:
    """Mean, median and quartiles of the box and mask shares of the image over a split's images."""
    records, _ = read_cub(root, split, Problems())
    box_shares, mask_shares = [], []
    for record in records:
        mask = np.asarray(Image.open(root / "segmentations" / record.image_id)) > 127
        x0, y0, x1, y1 = record.boxes[0]
        box_shares.append((x1 - x0 + 1) * (y1 - y0 + 1) / mask.size)
        mask_shares.append(mask.mean())

    def spread(values: list[float]) -> dict:
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return {"mean": float(np.mean(values)), "q1": float(q1), "median": float(median), "q3": float(q3)}

    return {"images": len(records), "box_share": spread(box_shares), "mask_share": spread(mask_shares)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="recipe (repeatable)")
    parser.add_argument("--split", default="test")
    args, overrides = parser.parse_known_args(argv)
    report = {}
    for name in args.config:
        config = load_config(name, overrides)
        root = prepare_data(config)
        report[name] = {"synth": config.data.synth, **object_scale(root, args.split),
                        "trivial_gt_known": trivial_baselines(root, args.split)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
