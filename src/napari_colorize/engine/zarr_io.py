"""Writing results to OME-Zarr, chunk by chunk, resumably.

Layout of a store written by :func:`colorize_to_zarr` (OME-NGFF 0.4, zarr format 2,
readable with zarr 2 and 3 and by napari-ome-zarr)::

    out.zarr/                 multiscales -> "0": the colour image, axes (..., c, y, x)
    out.zarr/0                RGB, uint8 or float32, one zarr chunk per engine chunk
    out.zarr/confidence/0     chroma confidence, float32 (..., y, x), its own multiscales
    out.zarr/entropy/0        hue entropy, float32 (..., y, x), its own multiscales
    out.zarr/.napari_colorize_done/   one empty marker file per finished chunk
    out.zarr/.napari_colorize_spill/  while writing: tile pieces shared by two stripes

The root attribute ``napari_colorize`` records the job (input, model, options: a
fingerprint) and ``complete``.  A chunk's marker is written only after all of its
outputs are written, and ``complete: true`` only after every marker exists, so a
killed run restarted with the same job rewrites exactly the unfinished chunks and a
half-written store is never taken for a finished one.  Different chunks never share
a zarr chunk, so workers write concurrently without locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr
from dask.highlevelgraph import HighLevelGraph

from .lazy import BATCH_PREFIX, PIECE_PREFIX, Monitor

__all__ = ["colorize_to_zarr", "open_zarr_result", "is_complete", "OUTPUTS", "MARKERS", "ome_axes"]

OUTPUTS = ("rgb", "confidence", "entropy")
MARKERS = ".napari_colorize_done"
#: Folder in the store for tile pieces handed from one stripe to the next (removed at the end).
SPILL = ".napari_colorize_spill"
_ATTR = "napari_colorize"
_ZARR3 = int(zarr.__version__.split(".")[0]) >= 3
_PATHS = {"rgb": "0", "confidence": "confidence/0", "entropy": "entropy/0"}


def _open_group(path: str, mode: str):
    return zarr.open_group(path, mode=mode, zarr_format=2) if _ZARR3 else zarr.open_group(path, mode=mode)


def _create_array(group, name: str, shape, chunks, dtype):
    if _ZARR3:
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)


def _open_array(path: str, mode: str = "r+"):
    return zarr.open_array(path, mode=mode, zarr_format=2) if _ZARR3 else zarr.open_array(path, mode=mode)


def ome_axes(lead: int, channel: bool, unit: str | None = None, names: Sequence[str] | None = None) -> list[dict]:
    """NGFF axes for ``lead`` leading axes, an optional channel axis, then y, x."""
    if names is None:
        names = {0: [], 1: ["z"], 2: ["t", "z"]}.get(lead, [f"dim{i}" for i in range(lead)])
    if len(names) != lead:
        raise ValueError(f"axes names {list(names)} do not match the {lead} leading axes of the image")
    kinds = {"t": "time", "z": "space", "c": "channel"}
    axes = [{"name": n, "type": kinds.get(n)} if n in kinds else {"name": n} for n in names]
    if lead + channel + 2 > 5:  # NGFF 0.4 allows at most 5 axes
        warnings.warn(f"{lead} leading axes exceed what OME-NGFF 0.4 allows; the store is zarr-readable but not "
                      "strictly OME-Zarr", stacklevel=3)
    for a in axes:
        if a.get("type") == "space" and unit:
            a["unit"] = unit
    if channel:
        axes.append({"name": "c", "type": "channel"})
    axes += [dict({"name": n, "type": "space"}, **({"unit": unit} if unit else {})) for n in ("y", "x")]
    return axes


def _multiscales(name: str, axes: list[dict], scale: list[float]) -> list[dict]:
    return [{"version": "0.4", "name": name, "axes": axes,
             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
             "type": "none"}]


def _full_scale(scale: Sequence[float] | None, ndim: int) -> list[float]:
    if scale is None:
        return [1.0] * ndim
    scale = [float(s) for s in scale]
    if len(scale) == 2:
        return [1.0] * (ndim - 2) + scale
    if len(scale) != ndim:
        raise ValueError(f"scale must give the pixel size of (y, x) or of all {ndim} axes, got {scale}")
    return scale


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` is a store written completely by :func:`colorize_to_zarr`."""
    try:
        attrs = dict(_open_group(str(path), "r").attrs)
    except Exception:
        return False
    return bool(attrs.get(_ATTR, {}).get("complete"))


def _fingerprint(job: dict) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()


def _marker(path: str, block: tuple[int, ...]) -> str:
    return os.path.join(path, MARKERS, ".".join(map(str, block)))


_ARRAYS: dict[tuple[str, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def _array(path: str, output: str, job: str):
    key = (path, output, job)
    with _ARRAYS_LOCK:
        if key not in _ARRAYS:
            _ARRAYS[key] = _open_array(os.path.join(path, _PATHS[output]))
        return _ARRAYS[key]


def _write_block(block: np.ndarray, path: str, job: str, index: tuple[int, ...], region: tuple[slice, ...],
                 outputs: tuple[str, ...], rgb_dtype: str, monitor: Monitor | None) -> tuple[int, ...]:
    """Write one engine chunk to every output, then its completion marker."""
    if monitor is not None:
        monitor.check()
    lead = len(region) - 2
    values = block.reshape(block.shape[lead:])  # (h, w, 5)
    plane = region[:lead]
    if "rgb" in outputs:
        rgb = values[..., :3].transpose(2, 0, 1)
        if rgb_dtype == "uint8":
            rgb = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        _array(path, "rgb", job)[plane + (slice(None),) + region[lead:]] = rgb.reshape((1,) * lead + rgb.shape)
    for name, channel in (("confidence", 3), ("entropy", 4)):
        if name in outputs:
            _array(path, name, job)[region] = values[..., channel].reshape((1,) * lead + values.shape[:2])
    with open(_marker(path, index), "w"):
        pass
    if monitor is not None:
        monitor.advance((index,))
    return index


def _prepare_store(path: str, job: dict, fingerprint: str, shape: tuple[int, ...], chunks: tuple[int, int],
                   outputs: tuple[str, ...], rgb_dtype: str, scale: list[float], unit: str | None,
                   axes: Sequence[str] | None, overwrite: bool) -> bool:
    """Create the store, or check that an existing one holds this same job.

    Returns True when the store is already complete.
    """
    if os.path.isfile(path):
        raise FileExistsError(f"{path} is a file, not a zarr store; choose a folder path such as out.zarr")
    if os.path.exists(path):
        try:
            attrs = dict(_open_group(path, "r").attrs).get(_ATTR)
        except Exception:
            attrs = None
        if attrs is not None and attrs.get("fingerprint") == fingerprint:
            # The same job: resume it (or it is done). `overwrite` only replaces other content;
            # recomputing an identical job would give the identical result.
            return bool(attrs.get("complete"))
        if not overwrite:
            what = "a different colorization job" if attrs is not None else "something that is not a napari-colorize store"
            raise FileExistsError(f"{path} already holds {what}; choose another output path or pass overwrite=True "
                                  "(--overwrite) to replace it")
        if attrs is None and any(Path(path).iterdir()):
            raise FileExistsError(f"{path} is not a napari-colorize store; refusing to delete it, choose another path")
        shutil.rmtree(path)
    lead = len(shape) - 2
    group = _open_group(path, "w")
    block = (1,) * lead + chunks
    if "rgb" in outputs:
        _create_array(group, "0", shape[:lead] + (3,) + shape[lead:], (1,) * lead + (3,) + chunks, rgb_dtype)
    for name in ("confidence", "entropy"):
        if name in outputs:
            sub = group.require_group(name)
            _create_array(sub, "0", shape, block, "float32")
            sub.attrs["multiscales"] = _multiscales(name, ome_axes(lead, False, unit, axes), scale)
    if "rgb" in outputs:
        rgb_scale = scale[:lead] + [1.0] + scale[lead:]
        group.attrs["multiscales"] = _multiscales("rgb", ome_axes(lead, True, unit, axes), rgb_scale)
        white = 255 if rgb_dtype == "uint8" else 1
        group.attrs["omero"] = {"channels": [{"label": n, "color": c, "window": {"start": 0, "end": white,
                                                                                  "min": 0, "max": white}}
                                             for n, c in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))],
                                "rdefs": {"model": "color"}}
    os.makedirs(os.path.join(path, MARKERS), exist_ok=True)
    # Written last: a store without it is not ours, one with complete=False is unfinished.
    group.attrs[_ATTR] = dict(job, fingerprint=fingerprint, complete=False)
    return False


def colorize_to_zarr(image, path: str | os.PathLike, model: Any = "default", *,
                     outputs: Sequence[str] = OUTPUTS, rgb_dtype: str = "uint8", scale: Sequence[float] | None = None,
                     unit: str | None = None, axes: Sequence[str] | None = None, overwrite: bool = False,
                     source_id: str | None = None, progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None, client=None, **colorize_kwargs: Any) -> Path:
    """Colorize ``image`` into an OME-Zarr store at ``path``, chunk by chunk, in bounded memory.

    Parameters
    ----------
    image : numpy, dask or zarr array, shape (..., Y, X)
        The gray image or stack (see :func:`napari_colorize.colorize`).
    path : path
        The store (a folder, conventionally ``*.zarr``).
    model : "default", path or HypercolumnColorizer
    outputs : sequence of {"rgb", "confidence", "entropy"}
        What to write.
    rgb_dtype : {"uint8", "float32"}
        uint8 (0-255, rounded) or float32 in [0, 1].
    scale : sequence of float, optional
        Pixel size of (y, x) or of every axis, e.g. from the source's metadata.
    unit : str, optional
        Unit of the pixel size ("micrometer", ...).
    axes : sequence of str, optional
        Names of the leading axes (default "z" for stacks, "t", "z" for 4D).
    overwrite : bool
        Replace a store that holds a different job (a store written by something
        else is never deleted).
    source_id : str, optional
        Identifies the input in the job fingerprint (the CLI passes path, size and
        time); by default it is the dask token of the input.
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
    from ..api import colorize_stacked

    outputs = tuple(outputs)
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {OUTPUTS}")
    if rgb_dtype not in ("uint8", "float32"):
        raise ValueError(f"rgb_dtype must be 'uint8' or 'float32', got {rgb_dtype!r}")
    path = os.path.abspath(os.fspath(path))
    stacked, plan, info = colorize_stacked(image, model, client=client, cache=False, **colorize_kwargs)
    shape = plan.shape
    source = source_id if source_id is not None else info["input_token"]
    job = {"source": source, "shape": list(shape), "model": info["model"], "model_token": _model_token(model),
           "options": {k: info[k] for k in ("tile_size", "overlap", "normalize", "limits", "precision", "decode")},
           "outputs": list(outputs), "rgb_dtype": rgb_dtype, "version": 1}
    fingerprint = _fingerprint(job)
    full_scale = _full_scale(scale, len(shape))
    chunks = (plan.ty.chunk, plan.tx.chunk)
    if _prepare_store(path, job, fingerprint, shape, chunks, outputs, rgb_dtype, full_scale, unit, axes, overwrite):
        return Path(path)
    blocks = [plane + (cy, cx) for plane in plan.planes for cy in range(plan.ty.n_chunks)
              for cx in range(plan.tx.n_chunks)]
    done = {b for b in blocks if os.path.exists(_marker(path, b))}
    todo = [b for b in blocks if b not in done]
    monitor = None
    if client is None and (progress is not None or cancel is not None):
        monitor = Monitor(len(blocks), progress, cancel)
        monitor._done.update(done)
    wname = f"colorize-write-{fingerprint[:16]}-{dask.base.tokenize(stacked.name, todo)}"
    layer = {}
    for b in todo:
        plane, (cy, cx) = b[:-2], b[-2:]
        region = tuple(slice(i, i + 1) for i in plane) + (slice(*plan.ty.chunk_range(cy)), slice(*plan.tx.chunk_range(cx)))
        layer[(wname, *b)] = (_write_block, (stacked.name, *b, 0), path, fingerprint, b, region, outputs, rgb_dtype,
                              monitor)
    graph = HighLevelGraph.from_collections(wname, layer, dependencies=[stacked])
    keys = list(layer)
    if client is None:
        # On the CPU one tile at a time: torch already uses every core inside a tile, and two
        # tiles in flight double the peak memory for no speed-up.
        workers = 1 if str(info["device"]).startswith("cpu") else None
        spill = os.path.join(path, SPILL)
        shutil.rmtree(spill, ignore_errors=True)  # left by a killed run: its stripe is redone
        os.makedirs(spill)
        _write_in_order(_culled(graph, keys), keys, workers, spill)
        shutil.rmtree(spill, ignore_errors=True)
    else:
        from .distributed import run_on_client
        run_on_client(client, _culled(graph, keys), keys, len(blocks), len(done), progress, cancel)
    missing = [b for b in blocks if not os.path.exists(_marker(path, b))]
    if missing:
        raise RuntimeError(f"{len(missing)} chunks of {path} were not written; run the same command again to finish them")
    group = _open_group(path, "r+")
    group.attrs[_ATTR] = dict(job, fingerprint=fingerprint, complete=True)
    shutil.rmtree(os.path.join(path, MARKERS), ignore_errors=True)
    return Path(path)


#: Chunk columns per stripe of a local zarr write (see _write_in_order).
STRIPE_CHUNKS = 4


def _write_in_order(dsk: dict, keys: list, num_workers: int | None, spill: str) -> None:
    """Run the write tasks ``keys`` one chunk row of one stripe at a time (on a CPU), each tile once.

    The chunks are visited in vertical stripes of :data:`STRIPE_CHUNKS` chunk columns,
    and within a stripe plane by plane and row by row (dask's own order holds many rows
    of tiles at once).  A tile feeds the chunks around it, so the pieces that later rows
    need from the tiles computed for this row are handed on: in memory within a stripe
    (about one row of tiles), through ``spill`` (a folder; memory-mapped back) to the next
    stripe, since those accumulate over the whole image height.  So no tile is computed
    twice, and memory depends neither on the width nor on the height of the image.
    """
    def group(write_key) -> tuple:  # (stripe, plane..., chunk row), or (stripe,) when several workers
        if num_workers != 1:
            # Several threads (a GPU): each dask call must hold enough tiles to keep the device
            # busy while the host reads and writes, so only the stripes are kept apart.
            return (write_key[-1] // STRIPE_CHUNKS,)
        return (write_key[-1] // STRIPE_CHUNKS, *write_key[1:-1])

    order, groups, consumer, handed = _plan_groups(dsk, keys, group)
    carried: dict = {}  # piece -> its value, or a task loading it from the spill folder
    for i, g in enumerate(order):
        keep = [p for p in handed.get(i, []) if order[consumer[p]][0] == g[0]]
        spills = {("colorize-spill", i, n): (_spill_piece, p, os.path.join(spill, f"{i}-{n}.npy"))
                  for n, p in enumerate(p for p in handed.get(i, []) if order[consumer[p]][0] != g[0])}
        wanted = groups[g] + keep + list(spills)
        values = dask.threaded.get(_culled({**dsk, **carried, **spills}, wanted), wanted, num_workers=num_workers)
        for piece in [p for p in carried if consumer[p] == i]:  # read by this group
            value = carried.pop(piece)
            if isinstance(value, tuple):
                os.remove(value[1])
        carried.update(zip(keep, values[len(groups[g]):len(groups[g]) + len(keep)]))
        carried.update({task[1]: (_load_piece, path)
                        for task, path in zip(spills.values(), values[len(groups[g]) + len(keep):])})


def _plan_groups(dsk: dict, keys: list, group: Callable) -> tuple[list, dict, dict, dict]:
    """Who computes and who reads each tile piece when ``keys`` run group by group.

    Returns the groups in order, their write keys, the rank of the group that reads
    each piece, and per rank the pieces that its tiles give to later groups (a tile is
    computed by the first group that needs it).
    """
    from dask.core import get_dependencies

    groups: dict[tuple, list] = {}
    for k in keys:
        groups.setdefault(group(k), []).append(k)
    order = sorted(groups)
    rank = {g: i for i, g in enumerate(order)}
    consumer: dict = {}
    for k in keys:  # write -> block -> pieces
        for block in get_dependencies(dsk, k):
            for piece in get_dependencies(dsk, block):
                if _is_piece(piece):
                    consumer[piece] = rank[group(k)]
    batch_of = {p: next(d for d in get_dependencies(dsk, p) if _is_tile_batch(d)) for p in consumer}
    first: dict = {}
    for piece, r in consumer.items():
        first[batch_of[piece]] = min(r, first.get(batch_of[piece], r))
    handed: dict[int, list] = {}
    for piece, r in consumer.items():
        if first[batch_of[piece]] < r:
            handed.setdefault(first[batch_of[piece]], []).append(piece)
    return order, groups, consumer, handed


def _spill_piece(piece: np.ndarray, path: str) -> str:
    np.save(path, piece)
    return path


def _load_piece(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _is_tile_batch(key) -> bool:
    return isinstance(key, tuple) and str(key[0]).startswith(BATCH_PREFIX)


def _is_piece(key) -> bool:
    return isinstance(key, tuple) and str(key[0]).startswith(PIECE_PREFIX)


def _culled(graph: HighLevelGraph, keys: list) -> dict:
    from dask.optimization import cull
    return cull(dict(graph), keys)[0]


def _model_token(model: Any) -> str:
    from .lazy import ModelRef
    if hasattr(model, "parameters"):
        # Objects: a hash of the weights, stable across processes (needed to resume).
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()
    return repr(ModelRef(model).token()[:4])


def open_zarr_result(path: str | os.PathLike, require_complete: bool = True):
    """Open a store written by :func:`colorize_to_zarr` as a lazy ``ColorizeResult``.

    ``rgb`` is returned channels-last ``(..., Y, X, 3)`` float32 in [0, 1] (uint8
    stores are scaled); missing outputs are None.  Raises ``ValueError`` for an
    unfinished store unless ``require_complete=False``.
    """
    import dask.array as da

    from ..api import ColorizeResult

    path = os.fspath(path)
    group = _open_group(path, "r")
    attrs = dict(group.attrs).get(_ATTR)
    if attrs is None:
        raise ValueError(f"{path} was not written by napari-colorize")
    if require_complete and not attrs.get("complete"):
        raise ValueError(f"{path} is unfinished (the run was interrupted); run the same command again to finish it")
    out: dict[str, Any] = {}
    for name in OUTPUTS:
        if name not in attrs["outputs"]:
            out[name] = None
            continue
        arr = da.from_zarr(_open_array(os.path.join(path, _PATHS[name]), "r"))
        if name == "rgb":
            arr = da.moveaxis(arr, -3, -1)
            arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr
        out[name] = arr
    return ColorizeResult(out["rgb"], out["confidence"], out["entropy"], info=dict(attrs))
