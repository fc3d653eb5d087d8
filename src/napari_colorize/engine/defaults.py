"""Default tiling and batching, per backbone and device type.

The numbers live on the backbones (:data:`napari_colorize.model.BACKBONES`); this module
turns them into the (tile size, overlap) and tiles-per-call of one run.
"""

from __future__ import annotations

import math

import dask

from ..model.backbones import get_backbone

__all__ = ["DEFAULT_BATCH", "GPU_BATCH_PIXELS", "default_tiling", "default_batch", "local_threads", "resolve_tiling"]

#: Tiles per model call by device type, except CUDA (see default_batch); halved
#: automatically on out-of-memory.
DEFAULT_BATCH = {"cpu": 1, "mps": 2}
#: On a GPU, batches hold about this many pixels (at least one tile).
GPU_BATCH_PIXELS = 2**24
def default_tiling(backbone: str, plane: tuple[int, int] | None = None, device_type: str = "cpu") -> tuple[int, int]:
    """The default (tile size, overlap) for a backbone, a plane shape and a device type.

    The numbers are the backbone's (:class:`napari_colorize.model.BackboneSpec`: CPU and
    GPU tiling, single-pass size; docs/engine.md has the seam measurements behind them).
    A plane no larger than the single-pass size gets one tile covering it (its side
    rounded up to a multiple of 32) and no overlap.
    """
    return resolve_tiling(backbone, plane, device_type)


def _one_pass(plane: tuple[int, int]) -> int:
    """The side of one tile covering the whole plane (a multiple of the network's stride 32)."""
    return -(-max(plane) // 32) * 32


def default_batch(device_type: str, tile_size: int) -> int:
    """Tiles per model call: one on a CPU, about :data:`GPU_BATCH_PIXELS` pixels on a GPU."""
    if device_type == "cuda":
        return max(1, GPU_BATCH_PIXELS // (tile_size * tile_size))
    return DEFAULT_BATCH.get(device_type, 1)


def _check_whole(name: str, value) -> None:
    """A caller's tile size or overlap: None, or a whole number of pixels."""
    if value is None:
        return
    try:
        whole = math.isfinite(float(value)) and float(value) == int(value)
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ValueError(f"{name} must be a whole number of pixels, got {value!r}")


def resolve_tiling(backbone: str, plane: tuple[int, int] | None, device_type: str, tile_size: int | None = None,
                   overlap: int | None = None, min_size: int = 32) -> tuple[int, int]:
    """The (tile size, overlap) of one run: the caller's choices over the defaults, validated.

    A caller's tile size without an overlap takes the backbone's overlap, at most a
    quarter tile (so that small tiles keep a core of their own), a multiple of 32 where
    possible.  ``plane`` None (not known yet, e.g. a CLI check before reading) checks
    the tiling of planes too large for one pass.
    """
    from .tiling import check_tiling

    _check_whole("tile size", tile_size)  # before int() below, which would truncate 64.5 to 64
    _check_whole("overlap", overlap)
    default_tile, default_overlap, single = get_backbone(backbone).tiling(device_type)
    if tile_size is None and plane is not None and max(plane) <= single:
        # One tile covers the plane: an overlap would only be recomputed for nothing, so a
        # caller's overlap (meant for larger planes of the same run) is not an error here.
        return _one_pass(plane), 0
    if overlap is None and tile_size is not None:
        # Never below 0: a bad tile size (-5) is then reported as such, not as a derived overlap (-2).
        overlap = max(0, min(default_overlap, int(tile_size) // 4))
        overlap -= overlap % 32 if overlap >= 32 else 0
    tile_size = default_tile if tile_size is None else int(tile_size)
    overlap = int(default_overlap if overlap is None else overlap)
    check_tiling(tile_size, overlap, min_size)
    return tile_size, overlap


def local_threads() -> int:
    """Threads of a dask computation in this process: dask's own default on the main thread.

    Called from any other thread (the napari widget's worker), dask's threaded scheduler
    makes a pool of min(32, cores + 4) threads unless told: on 2 cores, 6 tile batches
    in flight that queue for the one network pass, 40 % more peak memory for no speed.
    A caller's ``dask.config.set(num_workers=N)`` still rules, as it does for dask.
    """
    return dask.config.get("num_workers", None) or dask.system.CPU_COUNT
