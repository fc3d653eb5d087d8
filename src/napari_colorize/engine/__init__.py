"""The chunked engine: any image size, stacks, zarr, GPU batching and dask.distributed.

Nothing here imports the API, the command line, napari or Qt.  The front ends build a
lazy result with :func:`.pipeline.colorize_stacked`, which resolves the options and
calls :func:`.graph.colorize_array`; modules by idea:

* :mod:`.defaults`: tiling and batch sizes per backbone and device;
* :mod:`.models`: models loaded once per process;
* :mod:`.jobs`: what tasks carry (model reference, options, progress, cancel);
* :mod:`.device_batch`: one batch of tiles through the network, out-of-memory recovery;
* :mod:`.tiling`: the tile geometry and feathered blending;
* :mod:`.graph`: the dask graph of tiles, pieces and chunks;
* :mod:`.zarr_io` (with :mod:`.store`, :mod:`.ome`, :mod:`.stripes`, :mod:`.pyramid`,
  :mod:`.zarr_read`, :mod:`.sources`): resumable OME-Zarr output and reading it back;
* :mod:`.distributed`: running on a dask.distributed cluster.
"""

from .cache import TileCache, clear_caches, histogram_cache, tile_cache
from .defaults import default_batch, default_tiling, resolve_tiling
from .device_batch import predict_tiles, reset_memory_limits
from .graph import colorize_array
from .jobs import Cancelled, ModelRef, Monitor, TileOptions
from .models import get_model, weights_version
from .pipeline import colorize_stacked, decode_options_for
from .tiling import TilePlan, assemble_chunk, axis_tiles, blend_tiles, check_tiling, cut_pieces, feather_weights

__all__ = ["TileCache", "tile_cache", "clear_caches", "histogram_cache", "default_batch", "default_tiling",
           "resolve_tiling", "reset_memory_limits", "Cancelled", "ModelRef", "Monitor", "TileOptions", "get_model", "weights_version",
           "colorize_stacked", "decode_options_for", "colorize_array", "predict_tiles", "TilePlan", "axis_tiles",
           "assemble_chunk", "blend_tiles", "check_tiling", "cut_pieces", "feather_weights"]
