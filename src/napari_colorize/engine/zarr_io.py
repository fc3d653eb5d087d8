"""Writing results to OME-Zarr, chunk by chunk, resumably.

Layout of a store written by :func:`colorize_to_zarr` (OME-NGFF 0.4, zarr format 2,
readable by napari-ome-zarr and by this package's napari reader)::

    out.zarr/                 multiscales "rgb": levels "0", "1", ...; axes (t, ch, c, z, y, x) as present
    out.zarr/0, 1, ...        RGB, uint8 or float32, one zarr chunk per engine chunk; level n is
                              level 0 downsampled 2**n times in y, x (see :mod:`.pyramid`)
    out.zarr/confidence/0, 1, ...   chroma confidence, float32 (..., y, x), its own multiscales
    out.zarr/entropy/0, 1, ...      hue entropy, float32 (..., y, x), its own multiscales
    out.zarr/.napari_colorize_done/   one empty marker file per finished chunk (levelN/: pyramid chunks)
    out.zarr/.napari_colorize_spill/  while writing: tile pieces shared by two stripes

The root attribute ``napari_colorize`` records the job (input, model, options: a
fingerprint) and ``complete``.  A chunk's marker is written only after all of its
outputs are written, and ``complete: true`` only after every marker of every level exists, so a
killed run restarted with the same job rewrites exactly the unfinished chunks and a
half-written store is never taken for a finished one.  Different chunks never share
a zarr chunk, so workers write concurrently without locks.

The leading axes are stored in the order NGFF 0.4 asks (time, the input's channels
``ch``, the colour channels ``c``, then z), not the input's (an ImageJ ``ZCYX`` stack is
stored ``ch, c, z, y, x``), and size-1 axes are left out where the colour image would
otherwise have more than 5 axes (:func:`.ome.stored_axes`).  The job record's
``layout`` (input axis names, stored input axes) then lets :mod:`.zarr_read` give the
arrays back in the input's order and shape.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .._locks import store_lock
from ..inputs import InputValuesError
from ..io.write import to_uint8
from ..outputs import channel_slices, check_output_keys, get_output, output_keys
from . import stripes
from .claim import (claim_path, discard_failed, done_as_asked, is_complete, local_store_path, read_job,
                    said_unwritable, still_writing)
from .jobs import ModelRef, Monitor, check_callbacks
from .ome import full_axes, leading_names, ome_axes, rgb_channel_index, stored_axes
from .pipeline import colorize_stacked
from .placement import (Placement, insert_at, left_out, ngff_once, refresh_placement, store_has_layout,
                        write_placement)
from .pyramid import Pyramid, level_path, level_shapes, write_pyramid
from .sources import check_source_outside, source_paths
from .store import ATTR as _ATTR
from .store import MARKERS, SPILL, open_group
from .store import create_array as _create_array
from .store import marker as _marker
from .store import open_array as _open_array
from .zarr_read import open_zarr_levels, open_zarr_result

__all__ = ["colorize_to_zarr", "open_zarr_result", "open_zarr_levels", "is_complete", "read_job",
           "check_source_outside", "source_paths", "open_group", "MARKERS",
           "ome_axes"]

#: What a second writer of one store is told (its lock is the command line's, ``.NAME.lock``).
BUSY_ADVICE = ("wait for it, or write to another path; call colorize_to_zarr again afterwards "
               "to get the finished store (or resume an unfinished one)")


def _fingerprint(job: dict) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()


_ARRAYS: dict[tuple[str, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def _array(path: str, output: str, job: str):
    key = (path, output, job)
    with _ARRAYS_LOCK:
        if key not in _ARRAYS:
            _ARRAYS[key] = _open_array(os.path.join(path, get_output(output).zarr_path))
        return _ARRAYS[key]


def _write_block(block: np.ndarray, path: str, job: str, index: tuple[int, ...], region: tuple[slice, ...],
                 outputs: tuple[str, ...], rgb_dtype: str, channel: int, stored: tuple[int, ...],
                 monitor: Monitor | None) -> tuple[int, ...]:
    """Write one engine chunk to every output, then its completion marker.

    ``channel`` is the position of the colour image's channel axis (NGFF puts it before
    the leading space axes: ``t, c, z, y, x``); ``stored`` the input's leading axes that
    the store keeps, in its order (a left-out axis has size 1: its index is 0).
    """
    if monitor is not None:
        monitor.check()
    if not still_writing(path, job):
        return index  # a task of a cancelled run still running on a cluster worker: see claim.still_writing
    lead = len(region) - 2
    values = block.reshape(block.shape[lead:])  # (h, w, C)
    plane = tuple(region[i] for i in stored)
    channels = channel_slices()
    for key in outputs:
        output = get_output(key)
        data = values[..., channels[output.name]]
        if output.is_rgb:
            data = data.transpose(2, 0, 1)
            if rgb_dtype == "uint8":
                data = to_uint8(data)
            rgb_region = plane[:channel] + (slice(None),) + plane[channel:] + region[lead:]
            _array(path, key, job)[rgb_region] = np.moveaxis(data.reshape((1,) * len(plane) + data.shape),
                                                             len(plane), channel)
        else:
            _array(path, key, job)[plane + region[lead:]] = data.reshape((1,) * len(plane) + data.shape)
    if not still_writing(path, job):
        return index  # replaced while this chunk was written: without a marker, the new job rewrites it
    with open(_marker(path, index), "w"):
        pass
    if monitor is not None:
        monitor.advance((index,))
    return index


def _create_output(group, output, shape: tuple[int, ...], chunks: tuple[int, int], placement: Placement) -> None:
    """Create every pyramid level of one output, empty, with its NGFF multiscales metadata.

    Level n's (y, x) chunks are level 0's (cut to the level's size), so a level chunk
    is made from at most 2 x 2 chunks of the level above and writers never share one.
    """
    lead = len(shape) - 2
    channel = rgb_channel_index(lead, placement.names) if output.is_rgb else None
    parent, _, _ = output.zarr_path.rpartition("/")
    image = group.require_group(parent) if parent else group
    names = []
    for level, plane in enumerate(level_shapes(shape[lead:])):
        names.append(str(level))  # the arrays of an output's levels are siblings named 0, 1, ...
        level_chunks = (1,) * lead + tuple(min(c, n) for c, n in zip(chunks, plane))
        _create_array(image, names[-1], insert_at(shape[:lead] + plane, channel, 3), insert_at(level_chunks, channel, 3),
                      placement.rgb_dtype if output.is_rgb else "float32")
    write_placement(image, output, names, placement, warn=True)


def _create_outputs(group, outputs: tuple[str, ...], shape: tuple[int, ...], chunks: tuple[int, int],
                    placement: Placement) -> None:
    """:func:`_create_output` for every output, an axes problem of NGFF said once (:func:`.placement.ngff_once`)."""
    with ngff_once():
        for key in outputs:
            _create_output(group, get_output(key), shape, chunks, placement)


def _prepare_store(path: str, job: dict, fingerprints: tuple[str, ...], shape: tuple[int, ...],
                   chunks: tuple[int, int], outputs: tuple[str, ...], placement: Placement, overwrite: bool,
                   advice: str = "", cluster: bool = False) -> bool | None:
    """Create the store, or check that an existing one holds this same job (and bring its
    placement up to date: :mod:`.placement`).  ``job`` may hold ``placement``, which is
    not part of the fingerprint; ``fingerprints``: the job's, then those it had in earlier
    versions (accepted for a store found there, never written); ``advice``: added to the
    refusal of another job's store; ``cluster``: written by tasks on a dask.distributed
    cluster (recorded: :func:`.claim.claim_path` replaces no such store unasked).

    Returns True when the store is already complete, False when an unfinished one is
    resumed, None when it was created now.
    """
    existing = claim_path(path, fingerprints, overwrite, lambda: store_has_layout(path, outputs, placement), advice)
    if existing is not None:
        if not existing:  # resumed: its (maybe empty) markers folder may have been tidied away
            os.makedirs(os.path.join(path, MARKERS), exist_ok=True)
            if cluster:
                group = open_group(path, "r+")
                group.attrs[_ATTR] = dict(group.attrs[_ATTR], cluster=True)
        refresh_placement(path, outputs, placement, job.get("placement"))
        return existing
    group = open_group(path, "w")
    # At once: a run killed while the arrays are created leaves a store that is ours and
    # unfinished (redone by the next run), not a foreign folder refused even with overwrite.
    os.makedirs(os.path.join(path, MARKERS), exist_ok=True)
    _create_outputs(group, outputs, shape, chunks, placement)
    # Written last: a store without it is not ours, one with complete=False is unfinished.
    group.attrs[_ATTR] = dict(job, fingerprint=fingerprints[0], complete=False, **({"cluster": True} if cluster else {}))
    return None


#: The keyword arguments colorize_to_zarr passes on to colorize_stacked (it sets the others itself).
_PASSED_ON = frozenset(inspect.signature(colorize_stacked).parameters) - {
    "image", "model", "client", "cache", "source_id", "progress", "cancel"}


def _token_advice(image: Any, source_id: str | None) -> str:
    """What to add when another job's store is refused and the input is known by its dask
    name alone (not traced to files): that name changes with the chunks, and for an array
    built from functions, in every process, so the same pixels look like another input."""
    if source_id is not None or not hasattr(image, "__dask_graph__") or source_paths(image):
        return ""
    return (". A dask input is known by its dask name, which changes with its chunks and, for an array built from "
            "functions, in every new process: to resume the same pixels, give the same source_id= in both runs")


def colorize_to_zarr(image, path: str | os.PathLike, model: Any = "default", *,
                     outputs: Sequence[str] | None = None, rgb_dtype: str = "uint8", scale: Sequence[float] | None = None,
                     unit: str | None = None, time_unit: str | None = None, axes: Sequence[str] | None = None,
                     origin: Sequence[float] | None = None, overwrite: bool = False,
                     source_id: str | None = None, progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None, client=None, **colorize_kwargs: Any) -> Path:
    """Colorize ``image`` into an OME-Zarr store at ``path``, chunk by chunk, in bounded memory.

    Parameters
    ----------
    image : numpy, dask or zarr array, or torch tensor, shape (..., Y, X)
        The gray image or stack (see :func:`napari_colorize.colorize`).
    path : path
        The store (a folder, conventionally ``*.zarr``).
    model : "default", path or HypercolumnColorizer
    outputs : sequence of str, optional
        What to write: keys of :data:`napari_colorize.outputs.OUTPUTS` ("rgb",
        "confidence", "entropy", ...); default all.
    rgb_dtype : {"uint8", "float32"}
        uint8 (0-255, rounded) or float32 in [0, 1].
    scale : sequence of float, optional
        Pixel size of (y, x) or of every axis, e.g. from the source's metadata.
    unit, time_unit : str, optional
        Unit of the space axes' pixel size ("micrometer", ...; NGFF gives them one), of a time axis's ("second").
    axes : sequence of str, optional
        Names of the leading axes (default "z" for stacks, "t", "z" for 4D).
    origin : sequence of float, optional
        World position of pixel 0 (its centre) along (y, x) or every axis, in the units
        of ``scale`` (napari's ``layer.translate``), written as each level's NGFF
        translation so that a reopened store overlays its source.  ``scale``, ``unit`` and
        ``origin`` are not part of the job: the same job run again gives its store these.
    overwrite : bool
        Replace a store of napari-colorize that holds a different job.  Without it
        such a store is refused (``FileExistsError``); an unfinished store of this
        same job is resumed either way, and another job's in which no chunk was finished
        is replaced; an empty folder is used; a file, or a folder written by something
        else, is never deleted.  A store this call made is removed if the input fails its
        checks (NaN, values outside [0, 1]) as its tiles are read (with ``client`` it is marked
        instead, and the next call's refusal says so).  A destination holding the
        input (or inside the input's store) is refused (``ValueError``).  A store being
        written by another thread, process or ``napari-colorize colorize`` run (its lock
        file ``.NAME.lock`` beside it) is refused with
        :class:`napari_colorize._locks.OutputBusyError`.
    source_id : str, optional
        Identifies the input in the job fingerprint (the CLI passes
        :func:`napari_colorize.io.source_fingerprint`: path, size and time of the file, or
        of every file in a zarr store).  By default it is the dask token of the input and,
        for a zarr array or memmap (whose dask token is its path), the same of its files.
    progress : callable(done, total), optional
        Chunks written so far (finished ones of an earlier run included) and total.
    cancel : threading.Event, optional
        Stops between chunks/tiles with :class:`Cancelled`; finished chunks are kept.
    client : dask.distributed.Client, optional
        Run on this cluster (each worker loads the model once and writes its chunks).
    **colorize_kwargs
        method, device, saturation, normalize, precision, calibrated, seed,
        tile_size, overlap, batch_size, limits: as :func:`napari_colorize.colorize`.

    Returns
    -------
    pathlib.Path
        The store.  A finished store carries ``attrs["napari_colorize"]["complete"] == True``.
    """
    unknown = sorted(set(colorize_kwargs) - _PASSED_ON)
    if unknown:  # else colorize_stacked, a name the caller never used, would be said to refuse it
        raise TypeError(f"colorize_to_zarr() got an unexpected keyword argument {unknown[0]!r}")
    check_callbacks(progress, cancel)
    outputs = check_output_keys(output_keys() if outputs is None else outputs)
    if rgb_dtype not in ("uint8", "float32"):
        raise ValueError(f"rgb_dtype must be 'uint8' or 'float32', got {rgb_dtype!r}")
    path = local_store_path(path)
    check_source_outside(image, path)
    stacked, plan, info = colorize_stacked(image, model, client=client, cache=False, source_id=source_id,
                                           **colorize_kwargs)
    shape = plan.shape
    source = source_id if source_id is not None else info["input_token"]
    job = {"source": source, "shape": list(shape), "model": info["model"], "model_token": _model_token(model),
           "options": {k: info[k] for k in ("tile_size", "overlap", "normalize", "limits", "precision", "decode")},
           "outputs": list(outputs), "rgb_dtype": rgb_dtype, "levels": len(level_shapes(shape[-2:])), "version": 2}
    if info["guidance"] is not None:  # only then, so stores written before guidance existed still resume
        job["options"]["guidance"] = info["guidance"]
    names = leading_names(len(shape) - 2, axes)
    stored = stored_axes(names, shape[:-2], any(get_output(key).is_rgb for key in outputs))
    if stored != list(range(len(names))):  # only then, so stores in the input's order still resume
        job["layout"] = {"axes": names, "stored": stored}
    fingerprint = _fingerprint(job)
    # A store written before the input's files were stamped (a zarr or memmap input) resumes
    # under the fingerprint it has: its input is known by its path alone, as it was then.
    unstamped = info["unstamped_input_token"]
    legacy = () if source_id is not None or unstamped == source else (_fingerprint(dict(job, source=unstamped)),)
    full_scale = full_axes(scale, len(shape), 1.0)
    full_origin = full_axes(origin, len(shape), 0.0, "origin")
    keep = list(stored) + [len(shape) - 2, len(shape) - 1]
    store_shape = tuple(shape[i] for i in keep)
    # An origin at zero is recorded as before (level 0's translation all zeros).
    placement = Placement(tuple(names[i] for i in stored), tuple(full_scale[i] for i in keep), unit,
                          tuple(full_origin[i] for i in keep) if any(full_origin) else None, rgb_dtype, time_unit)
    extra = left_out(full_scale, full_origin, stored)  # recorded, not fingerprinted: where, not what
    job = job if extra is None else dict(job, placement=extra)
    chunks = (plan.ty.chunk, plan.tx.chunk)
    # The command line's lock file (one writer per store, across threads, processes and front ends).
    # A finished store of this job that already says this placement needs no writer, so it is
    # returned as it is while another run holds the lock, or where no lock file can be made.
    finished = lambda: done_as_asked(path, (fingerprint, *legacy), outputs, placement, extra)  # noqa: E731
    with store_lock(Path(path), BUSY_ADVICE, finished) as locked, said_unwritable(path):
        if not locked:
            return _already_done(path, plan, progress)
        existed = os.path.isdir(path)
        state = _prepare_store(path, job, (fingerprint, *legacy), store_shape, chunks, outputs,
                               placement, overwrite, _token_advice(image, source_id), client is not None)
        if state:
            return _already_done(path, plan, progress)
        channel = rgb_channel_index(len(stored), placement.names)
        recorded = read_job(path)["fingerprint"]  # this job's, or one it had in earlier versions
        try:
            _write_chunks(stacked, plan, path, recorded, outputs, rgb_dtype, channel, tuple(stored),
                          str(info["device"]), client, progress, cancel)
        except InputValuesError:
            # A lazy input fails its checks (NaN, values outside [0, 1]) only as its tiles are
            # read: a store made by this call for it holds nothing worth resuming, and left
            # behind it would refuse the corrected input as "a different colorization job".
            if state is None:
                discard_failed(path, existed, client is not None)
            raise
        write_pyramid(_pyramids(path, outputs, job["levels"], channel), chunks, os.path.join(path, MARKERS),
                      check=Monitor(0, cancel=cancel).check)
        group = open_group(path, "r+")
        group.attrs[_ATTR] = dict(job, fingerprint=fingerprint, complete=True)
        shutil.rmtree(os.path.join(path, MARKERS), ignore_errors=True)
    return Path(path)


def _already_done(path: str, plan: Any, progress: Callable[[int, int], None] | None) -> Path:
    """A finished store, returned as it is; a progress bar is told it is full (it was never called)."""
    if progress is not None:
        total = len(plan.planes) * plan.ty.n_chunks * plan.tx.n_chunks
        progress(total, total)
    return Path(path)


def _write_chunks(stacked, plan, path: str, fingerprint: str, outputs: tuple[str, ...], rgb_dtype: str,
                  channel: int, stored: tuple[int, ...], device: str, client, progress: Callable[[int, int], None] | None,
                  cancel: threading.Event | None) -> None:
    """Write every level-0 chunk that has no marker yet, here (in stripes) or on ``client``.

    Raises RuntimeError when some chunk is still missing afterwards.
    """
    blocks = [plane + (cy, cx) for plane in plan.planes for cy in range(plan.ty.n_chunks)
              for cx in range(plan.tx.n_chunks)]
    done = {b for b in blocks if os.path.exists(_marker(path, b))}
    todo = [b for b in blocks if b not in done]
    if progress is not None and done:  # a resumed bar starts where the last run stopped (full: only the pyramid left)
        progress(len(done), len(blocks))
    monitor = None
    if client is None and (progress is not None or cancel is not None):
        monitor = Monitor(len(blocks), progress, cancel)
        monitor.mark_done(done)
    wname = f"colorize-write-{fingerprint[:16]}-{dask.base.tokenize(stacked.name, todo)}"
    layer = {}
    for b in todo:
        plane, (cy, cx) = b[:-2], b[-2:]
        region = tuple(slice(i, i + 1) for i in plane) + (slice(*plan.ty.chunk_range(cy)), slice(*plan.tx.chunk_range(cx)))
        layer[(wname, *b)] = (_write_block, (stacked.name, *b, 0), path, fingerprint, b, region, outputs, rgb_dtype,
                              channel, stored, monitor)
    graph = HighLevelGraph.from_collections(wname, layer, dependencies=[stacked])
    keys = list(layer)
    if client is None:
        # On the CPU one tile at a time: torch already uses every core inside a tile, and two
        # tiles in flight double the peak memory for no speed-up.
        workers = 1 if device.startswith("cpu") else None
        spill = os.path.join(path, SPILL)
        shutil.rmtree(spill, ignore_errors=True)  # left by a killed run: its stripe is redone
        os.makedirs(spill, exist_ok=True)  # (not removed from a read-only store: writing there fails in words)
        stripes.write_in_order(stripes.culled(graph, keys), keys, workers, spill)
        shutil.rmtree(spill, ignore_errors=True)
    else:
        from .distributed import run_on_client
        run_on_client(client, stripes.culled(graph, keys), keys, len(blocks), len(done), progress, cancel)
    missing = [b for b in blocks if not os.path.exists(_marker(path, b))]
    if missing:
        raise RuntimeError(f"{len(missing)} chunks of {path} were not written; run the same command again to finish them")


def _pyramids(path: str, outputs: tuple[str, ...], levels: int, channel: int) -> list[Pyramid]:
    """The level arrays of every output of the store, for :func:`.pyramid.write_pyramid`."""
    return [Pyramid([_open_array(os.path.join(path, level_path(get_output(key).zarr_path, n))) for n in range(levels)],
                    channel if get_output(key).is_rgb else None) for key in outputs]


def _model_token(model: Any) -> str:
    if hasattr(model, "parameters"):
        # Objects: a hash of the weights, stable across processes (needed to resume).
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()
    return repr(ModelRef(model).token()[:4])
