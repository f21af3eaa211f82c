"""satlib: the Spatial-Aware Token (SAT) for weakly supervised object localization."""

__version__ = "0.1.0"

from satlib.build import load
from satlib.evaluation.visualize import overlay
from satlib.export import export_model
from satlib.info import LoadedModel, ModelInfo
from satlib.kernels import gaussian_kernel
from satlib.localize import Localization, localize
from satlib.losses import SATLoss, area_loss, normalization_loss
from satlib.mapfile import MapSet, model_maps, read_maps, save_maps
from satlib.maps import MapScores, evaluate_maps
from satlib.models import (
    SAT,
    LoadReport,
    SATOutput,
    convert_official_checkpoint,
    create_model,
    list_models,
    load_pretrained,
)

__all__ = ["__version__", "SAT", "SATOutput", "SATLoss", "LoadReport", "create_model", "list_models",
           "convert_official_checkpoint", "load_pretrained", "area_loss", "normalization_loss",
           "gaussian_kernel", "load", "LoadedModel", "ModelInfo", "localize", "Localization", "overlay",
           "evaluate_maps", "MapSet", "MapScores", "read_maps", "save_maps", "model_maps", "export_model"]
