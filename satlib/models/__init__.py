"""SAT models: one body on timm's VisionTransformer for SAT and its CAM and TS-CAM baselines, model names,
named variants and weight loading."""

from satlib.models.backbones import create_backbone
from satlib.models.baselines import CAM, TSCAM
from satlib.models.blocks import Block, ConvStem, SATAttention, TokenMask
from satlib.models.factory import (
    VARIANTS,
    ModelName,
    baseline_name,
    create_model,
    list_models,
    model_pretrained_cfg,
    parse_model_name,
)
from satlib.models.freeze import count_parameters
from satlib.models.sat import SAT, ConvHeadViT, SATOutput
from satlib.models.weights import (
    CLASSIFIER_KEYS,
    LoadReport,
    checkpoint_filter_fn,
    convert_official_checkpoint,
    load_pretrained,
    official_state_dict,
    read_state_dict,
)

__all__ = ["SAT", "CAM", "TSCAM", "ConvHeadViT", "SATOutput", "SATAttention", "TokenMask", "Block", "ConvStem",
           "VARIANTS", "ModelName", "parse_model_name", "baseline_name", "model_pretrained_cfg", "create_model",
           "list_models", "create_backbone", "count_parameters", "LoadReport", "CLASSIFIER_KEYS",
           "checkpoint_filter_fn", "convert_official_checkpoint", "official_state_dict", "load_pretrained",
           "read_state_dict"]
