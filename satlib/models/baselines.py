"""The CAM and TS-CAM baselines on every SAT backbone, trained by the same loop and scored by the same evaluator.

- CAM (`cam_<backbone>`): the backbone with SAT's 3×3 conv head and global average pooling, trained
  for classification alone; the map of class c is the head's map of c before pooling.
- TS-CAM (`tscam_<backbone>`, Gao et al., ICCV 2021): the same network and training; the map of class
  c is the cls token's attention to the patches (its softmax row, averaged over heads and summed over
  all blocks) times the head's map of c, as the official `TSCAM.forward` computes it (the class map
  without ReLU; every map is min-max normalised before it is thresholded).

Both maps are class-specific: `loc_map` is the predicted class's map and `class_loc_maps` every
class's, so the evaluator can score the ground-truth class's map for GT-known, as wsolevaluation does.
Neither network has the loc token; the loss is cross-entropy alone (`satlib.losses.build_loss`).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from satlib.models.sat import ConvHeadViT, SATOutput


def predicted_class_map(class_loc_maps: Tensor, logits: Tensor) -> Tensor:
    """Each image's map of its predicted class, (B, classes, rows, cols), (B, classes) -> (B, rows, cols)."""
    return class_loc_maps[torch.arange(len(logits), device=logits.device), logits.argmax(dim=-1)]


class CAM(ConvHeadViT):
    """CAM network: backbone, conv head, average pooling; the map is a class's head map, -> SATOutput.

    `masks` is empty (B, 0, rows, cols): no block reads an attention row.
    """

    method = "cam"
    row = None

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        return SATOutput(logits, predicted_class_map(class_maps, logits), rows, class_maps, class_maps)


class TSCAM(ConvHeadViT):
    """TS-CAM: the cls token's attention to the patches times the head's class maps, -> SATOutput.

    `masks` holds each block's cls attention over the patches (B, depth, rows, cols).
    """

    method = "tscam"
    row = "cls"

    def __init__(self, backbone: VisionTransformer, **kwargs: Any) -> None:
        if backbone.cls_token is None:
            raise ValueError("TS-CAM reads the cls token's attention, and this backbone has no cls token "
                             "(class_token=False); use its cam_ or sat_ model")
        super().__init__(backbone, **kwargs)

    def attention_map(self, cls_rows: Tensor) -> Tensor:
        """The cls token's attention to the patches summed over blocks, (B, depth, rows, cols) -> (B, rows, cols)."""
        return cls_rows.sum(dim=1)

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        class_loc_maps = rearrange(self.attention_map(rows), "b rows cols -> b 1 rows cols") * class_maps
        return SATOutput(logits, predicted_class_map(class_loc_maps, logits), rows, class_maps, class_loc_maps)
