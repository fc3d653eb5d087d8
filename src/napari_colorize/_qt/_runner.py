"""The widget's bridge to the colorization engine (no Qt, no napari).

:func:`run` takes the widget's settings and a lazy ``(..., Y, X)`` array and returns a
:class:`~napari_colorize.api.ColorizeResult` (numpy in memory, dask for "lazy", zarr
for "zarr file"), calling ``progress(done, total)`` as work is done and stopping with
:class:`Cancelled` soon after ``cancel`` is set.  It runs in a worker thread; this
module is the only place the widget touches the engine.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .api import ColorizeResult, colorize, colorize_to_zarr
from .engine import DEFAULT_TILING, Cancelled

__all__ = ["OUTPUT_MODES", "METHODS", "Settings", "Cancelled", "run"]

OUTPUT_MODES = ("in memory", "lazy", "zarr file")
#: Widget label -> ``method`` of the API ("auto" is the model's best).
METHODS = ("auto", "expectation", "median", "mode", "sample")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Settings:
    """The widget's choices, as plain values.

    Attributes
    ----------
    model : str
        ``"default"`` or the path of a ``.safetensors`` model.
    method : str
        One of :data:`METHODS`.
    saturation : float
        Chroma multiplier (>= 0; 1 = as predicted).
    device : str
        "auto", "cpu", "cuda", "cuda:1", "mps".
    tile_size, overlap : int
        Tile edge and overlap in pixels (the engine's tiling of large planes).
    normalize, limits
        See :func:`napari_colorize.inputs.to_unit_float`.
    output : str
        One of :data:`OUTPUT_MODES`.
    zarr_path : str or None
        Where "zarr file" writes.
    """

    model: str = "default"
    method: str = "auto"
    saturation: float = 1.0
    device: str = "auto"
    tile_size: int = DEFAULT_TILING["compact"][0]
    overlap: int = DEFAULT_TILING["compact"][1]
    normalize: str | None = None
    limits: tuple[float, float] | None = None
    output: str = "in memory"
    zarr_path: str | None = None

    def validated(self) -> "Settings":
        """Check the choices that the widget cannot constrain; raise ``ValueError`` with what to do."""
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; choose one of {METHODS}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"unknown output {self.output!r}; choose one of {OUTPUT_MODES}")
        if self.model != "default" and not Path(self.model).expanduser().is_file():
            raise FileNotFoundError(f"no model file at {self.model}; choose 'default' or an existing .safetensors file")
        if self.output == "zarr file":
            if not self.zarr_path:
                raise ValueError("output 'zarr file' needs a path: choose where to write the .zarr store")
            parent = Path(self.zarr_path).expanduser().parent
            if not parent.is_dir():
                raise FileNotFoundError(f"the folder {parent} does not exist; choose another place for the zarr store")
        if self.tile_size < 64 or self.overlap < 0 or 2 * self.overlap >= self.tile_size:
            raise ValueError(f"tile size {self.tile_size} with overlap {self.overlap}: the tile must be >= 64 "
                             "pixels and more than twice the overlap")
        return self

    def as_info(self) -> dict[str, Any]:
        """The settings as JSON-friendly metadata for the output layers."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _engine_kwargs(settings: Settings, progress: ProgressCallback | None,
                   cancel: threading.Event | None) -> dict[str, Any]:
    return {"model": settings.model, "method": None if settings.method == "auto" else settings.method,
            "device": settings.device, "saturation": settings.saturation, "normalize": settings.normalize,
            "limits": settings.limits, "tile_size": settings.tile_size, "overlap": settings.overlap,
            "progress": progress, "cancel": cancel}


def _as_lazy(array: Any) -> Any:
    """A dask view of ``array`` with one chunk per plane (the engine then returns dask arrays)."""
    import dask.array as da

    if hasattr(array, "dask"):
        return array
    return da.from_array(array, chunks=(1,) * (array.ndim - 2) + tuple(array.shape[-2:]))


def _ome_axes(labels: Sequence[str] | None, lead: int) -> list[str] | None:
    """Leading axis names for the OME-Zarr store, if the layer has meaningful ones."""
    if not labels or not lead:
        return None
    names = [str(n) for n in labels[:lead]]
    return names if all(n.isidentifier() for n in names) and len(set(names)) == lead else None


def run(array: Any, settings: Settings, progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None, geometry: Any = None,
        displayed: tuple[int, ...] | None = None) -> ColorizeResult:
    """Colorize a lazy gray array ``(..., Y, X)`` as the widget asks.

    Parameters
    ----------
    array : array-like, shape (..., Y, X)
        numpy, dask or zarr; never read whole.
    settings : Settings
    progress : callable(done, total), optional
        Tiles (or zarr chunks) done and total; called from engine threads.
    cancel : threading.Event, optional
        When set, the engine stops between tiles and :class:`Cancelled` is raised.
    geometry : napari_colorize._layers.Geometry, optional
        Pixel size, units and axis names written into a zarr store.
    displayed : tuple of int, optional
        Leading-axis index of the plane on screen: a "lazy" output computes it now
        (with progress and cancel), so the engine's tile cache has it when napari asks.

    Returns
    -------
    ColorizeResult
        rgb ``(..., Y, X, 3)``, chroma confidence and hue entropy ``(..., Y, X)``,
        float32 in [0, 1]: numpy ("in memory"), dask computed on demand ("lazy"), or
        dask reading the finished store ("zarr file").

    Raises
    ------
    Cancelled
        If ``cancel`` was set (a zarr store keeps its finished chunks and resumes).
    ValueError, FileNotFoundError
        With the library's messages (bad image, model or settings).
    """
    settings.validated()
    if settings.output == "lazy":
        # Napari computes planes as they are shown; only the one on screen is computed now,
        # here in the worker thread, so that adding the layers does not freeze the viewer.
        planes = max(int(np.prod(array.shape[:-2])), 1)
        forwarding = threading.Event()
        forwarding.set()

        def plane_progress(done: int, total: int) -> None:
            # Report the on-screen plane only, and nothing once napari computes later planes.
            if progress is not None and forwarding.is_set():
                per_plane = max(total // planes, 1)
                progress(min(done, per_plane), per_plane)

        result = colorize(_as_lazy(array), **_engine_kwargs(settings, plane_progress, cancel))
        if displayed is not None:
            import dask

            index = tuple(displayed)
            try:
                dask.compute(result.rgb[index], result.chroma_confidence[index], result.hue_entropy[index],
                             scheduler="threads")
            finally:
                forwarding.clear()
        return result
    if settings.output == "zarr file":
        from .engine.zarr_io import open_zarr_result

        lead = array.ndim - 2
        units = getattr(geometry, "units", None)
        unit = str(units[-1]) if units and str(units[-1]) not in ("pixel", "px") else None
        path = colorize_to_zarr(array, settings.zarr_path, rgb_dtype="uint8", overwrite=True,
                                scale=list(geometry.scale) if geometry is not None else None, unit=unit,
                                axes=_ome_axes(getattr(geometry, "axis_labels", None), lead),
                                **_engine_kwargs(settings, progress, cancel))
        return open_zarr_result(path)
    result = colorize(array, **_engine_kwargs(settings, progress, cancel))
    if isinstance(result.rgb, np.ndarray):
        return result
    import dask

    # One compute for the three outputs: they are slices of one graph, so each tile runs once.
    rgb, conf, ent = dask.compute(result.rgb, result.chroma_confidence, result.hue_entropy, scheduler="threads")
    return ColorizeResult(rgb=rgb, chroma_confidence=conf, hue_entropy=ent, info=result.info)
