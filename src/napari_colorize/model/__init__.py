"""Networks: backbones, the hypercolumn colorizer, and checkpoint I/O."""

from .backbones import BACKBONES, Backbone, CompactBackbone, Tap, VGG16Backbone, register_backbone
from .factory import DEFAULT_MODEL, ModelConfig, build_model, load_model, read_config, save_model
from .hypercolumn import GRID_STRIDE, HypercolumnColorizer, pad_to_multiple

__all__ = [
    "BACKBONES", "Backbone", "CompactBackbone", "Tap", "VGG16Backbone", "register_backbone",
    "DEFAULT_MODEL", "ModelConfig", "build_model", "load_model", "read_config", "save_model",
    "GRID_STRIDE", "HypercolumnColorizer", "pad_to_multiple",
]
