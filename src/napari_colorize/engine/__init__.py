"""The chunked engine: any image size, stacks, zarr, GPU batching and dask.distributed.

Nothing here imports napari or Qt.  Front ends (the Python API, the command line,
the napari widget) build a lazy result with :func:`napari_colorize.colorize`, which
calls :func:`.lazy.colorize_array`.
"""

from .cache import TileCache, tile_cache
from .lazy import CHANNELS, DEFAULT_TILING, Cancelled, ModelRef, Monitor, TileOptions, colorize_array, default_tiling, predict_tiles
from .tiling import TilePlan, axis_tiles, blend_into, check_tiling, feather_weights

__all__ = ["TileCache", "tile_cache", "CHANNELS", "DEFAULT_TILING", "Cancelled", "ModelRef", "Monitor", "TileOptions",
           "colorize_array", "default_tiling", "predict_tiles", "TilePlan", "axis_tiles", "blend_into", "check_tiling",
           "feather_weights"]
