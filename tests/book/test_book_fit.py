"""satlib.book.fit: a paper recipe's step split into the fewest micro-batches that fit a GPU's free memory.
The arithmetic on hand-made numbers (CPU), the recipes through it with a stand-in measurement (CPU), and the
measurement itself on a CUDA device."""

from dataclasses import replace

import pytest
import torch

import satlib.book.fit as fit
from satlib.book import DoesNotFit, Settings, StepMemory, micro_batches_to_fit
from satlib.build import build_model
from satlib.config import load_config
from satlib.losses import build_loss

GIB = 2**30


def test_a_step_that_fits_is_kept_whole():
    memory = StepMemory(fixed_bytes=2 * GIB, bytes_per_image=0.1 * GIB)
    assert micro_batches_to_fit(256, memory, free_bytes=80 * GIB) == 1  # 2 + 25.6 GiB of 68 usable


def test_the_fewest_micro_batches_that_fit_and_keep_the_steps_images():
    memory = StepMemory(fixed_bytes=2 * GIB, bytes_per_image=1 * GIB)
    # 100 GiB free, 85 usable (margin 0.15): at most 83 images a micro-batch
    assert micro_batches_to_fit(256, memory, free_bytes=100 * GIB) == 4  # 64 (3 does not divide 256)
    assert micro_batches_to_fit(96, memory, free_bytes=100 * GIB) == 2  # 48
    assert micro_batches_to_fit(96, memory, free_bytes=40 * GIB) == 3  # 34 usable: 32 images, not 2 x 48
    assert micro_batches_to_fit(7, memory, free_bytes=4 * GIB) == 7  # a prime: 1 image a micro-batch
    assert micro_batches_to_fit(96, memory, free_bytes=50 * GIB) == 3  # 42.5 usable: 48 images need 50
    assert micro_batches_to_fit(96, memory, free_bytes=50 * GIB, margin=0.0) == 2  # all 50: exactly 2 + 48


def test_a_step_that_never_fits_says_what_it_needs():
    memory = StepMemory(fixed_bytes=10 * GIB, bytes_per_image=1 * GIB)
    with pytest.raises(DoesNotFit, match=r"one image a micro-batch needs 11\.0 GiB, more than 85% of the "
                                         r"12\.0 GiB free"):
        micro_batches_to_fit(32, memory, free_bytes=12 * GIB)


@pytest.fixture
def cub_folder(tmp_path):
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    (root / "images.txt").write_text("")
    return root


def test_a_paper_recipe_is_split_on_a_gpu_and_kept_on_a_cpu(monkeypatch, tmp_path, cub_folder):
    # DeiT-S at 224 px, about as measured: 75 MiB an image; 1.5 GiB of weights, gradients and moments
    measured = []
    monkeypatch.setattr(fit, "measure_step", lambda config, device: measured.append(config.model.name)
                        or StepMemory(fixed_bytes=1.5 * GIB, bytes_per_image=75 * 2**20))
    monkeypatch.setattr(fit, "free_bytes", lambda device: 39.4 * GIB)  # an A100-40GB
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    monkeypatch.setattr(fit, "_MEASURED", {})
    on_cpu = Settings(device=torch.device("cpu"), cub_root=cub_folder, cache_root=tmp_path)
    on_gpu = replace(on_cpu, device=torch.device("cuda"))
    paper = on_gpu.cub_recipe()  # 256 images: 1.5 + 18.75 GiB fit in 33.5
    assert (paper.train.batch_size, paper.train.grad_accum) == (256, 1)
    big = on_gpu.cub_recipe("train.batch_size=1024")  # 76.5 GiB do not; 4 x 256 do (2 x 512: 39 GiB)
    assert (big.train.batch_size, big.train.grad_accum) == (256, 4)
    imagenet = fit.fit_to_device(load_config("imagenet", ["train.batch_size=1024", "train.grad_accum=2"]),
                                 torch.device("cuda"))
    assert (imagenet.train.batch_size, imagenet.train.grad_accum) == (256, 8)  # 2048 images a step, as before
    assert measured == ["sat_deit_small_patch16_224"] * 2  # once per model in a process: 200 and 1000 classes
    assert on_cpu.cub_recipe("train.batch_size=1024").train.grad_accum == 1  # on a CPU: as configured
    monkeypatch.setattr(fit, "free_bytes", lambda device: 1.5 * GIB)
    with pytest.raises(DoesNotFit, match=r"sat_deit_small_patch16_224 at 224 px does not train on cuda: one image"):
        on_gpu.cub_recipe()
    monkeypatch.setattr(fit, "free_bytes", lambda device: 39.4 * GIB)
    notes = on_gpu.recipe_notes(paper)
    assert "measured on NVIDIA A100-SXM4-40GB: a training step of 256 images holds 20.2 GiB (75 MiB an image) " \
           "of 39.4 GiB free" in notes


SMALL_SAT = ["data.img_size=128", "data.resize_size=128", "model.num_classes=5", "model.pretrained=''"]


def reference_step_peak(model, loss_fn, optimizer, images: int, config, device: torch.device) -> int:
    """Peak bytes allocated during one training step as train() takes it (autocast, backward, AdamW)."""
    side = config.data.img_size
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.train.amp):
        loss, _ = loss_fn(model(torch.randn(images, 3, side, side, device=device)),
                          torch.randint(5, (images,), device=device))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


@pytest.mark.gpu
def test_the_measured_step_predicts_a_larger_micro_batchs_memory():
    device = torch.device("cuda")
    config = load_config("synthetic_cpu", SMALL_SAT)  # the demo's conv-stem SAT at 128 px: ~5 MiB an image
    memory = fit.measure_step(config, device)
    model = build_model(config, with_pretrained=False).to(device).train()
    parameters = sum(p.numel() for p in model.parameters())
    assert memory.fixed_bytes >= 12 * parameters  # fp32 weights and AdamW's two moments stay resident

    loss_fn = build_loss(model.method, area_thr=config.train.area_thr)
    optimizer = torch.optim.AdamW(model.parameters())
    reference_step_peak(model, loss_fn, optimizer, 2, config, device)  # the warm-up: AdamW's moments
    small, large = (reference_step_peak(model, loss_fn, optimizer, images, config, device) for images in (2, 32))
    assert large - small == pytest.approx(30 * memory.bytes_per_image, rel=0.2)  # measured at 2 and 4 images

    free = fit.free_bytes(device)
    assert 0 < free <= torch.cuda.get_device_properties(device).total_memory
    config.train.batch_size = 32
    assert fit.fit_to_device(config, device).train.batch_size == 32  # a small model fits whole
