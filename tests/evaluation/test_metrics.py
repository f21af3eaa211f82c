import pytest
import torch

from satlib.evaluation import LocalizationEvaluator, normalize_maps

from eval_fixtures import random_gt_boxes, smooth_maps
from wsol_reference import sat_metrics, wsoleval_metrics


def _hand_case():
    """Five 16x16 maps (values 0 / 0.5 / 1) whose boxes at t = 0.3 and 0.6 are known by hand."""
    maps = torch.zeros(5, 16, 16)
    maps[0, 0:8, 0:8] = 0.5
    maps[0, 0:4, 0:4] = 1.0  # t=.3: [0,0,8,8] IoU 64/81; t=.6: [0,0,4,4] IoU 25/64
    maps[1, 8:16, 8:16] = 1.0  # both: [8,8,16,16] IoU 64/81 (wsoleval: clipped [8,8,15,15], IoU 1)
    maps[2, 0:2, 0:2] = 1.0
    maps[2, 10:16, 10:16] = 0.5  # t=.3: largest is the 6x6 block; t=.6: the 2x2 block, IoU 4/9
    maps[3] = 0.3  # constant: SAT whole image (IoU 16/289), wsoleval [0,0,0,0] (IoU 1/16)
    maps[4, 0:2, 0:2] = 0.5
    maps[4, 6:16, 6:16] = 1.0  # the GT is the small blob: only a multi-contour box finds it (4/9)
    gt = [torch.tensor([[0.0, 0, 7, 7]]), torch.tensor([[8.0, 8, 15, 15]]),
          torch.tensor([[10.0, 10, 15, 15], [0, 0, 1, 1]]), torch.tensor([[0.0, 0, 3, 3]]),
          torch.tensor([[0.0, 0, 1, 1]])]
    logits = torch.full((5, 6), -1.0)
    logits[0, 0] = logits[1, 1] = logits[4, 4] = 5.0  # right at top-1
    logits[2, 5], logits[2, 2] = 5.0, 4.0  # label 2 second: top-5 only
    logits[3, :] = torch.tensor([6.0, 5, 4, -9, 2, 1])  # label 3 last of six: wrong at top-5
    return maps, gt, logits, torch.arange(5)


def test_sat_metrics_by_hand():
    maps, gt, logits, labels = _hand_case()
    evaluator = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=16, protocol="sat")
    evaluator.update(maps, gt, logits, labels)
    result = evaluator.compute()
    # t=.3: GT-known imgs 0,1,2 (60), Top-1 Loc imgs 0,1 (40) -> 100; t=.6: 20 + 20 -> best .3
    assert result == {"gt_known": 60.0, "maxboxacc": 60.0, "maxboxacc_v2": 60.0, "best_threshold": 0.3,
                      "iou30": 60.0, "iou50": 60.0, "iou70": 60.0, "top1_cls": 60.0, "top5_cls": 80.0,
                      "top1_loc": 40.0, "top5_loc": 60.0, "images": 5}


def test_wsoleval_metrics_by_hand():
    maps, gt, logits, labels = _hand_case()
    evaluator = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=16, protocol="wsoleval")
    evaluator.update(maps, gt, logits, labels)
    result = evaluator.compute()
    # largest box at IoU 50: t=.3 imgs 0,1,2 (60), t=.6 img 1 (20). Any box: IoU30 at t=.3 also
    # finds img 4's small blob (80); IoU50 and IoU70 best at t=.3 (60).
    assert result == pytest.approx({"gt_known": 60.0, "maxboxacc": 60.0, "best_threshold": 0.3,
                                    "iou30": 80.0, "iou50": 60.0, "iou70": 60.0, "maxboxacc_v2": 200 / 3,
                                    "top1_cls": 60.0, "top5_cls": 80.0, "top1_loc": 40.0, "top5_loc": 60.0,
                                        "images": 5},
                                   rel=0, abs=1e-12)


def test_sat_best_threshold_uses_top1_loc():
    """GT-known alone picks t=.6 (60 vs 40); GT-known + Top-1 Loc picks t=.3 (80 vs 60)."""
    early = torch.zeros(8, 8)
    early[0:4, 0:4] = 0.5
    early[0:2, 0:2] = 1.0  # GT [0,0,4,4]: t=.3 box [0,0,4,4] IoU 1; t=.6 box [0,0,2,2] IoU 9/25
    late = torch.zeros(8, 8)
    late[4:8, 4:8] = 0.5
    late[6:8, 6:8] = 1.0  # GT [6,6,8,8]: t=.3 box [4,4,8,8] IoU 9/25; t=.6 box [6,6,8,8] IoU 1
    maps = torch.stack([early, early, late, late, late])
    gt = [torch.tensor([[0.0, 0, 4, 4]])] * 2 + [torch.tensor([[6.0, 6, 8, 8]])] * 3
    logits = torch.tensor([[3.0, 0]] * 5)
    labels = torch.tensor([0, 0, 1, 1, 1])  # the early images are classified right, the late wrong
    evaluator = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=8)
    evaluator.update(maps, gt, logits, labels)
    result = evaluator.compute()
    picked = (result["best_threshold"], result["gt_known"], result["top1_loc"], result["maxboxacc"])
    assert picked == (0.3, 40.0, 40.0, 60.0)
    without = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=8)
    without.update(maps, gt)
    assert without.compute()["best_threshold"] == 0.6
    assert "top1_loc" not in without.compute()


@pytest.mark.parametrize("backend", ["union_find", "propagate", "host"])
def test_sat_matches_official_loop(backend):
    maps = smooth_maps(60, seed=21, size=(8, 8))
    gt = random_gt_boxes(60, seed=22, size=32)
    logits = torch.randn(60, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (60,), generator=torch.Generator().manual_seed(1))
    thresholds = [0.1, 0.25, 0.4, 0.55, 0.7]
    evaluator = LocalizationEvaluator(thresholds=thresholds, image_size=32, protocol="sat", backend=backend)
    evaluator.update(maps[:25], gt[:25], logits[:25], labels[:25])  # streamed in two batches
    evaluator.update(maps[25:], gt[25:], logits[25:], labels[25:])
    normalized = normalize_maps(maps, 32, "sat").numpy()
    expected = sat_metrics(normalized, [g.tolist() for g in gt], thresholds, logits.numpy(), labels.tolist())
    assert evaluator.compute() == expected


@pytest.mark.parametrize("backend", ["union_find", "propagate", "host"])
def test_wsoleval_matches_official_loop(backend):
    maps = smooth_maps(40, seed=31, size=(8, 8))
    gt = random_gt_boxes(40, seed=32, size=24)
    thresholds = [i / 10 for i in range(10)]
    evaluator = LocalizationEvaluator(thresholds=thresholds, image_size=24, protocol="wsoleval", backend=backend)
    evaluator.update(maps, gt)
    normalized = normalize_maps(maps, 24, "wsoleval").numpy()
    expected = wsoleval_metrics(normalized, [g.tolist() for g in gt], thresholds)
    assert evaluator.compute() == pytest.approx(expected, rel=0, abs=1e-12)


def test_default_thresholds_per_protocol():
    assert LocalizationEvaluator(protocol="sat").thresholds == (0.3, 0.35, 0.4, 0.45)
    wsol = LocalizationEvaluator(protocol="wsoleval").thresholds
    assert len(wsol) == 100 and wsol[0] == 0.0 and wsol[-1] == pytest.approx(0.99)


def test_update_returns_largest_box_iou():
    maps, gt, logits, labels = _hand_case()
    iou = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=16).update(maps, gt)
    assert iou.shape == (5, 2)
    assert iou[0].tolist() == pytest.approx([64 / 81, 25 / 64])


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_update_accepts_outputs_that_require_grad(protocol):
    maps, gt, logits, labels = _hand_case()
    plain = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=16, protocol=protocol)
    plain.update(maps, gt, logits, labels)
    live = LocalizationEvaluator(thresholds=[0.3, 0.6], image_size=16, protocol=protocol)
    iou = live.update(maps.clone().requires_grad_(), gt, logits.clone().requires_grad_(), labels)
    assert not iou.requires_grad
    assert live.compute() == plain.compute()


def test_pxap_reported_with_masks():
    maps, gt, _, _ = _hand_case()
    masks = torch.zeros(5, 16, 16, dtype=torch.uint8)
    masks[:, 0:8, 0:8] = 1
    evaluator = LocalizationEvaluator(thresholds=[i / 10 for i in range(10)], image_size=16)
    evaluator.update(maps, gt, gt_masks=masks)
    assert 0 < evaluator.compute()["pxap"] <= 100


def test_errors_are_clear():
    maps, gt, logits, labels = _hand_case()
    evaluator = LocalizationEvaluator(thresholds=[0.3], image_size=16)
    with pytest.raises(RuntimeError, match="no images were evaluated"):
        evaluator.compute()
    with pytest.raises(ValueError, match="empty"):
        evaluator.update(maps[:0], [])
    with pytest.raises(ValueError, match="4 images but the maps have 5"):
        evaluator.update(maps, gt[:4])
    with pytest.raises(ValueError, match="together"):
        evaluator.update(maps, gt, logits)
    with pytest.raises(ValueError, match=r"logits must be \(B, classes\) with B = 5"):
        evaluator.update(maps, gt, logits[:3], labels)
    with pytest.raises(ValueError, match="labels must be"):
        evaluator.update(maps, gt, logits, labels + 10)
    with pytest.raises(ValueError, match="gt_masks has shape"):
        evaluator.update(maps, gt, gt_masks=torch.zeros(5, 8, 8))
    with pytest.raises(ValueError, match="values other than"):
        evaluator.update(maps, gt, gt_masks=torch.full((5, 16, 16), 7))
    bad = maps.clone()
    bad[2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"maps\[2\]"):
        evaluator.update(bad, gt)
    assert evaluator.count == 0  # nothing was half-added
    evaluator.update(maps, gt, logits, labels)
    with pytest.raises(ValueError, match="every batch must have it or none"):
        evaluator.update(maps, gt)
    with pytest.raises(ValueError, match="iou_thresholds"):
        LocalizationEvaluator(iou_thresholds=(30, 150))


@pytest.mark.gpu
def test_cuda_evaluator_matches_cpu():
    protocol = "sat"  # its bilinear resize is exact on both devices
    maps = smooth_maps(40, seed=41, size=(14, 14))
    gt = random_gt_boxes(40, seed=42, size=64)
    logits = torch.randn(40, 10, generator=torch.Generator().manual_seed(2))
    labels = torch.randint(0, 10, (40,), generator=torch.Generator().manual_seed(3))
    results = []
    for device in ("cpu", "cuda"):
        evaluator = LocalizationEvaluator(thresholds=[i / 20 for i in range(20)], image_size=64, protocol=protocol)
        evaluator.update(maps.to(device), gt, logits.to(device), labels.to(device))
        results.append(evaluator.compute())
    assert results[0] == results[1]


def test_image_without_visible_gt_box_is_a_miss():
    """K = 0 (every box cut away by the centre crop) scores IoU 0, as the official +1 IoU with such a box."""
    from satlib.evaluation import LocalizationEvaluator

    maps = torch.zeros(2, 4, 4)
    maps[:, 1:3, 1:3] = 1.0
    boxes = [torch.tensor([[8.0, 8.0, 23.0, 23.0]]), torch.zeros(0, 4)]
    evaluator = LocalizationEvaluator(thresholds=[0.5], image_size=32)
    iou = evaluator.update(maps, boxes, logits=torch.eye(2), labels=torch.arange(2))
    assert iou[1, 0] == 0.0 and iou[0, 0] > 0.5
    metrics = evaluator.compute()
    assert metrics["gt_known"] == 50.0 and metrics["top1_loc"] == 50.0


@pytest.mark.gpu
@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_cuda_gt_boxes_with_an_image_without_box(protocol):
    """GT boxes decoded on the GPU (data.gpu_decode), one image's boxes all cut away by the centre crop."""
    maps = torch.zeros(2, 4, 4)
    maps[:, 1:3, 1:3] = 1.0
    boxes = [torch.tensor([[8.0, 8.0, 23.0, 23.0]]), torch.zeros(0, 4)]
    results = []
    for device in ("cpu", "cuda"):
        evaluator = LocalizationEvaluator(thresholds=[0.5], image_size=32, protocol=protocol)
        iou = evaluator.update(maps.to(device), [b.to(device) for b in boxes])
        assert iou.device.type == device and iou[1, 0] == 0.0
        results.append(evaluator.compute())
    assert results[0] == results[1]



def _scored(maps, boxes, logits, labels, thresholds, protocol) -> LocalizationEvaluator:
    evaluator = LocalizationEvaluator(thresholds=thresholds, image_size=32, protocol=protocol)
    evaluator.update(maps, boxes, logits, labels)
    return evaluator


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_thresholds_chosen_on_another_split(protocol):
    """compute(choose_on=held_out): every threshold is the held-out evaluator's choice (wsoleval: one per IoU
    level), every number is this evaluator's at it; choosing on itself is plain compute()."""
    thresholds = [0.2, 0.4, 0.6, 0.8]
    g = torch.Generator().manual_seed(1)
    test_split = (smooth_maps(24, 1, (8, 8)), random_gt_boxes(24, 2, 32), torch.randn(24, 5, generator=g),
                  torch.randint(0, 5, (24,), generator=g))
    held_split = (smooth_maps(16, 3, (8, 8)), random_gt_boxes(16, 4, 32), torch.randn(16, 5, generator=g),
                  torch.randint(0, 5, (16,), generator=g))
    test, held_out = (_scored(*split, thresholds, protocol) for split in (test_split, held_split))
    assert test.compute(choose_on=test) == test.compute()

    chosen = test.compute(choose_on=held_out)
    assert chosen["best_threshold"] == held_out.compute()["best_threshold"]
    test_at = {t: _scored(*test_split, [t], protocol).compute() for t in thresholds}  # one threshold each
    for key in ("gt_known", "top1_loc", "top5_loc", "top1_cls", "images"):
        assert chosen[key] == test_at[chosen["best_threshold"]][key], key
    held_at = {t: _scored(*held_split, [t], protocol).compute() for t in thresholds}
    for level in (30, 50, 70):  # wsoleval: each IoU level at the held-out split's own argmax; SAT: the best one
        best = max(thresholds, key=lambda t: held_at[t][f"iou{level}"]) if protocol == "wsoleval" \
            else chosen["best_threshold"]
        assert chosen[f"iou{level}"] == test_at[best][f"iou{level}"], level
    with pytest.raises(ValueError, match="must equal this evaluator's"):
        test.compute(choose_on=LocalizationEvaluator(thresholds=[0.5], image_size=32, protocol=protocol))


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_merged_evaluators_count_as_one(protocol):
    """merge: two evaluators' counters added give what one evaluator fed every batch gives, PxAP included."""
    maps, boxes = smooth_maps(12, 5, (8, 8)), random_gt_boxes(12, 6, 16)
    logits, labels = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 4
    masks = (torch.rand(12, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.6).to(torch.uint8)
    whole, first, second = (LocalizationEvaluator(image_size=16, protocol=protocol) for _ in range(3))
    whole.update(maps, boxes, logits, labels, gt_masks=masks)
    first.update(maps[:5], boxes[:5], logits[:5], labels[:5], gt_masks=masks[:5])
    second.update(maps[5:], boxes[5:], logits[5:], labels[5:], gt_masks=masks[5:])
    merged = LocalizationEvaluator(image_size=16, protocol=protocol).merge(first).merge(second)
    assert merged.compute() == whole.compute()
