"""The widget's bridge to the colorization engine (no Qt, no napari).

:func:`run` takes the widget's settings and a lazy ``(..., Y, X)`` array and returns a
:class:`~napari_colorize.api.ColorizeResult` (numpy in memory, dask for "lazy", zarr
for "zarr file"), calling ``progress(done, total)`` as work is done and stopping with
:class:`Cancelled` soon after ``cancel`` is set.  It runs in a worker thread, and
this module is the only place the widget runs the engine (its checks of the choices
are in :mod:`._validation`); :func:`work` wraps it for the worker thread and also
prepares the layers there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..api import ColorizeResult, colorize, colorize_to_zarr
from ..decode import METHODS as DECODE_METHODS
from ..engine import Cancelled
from ..engine.defaults import local_threads
from ._geometry import store_placement

__all__ = ["METHODS", "OUTPUT_MODES", "USER_ERRORS", "Cancelled", "Guide", "Outcome", "Settings", "run", "work"]

log = logging.getLogger(__name__)

OUTPUT_MODES = ("in memory", "lazy", "zarr file")
#: The widget's decoding choices: "auto" (the model's best, ``method=None``) and the decoder's methods.
METHODS = ("auto", *DECODE_METHODS)
#: Errors whose message is the library's explanation for the user (shown without a traceback).
USER_ERRORS = (ValueError, FileNotFoundError, OSError, MemoryError, RuntimeError)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Settings:
    """The widget's choices, as plain values (checked by :func:`._validation.check_run`).

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
    precision : str
        One of :data:`napari_colorize.devices.PRECISIONS` (reduced precision needs a GPU).
    tile_size, overlap : int or None
        Tile edge and overlap in pixels; None: the engine's default for the model,
        plane and device (:func:`napari_colorize.engine.defaults.resolve_tiling`).
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
    precision: str = "fp32"
    tile_size: int | None = None
    overlap: int | None = None
    normalize: str | None = None
    limits: tuple[float, float] | None = None
    output: str = "in memory"
    zarr_path: str | None = None

    def as_info(self) -> dict[str, Any]:
        """The settings as JSON-friendly metadata for the output layers."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class Guide:
    """Guided colour for one run, as :func:`napari_colorize.colorize` takes it.

    Attributes
    ----------
    reference : array-like or None
        An RGB(A) image ``(H, W, 3|4)`` (numpy or dask; read in the worker, not on the GUI thread).
    reference_strength : float or None
        None: the guidance module's calibrated default.
    hints : (points, colours) or None
        ``points`` in the coordinates of the array that is coloured (the plan's, not
        the layer's; ``hint_stack``'s when it is given), ``colours`` RGB(A) in [0, 1].
    hint_range : float or None
        Pixels; None: the guidance module's default.
    hint_planes : {"own", "all"}
    hint_stack : array-like or None
        For one plane of a stack with hints on all planes: the whole stack (lazy), with
        the hint points in its coordinates, so that each hint's field is computed on its
        own plane, as in a run of the whole stack (the engine's ``hint_stack``).
    """

    reference: Any = None
    reference_strength: float | None = None
    hints: tuple[np.ndarray, np.ndarray] | None = None
    hint_range: float | None = None
    hint_planes: str = "own"
    hint_stack: Any = None

    def engine_kwargs(self) -> dict[str, Any]:
        return {"reference": self.reference, "reference_strength": self.reference_strength, "hints": self.hints,
                "hint_range": self.hint_range, "hint_planes": self.hint_planes, "hint_stack": self.hint_stack}

    def as_info(self) -> dict[str, Any]:
        """What the output layers record about the guidance (JSON-friendly)."""
        return {"reference": None if self.reference is None else list(map(int, np.shape(self.reference))),
                "reference_strength": self.reference_strength,
                "hints": 0 if self.hints is None else len(self.hints[0]), "hint_range": self.hint_range,
                "hint_planes": self.hint_planes}


def _engine_kwargs(settings: Settings, progress: ProgressCallback | None, cancel: threading.Event | None,
                   guide: Guide | None = None) -> dict[str, Any]:
    return {"model": settings.model, "method": None if settings.method == "auto" else settings.method,
            "device": settings.device, "precision": settings.precision, "saturation": settings.saturation,
            "normalize": settings.normalize, "limits": settings.limits, "tile_size": settings.tile_size,
            "overlap": settings.overlap, "progress": progress, "cancel": cancel,
            **(guide.engine_kwargs() if guide is not None else {})}


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
    from ..engine.ome import leading_names

    names = [str(n) for n in labels[:lead]]
    if not all(n.isidentifier() for n in names):
        return None
    try:
        return leading_names(lead, names)  # the store's own check: distinct, not y or x; lower case
    except ValueError:
        return None


def _run_lazy(array: Any, settings: Settings, progress: ProgressCallback | None, cancel: threading.Event | None,
              displayed: tuple[int, ...] | None, guide: Guide | None = None) -> ColorizeResult:
    """Dask outputs that napari computes plane by plane; the plane on screen is computed now.

    Computing it here, in the worker thread, with progress and cancel, fills the engine's
    tile cache, so that adding the layers does not freeze the viewer.
    """
    planes = max(int(np.prod(array.shape[:-2])), 1)
    forwarding = threading.Event()
    forwarding.set()

    def plane_progress(done: int, total: int) -> None:
        # Report the on-screen plane only, and nothing once napari computes later planes.
        if progress is not None and forwarding.is_set():
            per_plane = max(total // planes, 1)
            progress(min(done, per_plane), per_plane)

    result = colorize(_as_lazy(array), **_engine_kwargs(settings, plane_progress, cancel, guide))
    if displayed is not None:
        import dask

        index = tuple(displayed)
        try:
            dask.compute(*(m[index] for m in result.maps.values() if m is not None), scheduler="threads",
                         num_workers=local_threads())
        finally:
            forwarding.clear()
    return result


def _run_zarr(array: Any, settings: Settings, progress: ProgressCallback | None, cancel: threading.Event | None,
              geometry: Any, guide: Guide | None = None) -> ColorizeResult:
    """Stream to the OME-Zarr store, then open every level of it lazily (lists, finest first).

    A store of the same job is resumed; one holding another job's result is refused with
    the engine's message rather than replaced (nothing of the user's is lost silently).
    The store records the pixel size and the position (translate) of ``geometry``: of the
    one plane of a "current slice" job, so that the reopened store overlays its source.
    """
    from ..engine.zarr_io import open_zarr_levels

    from ..engine.ome import leading_names

    lead = array.ndim - 2
    names = _ome_axes(getattr(geometry, "axis_labels", None), lead)
    scale, origin, unit, time_unit = store_placement(geometry, leading_names(lead, names))
    path = colorize_to_zarr(array, settings.zarr_path, rgb_dtype="uint8", overwrite=False,
                            scale=scale, unit=unit, time_unit=time_unit, origin=origin, axes=names,
                            **_engine_kwargs(settings, progress, cancel, guide))
    result = open_zarr_levels(path)
    # What the in-memory result's info says: the decoding method and the device, resolved.
    from ..devices import resolve_device
    result.info.setdefault("method", (result.info.get("options") or {}).get("decode", {}).get("method"))
    result.info.setdefault("device", str(resolve_device(settings.device)))
    result.info["written_to"] = str(path)  # said in the status line (_status.done_words)
    return result


def _run_in_memory(array: Any, settings: Settings, progress: ProgressCallback | None,
                   cancel: threading.Event | None, guide: Guide | None = None) -> ColorizeResult:
    result = colorize(array, **_engine_kwargs(settings, progress, cancel, guide))
    if isinstance(result.rgb, np.ndarray):
        return result
    import dask

    # One compute for every output: they are slices of one graph, so each tile runs once.
    values = dask.compute(*result.maps.values(), scheduler="threads", num_workers=local_threads())
    return ColorizeResult(result.info, **dict(zip(result.maps, values)))


def run(array: Any, settings: Settings, progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None, geometry: Any = None,
        displayed: tuple[int, ...] | None = None, guide: Guide | None = None) -> ColorizeResult:
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
    geometry : napari_colorize._qt._layers.Geometry, optional
        Pixel size, units and axis names written into a zarr store.
    displayed : tuple of int, optional
        Leading-axis index of the plane on screen: a "lazy" output computes it now.
    guide : Guide, optional
        Reference image and colour hints (hint points in ``array``'s coordinates).

    Returns
    -------
    ColorizeResult
        rgb ``(..., Y, X, 3)``, chroma confidence and hue entropy ``(..., Y, X)``,
        float32 in [0, 1]: numpy ("in memory"), dask computed on demand ("lazy"); for
        "zarr file", each output the list of the store's levels (dask, finest first;
        rgb uint8 as stored).

    Raises
    ------
    Cancelled
        If ``cancel`` was set (a zarr store keeps its finished chunks and resumes).
    ValueError, FileNotFoundError
        With the library's messages (bad image, model or settings).
    """
    if settings.output == "lazy":
        return _run_lazy(array, settings, progress, cancel, displayed, guide)
    if settings.output == "zarr file":
        return _run_zarr(array, settings, progress, cancel, geometry, guide)
    if settings.output == "in memory":
        return _run_in_memory(array, settings, progress, cancel, guide)
    raise ValueError(f"unknown output {settings.output!r}; choose one of {OUTPUT_MODES}")


@dataclass
class Outcome:
    """What the worker hands back to the GUI thread.

    Attributes
    ----------
    status : {"done", "cancelled", "error"}
    tuples : list
        The output layers, ready to show (:func:`._layers.layer_data_tuples`).
    info : dict
        Settings, level, model, device and decoding method of the run.
    message : str
        For the user, when ``status`` is "error".
    seconds : float
        Time from the start of the work to the layers being ready.
    """

    status: str
    tuples: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0


def _run_info(plan: Any, settings: Settings, result: ColorizeResult, guide: Guide | None = None) -> dict[str, Any]:
    """What the output layers record about their run (``metadata["napari_colorize"]``)."""
    return {"settings": settings.as_info(), "level": plan.level, "index": list(plan.index),
            "model": str(result.info.get("model", settings.model)),
            "method": str(result.info.get("method") or settings.method),
            "device": str(result.info.get("device", settings.device)),
            "guidance": None if guide is None else guide.as_info(),
            **({"written_to": result.info["written_to"]} if "written_to" in result.info else {})}


def work(plan: Any, settings: Settings, name: str, cancel: threading.Event, progress: ProgressCallback,
         guide: Guide | None = None) -> Outcome:
    """The worker thread's job: colorize, then make the layers ready to show.

    Preparing them (uint8 colour, pyramids of large planes) is done here, not on the
    GUI thread.  Expected failures become messages, never tracebacks.

    Parameters
    ----------
    plan : napari_colorize._qt._layers.InputPlan
        What to colour and where the outputs go.
    settings : Settings
    name : str
        The source layer's name (the outputs are named after it).
    cancel, progress, guide
        See :func:`run`.
    """
    from ._layers import layer_data_tuples

    start = time.perf_counter()
    try:
        result = run(plan.array, settings, progress=progress, cancel=cancel, geometry=plan.geometry,
                     displayed=plan.displayed, guide=guide)
        info = _run_info(plan, settings, result, guide)
        tuples = layer_data_tuples(result, name, plan.geometry, info)
    except Cancelled:
        return Outcome("cancelled", seconds=time.perf_counter() - start)
    except USER_ERRORS as err:
        return Outcome("error", message=str(err) or type(err).__name__)
    except Exception as err:  # a bug: say so plainly, keep the traceback in the log
        log.exception("napari-colorize failed")
        return Outcome("error", message=f"napari-colorize failed unexpectedly ({type(err).__name__}: {err}); "
                                        "please report this with the log")
    return Outcome("done", tuples=tuples, info=info, seconds=time.perf_counter() - start)
