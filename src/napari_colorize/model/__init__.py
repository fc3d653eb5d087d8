"""Networks: the backbone registry, the hypercolumn colorizer, and checkpoint I/O."""

from .backbones import (BACKBONES, Backbone, BackboneSpec, CompactBackbone, Tap, VGG16Backbone, get_backbone,
                        register_backbone)
from .factory import (DEFAULT_MODEL, ModelConfig, build_model, incomplete_note, is_default_model, is_model_file,
                      load_model, read_config, resolve_model_path, save_model)
from .hypercolumn import GRID_STRIDE, HypercolumnColorizer, pad_to_multiple
from .metadata import ModelMetadataError

__all__ = [
    "BACKBONES", "Backbone", "BackboneSpec", "CompactBackbone", "Tap", "VGG16Backbone", "get_backbone",
    "register_backbone", "DEFAULT_MODEL", "ModelConfig", "build_model", "is_default_model", "is_model_file", "load_model", "read_config", "incomplete_note",
    "resolve_model_path", "save_model", "ModelMetadataError", "GRID_STRIDE", "HypercolumnColorizer", "pad_to_multiple",
]
