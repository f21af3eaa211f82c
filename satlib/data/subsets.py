"""Few-shot subsets: N images per class, drawn with a seed (the paper's 1-image-per-class ImageNet run)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def few_shot_indices(labels: Sequence[int], per_class: int, seed: int = 0) -> list[int]:
    """Indices of `per_class` images of every class (all of a class with fewer), sorted.

    Deterministic in (labels, per_class, seed): each class draws from its own generator seeded with
    (seed, class), so one class's draw does not depend on which other classes are present.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    labels = np.asarray(labels, dtype=np.int64)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, int(label)])
        chosen.append(members if len(members) <= per_class else rng.choice(members, per_class, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen)) if chosen else []
