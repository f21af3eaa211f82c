"""What a trained model was trained with, as data beside the model: `ModelInfo`, and `LoadedModel`.

`satlib.load(checkpoint)` returns a `LoadedModel` (model, info); `satlib.localize`, `satlib.predict`
and the checkpoint evaluation (`satlib.assess`) take it, and read the threshold, the protocol and the
input normalisation from `info`, never from attributes stamped on the `nn.Module`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from satlib.config import Config


@dataclass(frozen=True)
class ModelInfo:
    """A trained model's record: its name and classes, input, map threshold, protocol and normalisation."""

    name: str  # the model name (`config.model.name`), e.g. "sat_tiny_convstem"
    num_classes: int
    class_names: tuple[str, ...]  # empty when the checkpoint names none (an official release)
    img_size: int  # the input side the model takes (data.img_size)
    threshold: float | None  # the map threshold chosen at evaluation (best_threshold); None if never evaluated
    protocol: str  # eval.protocol: the test-time geometry and box rule ("sat" or "wsoleval")
    mean: tuple[float, ...]  # per-channel normalisation of its input images
    std: tuple[float, ...]
    config: Config = field(compare=False)  # the resolved config it was trained (official: rebuilt) with
    metrics: dict = field(default_factory=dict, compare=False)  # the evaluation record it was saved with

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std), as `satlib.data` transforms take them."""
        return self.mean, self.std


class LoadedModel(NamedTuple):
    """A trained model in eval mode, and what it was trained with."""

    model: nn.Module
    info: ModelInfo
