"""A tiny recipe for fast training tests: a small conv-stem SAT on a tiny synthetic set."""

TINY_MODEL = {"stem_widths": [8, 16, 16], "embed_dim": 32, "depth": 3, "num_heads": 2}


def tiny_overrides(data_root, out, **extra):
    overrides = {
        "data.dataset": "cub", "data.root": str(data_root), "data.img_size": 32, "data.resize_size": 32,
        "data.workers": 0, "model.name": "sat_tiny_convstem", "model.kwargs": TINY_MODEL,
        "model.drop_path_rate": 0.0, "train.out": str(out), "train.epochs": 2, "train.batch_size": 8,
        "train.lr": 2e-3, "train.warmup_epochs": 0, "train.eval_every": 1, "train.log_every": 1,
        "train.seed": 0, "train.time_budget": 0, "eval.thresholds": [0.2, 0.5, 0.8], "eval.batch_size": 16,
    }
    overrides.update(extra)
    return [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in overrides.items()]
