"""Where a store's outputs lie: their NGFF axes, pixel size, unit and world position.

A store's pixels depend on its job (input, model, options: its fingerprint); where they lie
does not, so the placement is not part of the job.  It is written when a store is created
and brought up to date when the same job finds its store again, finished or not: a user who
re-runs with a corrected pixel size or position gets it, without recomputing a pixel.

The axis names are different: they decide where the colour axis sits in the arrays (NGFF
puts ``c`` after time and before space), so a store of the same job under other axis names
has another layout and is refused like another job's (:func:`same_layout`).

A size-1 axis left out of a store (:func:`.ome.stored_axes`) has no place in its NGFF
metadata; its pixel size and position are kept in the job record's ``placement`` instead,
so that a reopened store still overlays its source (one plane of a time series, say).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..outputs import get_output
from .ome import NgffWarning, ome_axes, read_multiscales, rgb_channel_index, rgb_omero, write_multiscales
from .store import ATTR, open_group

__all__ = ["Placement", "image_group", "insert_at", "ngff_once", "same_layout", "write_placement", "left_out",
           "store_has_layout", "refresh_placement"]


def insert_at(values: Sequence, index: int | None, value) -> tuple:
    """``values`` with ``value`` inserted at ``index`` (unchanged when index is None)."""
    values = list(values)
    if index is not None:
        values.insert(index, value)
    return tuple(values)


def image_group(group, output):
    """The group of a store that holds ``output``'s levels and its multiscales metadata."""
    parent, _, _ = output.zarr_path.rpartition("/")
    return group[parent] if parent else group


@dataclass(frozen=True)
class Placement:
    """The placement of a store's maps (no colour axis): the stored leading axes' names,
    then per axis (leading ones and y, x) the pixel size and the world position of pixel 0
    (None: none recorded, all zeros), and the units of the space axes and of a time axis."""

    names: tuple[str, ...]
    scale: tuple[float, ...]
    unit: str | None = None
    origin: tuple[float, ...] | None = None
    rgb_dtype: str = "uint8"
    time_unit: str | None = None

    def multiscales(self, output, warn: bool = False) -> tuple[list[dict], tuple[float, ...], dict | None,
                                                              tuple[float, ...] | None]:
        """What :func:`.ome.write_multiscales` writes for ``output``: axes, scale, omero, origin
        (``warn``: say if the axes are too many for NGFF; once, when the store is created)."""
        lead = len(self.names)
        channel = rgb_channel_index(lead, self.names) if output.is_rgb else None
        with warnings.catch_warnings():
            if not warn:
                warnings.simplefilter("ignore")
            axes = ome_axes(lead, output.is_rgb, self.unit, self.names, self.time_unit)
        return (axes, insert_at(self.scale, channel, 1.0), rgb_omero(self.rgb_dtype) if output.is_rgb else None,
                None if self.origin is None else insert_at(self.origin, channel, 0.0))


@contextlib.contextmanager
def ngff_once() -> Iterator[None]:
    """Say an axes problem of NGFF once for the outputs written inside (each output's
    metadata would say it again: the widget showed three notifications for one run)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        yield
    ngff = [w for w in said if issubclass(w.category, NgffWarning)]
    for w in [w for w in said if not issubclass(w.category, NgffWarning)] + ngff[:1]:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def write_placement(image, output, paths: Sequence[str], placement: Placement, warn: bool = False) -> None:
    """Write ``output``'s multiscales metadata (levels ``paths``) into its image group."""
    axes, scale, omero, origin = placement.multiscales(output, warn)
    write_multiscales(image, output.key, axes, scale, paths, omero, origin)


def same_layout(image, output, placement: Placement) -> bool:
    """Whether ``output``'s stored axes are the ones ``placement`` names (colour axis included)."""
    axes = placement.multiscales(output)[0]
    stored = read_multiscales(image)[1]
    return [a["name"] for a in stored] == [a["name"] for a in axes]


def _stale_levels(image, output, placement: Placement) -> list[str] | None:
    """``output``'s level paths when its multiscales metadata do not yet say what ``placement``
    says (axes with their unit, pixel size, position of pixel 0); None when they do."""
    paths, stored, scale, translation = read_multiscales(image)
    axes, want_scale, _, origin = placement.multiscales(output)
    want_translation = [0.0] * len(axes) if origin is None else [float(o) for o in origin]
    same = stored == axes and scale == [float(s) for s in want_scale] and translation == want_translation
    return None if same else paths


def left_out(scale: Sequence[float], origin: Sequence[float], stored: Sequence[int]) -> dict | None:
    """The job record's ``placement``: pixel size and position of every input axis (input
    order), recorded only when some leading axis is left out of the store (else None)."""
    lead = len(scale) - 2
    if len(stored) == lead:
        return None
    return {"scale": [float(s) for s in scale], "origin": [float(o) for o in origin]}


def store_has_layout(path: str, outputs: Sequence[str], placement: Placement) -> bool:
    """Whether the store at ``path`` holds ``outputs`` under ``placement``'s axis names."""
    try:
        group = open_group(path, "r")
        return all(same_layout(image_group(group, get_output(k)), get_output(k), placement) for k in outputs)
    except Exception:  # noqa: BLE001 -- unreadable metadata: not provably this layout
        return False


def _stale(group, outputs: Sequence[str], placement: Placement) -> dict[str, list[str]]:
    """Per output whose multiscales say another placement, the paths of its levels."""
    levels = {k: _stale_levels(image_group(group, get_output(k)), get_output(k), placement) for k in outputs}
    return {k: paths for k, paths in levels.items() if paths is not None}


def placement_current(path: str, outputs: Sequence[str], placement: Placement, recorded: dict | None) -> bool:
    """Whether a store of the same job already says this run's placement (read only)."""
    group = open_group(path, "r")
    return not _stale(group, outputs, placement) and dict(group.attrs)[ATTR].get("placement") == recorded


def refresh_placement(path: str, outputs: Sequence[str], placement: Placement, recorded: dict | None) -> None:
    """Give a store of the same job this run's placement: each output's multiscales, and the
    job record's ``placement`` (``recorded``: :func:`left_out`'s).  Metadata only, and
    nothing is written when the store already says the same."""
    group = open_group(path, "r")
    stale = _stale(group, outputs, placement)
    record = dict(group.attrs)[ATTR]
    if not stale and record.get("placement") == recorded:
        return
    group = open_group(path, "r+")
    with ngff_once():
        for key, paths in stale.items():
            write_placement(image_group(group, get_output(key)), get_output(key), paths, placement)
    record = {k: v for k, v in record.items() if k != "placement"}
    group.attrs[ATTR] = record if recorded is None else dict(record, placement=recorded)
