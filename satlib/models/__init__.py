"""SAT models: blocks, the SAT module, SAT and its baselines on timm ViTs, named variants and weight loading."""

from satlib.models.baselines import ViTCAM, ViTTSCAM
from satlib.models.blocks import Block, ConvStem, SATAttention
from satlib.models.factory import (
    VARIANTS,
    ModelName,
    baseline_name,
    create_backbone,
    create_model,
    list_models,
    model_pretrained_cfg,
    parse_model_name,
)
from satlib.models.freeze import count_parameters
from satlib.models.sat import SAT, SATOutput
from satlib.models.vit import ViTBase, ViTSAT
from satlib.models.weights import (
    LoadReport,
    checkpoint_filter_fn,
    convert_official_checkpoint,
    load_pretrained,
    read_state_dict,
)

__all__ = ["SAT", "SATOutput", "SATAttention", "Block", "ConvStem", "VARIANTS", "create_model", "list_models",
           "LoadReport", "checkpoint_filter_fn", "convert_official_checkpoint", "load_pretrained",
           "read_state_dict", "ViTBase", "ViTSAT", "ViTCAM", "ViTTSCAM", "create_backbone", "count_parameters",
           "ModelName", "parse_model_name", "baseline_name", "model_pretrained_cfg"]
