"""What `train.decay_tokens` changes: the parameter groups, and short runs with both settings over seeds.

The official scripts decay pos_embed and the cls/loc tokens (their optimizer is built on the
DataParallel/DDP wrapper, which hides the model's `no_weight_decay()`); timm and DeiT keep them out of
decay. configs/cub.yaml and imagenet.yaml follow the official scripts (`train.decay_tokens: true`).
This script measures what the switch changes:

- the AdamW groups of DeiT-S SAT (200 classes) and of the demo's conv-stem SAT under each setting;
- the demo's recipe (configs/synthetic_cpu.yaml, trained from scratch at lr 1e-3, 630 steps, no time
  cap) for each seed with both settings, the settings alternating so that the machine's load weighs on
  both alike: the test metrics, the final loss and the norm of the trained position embedding.

    python bench/bench_weight_decay.py --seeds 0,1,2            # one torch thread, about 4 minutes a run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from satlib.build import build_model
from satlib.checkpoint import load_checkpoint
from satlib.config import load_config
from satlib.train import param_groups, train

METRICS = ("top1_cls", "gt_known", "top1_loc", "best_threshold", "loss")


def group_sizes(recipe: str, overrides: list[str]) -> dict:
    """Values in the decayed and the undecayed group under each setting, for `recipe`'s model."""
    model = build_model(load_config(recipe, overrides), with_pretrained=False)
    sizes = {}
    for decay_tokens in (False, True):
        decay, no_decay = param_groups(model, 0.05, decay_tokens=decay_tokens)
        sizes[str(decay_tokens)] = {"decayed": sum(p.numel() for p in decay["params"]),
                                    "not_decayed": sum(p.numel() for p in no_decay["params"])}
    return {"model": model.__class__.__name__, **sizes}


def one_run(seed: int, decay_tokens: bool, out: Path) -> dict:
    """The demo recipe at `seed`, no time cap: its test metrics, seconds and trained pos_embed norm."""
    config = load_config("synthetic_cpu", [f"train.seed={seed}", f"train.decay_tokens={decay_tokens}",
                                           "train.time_budget=0", f"train.out={out}"])
    start = time.perf_counter()
    record = train(config, progress=False, quiet=True)
    state = load_checkpoint(out / "checkpoint.pt")["model"]
    return {"seed": seed, "decay_tokens": decay_tokens, "seconds": time.perf_counter() - start,
            "pos_embed_norm": float(state["pos_embed"].norm()), **{k: record[k] for k in METRICS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    groups = {"sat_deit_small (200 classes)": group_sizes("cub", ["model.pretrained="]),
              "demo conv-stem SAT": group_sizes("synthetic_cpu", [])}
    for name, sizes in groups.items():
        print(f"{name}: decayed {sizes['False']['decayed']:,} -> {sizes['True']['decayed']:,} values with "
              f"decay_tokens (+{sizes['True']['decayed'] - sizes['False']['decayed']:,}, "
              f"{100 * (sizes['True']['decayed'] / sizes['False']['decayed'] - 1):.2f}%)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for decay_tokens in (False, True):
                run = one_run(seed, decay_tokens, Path(tmp) / f"s{seed}-{decay_tokens}")
                runs.append(run)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.items()),
                      flush=True)
    print(json.dumps({"groups": groups, "runs": runs}))


if __name__ == "__main__":
    main()
