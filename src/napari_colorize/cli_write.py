"""Writing a coloured image's outputs as PNG or TIFF files, one band of chunk rows at a time.

Both formats are filled band by band from the lazy result: a band (one row of output
chunks, e.g. 1024 rows) is computed, converted and copied into its place, then freed.
TIFFs are memory-mapped files, so their memory stays bounded at any size; PNG has no
such writer, so the three images are kept in memory, but only in their final 8-bit form
(5 bytes a pixel, 120 MB for 24 MP), never as the float32 result of the whole image
(20 bytes a pixel, and as much again while dask joins its blocks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .io.write import to_uint8
from .outputs import channel_slices, get_output

__all__ = ["write_pngs", "write_tiffs"]


def _bands(plan) -> list[tuple]:
    """Each band's index into the result: its plane, then its rows (one row of chunks)."""
    return [plane + (slice(*plan.ty.chunk_range(cy)),) for plane in plan.planes for cy in range(plan.ty.n_chunks)]


def _computed(stacked, plan, bands: list[tuple], client=None,
              progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(band number, values)`` for every band, as they are computed."""
    if client is None:  # here: one band at a time; the tile cache keeps the tiles two bands share
        return ((i, np.asarray(stacked[band].compute())) for i, band in enumerate(bands))
    # On a cluster: one job, so a tile two bands share runs once; the bar counts bands as tiles.
    from .engine.distributed import compute_as_completed
    bar = None if progress is None else (lambda n, total: progress(round(plan.n_tiles * n / total), plan.n_tiles))
    return compute_as_completed(client, [stacked[band] for band in bands], bar)


def write_pngs(stacked, plan, targets: dict[str, Path], src: Path, pixel_size: tuple[float, float] | None, *,
               client=None, progress=None) -> None:
    """One 8-bit PNG per output of a single plane, filled band by band (see the module)."""
    if stacked.ndim != 3:
        raise ValueError(f"{src.name} is a stack of shape {stacked.shape[:-1]}; PNG holds one plane: use --format tiff or zarr")
    from .io import write_png
    shape = tuple(stacked.shape[:-1])
    images = {key: np.empty(shape + ((3,) if get_output(key).is_rgb else ()), np.uint8) for key in targets}
    channels = channel_slices()
    bands = _bands(plan)
    with contextlib.closing(_computed(stacked, plan, bands, client, progress)) as done:
        for i, values in done:
            for key, image in images.items():
                image[bands[i]] = to_uint8(values[..., channels[get_output(key).name]])
    for key, path in targets.items():
        write_png(path, images.pop(key), pixel_size)  # each freed once written


def write_tiffs(stacked, plan, targets: dict[str, Path], rgb_dtype: str, *, axes: list[str] | None,
                pixel_size: tuple[float, float] | None, z_step: float | None, client=None, progress=None) -> None:
    """Fill memory-mapped TIFFs one band of chunk rows at a time (bounded memory).

    The input's axis names, pixel size and z step (micrometers) go into every file
    (:class:`~napari_colorize.io.tiff_memmaps`), so a z-stack is not shown squashed."""
    from .io import tiff_memmaps
    shape = tuple(stacked.shape[:-1])
    specs = {}
    for key, path in targets.items():
        if get_output(key).is_rgb:
            specs[key] = (path, shape + (3,), rgb_dtype, "rgb")
        else:
            specs[key] = (path, shape, "float32", "minisblack")
    channels = channel_slices()
    bands = _bands(plan)
    done = _computed(stacked, plan, bands, client, progress)
    with tiff_memmaps(specs, pixel_size, axes=axes, z_step=z_step) as maps, contextlib.closing(done):
        for i, values in done:
            for key, target in maps.items():
                output = get_output(key)
                band = values[..., channels[output.name]]
                rgb8 = output.is_rgb and rgb_dtype == "uint8"
                target[bands[i]] = to_uint8(band) if rgb8 else band
