"""Writing a coloured image's outputs as PNG or TIFF files, one chunk at a time.

In this process both formats are filled chunk by chunk in the zarr writer's order
(:func:`.engine.stripes.write_in_order`: chunk rows of vertical stripes, each tile
computed once, the pieces later rows need handed on in memory or through a spill
folder beside the outputs), so the memory of the computation depends neither on the
image's width nor on its height.  A row of chunks as wide as the image, the order
used before, held 3.5 GB for a 16000 px wide scan.  TIFFs are memory-mapped files, so
their pages stream to disk; PNG has no such writer, so its images are kept in memory,
but only in their final 8-bit form (5 bytes a pixel, 120 MB for 24 MP).

On a dask cluster the result is gathered one band (one row of chunks) at a time.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ._atomic import temp_folder
from .engine import stripes
from .io.write import to_uint8
from .outputs import channel_slices, get_output

__all__ = ["write_pngs", "write_tiffs"]


def _bands(plan) -> list[tuple]:
    """Each band's index into the result: its plane, then its rows (one row of chunks)."""
    return [plane + (slice(*plan.ty.chunk_range(cy)),) for plane in plan.planes for cy in range(plan.ty.n_chunks)]


def _computed(stacked, plan, bands: list[tuple], client,
              progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(band number, values)`` for every band, as ``client`` computes them.

    One job, so a tile two bands share runs once; the bar counts bands as tiles."""
    from .engine.distributed import compute_as_completed
    bar = None if progress is None else (lambda n, total: progress(round(plan.n_tiles * n / total), plan.n_tiles))
    return compute_as_completed(client, [stacked[band] for band in bands], bar)


def _write_here(stacked, plan, put: Callable[[tuple, np.ndarray], None], spill_beside: Path, device: str) -> None:
    """Compute every chunk of ``stacked`` once, in stripe order, and hand it to ``put(region, values)``.

    ``region`` indexes the outputs (the plane's indices, then rows and columns); ``values``
    is the chunk's ``(h, w, 5)`` result.  The spill folder is a hidden temporary folder in
    ``spill_beside`` (the output folder, which has room for the outputs themselves),
    ``.napari_colorize_spill.*.tmp-HOST-PID``.
    """
    name = f"colorize-put-{dask.base.tokenize(stacked.name, id(put))}"
    layer = {}
    for plane in plan.planes:
        for cy in range(plan.ty.n_chunks):
            for cx in range(plan.tx.n_chunks):
                region = plane + (slice(*plan.ty.chunk_range(cy)), slice(*plan.tx.chunk_range(cx)))
                layer[(name, *plane, cy, cx)] = (functools.partial(_put_block, put, region),
                                                 (stacked.name, *plane, cy, cx, 0))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[stacked])
    keys = list(layer)
    # One chunk at a time on a CPU, as the zarr writer: torch already uses every core inside a tile.
    workers = 1 if device.startswith("cpu") else None
    with temp_folder(spill_beside / "napari_colorize_spill") as spill:  # a killed run's is swept by the next
        stripes.write_in_order(stripes.culled(graph, keys), keys, workers, str(spill))


def _put_block(put: Callable[[tuple, np.ndarray], None], region: tuple, block: np.ndarray) -> None:
    put(region, block.reshape(block.shape[len(region) - 2:]))


def write_pngs(stacked, plan, targets: dict[str, Path], src: Path, pixel_size: tuple[float, float] | None, *,
               device: str = "cpu", client=None, progress=None, text: dict[str, str] | None = None) -> None:
    """One 8-bit PNG per output of a single plane, filled chunk by chunk (see the module);
    ``text``: the input's descriptive fields (:func:`.io.provenance.read_provenance`)."""
    if stacked.ndim != 3:
        raise ValueError(f"{src.name} is a stack of shape {stacked.shape[:-1]}; PNG holds one plane: use --format tiff or zarr")
    from .io import write_png
    shape = tuple(stacked.shape[:-1])
    images = {key: np.empty(shape + ((3,) if get_output(key).is_rgb else ()), np.uint8) for key in targets}
    channels = channel_slices()

    def put(region: tuple, values: np.ndarray) -> None:
        for key, image in images.items():
            image[region] = to_uint8(values[..., channels[get_output(key).name]])

    _fill(stacked, plan, put, _folder(targets), device, client, progress)
    for key, path in targets.items():
        write_png(path, images.pop(key), pixel_size, text)  # each freed once written


def write_tiffs(stacked, plan, targets: dict[str, Path], rgb_dtype: str, *, axes: list[str] | None,
                pixel_size: tuple[float, float] | None, z_step: float | None, device: str = "cpu", client=None,
                progress=None, text: dict[str, str] | None = None) -> None:
    """Fill memory-mapped TIFFs chunk by chunk (bounded memory, see the module).

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
    with tiff_memmaps(specs, pixel_size, axes=axes, z_step=z_step, text=text) as maps:
        def put(region: tuple, values: np.ndarray) -> None:
            for key, target in maps.items():
                output = get_output(key)
                part = values[..., channels[output.name]]
                target[region] = to_uint8(part) if output.is_rgb and rgb_dtype == "uint8" else part

        _fill(stacked, plan, put, _folder(targets), device, client, progress)


def _folder(targets: dict[str, Path]) -> Path:
    return Path(next(iter(targets.values()))).parent


def _fill(stacked, plan, put: Callable[[tuple, np.ndarray], None], folder: Path, device: str, client,
          progress) -> None:
    """Every chunk to ``put``: here in stripe order, or gathered band by band from ``client``."""
    if client is None:
        _write_here(stacked, plan, put, folder, device)
        return
    bands = _bands(plan)
    with contextlib.closing(_computed(stacked, plan, bands, client, progress)) as done:
        for i, values in done:
            put(bands[i], values)
