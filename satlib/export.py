"""Share a trained model: the folder the Hugging Face hub and timm read, and `satlib.load` reads back.

    satlib export runs/cub/best.pt --out sat-cub          # or satlib.export_model(satlib.load(...), "sat-cub")
    huggingface_hub.upload_folder(repo_id="you/sat-cub", folder_path="sat-cub")   # publishing: one call

The folder (`export_model`):

    config.json        timm's hub config: architecture (the model name), num_classes, num_features,
                       label_names (the class names), model_args (what rebuilds the architecture:
                       num_classes, img_size, num_query_blocks, model.kwargs), pretrained_cfg (input_size, mean, std,
                       interpolation, crop_pct and crop_mode of the protocol's test geometry), and a
                       "satlib" section: the map threshold and the protocol it was chosen with, the
                       resolved config, the run's metrics, satlib's version
    model.safetensors  the weights (a satlib state dict: timm's names, plus the loc token and conv head)
    README.md          the model card: metrics table, data, recipe, seed, version, protocol caveats

Loading it back: `satlib.load(folder)` gives the model and the same `ModelInfo` as the checkpoint.
After `import satlib`, the names registered with timm (`sat_deit_{tiny,small,base}_patch16_224`,
`sat_tiny_convstem`) load through timm too: `timm.create_model("local-dir:<folder>", pretrained=True)`
reads the architecture and its arguments from config.json, and `timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file="<folder>/model.safetensors"), **model_args)` takes them by hand
(config.json's `model_args`). Other names (the cam_/tscam_ baselines, sat_ + any other timm ViT, a
`.tag`) are not timm names: `satlib.load(folder)`, or `satlib.create_model(name,
pretrained="<folder>/model.safetensors", **model_args)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from satlib.files import atomic_dir
from satlib.info import LoadedModel
from satlib.models import VARIANTS  # the names registered with timm

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
CARD_METRICS = {  # metrics.json key -> the model card's name for it
    "top1_loc": "Top-1 Loc", "top5_loc": "Top-5 Loc", "gt_known": "GT-known Loc", "maxboxacc": "MaxBoxAcc",
    "maxboxacc_v2": "MaxBoxAccV2", "pxap": "PxAP", "top1_cls": "Top-1 Cls", "top5_cls": "Top-5 Cls",
    "cam_gt_known": "its own CAM: GT-known Loc", "cam_top1_loc": "its own CAM: Top-1 Loc",
}
RECIPE_KEYS = ("model.pretrained", "train.epochs", "train.batch_size", "train.grad_accum", "train.lr",
               "train.schedule", "train.warmup_epochs", "train.weight_decay", "train.area_thr",
               "train.lambda_area", "train.lambda_norm", "train.amp", "data.per_class", "eval.tencrop")


def export_model(loaded: LoadedModel, out: str | Path) -> Path:
    """Write `loaded` (from `satlib.load`) as a hub/timm folder at `out` (see the module docstring), atomically:
    `out` is complete or untouched (an earlier export there is replaced). Returns `out`."""
    from satlib import __version__

    model, info = loaded
    config = hub_config(loaded, version=__version__)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}

    def fill(folder: Path) -> None:
        save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (folder / CARD).write_text(model_card(config))

    return atomic_dir(out, fill, replaces=WEIGHTS)


def hub_config(loaded: LoadedModel, *, version: str) -> dict:
    """config.json: timm's fields (architecture, num_classes, label_names, model_args, pretrained_cfg) and "satlib"."""
    model, info = loaded
    config = info.config
    resize = config.data.resize_size if info.protocol == "sat" else info.img_size
    pretrained_cfg = {
        "architecture": info.name, "num_classes": info.num_classes, "input_size": [3, info.img_size, info.img_size],
        "fixed_input_size": True, "mean": list(info.mean), "std": list(info.std),
        # the protocol's test geometry: sat Resize((R, R)) -> CenterCrop(crop); wsoleval Resize((crop, crop))
        "interpolation": "bilinear", "crop_pct": info.img_size / resize, "crop_mode": "squash",
        "first_conv": model.pretrained_cfg.get("first_conv", "patch_embed.proj"), "classifier": "head",
    }
    model_args = {"num_classes": info.num_classes, "img_size": info.img_size,
                  "num_query_blocks": config.model.num_query_blocks, **config.model.kwargs}
    return {"architecture": info.name, "num_classes": info.num_classes, "num_features": model.num_features,
            "label_names": list(info.class_names) or None, "model_args": model_args,
            "pretrained_cfg": pretrained_cfg,
            "satlib": {"version": version, "method": model.method, "threshold": info.threshold,
                       "protocol": info.protocol, "config": config.to_dict(), "metrics": info.metrics}}


def read_export(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config.json) of an exported folder; a clear error when it is not one."""
    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name}; not a folder `satlib export` wrote")
    config = json.loads((folder / CONFIG).read_text())
    if "satlib" not in config:
        raise ValueError(f"{folder / CONFIG}: no 'satlib' section (threshold, protocol, config); load a "
                         f"timm-only folder with timm.create_model('local-dir:{folder}')")
    return load_file(str(folder / WEIGHTS), device="cpu"), config


# ----------------------------------------------------------------------------------------------
# the model card


def model_card(hub: dict) -> str:
    """README.md of an export: hub metadata, then the metrics, data, recipe, caveats and how to load it."""
    section = hub["satlib"]
    config, metrics = section["config"], section["metrics"]
    data, train = config["data"], config["train"]
    name = hub["architecture"]
    lines = ["---", "library_name: timm", "tags:", "- image-classification", "- weakly-supervised-object-localization",
             "- satlib", "---", "", f"# {name} ({section['method'].upper()})", "",
             f"Weakly supervised object localization: a class label and an object map per image, learnt "
             f"from image labels alone. Exported by satlib {section['version']}.", "", "## Metrics", ""]
    rows = [f"| {label} | {metrics[key]:.2f} |" for key, label in CARD_METRICS.items() if key in metrics]
    if rows:
        lines += [f"On the test split of `{data['dataset']}`, protocol `{section['protocol']}`, epoch "
                  f"{metrics.get('epoch', '?')}, map threshold {_number(section['threshold'])} "
                  f"({metrics.get('images', '?')} images, percent):", "", "| metric | value |", "|---|---|", *rows]
    else:
        lines.append("No evaluation is stored with these weights (an official release, or a run never "
                     "evaluated): `satlib evaluate --checkpoint <this folder> --data-root ...` measures them.")
    lines += ["", "## Caveats", ""] + [f"- {c}" for c in caveats(section)]
    dataset = f"`{data['dataset']}`" if metrics else "not recorded with these weights"
    lines += ["", "## Data", "",
              f"- dataset {dataset}, {hub['num_classes']} classes"
              + (f" ({', '.join(hub['label_names'][:5])}{', ...' if len(hub['label_names']) > 5 else ''})"
                 if hub["label_names"] else ""),
              f"- input {data['img_size']} px; test geometry of the `{section['protocol']}` protocol"
              + (f" (resize to {data['resize_size']}x{data['resize_size']}, centre crop)"
                 if section["protocol"] == "sat" else " (the whole image resized)"),
              f"- normalisation mean {hub['pretrained_cfg']['mean']}, std {hub['pretrained_cfg']['std']}",
              "", "## Recipe", "", f"- model `{name}`, arguments `{json.dumps(hub['model_args'])}`",
              f"- seed {train['seed']}"]
    lines += [f"- {key} = {config[key.split('.')[0]][key.split('.')[1]]!r}" for key in RECIPE_KEYS]
    lines += ["- the full resolved config is config.json's `satlib.config`", "", "## Use", "", "```python",
              "import satlib", "loaded = satlib.load(\"<this folder>\")  # the model, and its ModelInfo",
              "loc = satlib.localize(loaded, images)  # maps and boxes at loaded.info.threshold", "```", "",
              "`satlib predict --checkpoint <this folder> IMAGE... --out DIR` does the same from the command line"
              + ("; with timm: `import satlib; timm.create_model(\"local-dir:<this folder>\", pretrained=True)`"
                 if name in VARIANTS else "."), ""]
    return "\n".join(lines)


def caveats(section: dict) -> list[str]:
    """What the reader of a model card must know about its numbers."""
    metrics = section["metrics"]
    notes = ["the map threshold and this checkpoint were chosen on the test split, as the official SAT "
             "train.py does (wsolevaluation's MaxBoxAcc also takes the best threshold on the split it "
             "reports): the numbers are optimistic in that way; `satlib evaluate --maps` reports them "
             "with the threshold chosen on a held-out split beside them",
             f"`{section['protocol']}` protocol: Top-1/GT-known Loc count a hit at IoU >= 0.5 with the box of "
             f"the largest component of the thresholded map (satlib.evaluation)"]
    if metrics.get("smoke") or metrics.get("stopped_early"):
        notes.insert(0, "a capped run (smoke test or time budget): a check of the code, not a result")
    return notes


def _number(value) -> str:
    return "none" if value is None else f"{value:g}"
