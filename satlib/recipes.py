"""The paper's recipes as satlib runs them: where a run still differs from the official code.

    for line in official_differences(config): print(line)

(What a GPU run of a recipe costs is bench/'s question: bench/cost.py estimates it from FLOPs,
bench/gpu_suite.py measures it.)

`OFFICIAL` holds the official recipe of each dataset, read off the SAT release: train.py and
evaluator.py (CUB), train_ImageNet.py and evaluator_ImageNet.py (ImageNet). configs/cub.yaml and
configs/imagenet.yaml are exactly these values (tests/test_recipes.py checks it).
"""

from __future__ import annotations

from satlib.config import Config

# Official values by config key. CUB: train.py (30 epochs, evaluated from epoch 26 with thresholds
# 0.3-0.45, single crop) and evaluator.py (ten-crop classification); ImageNet: train_ImageNet.py (one
# epoch of 512 images a step over 4 DDP processes, no evaluation) and evaluator_ImageNet.py (threshold 0.3,
# one crop). Both: DeiT-S with ImageNet weights, drop-path 0.1, AdamW (wd 0.05 off 1-D parameters and
# biases only: the optimizer is built on the DataParallel/DDP wrapper, which hides the model's
# no_weight_decay(), so pos_embed and the cls/loc tokens are decayed), a constant lr (the cosine
# schedule is built, never applied), no warmup, no constraint ramp, no clipping, Resize((256, 256)) ->
# 224 crops with flips, seed 6 (+ rank).
_COMMON = {"model.name": "sat_deit_small_patch16_224", "model.pretrained": "timm", "model.drop_path_rate": 0.1,
           "model.drop_rate": 0.0, "model.num_query_blocks": 3, "data.img_size": 224, "data.resize_size": 256,
           "data.hflip": True, "data.per_class": 0, "train.weight_decay": 0.05, "train.decay_tokens": True,
           "train.schedule": "constant", "train.warmup_epochs": 0.0, "train.lambda_area": 1.0,
           "train.lambda_norm": 1.0, "train.constraint_warmup_epochs": 0.0, "train.clip_grad": 0.0,
           "train.seed": 6, "train.time_budget": 0.0, "eval.protocol": "sat"}
OFFICIAL: dict[str, dict] = {
    "cub": {**_COMMON, "model.num_classes": 200, "train.epochs": 30, "step_images": 256, "area_images": 256,
            "train.lr": 1e-4,
            "train.area_thr": 0.25, "eval.thresholds": [0.3, 0.35, 0.4, 0.45], "eval.tencrop": True,
            "evaluated_epochs": list(range(26, 31))},
    "imagenet": {**_COMMON, "model.num_classes": 1000, "train.epochs": 1, "step_images": 512, "area_images": 128,
                 "train.lr": 1.5e-5,
                 "train.area_thr": 0.35, "eval.thresholds": [0.3], "eval.tencrop": False, "evaluated_epochs": [1]},
}

# Where a run of the official recipe in satlib still differs from the official code, whatever the config.
IMPLEMENTATION_DIFFERENCES: dict[str, list[str]] = {
    "all": [
        "the checkpoint (best.pt) and the threshold are chosen on the test split, as the official train.py "
        "does: there is no validation split, so the reported numbers are optimistic in the same way",
        "TF32 matmuls and convolutions on CUDA during train() (the official scripts leave PyTorch's "
        "defaults and set cudnn.deterministic=True)",
        "images are decoded and resized as uint8 tensors by torchvision (antialiased bilinear), the official "
        "loaders resize PIL images: a pixel-level difference",
        "the same seeds (6 + rank) but other random draws: the data order from (seed, epoch), each image's crop "
        "and flip from (seed, epoch, image), drop-path from each rank's generator: a different run of the same "
        "recipe, not a bit-identical one",
    ],
    "cub": [
        "satlib drops the last partial batch of each epoch (23 steps of 256 images); the official loader "
        "keeps it (a 24th step of 106 images)",
        "best.pt is chosen on ten-crop Top-1 Loc (eval.tencrop at every evaluation); the official train.py "
        "chooses on single-crop Top-1 Loc and applies ten crops afterwards (evaluator.py)",
        "the reported threshold is the best of 0.3-0.45 on the test split (train.py); the official "
        "evaluator.py re-evaluates best_loc.pth.tar at 0.4",
    ],
    "imagenet": [
        "the official script evaluates only its final checkpoint, with evaluator_ImageNet.py; satlib evaluates "
        "after the epoch in the same run (same thresholds, one crop)",
    ],
}


def _config_value(config: Config, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def official_differences(config: Config, *, world: int = 1) -> list[str]:
    """Every way a satlib run of `config` on `world` processes differs from the official recipe of its dataset:
    config values first ("train.epochs = 2 (official: 30)"), then the implementation's differences."""
    dataset = config.data.dataset
    if dataset not in OFFICIAL:
        return [f"data.dataset = {dataset}: the paper has no official recipe for it"]
    official = OFFICIAL[dataset]
    lines = [f"{key} = {_config_value(config, key)!r} (official: {value!r})" for key, value in official.items()
             if "." in key and _config_value(config, key) != value]
    t = config.train
    if t.batch_size * t.grad_accum != official["step_images"]:
        lines.append(f"{t.batch_size * t.grad_accum} images per optimizer step (official: {official['step_images']})")
    per_constraint = t.batch_size // world  # the area loss sees one process's micro-batch
    if per_constraint != official["area_images"]:
        lines.append(f"the area constraint spans {per_constraint} images (each process's micro-batch: "
                     f"batch_size {t.batch_size} / {world} process(es), grad_accum {t.grad_accum}); official: "
                     f"{official['area_images']}" + (" (4 DDP processes of 128 images)" if dataset == "imagenet"
                                                      else ""))
    evaluated = [epoch for epoch in range(1, t.epochs + 1) if t.evaluates_after(epoch)]
    if evaluated != official["evaluated_epochs"]:
        lines.append(f"evaluated after epochs {_epochs_text(evaluated)} "
                     f"(official: {_epochs_text(official['evaluated_epochs'])})")
    if t.amp:
        lines.append("train.amp: bf16 autocast in training and evaluation on CUDA (the official code runs fp32); "
                     "the loss and every score are computed in fp32")
    if t.compile:
        lines.append("train.compile: the training step is compiled (same numbers up to float reordering)")
    if t.max_steps or config.eval.max_batches:
        lines.append(f"capped: train.max_steps={t.max_steps}, eval.max_batches={config.eval.max_batches} "
                     f"(a smoke run checks the code paths, not the results)")
    return lines + IMPLEMENTATION_DIFFERENCES["all"] + IMPLEMENTATION_DIFFERENCES[dataset]


def _epochs_text(epochs: list[int]) -> str:
    if len(epochs) > 2 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(map(str, epochs)) or "none"
