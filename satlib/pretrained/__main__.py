"""`python -m satlib.pretrained`: pretrain the stand-in backbone (configs/pretrain_fills.yaml) and export it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from satlib.config import Config, load_config
from satlib.pretrained import COMMAND, RECIPE, STANDIN, export_backbone
from satlib.train import train


def pretrain(out: str | os.PathLike = STANDIN, *, run_dir: str | os.PathLike = "runs/pretrain_fills",
             overrides: list[str] | tuple = (), progress: bool = False) -> dict:
    """Train configs/pretrain_fills.yaml (+ `overrides`) into `run_dir` and export its backbone to `out`;
    returns the provenance written beside it. Call with one torch thread to reproduce `STANDIN`."""
    config = load_config(RECIPE, [*overrides, f"train.out={Path(run_dir)}"])
    record = train(config, progress=progress, quiet=not progress)
    return export_backbone(Path(run_dir) / "checkpoint.pt", out, provenance(config, record, overrides))


def provenance(config: Config, record: dict, overrides: list[str] | tuple = ()) -> dict:
    """What the JSON beside the weights records of the run that made them (`export_backbone` adds the rest)."""
    resolved = config.to_dict()
    resolved["train"] = {key: value for key, value in resolved["train"].items() if key not in ("out", "device")}
    return {
        "description": "the conv-stem ViT backbone of cam_tiny_convstem (the demo's widths) pretrained for "
                       "classification on the synthetic 'fills' set; classifier head dropped",
        "command": " ".join([COMMAND, *overrides]), "recipe": RECIPE, "config": resolved,
        "seed": config.train.seed, "torch_threads": torch.get_num_threads(), "torch": torch.__version__.split("+")[0],
        "pretraining": {key: record[key] for key in ("top1_cls", "train_top1", "step", "time") if key in record},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Pretrain the stand-in backbone (configs/"
                                     f"{RECIPE}.yaml) and write it with its provenance JSON.")
    parser.add_argument("--out", default=str(STANDIN), help=f"weights file (default: the packaged {STANDIN.name})")
    parser.add_argument("--run-dir", default="runs/pretrain_fills", help="the pretraining run's folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the committed file's)")
    args, overrides = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    record = pretrain(args.out, run_dir=args.run_dir, overrides=[o.lstrip("-") for o in overrides], progress=True)
    print(json.dumps({key: record[key] for key in ("file", "sha256", "tensors", "parameters", "pretraining")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
