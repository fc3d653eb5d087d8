"""OME-NGFF 0.4 metadata of the output stores: axes, multiscales with a pyramid, omero.

The metadata is written with ``ome_zarr.writer`` (which validates the axes and the
coordinate transformations); this module only decides what it says: axis names and
types, the pixel size and position of each pyramid level and the colours of the RGB channels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

__all__ = ["NGFF_VERSION", "NgffWarning", "ome_axes", "rgb_channel_index", "channel_index", "level_transforms",
           "write_multiscales", "read_multiscales", "rgb_omero", "leading_names", "stored_axes",
           "input_geometry", "full_axes"]

NGFF_VERSION = "0.4"
#: The name of an input's channel axis ("c") beside the RGB channel axis of a colour output.
INPUT_CHANNEL = "ch"
#: Axis name -> NGFF axis type; other leading names are custom axes (no type).
_KINDS = {"t": "time", "z": "space", "c": "channel"}
#: How each pyramid level is made from the one above (NGFF asks for it in "metadata").
DOWNSAMPLING = {"method": "skimage.transform.downscale_local_mean",
                "description": "mean of 2 x 2 pixel blocks of the level above, in y and x; "
                               "an odd last row or column is averaged over the pixels it has"}


#: At most this many axes in an NGFF 0.4 image.
MAX_AXES = 5
#: NGFF 0.4's order of leading axes by type (time, custom, space): also the order in which a
#: store that would have more than MAX_AXES leaves out size-1 axes.
_RANK = {"time": 0, None: 1, "space": 2}


class NgffWarning(UserWarning):
    """A store is written with axes that OME-NGFF 0.4 does not allow (zarr-readable, not strictly OME-Zarr)."""


def _kind(name: str) -> str | None:
    """The NGFF type of a leading axis of the stored maps (the input's "c" is a custom axis there)."""
    return None if name == "c" else _KINDS.get(name)


def stored_axes(names: Sequence[str], sizes: Sequence[int], rgb: bool) -> list[int]:
    """Which of the input's leading axes a store keeps, in the order it stores them.

    NGFF 0.4 orders axes time, channel or custom, space (``t, ch, c, z, y, x``) and
    allows at most 5, so the input's axes are reordered (a ZCYX ImageJ stack is stored
    ``ch, c, z, y, x``) and, only where the colour image would have more than 5, size-1
    axes are left out (time first, then custom, then z).  The reader puts them back.

    Parameters
    ----------
    names : sequence of str
        The input's leading axis names (:func:`leading_names`), in its order.
    sizes : sequence of int
        Their lengths.
    rgb : bool
        Whether the store holds the colour image (one axis more).

    Returns
    -------
    list of int
        Indices into ``names`` of the stored leading axes, stored order.
    """
    order = sorted(range(len(names)), key=lambda i: _RANK[_kind(names[i])])
    room = MAX_AXES - 2 - int(rgb)
    for i in [i for i in order if sizes[i] == 1]:  # ``order`` is by rank already
        if len(order) <= room:
            break
        order.remove(i)
    return order


def input_geometry(axes: list[dict], scale: list[float], translation: list[float], names: Sequence[str],
                   stored: Sequence[int]) -> tuple[list[dict], list[float], list[float]]:
    """The maps' axes, scale and translation in the input's order (:func:`stored_axes` undone):
    scale 1 and translation 0 for a left-out axis."""
    lead = len(names)
    unit = axes[-1].get("unit")
    full = ome_axes(lead, False, unit, names)
    out_axes = [axes[stored.index(i)] if i in stored else full[i] for i in range(lead)] + axes[-2:]

    def reorder(values: list[float], fill: float) -> list[float]:
        return [values[stored.index(i)] if i in stored else fill for i in range(lead)] + values[-2:]

    return out_axes, reorder(scale, 1.0), reorder(translation, 0.0)


def full_axes(values: Sequence[float] | None, ndim: int, fill: float, what: str = "scale") -> list[float]:
    """Per-axis ``values`` given for (y, x) or for all ``ndim`` axes, as all ``ndim``
    (``fill`` for the leading axes when only y, x are given or ``values`` is None)."""
    if values is None:
        return [fill] * ndim
    if not isinstance(values, (list, tuple)) and not hasattr(values, "__len__"):  # scale=2: one for (y, x)?
        raise ValueError(f"{what} must give the {'pixel size' if what == 'scale' else 'position'} of (y, x) or of "
                         f"all {ndim} axes, got the single number {values!r}; e.g. {what}=({values!r}, {values!r})")
    values = [float(s) for s in values]
    if not all(math.isfinite(v) for v in values):  # NaN and inf are not JSON: the store's metadata would break
        raise ValueError(f"{what} must be finite numbers, got {values}")
    if what == "scale" and not all(v > 0 for v in values):  # napari and NGFF readers refuse a store with them
        raise ValueError(f"scale must be positive pixel sizes, got {values}; give each axis's pixel size (1 for none)")
    if len(values) == 2:
        return [fill] * (ndim - 2) + values
    if len(values) != ndim:
        raise ValueError(f"{what} must give the {'pixel size' if what == 'scale' else 'position'} of (y, x) or "
                         f"of all {ndim} axes, got {values}")
    return values


def leading_names(lead: int, names: Sequence[str] | None) -> list[str]:
    """The names of an image's ``lead`` leading axes: ``names`` (lower case, as NGFF and napari
    write them; tifffile's are upper case), or "z" / "t", "z" / "dim<i>" by their number.

    Raises ValueError for names that are not distinct, are empty, or name the image plane
    ("y", "x": always the last two axes): the store's axes would not be valid OME-NGFF.
    """
    default = {0: [], 1: ["z"], 2: ["t", "z"]}.get(lead, [f"dim{i}" for i in range(lead)])
    if names is None:
        names = default
    if isinstance(names, str) or len(names) != lead:
        example = f"e.g. {default}" if lead else "or none: pass axes=None"
        raise ValueError(f"axes names {names!r} do not match the {lead} leading axes of the image; give one "
                         f"name per axis before (y, x), {example}")
    lowered = [str(n).strip().lower() for n in names]
    if len(set(lowered)) != lead or not all(lowered) or {"y", "x"} & set(lowered):
        raise ValueError(f"axes names {list(names)} must be distinct, not empty and neither 'y' nor 'x' (the "
                         "image plane is always the last two axes), e.g. ['t', 'z']")
    return lowered


def ome_axes(lead: int, channel: bool, unit: str | None = None, names: Sequence[str] | None = None,
             time_unit: str | None = None) -> list[dict]:
    """NGFF axes of an output array: ``lead`` leading axes, an optional channel axis, then y, x.

    Parameters
    ----------
    lead : int
        Number of axes before the image plane (0 for a 2D image, 1 for a z-stack...).
    channel : bool
        Whether the array has the RGB channel axis ``c``.  NGFF orders axes time,
        channel, space, so ``c`` goes before the leading space axes (``t, c, z, y, x``).
    unit : str, optional
        Unit of the space axes ("micrometer", ...).
    names : sequence of str, optional
        Names of the leading axes (default "z" for stacks, "t", "z" for 4D, "dim<i>"
        beyond); "t" is time, "z" space, any other name a custom axis.
    time_unit : str, optional
        Unit of the time axis ("second", ...).

    Returns
    -------
    list of dict
        The axes, each with name, type where known, and unit for space (and time) axes.
    """
    # The input's own (gray) channel axis is a custom axis in every output: the RGB output
    # has its channel axis, NGFF allows one, and readers move a channel-typed axis last.
    names = [INPUT_CHANNEL if n == "c" else n for n in leading_names(lead, names)]
    axes = [dict({"name": n}, **({"type": _KINDS[n]} if n in _KINDS else {})) for n in names]
    axes += [{"name": n, "type": "space"} for n in ("y", "x")]
    for a in axes:
        if a.get("type") == "space" and unit:
            a["unit"] = unit
        elif a.get("type") == "time" and time_unit:
            a["unit"] = time_unit
    if channel:
        axes.insert(rgb_channel_index(lead, names), {"name": "c", "type": "channel"})
    if len(axes) > MAX_AXES:
        warnings.warn(f"the {'colour image' if channel else 'maps'} has {len(axes)} axes "
                      f"{[a['name'] for a in axes]}, more than the {MAX_AXES} OME-NGFF {NGFF_VERSION} allows; the store "
                      "is zarr-readable but not strictly OME-Zarr (colour one time point or channel at a time for a "
                      "valid one)", NgffWarning, stacklevel=3)
    return axes


def rgb_channel_index(lead: int, names: Sequence[str] | None = None) -> int:
    """Where the colour image's channel axis goes: after time and custom axes, before space axes.

    Parameters
    ----------
    lead, names
        As for :func:`ome_axes`.
    """
    names = leading_names(lead, names)
    return next((i for i, n in enumerate(names) if _KINDS.get(n) == "space"), lead)


def channel_index(axes: Sequence[dict]) -> int | None:
    """Position of the channel axis in ``axes`` (None when there is none)."""
    return next((i for i, a in enumerate(axes) if a.get("type") == "channel"), None)


def level_transforms(scale: Sequence[float], level: int, origin: Sequence[float] | None = None) -> list[dict]:
    """NGFF coordinate transformations of pyramid ``level`` (downsampled by 2 per level in y, x).

    Parameters
    ----------
    scale : sequence of float
        Pixel size of level 0 along every axis of the array.
    level : int
        0 for full resolution.
    origin : sequence of float, optional
        World position of level 0's first pixel (its centre) along every axis, in the
        units of ``scale``; None: the origin (all zeros).

    Returns
    -------
    list of dict
        A scale (the level-0 pixel size times ``2 ** level`` in y and x) and a
        translation: ``origin`` plus, in y and x, the offset of a level pixel's centre.
    """
    factor = 2 ** level
    scale = [float(s) for s in scale]
    origin = [0.0] * len(scale) if origin is None else [float(o) for o in origin]
    level_scale = scale[:-2] + [s * factor for s in scale[-2:]]
    # The pyramid (.pyramid.downsample) averages 2 x 2 blocks of the level above, starting
    # at pixel 0, so pixel j of level n is the mean of level-0 pixels 2**n * j ... 2**n * (j + 1) - 1:
    # its centre is level-0 pixel 2**n * j + (2**n - 1) / 2, at world position
    # origin + s * (2**n - 1) / 2 + (s * 2**n) * j.  The level's translation is therefore the
    # world origin (that of level 0's pixel 0) plus half a level pixel less half a level-0 pixel,
    # in y and x; leading axes are not downsampled and keep the origin.
    shift = origin[:-2] + [o + s * (factor - 1) / 2 for o, s in zip(origin[-2:], scale[-2:])]
    return [{"type": "scale", "scale": level_scale}, {"type": "translation", "translation": shift}]


def rgb_omero(rgb_dtype: str) -> dict:
    """The omero block of the colour image: red, green, blue shown additively over their full range."""
    white = 255 if rgb_dtype == "uint8" else 1
    return {"channels": [{"label": n, "color": c, "active": True,
                          "window": {"start": 0, "end": white, "min": 0, "max": white}}
                         for n, c in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))],
            "rdefs": {"model": "color"}}


def write_multiscales(group, name: str, axes: list[dict], scale: Sequence[float], paths: Sequence[str],
                      omero: dict | None = None, origin: Sequence[float] | None = None) -> None:
    """Write the ``multiscales`` (and ``omero``) attributes of an image group with ``ome_zarr.writer``.

    Parameters
    ----------
    group : zarr.Group
        A zarr format 2 group (NGFF 0.4).
    name : str
        The image's name ("rgb", "confidence", ...).
    axes : list of dict
        From :func:`ome_axes`.
    scale : sequence of float
        Pixel size of level 0 along every axis.
    paths : sequence of str
        The level arrays, relative to ``group``, finest first.
    omero : dict, optional
        Channel rendering (:func:`rgb_omero`).
    origin : sequence of float, optional
        World position of level 0's pixel 0 along every axis (see :func:`level_transforms`).

    Notes
    -----
    Axes that NGFF 0.4 forbids (more than one custom axis, time not first) are kept,
    with a warning, so that any stack can still be written; the store is then plain zarr.
    """
    from ome_zarr.format import FormatV04

    with warnings.catch_warnings():  # its module's default Scaler() is deprecated; we never use it
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    datasets = [{"path": p, "coordinateTransformations": level_transforms(scale, n, origin)} for n, p in enumerate(paths)]
    metadata = dict(DOWNSAMPLING, **({"omero": omero} if omero else {}))
    try:
        write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=axes, name=name, metadata=metadata)
    except ValueError as err:
        warnings.warn(f"the axes {[a['name'] for a in axes]} are not valid OME-NGFF {NGFF_VERSION} ({err}); "
                      "the store is zarr-readable but not strictly OME-Zarr", NgffWarning, stacklevel=3)
        group.attrs["multiscales"] = [{"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets,
                                       "metadata": dict(DOWNSAMPLING)}]
        if omero:
            group.attrs["omero"] = omero


def read_multiscales(group) -> tuple[list[str], list[dict], list[float], list[float]]:
    """The first multiscale image of an NGFF 0.4 group.

    Returns
    -------
    paths : list of str
        The level arrays, finest first.
    axes : list of dict
        NGFF axes (name, type, unit).
    scale : list of float
        Level 0's pixel size along every axis (1 where it has no scale transform).
    translation : list of float
        Level 0's translation, the world position of its pixel 0 (0 where it has none).
    """
    image = dict(group.attrs)["multiscales"][0]
    datasets = image["datasets"]
    axes = [dict(a) for a in image["axes"]]
    transforms = datasets[0].get("coordinateTransformations", [])

    def level0(kind: str, fill: float) -> list[float]:
        return [float(v) for v in next((t[kind] for t in transforms if t["type"] == kind), [fill] * len(axes))]

    return [d["path"] for d in datasets], axes, level0("scale", 1.0), level0("translation", 0.0)
