"""Whether the widget's choices can run, with the engine's own checks and messages.

The widget keeps Run disabled, and shows why, while :func:`check_run` raises (as
stardist-napari does).  It runs on the GUI thread at every change of a setting or of
the layer list, so it reads no pixels and no weights: the model file's header (once
per file version), shapes, and the engine's validation of the tiling
(:func:`napari_colorize.engine.defaults.resolve_tiling`, which calls
:func:`napari_colorize.engine.tiling.check_tiling`), the device, the precision and the
zarr destination.  What only the data can tell (NaN values, a corrupt weight tensor)
is still found by the engine in the worker, and reported as a notification.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.defaults import default_tiling, resolve_tiling
from ..guidance import (
    check_hint_planes,
    check_hint_range,
    check_hints,
    check_reference_strength,
    check_references,
)
from ..inputs import check_gray_shape
from ..model import BACKBONES, ModelConfig, get_backbone, read_config

__all__ = [
    "LAYER_NEEDED",
    "MODEL_NEEDED",
    "ZARR_PATH_NEEDED",
    "as_reason",
    "in_widget_words",
    "check_guide",
    "check_run",
    "check_zarr_path",
    "default_tiling_for",
    "device_type",
    "min_input_size",
    "model_config",
]

LAYER_NEEDED = "Choose a single-channel image layer"
MODEL_NEEDED = "Choose a .safetensors model file, or the default model"
ZARR_PATH_NEEDED = "zarr output needs a path: choose where to write the .zarr store"
#: Pixels of a reference image checked on the GUI thread (a regular subsample): its shape
#: and whether it has colour; values beyond the sample are checked by the engine in the worker.
REFERENCE_CHECK_PIXELS = 1 << 14


@functools.lru_cache(maxsize=16)
def _read_config(model: str, _version: tuple[int, ...]) -> ModelConfig:
    return read_config(model)


def _file_version(model: str) -> tuple[int, ...]:
    """Modification time and size of a model file: a new version is read again."""
    try:
        stat = os.stat(Path(model).expanduser())
    except OSError:
        return ()
    return stat.st_mtime_ns, stat.st_size


def model_config(model: str) -> ModelConfig:
    """The model's checked configuration (its file's header; cached per file version).

    Raises the engine's ``FileNotFoundError`` / ``ValueError`` for a missing file, a
    folder, or a file that is not a napari-colorize model.
    """
    return _read_config(model, () if model == "default" else _file_version(model))


def min_input_size(config: ModelConfig) -> int:
    """The smallest plane side the model's backbone accepts (as the engine reads it)."""
    return get_backbone(config.backbone).min_size


def device_type(device: str, precision: str) -> str:
    """The torch device type ``device`` runs on here ("cpu", "cuda", "mps").

    Raises the engine's ``ValueError`` for a device this machine lacks, or a reduced
    precision on the CPU.
    """
    from ..devices import autocast, resolve_device

    resolved = resolve_device(device)
    with autocast(resolved, precision):  # the engine's check of the precision, nothing runs
        pass
    return resolved.type


def default_tiling_for(model: str, device: str) -> tuple[int, int]:
    """The engine's (tile size, overlap) for a large plane with this model on this device.

    What the widget's tile fields start from.  Without a readable model (the reason Run
    is disabled says why) or device, the first registered backbone's CPU tiling.
    """
    try:
        return default_tiling(model_config(model).backbone, None, device_type(device, "fp32"))
    except (ValueError, FileNotFoundError):
        return default_tiling(next(iter(BACKBONES)), None, "cpu")


def check_zarr_path(path: str | None, image: Any) -> None:
    """Raise unless a store can be written at ``path``: chosen, its folder existing, not the input's own."""
    from ..engine.sources import check_source_outside

    if not path or str(path) in ("", "."):
        raise ValueError(ZARR_PATH_NEEDED)
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"the folder {parent} does not exist; choose another place for the zarr store")
    check_source_outside(image, path)


def _reference_sample(reference: Any) -> np.ndarray:
    """A regular subsample of an ``(H, W, C)`` reference, small enough to check at every change."""
    shape = np.shape(reference)
    if len(shape) != 3:
        return np.asarray(reference)  # wrong shape: the engine's check says so, without reading pixels
    step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / REFERENCE_CHECK_PIXELS))))
    return np.asarray(reference[::step, ::step])


def check_guide(guide: Any, plan: Any) -> None:
    """Raise with the guidance module's message unless the reference and hints can be used.

    Parameters
    ----------
    guide : napari_colorize._qt._runner.Guide or None
        Hint points already in the coordinates of ``plan.array`` (of ``guide.hint_stack`` when given).
    plan : napari_colorize._qt._layers.InputPlan
    """
    if guide is None:
        return
    if guide.reference is not None:
        check_references(_reference_sample(guide.reference))
    check_reference_strength(guide.reference_strength)
    shape = tuple(int(n) for n in (plan.array if guide.hint_stack is None else guide.hint_stack).shape)
    check_hint_range(guide.hint_range, shape[-2:])
    check_hints(guide.hints, shape, check_hint_planes(guide.hint_planes))


def check_run(settings: Any, plan: Any, guide: Any = None) -> tuple[int, int]:
    """Raise with the engine's message unless the run can start.

    Parameters
    ----------
    settings : napari_colorize._qt._runner.Settings
        The choices (``tile_size``/``overlap`` None for the engine's defaults).
    plan : napari_colorize._qt._layers.InputPlan
        What would be coloured (only its shape is used, and the sources of a zarr output).
    guide : napari_colorize._qt._runner.Guide, optional
        Reference and hints (:func:`check_guide`).

    Returns
    -------
    (int, int)
        The (tile size, overlap) the engine will use for these choices.

    Raises
    ------
    ValueError, FileNotFoundError
        The model file, the image shape, the device, the precision, the tiling, the
        guidance or the zarr destination, in that order, with the engine's message.
    """
    config = model_config(settings.model)
    min_size = min_input_size(config)
    shape = tuple(int(n) for n in plan.array.shape)
    check_gray_shape(shape, min_size)
    kind = device_type(settings.device, settings.precision)
    tiling = resolve_tiling(config.backbone, shape[-2:], kind, settings.tile_size, settings.overlap, min_size)
    check_guide(guide, plan)
    if settings.output == "zarr file":
        check_zarr_path(settings.zarr_path, plan.array)
    return tiling


#: The engine's advice in API and CLI terms -> what to do in this widget.
_WIDGET_WORDS = (
    (re.compile(r"; pass overwrite=True \(--overwrite\) to replace it, or choose another output path"),
     "; delete that store yourself, or choose another zarr path"),
    (re.compile(r"pass normalize='percentile' \(--normalize percentile, microscopy\) or 'minmax' "
                r"\(--normalize minmax\), or rescale it first"),
     "choose intensities 'contrast limits' (the layer's displayed range), 'percentile' (microscopy) or 'min-max'"),
    (re.compile(r"precision='(\w+)' \(--precision \w+\) needs a GPU; on the CPU use precision='fp32', the default"),
     r"precision \1 needs a GPU; choose fp32 on the CPU"),
    (re.compile(r" or pass hints=None"), " or choose hints: none"),
    (re.compile(r"pass normalize='percentile' \(--normalize percentile, microscopy\) or 'minmax' to stretch it"),
     "choose intensities 'contrast limits', 'percentile' (microscopy) or 'min-max' to stretch it"),
    (re.compile(r"pass normalize='percentile' or 'minmax' \(--normalize\), or convert it to uint8/uint16,"),
     "choose intensities 'contrast limits', 'percentile' or 'min-max'"),
    (re.compile(r"; it is never deleted, not even with overwrite=True \(--overwrite\): move it or choose another path"),
     "; it is never deleted: move it or choose another zarr path"),
    (re.compile(r"run again, or pass overwrite=True \(--overwrite\) to replace it"),
     "run again, or delete that store yourself"),
    # A dask layer that napari-colorize cannot trace to files (built by a script's functions):
    # the widget has no field to name it across sessions.
    (re.compile(r"A dask input is known by its dask name, .*? give the same source_id= in both runs"),
     "This layer's data is computed by functions, not read from files napari-colorize can follow, so "
     "another napari session cannot tell it for the same pixels: a store is resumed only in the session "
     "that began it"),
    (re.compile(r"pass 'default' or the path of a \.safetensors (model )?file"),
     "choose model: default, or a .safetensors file"),
    (re.compile(r"Pass a colour image \((.*?)\), or no reference"), r"Choose a colour layer (\1), or reference: none"),
    (re.compile(r"convert it first with napari_colorize\.rgb_to_gray\(image\[\.\.\., :3\]\) or pass a single channel"),
     "add it as an RGB layer (shown in colour, not offered here) or split its channels"),
    (re.compile(r"replace them \(e\.g\. np\.nan_to_num\) before colorizing"),
     "replace them before colorizing (e.g. with numpy's nan_to_num in napari's console), or choose another layer"),
    (re.compile(r"; pass limits=\(lo, hi\) to choose"), "; choose intensities 'contrast limits' to set the range yourself"),
    (re.compile(r"widen the range, or pass normalize='minmax' without limits"),
     "widen the layer's contrast limits, or choose intensities 'min-max'"),
    # Last: the normalisations the engine names that no rule above has said in the widget's terms.
    (re.compile(r"normalize='minmax'"), "intensities 'min-max'"),
    (re.compile(r"normalize='percentile'"), "intensities 'percentile'"),
    (re.compile(r"normalize='dtype'"), "intensities 'data type range'"),
)


def in_widget_words(text: str) -> str:
    """An engine message with its advice said in this widget's terms (fields, not arguments)."""
    for pattern, words in _WIDGET_WORDS:
        text = pattern.sub(words, text)
    return text


def as_reason(err: BaseException) -> str:
    """An error as the sentence shown under Run (first letter capitalised), in the widget's words."""
    text = in_widget_words(str(err) or type(err).__name__)
    return text[:1].upper() + text[1:]
