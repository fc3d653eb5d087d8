"""The Python API: ``colorize(image) -> ColorizeResult`` and ``colorize_to_zarr``.

A thin front end over the engine (:func:`napari_colorize.engine.colorize_stacked`):
the same graph serves this API, the command line and the napari widget.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .engine.defaults import local_threads
from .engine.distributed import compute_on_client
from .engine.models import get_model
from .engine.pipeline import colorize_stacked, decode_options_for
from .inputs import tensor_as_array
from .model import DEFAULT_MODEL, HypercolumnColorizer
from .outputs import ColorizeResult

__all__ = ["ColorizeResult", "colorize", "colorize_to_zarr", "colorize_stacked", "get_model", "decode_options_for"]


def colorize(image, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL, method: str | None = None,
             device: str = "auto", saturation: float = 1.0, normalize: str | None = None,
             precision: str = "fp32", calibrated: bool = True, seed: int = 0, *,
             tile_size: int | None = None, overlap: int | None = None, batch_size: int | None = None,
             client=None, progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None, limits: tuple[float, float] | None = None,
             reference=None, reference_strength: float | None = None, hints=None, hint_range: float | None = None,
             hint_planes: str = "own", hint_stack=None) -> ColorizeResult:
    """Colorize a gray image or stack, keeping its lightness, at any size.

    Parameters
    ----------
    image : array_like, dask or zarr array, or torch tensor, shape (..., Y, X)
        Gray image or stack (any leading axes): integers (scaled by their dtype
        range) or floats in [0, 1].  Never modified.  A tensor is read as
        ``tensor.detach().cpu().numpy()``.
    model : "default", path or HypercolumnColorizer
        The shipped default model, a ``.safetensors`` file from ``napari-colorize
        train``, or a model object.
    method : {None, "expectation", "median", "mode", "sample"}
        Histogram decoding (None: the model's stored method, else the paper's best for its colour space).
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    saturation : float
        Chroma multiplier (kept inside the RGB gamut).
    normalize : {None, "dtype", "percentile", "minmax"}
        None (or "none", the command line's word) and "dtype": uint8, uint16 and bool by
        their type's range, wider integers by their data range, floats as they are (in
        [0, 1]); "percentile" maps the 0.1-99.9 percentiles to [0, 1] (microscopy data);
        "minmax" the data's own range.  The limits are computed once for the whole image or stack, so tiles and
        planes agree.
    precision : {"fp32", "bf16", "fp16"}
        Network precision on a GPU (autocast).
    calibrated : bool
        Use the model's calibrated decoding (fading where it is unsure) if it has one.
    seed : int
        Seed of ``method="sample"``.
    tile_size, overlap : int, optional
        Tile side and overlap between tiles in pixels (defaults per backbone and
        device: the backbone's, see :class:`napari_colorize.model.BackboneSpec`);
        ``tile_size > 2 * overlap``.
    batch_size : int, optional
        Tiles per model call (default 1 on the CPU, about 16 M pixels on a GPU;
        halved automatically when the device runs out of memory).
    client : dask.distributed.Client, optional
        Build the graph for this cluster: each worker loads the model once (``model``
        must then be a name or path).  The lazy result is computed by the client.
    progress : callable(done, total), optional
        Called after each batch of tiles with the distinct tiles finished and the
        total tiles of the result.  With a ``client``: after each finished plane of an
        in-memory result; a lazy result reports nothing (its caller computes it).
    cancel : threading.Event, optional
        Set it to stop a running computation between batches (with a ``client``:
        between planes of an in-memory result); it then raises
        :class:`napari_colorize.engine.Cancelled`.
    limits : (float, float), optional
        The gray range mapped to [0, 1]: precomputed limits for "percentile"/"minmax", and
        without ``normalize`` the range to use ("minmax" with these limits; a 12-bit camera
        image in uint16: ``limits=(0, 4095)``).  Not with ``normalize="dtype"``.
    reference : array_like or list of array_like, optional
        Guidance by a colour image of similar content (a photograph of the same place
        or era, a colour slide of the same stain): ``(H, W, 3)`` RGB (or RGBA), uint8
        or floats in [0, 1], any size; or a list of them.  Its colour distribution
        becomes the prior of every pixel's histogram (see ``docs/guidance.md``).
    reference_strength : float, optional
        0 ignores the reference; default
        :data:`napari_colorize.guidance.DEFAULT_REFERENCE_STRENGTH` (calibrated).
    hints : (points, colours), optional
        Colour hints laid out as napari holds them: ``points`` ``(N, image.ndim)`` in
        pixel coordinates (a Points layer's ``.data``), ``colours`` ``(N, 3)`` or
        ``(N, 4)`` RGB(A) in [0, 1] (its ``.face_color``).  A hint sets the colour near
        its point, spreading along similar, connected content, not across edges.
    hint_range : float, optional
        How far (pixels, along similar content) a hint reaches; default
        :data:`napari_colorize.guidance.DEFAULT_HINT_RANGE`.
    hint_planes : {"own", "all"}
        In a stack, each hint colours its own plane, or every plane ("all"; its field is
        computed once on its own plane and shared).  With "all", points may be ``(N, 2)``:
        they have no plane, and their fields are computed on the first plane of ``image``.
    hint_stack : array_like, dask or zarr array, optional
        With ``hint_planes="all"``, the stack ``(..., Y, X)`` that ``image`` is one plane
        of: ``points`` are then in its coordinates and each hint's field is computed on its
        own plane of it (only the windows the hints reach are read): the hints act on
        the one plane coloured alone as on that plane of the whole stack (given the same
        ``limits``), as napari-colorize's widget needs for "current slice".

    Guidance changes colour only: the result's lightness is still the input's.  Tiles
    are guided alike (seam-free), and the chroma confidence rises where it decides.

    Returns
    -------
    ColorizeResult
        ``rgb`` ``(..., Y, X, 3)``, ``chroma_confidence`` and ``hue_entropy``
        ``(..., Y, X)``, float32.  Lazy dask arrays, slices of one shared graph, when
        the input is lazy (dask, zarr) or a plane needs more than one tile; numpy
        arrays otherwise.
    """
    image = tensor_as_array(image)  # in memory like a numpy array, so its result is too
    stacked, plan, info = colorize_stacked(image, model, method, device, saturation, normalize, precision, calibrated,
                                           seed, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                                           client=client, progress=progress, cancel=cancel, limits=limits,
                                           reference=reference, reference_strength=reference_strength, hints=hints,
                                           hint_range=hint_range, hint_planes=hint_planes, hint_stack=hint_stack)
    lazy = (not isinstance(image, np.ndarray) and hasattr(image, "shape")) or plan.tiles_per_plane > 1
    if not lazy:
        stacked = (compute_on_client(client, stacked, progress, cancel) if client is not None
                   else stacked.compute(scheduler="threads", num_workers=local_threads()))
    info["lazy"] = bool(lazy)
    return ColorizeResult.from_stacked(stacked, info)


def colorize_to_zarr(image, path: str | os.PathLike, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL,
                     **kwargs: Any):
    """Colorize into an OME-Zarr store, chunk by chunk, resumably.

    See :func:`napari_colorize.engine.zarr_io.colorize_to_zarr` for the parameters.
    """
    # Imported here: OME-Zarr writing pulls in ome-zarr, which colouring in memory never needs.
    from .engine.zarr_io import colorize_to_zarr as _to_zarr
    return _to_zarr(image, path, model=model, **kwargs)
