"""What a full GPU run of a recipe needs, estimated from FLOPs: time (training and evaluation) and peak
memory per GPU, until bench/gpu_suite.py has measured the card. Run from the repository root:

    python bench/cost.py cub                                     # configs/cub.yaml on one H100
    python bench/cost.py imagenet --gpus 4                       # the official run's 4 GPUs
    python bench/cost.py imagenet --gpu L4 --set train.batch_size=128 train.grad_accum=4
    python bench/cost.py cub --gpu auto                          # this machine's card (a CUDA device)

The model's forward and backward FLOPs are counted by torch's FlopCounterMode on the meta device; the
activations autograd saves are read in one forward under CPU bf16 autocast (`model_cost`). The estimate
(`estimate_gpu_run`) assumes a share of the card's bf16 peak (`GPUS`) and a CPU loader rate
(`LOADER_IMAGES_PER_WORKER`), and says so in what it prints.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from satlib.build import build_model
from satlib.config import Config, load_config
from satlib.losses import build_loss

SPLIT_SIZES = {"cub": (5_994, 5_794), "imagenet": (1_281_167, 50_000), "openimages": (29_819, 7_500)}
# Dense bf16 tensor-core peak (TFLOP/s, datasheet) and memory (GiB) of common cards.
GPUS = {"A100": (312.0, 80.0), "A100-40GB": (312.0, 40.0), "H100": (989.0, 80.0), "H200": (989.0, 141.0),
        "L40S": (362.0, 48.0), "L4": (121.0, 24.0), "RTX 4090": (165.0, 24.0)}
LOADER_IMAGES_PER_WORKER = 225  # 500x375 JPEG decoded and resized to 256 px by one CPU core (bench/RESULTS.md)
CUDA_CONTEXT_GIB = 1.0  # CUDA context, cuDNN/cuBLAS workspaces and allocator slack, roughly


@dataclass(frozen=True)
class ModelCost:
    """One image through a model under bf16 autocast: FLOPs and what autograd keeps for the backward."""

    forward_gflop: float
    train_gflop: float  # forward + backward
    activation_mib: float  # tensors saved for the backward, weights excluded
    parameters: int


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
        """A few labelled lines: the run's time and memory, and what they assume."""
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


def model_cost(config: Config) -> ModelCost:
    """`config`'s model on one image: forward and backward FLOPs counted by torch's FlopCounterMode on the meta
    device (the explicit attention path, whose matmuls it sees), and the activations autograd saves in a
    forward under CPU bf16 autocast (what CUDA autocast casts, near enough). A few seconds for DeiT-S."""
    model = build_model(config, with_pretrained=False).train()
    side = config.data.img_size
    loss_fn = build_loss(model.method, area_thr=config.train.area_thr)
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


def gpu_kind(device: torch.device) -> str | None:
    """The `GPUS` entry of a CUDA device: the longest card name its name contains, and of those the memory
    nearest its own (A100 or A100-40GB); None on a CPU or for a card not listed."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    found = [kind for kind in GPUS if kind.split("-")[0] in name]
    if not found:
        return None
    longest = max(len(kind.split("-")[0]) for kind in found)
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30
    return min((kind for kind in found if len(kind.split("-")[0]) == longest),
               key=lambda kind: abs(GPUS[kind][1] - memory))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="a packaged recipe (cub, imagenet, ...) or a YAML file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--gpu", default="H100", choices=[*GPUS, "auto"],
                        help="the card (default H100); auto: this machine's CUDA device")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs sharing each step (DDP), default 1")
    parser.add_argument("--utilization", type=float, default=0.3, help="share of the bf16 peak (default 0.3)")
    parser.add_argument("--loader-workers", type=int, default=8, help="CPU loader workers per GPU (default 8)")
    args = parser.parse_args(argv)
    gpu = args.gpu
    if gpu == "auto":
        gpu = gpu_kind(torch.device("cuda")) if torch.cuda.is_available() else None
        if gpu is None:
            parser.error("--gpu auto: no CUDA device here, or a card not in the list (name one with --gpu)")
    config = load_config(args.recipe, args.set)
    print(estimate_gpu_run(config, gpu=gpu, gpus=args.gpus, utilization=args.utilization,
                           loader_workers=args.loader_workers).describe())


if __name__ == "__main__":
    main()
