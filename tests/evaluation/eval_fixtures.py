"""Random smooth maps and GT boxes shared by the evaluation tests."""

import numpy as np
import torch


def smooth_maps(count: int, seed: int, size: tuple[int, int] = (10, 10)) -> torch.Tensor:
    """Random smooth maps (count, h, w): a few Gaussian blobs, some quantised (ties) or constant."""
    rng = np.random.default_rng(seed)
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    maps = []
    for i in range(count):
        m = np.zeros((h, w))
        for _ in range(rng.integers(1, 5)):
            r, c = rng.uniform(-1, h), rng.uniform(-1, w)
            s = rng.uniform(0.6, 3.0)
            m += rng.uniform(0.3, 1.0) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s * s))
        m += 0.05 * rng.random((h, w))
        kind = i % 10
        if kind == 7:
            m = np.round(m * 4) / 4  # plateaus: ties between components
        elif kind == 8:
            m = np.full((h, w), 0.3)  # constant everywhere
        elif kind == 9:
            m = rng.random((h, w))  # rough: many components and holes
        maps.append(m)
    return torch.tensor(np.stack(maps), dtype=torch.float32)


def random_gt_boxes(count: int, seed: int, size: int) -> list[torch.Tensor]:
    """1-3 GT boxes per image, some touching the border."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(count):
        rows = []
        for _ in range(rng.integers(1, 4)):
            x0, x1 = sorted(rng.integers(0, size, 2))
            y0, y1 = sorted(rng.integers(0, size, 2))
            if rng.random() < 0.3:
                x0, y1 = 0, size - 1
            rows.append([x0, y0, x1, y1])
        boxes.append(torch.tensor(rows, dtype=torch.float32))
    return boxes
