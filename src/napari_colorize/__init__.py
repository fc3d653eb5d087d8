"""napari-colorize: automatic colorization of grayscale images.

The method is Larsson, Maire & Shakhnarovich, "Learning Representations for Automatic
Colorization" (ECCV 2016): a hypercolumn on a VGG-style network predicts a colour
histogram per pixel, which is decoded into colour while the input's lightness is kept.
"""

from .api import ColorizeResult, colorize, colorize_to_zarr, get_model
from .color import rgb_to_gray
from .model import build_model, load_model, save_model

__version__ = "0.1.0"

__all__ = ["ColorizeResult", "colorize", "colorize_to_zarr", "get_model", "rgb_to_gray", "build_model", "load_model", "save_model", "__version__"]
