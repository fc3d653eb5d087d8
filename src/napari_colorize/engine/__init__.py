"""The chunked engine: any image size, stacks, zarr, GPU batching and dask.distributed.

Nothing here imports napari or Qt.  Front ends (the Python API, the command line,
the napari widget) build a lazy result with :func:`napari_colorize.colorize`, which
calls :func:`.lazy.colorize_array`.
"""

from .cache import TileCache, tile_cache
from .lazy import (CHANNELS, DEFAULT_TILING, GPU_TILING, Cancelled, ModelRef, Monitor, TileOptions, colorize_array,
                   default_batch, default_tiling, predict_tiles, reset_memory_limits)
from .tiling import TilePlan, assemble_chunk, axis_tiles, blend_tiles, check_tiling, cut_pieces, feather_weights

__all__ = ["TileCache", "tile_cache", "CHANNELS", "DEFAULT_TILING", "GPU_TILING", "default_batch", "reset_memory_limits",
           "Cancelled", "ModelRef", "Monitor", "TileOptions",
           "colorize_array", "default_tiling", "predict_tiles", "TilePlan", "axis_tiles", "assemble_chunk", "blend_tiles",
           "check_tiling", "cut_pieces", "feather_weights"]
