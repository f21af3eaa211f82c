import numpy as np
import pytest
import torch

from satlib.evaluation import PixelAPMeter, combine_masks


def official_pxap(scoremaps, masks, thresholds) -> float:
    """wsolevaluation MaskEvaluator.accumulate/compute with np.histogram, one image at a time."""
    edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
    true_hist = np.zeros(len(edges) - 1)
    false_hist = np.zeros(len(edges) - 1)
    for scoremap, mask in zip(scoremaps, masks):
        true_hist += np.histogram(scoremap[mask == 1], bins=edges)[0]
        false_hist += np.histogram(scoremap[mask == 0], bins=edges)[0]
    tp = true_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    fp = false_hist[::-1].cumsum()
    nonzero = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100


def test_pxap_matches_official_histograms():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(12, 20, 20, generator=gen)
    scores[0] = 1.0  # the closed top bin
    scores[1] = 0.0
    masks = torch.randint(0, 2, (12, 20, 20), generator=gen).to(torch.uint8)
    masks[:, :3] = 255  # ignored pixels
    thresholds = list(np.arange(0, 1, 0.01))
    meter = PixelAPMeter(thresholds)
    meter.update(scores[:5], masks[:5])
    meter.update(scores[5:], masks[5:])
    assert meter.compute() == pytest.approx(official_pxap(scores.numpy(), masks.numpy(), thresholds), abs=1e-9)


def test_pxap_perfect_and_inverted_by_hand():
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, :2] = 1
    perfect = mask.float() * 0.9 + 0.05  # foreground 0.95, background 0.05
    meter = PixelAPMeter([0.0, 0.5])
    meter.update(perfect, mask)
    # bins [0,.5) [.5,1) [1,2) [2,3]: TP 0,0,8,8 (descending) -> precision 1 where recall rises
    assert meter.compute() == pytest.approx(100.0)
    inverted = PixelAPMeter([0.0, 0.5])
    inverted.update(1 - perfect, mask)
    # recall jumps 0 -> 1 only at the last threshold, where precision is 8/16
    assert inverted.compute() == pytest.approx(50.0)


def test_pxap_errors():
    meter = PixelAPMeter([0.0, 0.5])
    meter.update(torch.rand(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="no positive ground truth"):
        meter.compute()
    with pytest.raises(ValueError, match="increase"):
        PixelAPMeter([0.5, 0.2])


def test_combine_masks_as_get_mask():
    instances = torch.zeros(2, 4, 4)
    instances[0, 0, 0] = 1.0
    instances[1, 3, 3] = 0.7
    ignore = torch.zeros(4, 4)
    ignore[0, :2] = 1.0  # overlaps instance 0 at (0, 0): foreground wins
    mask = combine_masks(instances, ignore)
    assert mask.dtype == torch.uint8
    assert (mask[0, 0], mask[0, 1], mask[3, 3], mask[2, 2]) == (1, 255, 1, 0)
    with pytest.raises(ValueError, match="do not match"):
        combine_masks(instances, torch.zeros(3, 3))
