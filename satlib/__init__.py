"""satlib: the Spatial-Aware Token (SAT) for weakly supervised object localization."""

__version__ = "0.1.0"
