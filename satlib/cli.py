"""Command line: `satlib <command> ...` (also `python -m satlib`).

    satlib demo       [--out DIR]                       the embedded demo: synthetic data, CPU, minutes
    satlib data synth --out DIR [--layout L] [...]      generate the synthetic dataset (CUB layout), or a
                                                        stand-in in a real dataset's layout (cub, imagenet, openimages)
    satlib train      --config FILE | --dataset ...     train; any config value as section.key=value
    satlib evaluate   --checkpoint FILE --data-root DIR localization metrics (JSON with --json)
    satlib evaluate   --maps FILE.npz|DIR --data-root DIR  any method's maps, both protocols (satlib.maps)
    satlib export     CHECKPOINT --out DIR              the Hugging Face hub / timm folder of a trained model
    satlib visualize  --checkpoint FILE --data-root DIR --out PNG
    satlib predict    --checkpoint FILE IMAGE_OR_DIR... --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from satlib.assess import evaluate_checkpoint, visualize_checkpoint
from satlib.build import load
from satlib.config import choices, load_config, packaged_recipes
from satlib.data.cub import read_split_boxes
from satlib.data.standins import LAYOUTS as STANDIN_LAYOUTS
from satlib.data.standins import make_standin
from satlib.data.synthetic import VARIANTS as SYNTHETIC_VARIANTS
from satlib.data.synthetic import make_synthetic_dataset
from satlib.demo import BASELINES as DEMO_BASELINES
from satlib.demo import run_demo
from satlib.evaluation import trivial_baselines
from satlib.export import export_model
from satlib.files import atomic_write_text
from satlib.mapfile import model_maps, save_maps
from satlib.maps import HELDOUT_MODES, evaluate_maps
from satlib.predict import predict_paths
from satlib.runtime import resolve_device
from satlib.train import train


def _data_synth(args: argparse.Namespace) -> int:
    if args.layout:
        sides = (args.size // 2, args.size) if args.size else (200, 400)
        out = make_standin(args.out, args.layout, num_classes=args.num_classes or 4, per_class=args.per_class or 10,
                           seed=args.seed, sides=sides, variant=args.variant)
        print(f"wrote {out}: a {args.layout} stand-in (pass it as the {args.layout} data root)")
        return 0
    out = make_synthetic_dataset(args.out, num_classes=args.num_classes or 6, per_class=args.per_class or 200,
                                 size=args.size or 96, seed=args.seed, variant=args.variant)
    baselines = trivial_baselines(*read_split_boxes(out))
    print(f"wrote {out}; trivial GT-known on the test split: "
          + ", ".join(f"{name} {value:.1f}%" for name, value in baselines.items()))
    return 0


# config flags of `satlib train`: flag -> config key
_TRAIN_FLAGS = {
    "dataset": "data.dataset", "data_root": "data.root", "model": "model.name", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "img_size": "data.img_size",
    "resize_size": "data.resize_size", "out": "train.out", "pretrained": "model.pretrained",
    "per_class": "data.per_class", "device": "train.device", "time_budget": "train.time_budget",
    "skip_bad": "data.skip_bad",
}


def _train_config(args: argparse.Namespace, extra: list[str]):
    """Config file, then the named flags, then `section.key=value` overrides (later wins)."""
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in _TRAIN_FLAGS.items()
                 if getattr(args, flag, None) is not None]
    overrides += [text.lstrip("-") for text in extra]
    if args.img_size is not None and args.resize_size is None:  # keep the recipe's resize/crop ratio
        recipe = load_config(args.config).data
        overrides.insert(0, f"data.resize_size={round(args.img_size * recipe.resize_size / recipe.img_size)}")
    return load_config(args.config, overrides)


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    config = _train_config(args, extra)
    record = train(config, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one summary (every rank returns the same record)
        print(json.dumps({k: v for k, v in record.items() if isinstance(v, (int, float))}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.maps is None):
        raise ValueError("pass one of --checkpoint FILE and --maps FILE.npz|DIR")
    if args.maps:
        metrics = evaluate_maps(args.maps, args.data_root, dataset=args.dataset, protocol=args.protocol,
                                thresholds=args.thresholds, heldout=args.heldout).to_dict()
    else:
        checkpoint = load(args.checkpoint, official=args.official, device=resolve_device(args.device)) \
            if args.save_maps else args.checkpoint  # loaded once for both
        metrics = evaluate_checkpoint(checkpoint, data_root=args.data_root, dataset=args.dataset,
                                      official=args.official, protocol=args.protocol, tencrop=args.tencrop,
                                      thresholds=args.thresholds, device=args.device, skip_bad=args.skip_bad)
        if args.save_maps:
            tencrop = True if args.official and args.tencrop is None else args.tencrop  # as evaluate_checkpoint
            dataset = args.dataset or ("cub" if args.official else None)
            save_maps(args.save_maps, model_maps(checkpoint, args.data_root, dataset=dataset, protocol=args.protocol,
                                                 thresholds=args.thresholds, tencrop=tencrop, progress=True))
            print(f"wrote {args.save_maps}", file=sys.stderr)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = export_model(load(args.checkpoint, official=args.official), args.out)
    print(f"wrote {out} (config.json, model.safetensors, README.md); publish it with "
          f"huggingface_hub.upload_folder(repo_id=..., folder_path={str(out)!r})")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    path = visualize_checkpoint(args.checkpoint, data_root=args.data_root, out=args.out, dataset=args.dataset,
                                official=args.official, num=args.num, cam=args.cam, device=args.device)
    print(f"wrote {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    report = predict_paths(args.checkpoint, args.inputs, args.out, official=args.official,
                           threshold=args.threshold, device=args.device)
    print(f"{len(report['predictions'])} image(s) localized, {len(report['skipped'])} skipped; "
          f"see {Path(args.out) / 'predictions.json'}")
    for item in report["skipped"]:
        print(f"  skipped {item['file']}: {item['error']}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    run_demo(out=args.out, seed=args.seed, time_budget=args.time_budget, device=args.device,
             baseline=None if args.baseline == "none" else args.baseline)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the embedded demo: synthetic data, small SAT, CPU, minutes")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--time-budget", type=float, default=None,
                      help="safety cap in training seconds; a run that hits it stops early and is not the "
                           "reference result (default: the recipe's cap)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--baseline", default="cam", choices=[*DEMO_BASELINES, "none"],
                      help="the trained baseline beside SAT, same backbone and recipe (default: cam)")
    demo.set_defaults(func=_demo)

    data = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="generate the synthetic WSOL dataset (CUB layout)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--layout", choices=STANDIN_LAYOUTS,
                       help="write a stand-in for that real dataset instead: its own folder layout and "
                            "metadata, JPEG photos of varied size (a data root for that dataset)")
    synth.add_argument("--num-classes", type=int, help="default 6; with --layout 4")
    synth.add_argument("--per-class", type=int, help="images per class, train + test (default 200; with --layout 10)")
    synth.add_argument("--size", type=int,
                       help="image side in pixels (default 96); with --layout the longest photo side (default 400)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--variant", default="shapes", choices=SYNTHETIC_VARIANTS)
    synth.set_defaults(func=_data_synth)

    train = commands.add_parser(
        "train", help="train SAT (any config value can be overridden as section.key=value)",
        epilog="Extra arguments `section.key=value` (or --section.key=value) override the config, "
               "e.g. train.area_thr=0.3 model.kwargs.depth=6.")
    train.add_argument("--config",
                       help=f"YAML recipe (a path, or a packaged name: {', '.join(packaged_recipes())})")
    train.add_argument("--dataset", choices=choices("data.dataset"))
    train.add_argument("--data-root", help="dataset folder")
    train.add_argument("--model", help="model name: satlib.list_models() (SAT and its cam_/tscam_ baselines), or "
                                        "sat_/cam_/tscam_ + a timm ViT name")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--img-size", type=int)
    train.add_argument("--resize-size", type=int)
    train.add_argument("--out", help="output folder (checkpoint.pt, metrics.json)")
    train.add_argument("--pretrained", help="backbone weights file (.pth/.safetensors) or 'timm'")
    train.add_argument("--per-class", type=int, help="few-shot: training images per class")
    train.add_argument("--device")
    train.add_argument("--time-budget", type=float,
                       help="safety cap in wall-clock seconds: the run stops early (not the reference result)")
    train.add_argument("--skip-bad", action="store_const", const=True, help="skip unreadable images")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train, takes_extra=True)

    evaluate = commands.add_parser("evaluate", help="localization metrics of a checkpoint, or of any method's maps")
    _checkpoint_args(evaluate, required=False)
    evaluate.add_argument("--maps", help="instead of a checkpoint: maps by image id, an .npz or a folder of .npy "
                                         "(satlib.maps); scored with both protocols, thresholds chosen on the "
                                         "test split and on a held-out split")
    evaluate.add_argument("--save-maps", help="with --checkpoint: also write the model's maps and logits (.npz)")
    evaluate.add_argument("--heldout", default="auto", choices=HELDOUT_MODES,
                          help="with --maps: where the held-out thresholds are chosen (default: the val split "
                               "where the maps cover it, else a seeded part of the test split)")
    evaluate.add_argument("--data-root", required=True)
    evaluate.add_argument("--dataset", choices=choices("data.dataset"), help="default: the checkpoint's")
    evaluate.add_argument("--protocol", choices=choices("eval.protocol"),
                          help="default: the checkpoint's (with --maps: the test geometry the maps are on)")
    evaluate.add_argument("--thresholds", type=float, nargs="+", help="default: the checkpoint's")
    evaluate.add_argument("--tencrop", action="store_const", const=True, help="ten-crop classification")
    evaluate.add_argument("--skip-bad", action="store_true")
    evaluate.add_argument("--json", help="also write the metrics to this file")
    evaluate.set_defaults(func=_evaluate)

    export = commands.add_parser("export", help="a trained model as the folder the Hugging Face hub and timm read")
    export.add_argument("checkpoint", help="checkpoint.pt or best.pt written by `satlib train`")
    export.add_argument("--out", required=True, help="output folder: config.json, model.safetensors, README.md")
    export.add_argument("--official", action="store_true", help="the checkpoint is an official SAT release")
    export.set_defaults(func=_export)

    visualize = commands.add_parser("visualize", help="a grid of test images with maps and boxes")
    _checkpoint_args(visualize)
    visualize.add_argument("--data-root", required=True)
    visualize.add_argument("--dataset", choices=choices("data.dataset"), help="default: the checkpoint's")
    visualize.add_argument("--out", required=True, help="PNG file")
    visualize.add_argument("--num", type=int, default=16, help="images in the grid")
    visualize.add_argument("--cam", action="store_true", help="also the network's own CAM, in rows below")
    visualize.set_defaults(func=_visualize)

    predict = commands.add_parser("predict", help="class and box for your own images (any size)")
    _checkpoint_args(predict)
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    predict.add_argument("--out", required=True, help="folder for predictions.json and overlays")
    predict.add_argument("--threshold", type=float, help="map threshold (default: the checkpoint's best)")
    predict.set_defaults(func=_predict)
    return parser


def _checkpoint_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--checkpoint", required=required, help="checkpoint.pt written by `satlib train`")
    parser.add_argument("--official", action="store_true",
                        help="the checkpoint is an official SAT release (converted on load)")
    parser.add_argument("--device", default="auto")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [text for text in extra if "=" not in text or "." not in text.split("=", 1)[0]]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like section.key=value)")
    try:
        return args.func(args, extra) if getattr(args, "takes_extra", False) else args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        if os.environ.get("SATLIB_DEBUG"):
            raise
        print(f"satlib {args.command}: error: {err}", file=sys.stderr)
        return 2
