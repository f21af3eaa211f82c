"""SAT models: blocks, the SAT module, named variants (registered with timm) and weight loading."""

from satlib.models.blocks import Block, ConvStem, SATAttention
from satlib.models.factory import VARIANTS, create_model, list_models
from satlib.models.sat import SAT, SATOutput
from satlib.models.weights import (LoadReport, checkpoint_filter_fn, convert_official_checkpoint,
                                   load_pretrained, read_state_dict)

__all__ = ["SAT", "SATOutput", "SATAttention", "Block", "ConvStem", "VARIANTS", "create_model", "list_models",
           "LoadReport", "checkpoint_filter_fn", "convert_official_checkpoint", "load_pretrained",
           "read_state_dict"]
