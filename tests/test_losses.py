import math

import pytest
import torch

from satlib import SATLoss, SATOutput, area_loss, gaussian_kernel, normalization_loss


def erf_kernel_1d(size: int = 3, nsig: float = 6.0) -> list[float]:
    """Normalized square roots of normal bin masses: the official kernel is the outer product of these."""
    interval = (2 * nsig + 1) / size
    edges = [-nsig - interval / 2 + i * (2 * nsig + interval) / size for i in range(size + 1)]
    cdf = [0.5 * (1 + math.erf(e / math.sqrt(2))) for e in edges]
    roots = [math.sqrt(b - a) for a, b in zip(cdf, cdf[1:])]
    return [r / sum(roots) for r in roots]


def test_gaussian_kernel_matches_hand_computation():
    # bins of width 13/3 centred on 0: Φ(±2.7222) leaves 0.00324 in each outer bin
    side = erf_kernel_1d()
    assert side[0] == pytest.approx(0.0512, abs=1e-4) and side[1] == pytest.approx(0.8975, abs=1e-4)
    kernel = gaussian_kernel(3, 6)
    assert kernel.shape == (3, 3) and kernel.dtype == torch.float32
    torch.testing.assert_close(kernel, torch.tensor(side)[:, None] * torch.tensor(side)[None, :])
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_gaussian_kernel_other_sizes():
    kernel = gaussian_kernel(5, 2.0)
    side = torch.tensor(erf_kernel_1d(5, 2.0))
    torch.testing.assert_close(kernel, side[:, None] * side[None, :])
    assert torch.equal(kernel, kernel.T) and torch.equal(kernel, kernel.flip(0))


def test_area_loss_is_batch_mean_not_per_image():
    maps = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])
    # batch mean 0.5 → |0.5 − 0.25| = 0.25 (per-image |·| would give (0.75 + 0.25) / 2 = 0.5)
    assert area_loss(maps, 0.25).item() == pytest.approx(0.25)
    assert area_loss(torch.full((3, 5, 5), 0.35), 0.35).item() == pytest.approx(0.0, abs=1e-7)
    assert area_loss(torch.zeros(1, 2, 2), 0.3).item() == pytest.approx(0.3)


def test_area_loss_gradient_is_sign_over_count():
    maps = torch.full((2, 3, 3), 0.1, requires_grad=True)
    area_loss(maps, 0.25).backward()
    torch.testing.assert_close(maps.grad, torch.full((2, 3, 3), -1 / 18))


def test_normalization_loss_zero_for_empty_map():
    assert normalization_loss(torch.zeros(2, 6, 6)).item() == 0.0


def test_normalization_loss_all_ones_counts_zero_padded_border():
    a = erf_kernel_1d()[0]
    edge, corner = 1 - a, (1 - a) ** 2  # smoothed value where one / two kernel rows fall in the padding
    expected = (0 + 4 * edge * (1 - edge) + 4 * corner * (1 - corner)) / 9
    assert normalization_loss(torch.ones(1, 3, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_normalization_loss_single_pixel_spreads_the_kernel():
    side = erf_kernel_1d()
    spots = [p * q for p in side for q in side]  # the 3×3 neighbourhood gets the kernel's values
    loc_map = torch.zeros(1, 5, 5)
    loc_map[0, 2, 2] = 1.0
    expected = sum(s * (1 - s) for s in spots) / 25
    assert normalization_loss(loc_map).item() == pytest.approx(expected, rel=1e-5)


def fake_output(loc_map: torch.Tensor, num_classes: int = 4) -> SATOutput:
    batch, rows, cols = loc_map.shape
    return SATOutput(torch.zeros(batch, num_classes, requires_grad=True), loc_map,
                     loc_map[:, None].expand(batch, 2, rows, cols), torch.zeros(batch, num_classes, rows, cols))


def test_sat_loss_sums_weighted_terms():
    loc_map = torch.full((2, 3, 3), 0.5, requires_grad=True)
    loss_fn = SATLoss(area_thr=0.25, lambda_area=2.0, lambda_norm=0.5)
    total, terms = loss_fn(fake_output(loc_map), torch.tensor([1, 3]))
    assert terms["cls"].item() == pytest.approx(math.log(4))  # zero logits over 4 classes
    assert terms["area"].item() == pytest.approx(0.25)
    assert terms["norm"].item() == pytest.approx(normalization_loss(loc_map).item())
    assert total.item() == pytest.approx(math.log(4) + 2 * 0.25 + 0.5 * terms["norm"].item(), rel=1e-6)
    assert all(not t.requires_grad for t in terms.values())
    total.backward()
    assert loc_map.grad is not None and loc_map.grad.abs().sum() > 0


def test_sat_loss_defaults_are_official_cub():
    loss_fn = SATLoss()
    assert (loss_fn.area_thr, loss_fn.lambda_area, loss_fn.lambda_norm) == (0.25, 1.0, 1.0)
    assert "kernel" not in loss_fn.state_dict()  # fixed, not part of a checkpoint


def test_sat_loss_rejects_bad_threshold():
    with pytest.raises(ValueError, match="area_thr=1.5"):
        SATLoss(area_thr=1.5)


def test_sat_loss_under_bf16_logits():
    loc_map = torch.full((2, 4, 4), 0.3)
    out = fake_output(loc_map)._replace(logits=torch.zeros(2, 4, dtype=torch.bfloat16))
    total, _ = SATLoss()(out, torch.tensor([0, 1]))
    assert total.dtype == torch.float32 and torch.isfinite(total)


def test_constraint_weight_scales_both_constraints_and_writes_nothing():
    loc_map = torch.full((2, 3, 3), 0.5)
    labels = torch.tensor([1, 3])
    loss_fn = SATLoss(area_thr=0.25, lambda_area=2.0, lambda_norm=0.5)
    full, terms = loss_fn(fake_output(loc_map), labels)
    half, half_terms = loss_fn(fake_output(loc_map), labels, constraint_weight=0.5)
    none, _ = loss_fn(fake_output(loc_map), labels, constraint_weight=0.0)
    cls, area, norm = (terms[k].item() for k in ("cls", "area", "norm"))
    assert full.item() == pytest.approx(cls + 2.0 * area + 0.5 * norm, rel=1e-6)
    assert half.item() == pytest.approx(cls + 0.5 * (2.0 * area + 0.5 * norm), rel=1e-6)
    assert none.item() == pytest.approx(cls, rel=1e-6)
    assert all(torch.equal(terms[k], half_terms[k]) for k in terms)  # the terms come unweighted
    assert (loss_fn.lambda_area, loss_fn.lambda_norm) == (2.0, 0.5)  # the module keeps its weights


def _terms_and_grads(loc_map: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Every loss term, the total, and each one's gradient with respect to the map (and the logits)."""
    out = fake_output(loc_map)._replace(logits=logits)
    total, _ = SATLoss(area_thr=0.25)(out, labels)
    found = {"area": area_loss(loc_map, 0.25), "norm": normalization_loss(loc_map), "total": total}
    grads = {name: torch.autograd.grad(value, loc_map, retain_graph=True)[0] for name, value in found.items()}
    grads["total_logits"] = torch.autograd.grad(total, logits)[0]
    return {"values": found, "grads": grads}


def test_every_term_and_gradient_is_fp32_under_bf16_autocast():
    """autocast runs conv2d in bf16: the smoothed map (and the normalization term) must not follow it."""
    generator = torch.Generator().manual_seed(0)
    loc_map = torch.rand(4, 14, 14, generator=generator).requires_grad_()
    logits = torch.randn(4, 10, generator=generator).requires_grad_()
    labels = torch.tensor([0, 3, 5, 9])
    reference = _terms_and_grads(loc_map, logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = _terms_and_grads(loc_map, logits, labels)
    for kind in ("values", "grads"):
        for name, value in autocast[kind].items():
            assert value.dtype == torch.float32, (kind, name)
            assert torch.equal(value, reference[kind][name]), (kind, name)


def test_loss_follows_the_maps_device():
    """The fixed kernel buffer lives where the module is; a map elsewhere still meets a kernel on its device."""
    loc_map = torch.rand(2, 5, 5, device="meta")
    out = fake_output(loc_map)._replace(logits=torch.zeros(2, 4, device="meta"))
    total, terms = SATLoss()(out, torch.tensor([0, 1], device="meta"))
    assert total.device.type == "meta" and all(t.device.type == "meta" for t in terms.values())
    assert normalization_loss(loc_map).device.type == "meta"


def test_a_bf16_map_gives_the_fp32_loss_of_its_values():
    """Under CUDA autocast the model hands the loss a bf16 map: every term is computed in fp32, bit for bit the
    loss of the same values given in fp32 (with autocast around the loss or not)."""
    generator = torch.Generator().manual_seed(1)
    map16 = torch.rand(4, 14, 14, generator=generator).bfloat16()
    logits, labels = torch.randn(4, 10, generator=generator), torch.tensor([0, 3, 5, 9])
    reference = SATLoss(area_thr=0.25)(fake_output(map16.float())._replace(logits=logits), labels)
    reference_norm = normalization_loss(map16.float())
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            norm = normalization_loss(map16)
            total, terms = SATLoss(area_thr=0.25)(fake_output(map16)._replace(logits=logits), labels)
        assert norm.dtype == torch.float32 and torch.equal(norm, reference_norm), autocast
        assert total.dtype == torch.float32 and torch.equal(total, reference[0]), autocast
        for name, value in terms.items():
            assert value.dtype == torch.float32 and torch.equal(value, reference[1][name]), (autocast, name)
