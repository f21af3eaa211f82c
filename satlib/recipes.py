"""The paper's recipes as satlib runs them: where a run still differs from the official code, and what a GPU
run of a recipe needs (an estimate from FLOPs until bench/gpu_suite.py has measured it).

    for line in official_differences(config): print(line)
    print(estimate_gpu_run(config, gpu="H100").describe())

`OFFICIAL` holds the official recipe of each dataset, read off the SAT release: train.py and
evaluator.py (CUB), train_ImageNet.py and evaluator_ImageNet.py (ImageNet). configs/cub.yaml and
configs/imagenet.yaml are exactly these values (tests/test_recipes.py checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from satlib.config import Config

# Official values by config key. CUB: train.py (30 epochs, evaluated from epoch 26 with thresholds
# 0.3-0.45, single crop) and evaluator.py (ten-crop classification); ImageNet: train_ImageNet.py (one
# epoch of 512 images a step over 4 DDP processes, no evaluation) and evaluator_ImageNet.py (threshold 0.3,
# one crop). Both: DeiT-S with ImageNet weights, drop-path 0.1, AdamW (wd 0.05 off 1-D and token
# parameters), a constant lr (the cosine schedule is built, never applied), no warmup, no constraint
# ramp, no clipping, Resize((256, 256)) -> 224 crops with flips, seed 6 (+ rank).
_COMMON = {"model.name": "sat_deit_small_patch16_224", "model.pretrained": "timm", "model.drop_path_rate": 0.1,
           "model.drop_rate": 0.0, "model.num_query_blocks": 3, "data.img_size": 224, "data.resize_size": 256,
           "data.protocol": "sat", "data.hflip": True, "data.per_class": 0, "train.weight_decay": 0.05,
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
        "the same seeds (6 + rank) but a different order of random draws (data order, flips, drop-path): "
        "a different run of the same recipe, not a bit-identical one",
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
    from satlib.runtime import smoke

    if smoke():
        lines.append("SATLIB_SMOKE=1: 2 optimizer steps and 2 evaluation batches, random init (a smoke run)")
    return lines + IMPLEMENTATION_DIFFERENCES["all"] + IMPLEMENTATION_DIFFERENCES[dataset]


def _epochs_text(epochs: list[int]) -> str:
    if len(epochs) > 2 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(map(str, epochs)) or "none"


# ----------------------------------------------------------------------------------------------
# a GPU run's time and memory, estimated

SPLIT_SIZES = {"cub": (5_994, 5_794), "imagenet": (1_281_167, 50_000), "openimages": (29_819, 7_500)}
# Dense bf16 tensor-core peak (TFLOP/s, datasheet) and memory (GiB) of common cards.
GPUS = {"A100": (312.0, 80.0), "A100-40GB": (312.0, 40.0), "H100": (989.0, 80.0), "H200": (989.0, 141.0),
        "L40S": (362.0, 48.0), "L4": (121.0, 24.0), "RTX 4090": (165.0, 24.0)}
LOADER_IMAGES_PER_WORKER = 225  # 500x375 JPEG decoded and resized to 256 px by one CPU core (bench/RESULTS.md)
CUDA_CONTEXT_GIB = 1.0  # CUDA context, cuDNN/cuBLAS workspaces and allocator slack, roughly


@dataclass(frozen=True)
class RunEstimate:
    """What one run of a recipe needs on `gpus` GPUs of a kind: an estimate from FLOPs, not a measurement."""

    recipe: str
    gpu: str
    gpus: int
    utilization: float  # assumed share of the bf16 peak a training step reaches
    train_gflop_per_image: float  # forward + backward
    eval_gflop_per_image: float  # forward of the centre crop, plus ten crops with eval.tencrop
    train_images: int  # over every epoch (drop_last)
    eval_images: int  # over every evaluation
    train_hours: float
    eval_hours: float
    loader_bound: bool  # the CPU loader, not the GPU, sets the training rate
    activation_mib_per_image: float
    memory_gib: float  # peak per GPU at the recipe's micro-batch
    gpu_memory_gib: float
    grad_accum_to_fit: int  # the smallest train.grad_accum whose micro-batch fits (1: as configured)

    @property
    def total_hours(self) -> float:
        return self.train_hours + self.eval_hours

    def describe(self) -> str:
        """A few labelled lines for a chapter: the run's time and memory, and what they assume."""
        fit = ("fits" if self.grad_accum_to_fit == 1 else
               f"does not fit: divide train.batch_size by {self.grad_accum_to_fit} and multiply "
               f"train.grad_accum by {self.grad_accum_to_fit} (same images per step)")
        bound = "the CPU loader" if self.loader_bound else "the GPU"
        return "\n".join([
            f"ESTIMATE from FLOPs (not a measurement): the {self.recipe} recipe on {self.gpus}x {self.gpu}",
            f"  time   ~{_hours(self.total_hours)}: training {_hours(self.train_hours)} "
            f"({self.train_images:,} images x {self.train_gflop_per_image:.1f} GFLOP, bound by {bound}), "
            f"evaluation {_hours(self.eval_hours)} ({self.eval_images:,} images x "
            f"{self.eval_gflop_per_image:.1f} GFLOP)",
            f"  memory ~{self.memory_gib:.1f} GiB per GPU of {self.gpu_memory_gib:.0f} "
            f"({self.activation_mib_per_image:.0f} MiB of activations an image): {fit}",
            f"  assumes {self.utilization:.0%} of the bf16 peak and {LOADER_IMAGES_PER_WORKER} images/s per "
            f"loader worker; bench/gpu_suite.py measures both"])


def _hours(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"


@dataclass(frozen=True)
class ModelCost:
    """One image through a model under bf16 autocast: FLOPs and what autograd keeps for the backward."""

    forward_gflop: float
    train_gflop: float  # forward + backward
    activation_mib: float  # tensors saved for the backward, weights excluded
    parameters: int


def model_cost(config: Config) -> ModelCost:
    """`config`'s model on one image: forward and backward FLOPs counted by torch's FlopCounterMode on the meta
    device (the explicit attention path, whose matmuls it sees), and the activations autograd saves in a
    forward under CPU bf16 autocast (what CUDA autocast casts, near enough). A few seconds for DeiT-S."""
    from torch.utils.flop_counter import FlopCounterMode

    from satlib.checkpoint import build_model
    from satlib.losses import SATLoss

    model = build_model(config, with_pretrained=False).train()
    side, loss_fn = config.data.img_size, SATLoss(config.train.area_thr)
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autocast("cpu", dtype=torch.bfloat16), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn(model(torch.randn(1, 3, side, side)), torch.zeros(1, dtype=torch.long))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    activations = sum(size for pointer, size in saved.items() if pointer not in weights)
    parameters = sum(p.numel() for p in model.parameters())

    model = model.to("meta")
    if hasattr(model, "set_attn_impl"):
        model.set_attn_impl("explicit")  # the same FLOPs as the fused kernel, in ops the counter sees
    forward, backward = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        loss, _ = loss_fn(model(torch.randn(1, 3, side, side, device="meta")),
                          torch.zeros(1, dtype=torch.long, device="meta"))
    with backward:
        loss.backward()
    return ModelCost(forward_gflop=forward.get_total_flops() / 1e9,
                     train_gflop=(forward.get_total_flops() + backward.get_total_flops()) / 1e9,
                     activation_mib=activations / 2**20, parameters=parameters)


def estimate_gpu_run(config: Config, *, gpu: str = "H100", gpus: int = 1, utilization: float = 0.3,
                     loader_workers: int = 8, cost: ModelCost | None = None) -> RunEstimate:
    """Time and peak memory of a full run of `config` (its dataset's real split sizes) on `gpus` GPUs of kind
    `gpu` (a key of `GPUS`): the model's FLOPs at `utilization` of the bf16 peak, a CPU loader of
    `loader_workers` workers per GPU, the activations autograd saves (`model_cost`, or `cost` if given).
    An estimate, labelled as one, until bench/gpu_suite.py measures the card."""
    if gpu not in GPUS:
        raise ValueError(f"unknown gpu {gpu!r}; expected one of {', '.join(GPUS)}")
    dataset = config.data.dataset
    if dataset not in SPLIT_SIZES:
        raise ValueError(f"no real split sizes for data.dataset={dataset!r} (known: {', '.join(SPLIT_SIZES)})")
    cost = cost or model_cost(config)
    peak_tflops, gpu_memory = GPUS[gpu]
    t = config.train
    train_split, test_split = SPLIT_SIZES[dataset]
    step_images = t.batch_size * t.grad_accum
    train_images = train_split // step_images * step_images * t.epochs
    eval_images = sum(t.evaluates_after(epoch) for epoch in range(1, t.epochs + 1)) * test_split
    eval_gflop = cost.forward_gflop * (11 if config.eval.tencrop else 1)  # the centre crop and ten more
    gflops = peak_tflops * 1e3 * utilization * gpus  # over every GPU
    loader = LOADER_IMAGES_PER_WORKER * loader_workers * gpus  # images/s
    train_rate = min(gflops / cost.train_gflop, loader)
    eval_rate = min(gflops / eval_gflop, loader)
    state_gib = cost.parameters * 16 / 2**30  # fp32 weights, gradients and AdamW's two moments
    micro = max(1, t.batch_size // gpus)

    def memory(micro_batch: int) -> float:
        return CUDA_CONTEXT_GIB + state_gib + micro_batch * cost.activation_mib / 1024

    accum = 1
    while memory(math.ceil(micro / accum)) > gpu_memory and accum < micro:
        accum *= 2
    return RunEstimate(recipe=dataset, gpu=gpu, gpus=gpus, utilization=utilization,
                       train_gflop_per_image=cost.train_gflop, eval_gflop_per_image=eval_gflop,
                       train_images=train_images, eval_images=eval_images,
                       train_hours=train_images / train_rate / 3600, eval_hours=eval_images / eval_rate / 3600,
                       loader_bound=loader < gflops / cost.train_gflop, activation_mib_per_image=cost.activation_mib,
                       memory_gib=memory(micro), gpu_memory_gib=gpu_memory, grad_accum_to_fit=accum)
