"""What the readers return, and the warnings they give about what they changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Image", "ImageReadError", "ReadWarning", "ColourInputWarning", "OwnOutputsNote", "LEAD_AXES",
           "lead_axis_names", "refuse_empty"]


class ImageReadError(ValueError):
    """A file cannot be read as an image; the message names it and says what to do."""


def refuse_empty(path: Path) -> None:
    """An empty file is one error, said the same by every reader (a decoder would only say it
    cannot identify the file)."""
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"{path.name} is empty (0 bytes): it was not written or copied completely; "
                             "copy or export it again")


class ReadWarning(UserWarning):
    """Reading a file changed or left out something, said in the message (alpha, previews)."""


class ColourInputWarning(ReadWarning):
    """A colour file was converted to gray."""


class OwnOutputsNote(UserWarning):
    """Files that napari-colorize wrote were passed over in a folder walk: a note (the command
    line says ``note:``), since leaving them out is what the user wants."""


@dataclass
class Image:
    """A gray image read from disk.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array, shape (..., Y, X)
    pixel_size : (float, float) or None
        (y, x) pixel size in ``unit``.
    unit : str or None
        "micrometer" when known.
    axes : list of str or None
        Names of the leading axes ("t", "c", "z") when the file says them.
    converted : bool
        True if it was a colour file turned into gray.
    colour_model : str or None
        How the file stored colour before it was turned into RGB ("CMYK",
        "palette"); None for RGB and gray files.
    samples : bool or None
        True when the last axis holds colour samples, False when there is none, as the
        file says (TIFF); None when unknown, so a last axis of 3 or 4 is taken as colour.
    z_step : float or None
        Distance between the planes of the ``z`` axis, in ``unit``, when the file says it.
    origin : (float, float) or None
        (y, x) position of pixel 0 in ``unit`` when the file gives one (an OME-Zarr translation).
    z_origin : float or None
        Position of the first plane of the ``z`` axis, in ``unit``, when the file gives it.
    bits : int or None
        Bits per sample as the file stores them (8 for an 8-bit RGB file, though its gray is
        float once converted); None when not read from a file.
    """

    data: Any
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    axes: list[str] | None = None
    converted: bool = False
    colour_model: str | None = None
    samples: bool | None = None
    z_step: float | None = None
    origin: tuple[float, float] | None = None
    z_origin: float | None = None
    bits: int | None = None

    def scale(self) -> list[float] | None:
        """The pixel size along every axis of :attr:`data` (leading axes 1 but a known z
        step), or None without a pixel size: what an OME-Zarr output records."""
        return None if self.pixel_size is None else self._along_axes(self.pixel_size, self.z_step, 1.0)

    def translation(self) -> list[float] | None:
        """The position of pixel 0 along every axis of :attr:`data` (leading axes 0 but a
        known z origin), like :meth:`scale`, or None when the file gives none."""
        return None if self.origin is None else self._along_axes(self.origin, self.z_origin, 0.0)

    def _along_axes(self, yx: tuple[float, float], z: float | None, fill: float) -> list[float]:
        """(y, x) values and a ``z`` value (or ``fill``) per leading axis; only (y, x) when
        the leading axes are not all named."""
        lead = [z if name == "z" and z else fill for name in (self.axes or [])]
        return lead + list(yx) if len(lead) == self.data.ndim - 2 else list(yx)


def warn_if_transparent(alpha, name: str, opaque: float) -> None:
    """Warn that the alpha channel is ignored, when some pixel of ``alpha`` is not opaque.

    Pixels keep their stored values (nothing is composited over a background), so the
    lightness of the result is the file's own; only the transparency is lost.  Lazy
    (dask) alpha is not read for this.
    """
    import warnings

    import numpy as np

    if isinstance(alpha, np.ndarray) and bool((alpha < opaque).any()):
        warnings.warn(f"{name} has transparent pixels; the alpha channel is ignored and every pixel is coloured "
                      "with its stored value", ReadWarning, stacklevel=4)


#: Leading axis names a file may give: time, a (gray) channel axis, depth.
LEAD_AXES = ("t", "c", "z")


def lead_axis_names(names: list[str] | None) -> list[str] | None:
    """The leading axes' names as the file gives them, if each is one of :data:`LEAD_AXES`
    once (a multichannel z-stack, ``c, z``, keeps its channel axis a channel, not "t");
    None otherwise (the writer then names them by their number)."""
    if not names or len(set(names)) != len(names) or not all(n in LEAD_AXES for n in names):
        return None
    return list(names)
