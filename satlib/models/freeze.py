"""Frozen-backbone training: only the localization token, its position embedding and the head learn.

A linear-probe-like setting (TriLite's on DINOv2): the pretrained backbone stays fixed, the new
tensors train, and optionally so do the final `num_query_blocks` blocks. Frozen modules stay in eval
mode when the model is put in training mode, so their BatchNorm statistics never move and their
dropout and stochastic depth are off: the frozen backbone computes the same function at every step.
"""

from __future__ import annotations

from torch import nn

NEW_TENSORS = ("loc_token", "loc_embed")  # parameters a backbone checkpoint never has
TRAINABLE_MODULES = ("head",)  # modules a backbone checkpoint never has


class FrozenBackboneMixin:
    """`freeze_backbone()` and a `train()` that keeps frozen modules in eval mode, for SAT-family models.

    The model needs `blocks` (its transformer blocks) and `num_query_blocks`.
    """

    frozen_backbone: bool = False
    train_query_blocks: bool = False

    def trainable_module_names(self) -> list[str]:
        """Modules that train with a frozen backbone: the head, and the query blocks if they train."""
        names = [name for name in TRAINABLE_MODULES if getattr(self, name, None) is not None]
        if self.train_query_blocks:
            depth = len(self.blocks)
            names += [f"blocks.{i}" for i in range(depth - self.num_query_blocks, depth)]
        return names

    def freeze_backbone(self, *, train_query_blocks: bool = False) -> None:
        """Freeze every parameter but the loc token, loc embedding and head (and the query blocks if asked)."""
        self.frozen_backbone, self.train_query_blocks = True, train_query_blocks
        trainable = tuple(f"{name}." for name in self.trainable_module_names())
        for name, param in self.named_parameters():
            param.requires_grad_(name in NEW_TENSORS or name.startswith(trainable))
        self.train(self.training)

    def train(self, mode: bool = True) -> nn.Module:
        """nn.Module.train, except that with a frozen backbone every frozen module stays in eval mode."""
        super().train(mode)
        if mode and self.frozen_backbone:
            keep = self.trainable_module_names()
            for name, module in self.named_modules():
                inside = any(name == k or name.startswith(k + ".") for k in keep)
                above = any(k.startswith(name + ".") for k in keep)
                if name and not inside and not above:
                    module.eval()
        return self


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of a model."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
