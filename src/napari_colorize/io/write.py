"""Writing results without ever leaving a torn or temporary file: PNG and memory-mapped TIFF.

Every file is written under a temporary name beside its destination and renamed
into place (:func:`napari_colorize._atomic.atomic_path`).  A full disk raises one
:class:`~napari_colorize._atomic.DiskFullError` per file, before any pixel is
computed for TIFFs (their space is reserved up front), and the temporary files are
removed.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, preallocate, space_error
from .image import lead_axis_names
from .provenance import tiff_text_tags

__all__ = ["write_png", "tiff_memmaps", "has_our_mark", "to_uint8", "SOFTWARE"]

#: The mark every PNG and TIFF output carries (PNG ``Software`` text chunk, TIFF ``Software``
#: tag): ``--overwrite`` replaces only files that carry it, never another program's file.
SOFTWARE = "napari-colorize"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255, rounded to the nearest level (the one rule for every 8-bit output)."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def has_our_mark(path: str | os.PathLike) -> bool:
    """True if ``path`` is a PNG or TIFF that napari-colorize wrote (it carries :data:`SOFTWARE`).

    Reads only the headers: the PNG chunks before the pixels (Pillow reads them when it
    opens a file), the TIFF's first page tags.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head == _PNG_SIGNATURE:
            return _png_marked(Path(path))
        if head[:4] in _TIFF_SIGNATURES:
            return _tiff_marked(Path(path))
    except Exception:  # noqa: BLE001 -- unreadable or torn: not provably ours, so never replaced
        return False
    return False


def _png_marked(path: Path) -> bool:
    """The PNG's text chunks before its pixels, read directly: Pillow refuses to open a result
    of over 179 MP (its limit for untrusted files), which then never counted as ours."""
    import struct
    import zlib

    with open(path, "rb") as fh:
        fh.seek(len(_PNG_SIGNATURE))
        while header := fh.read(8):
            if len(header) < 8:
                return False
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):
                return False
            body = fh.read(length)
            fh.seek(4, os.SEEK_CUR)  # the CRC
            keyword, _, text = body.partition(b"\0")
            if keyword != b"Software":
                continue
            if kind == b"zTXt":
                text = zlib.decompress(text[1:])
            elif kind == b"iTXt":  # compression flag and method, language tag, translated keyword
                flag, text = text[:1], text[2:].split(b"\0", 2)[-1]
                text = zlib.decompress(text) if flag == b"\1" else text
            elif kind != b"tEXt":
                continue
            return text.decode("latin-1" if kind != b"iTXt" else "utf-8", "replace").startswith(SOFTWARE)
    return False


def _tiff_marked(path: Path) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        software = tif.pages.first.software or ""
    return str(software).startswith(SOFTWARE)


def encode_png(array: np.ndarray, pixel_size: tuple[float, float] | None = None,
               text: dict[str, str] | None = None) -> bytes:
    """A uint8/uint16 gray or RGB(A) image encoded as PNG, in memory, carrying our mark,
    given the (y, x) ``pixel_size`` in micrometers the resolution (a scan's dpi), and the
    input's descriptive ``text`` (:func:`.provenance.read_provenance`) as text chunks."""
    import imageio.v3 as iio
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    for keyword, value in (text or {}).items():
        info.add_text(keyword, value)  # iTXt (UTF-8) where Latin-1 cannot hold it
    dpi = {"dpi": (25400.0 / pixel_size[1], 25400.0 / pixel_size[0])} if pixel_size else {}
    return iio.imwrite("<bytes>", np.asarray(array), extension=".png", pnginfo=info, **dpi)


def write_png(path: str | os.PathLike, array: np.ndarray, pixel_size: tuple[float, float] | None = None,
              text: dict[str, str] | None = None) -> Path:
    """Write a uint8/uint16 image to PNG atomically (``pixel_size``: (y, x) in micrometers, kept as dpi;
    ``text``: the input's descriptive fields, see :func:`encode_png`).

    The PNG is encoded in memory first and written with one plain write, so a full
    disk is one clear error (no half-closed encoder left to complain at exit).

    Raises
    ------
    DiskFullError
        If the disk cannot hold the file; nothing is left behind.
    """
    path = Path(path)
    encoded = encode_png(array, pixel_size, text)
    with atomic_path(path) as tmp:
        preallocate(tmp, len(encoded), path)
        with open(tmp, "r+b") as fh:
            fh.write(encoded)
    return path


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class tiff_memmaps:
    """Create TIFFs as memory maps, fill them chunk by chunk, then rename them into place.

    Bounded memory for any image size (pages stream to disk through the OS); BigTIFF
    is used above 2 GB.  Each file's disk space is reserved when it is created, so a
    full disk is a :class:`~napari_colorize._atomic.DiskFullError` at the start
    instead of a SIGBUS while writing.  Use as a context manager: on an exception the
    temporary files are deleted and nothing is renamed.

    With named leading axes the files are OME-TIFF: the axes (``ZYX``, ``CZYXS``...), the
    pixel size and the z step in the OME metadata (``PhysicalSizeX/Y/Z``), which tifffile,
    Bio-Formats (Fiji's Bio-Formats Importer, QuPath) and napari-colorize's reader take.
    OME, not ImageJ, because an ImageJ file holds no float RGB, only the axis order TZC and
    no conformant BigTIFF.  Otherwise (unnamed axes, one plane) they are plain TIFFs.

    Parameters
    ----------
    specs : dict of name -> (path, shape, dtype, photometric)
    pixel_size : (float, float), optional
        (y, x) in micrometers, stored as the resolution in pixels per centimeter (and in
        the OME metadata).
    axes : list of str, optional
        Names of the leading axes (each of "t", "c", "z" at most once), one per axis before
        y, x (and the RGB samples); otherwise the leading axes are left unnamed.
    z_step : float, optional
        Distance between the planes of the ``z`` axis in micrometers (OME ``PhysicalSizeZ``).
    text : dict of str, optional
        The input's descriptive fields (:func:`.provenance.read_provenance`), written as the
        matching TIFF tags (Artist, Copyright, DateTime, DocumentName).
    """

    def __init__(self, specs: dict[str, tuple[Path, tuple[int, ...], str, str]],
                 pixel_size: tuple[float, float] | None = None, axes: list[str] | None = None,
                 z_step: float | None = None, text: dict[str, str] | None = None) -> None:
        self.specs = specs
        self.text = text or {}
        self.pixel_size = pixel_size
        self.axes = axes
        self.z_step = z_step
        self.maps: dict[str, np.memmap] = {}
        self._temps: ExitStack | None = None

    def _kwargs(self, shape: tuple[int, ...], dtype: str, photometric: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"photometric": photometric, "bigtiff": _nbytes(shape, dtype) > 2**31 - 2**25,
                                  "software": SOFTWARE, "extratags": tiff_text_tags(self.text)}
        if self.pixel_size:
            # Kept beside the OME metadata: readers that know only TIFF tags still get the pixel size.
            kwargs.update(resolution=(1e4 / self.pixel_size[1], 1e4 / self.pixel_size[0]), resolutionunit="CENTIMETER")
        axes = self._file_axes(shape, photometric)
        # Off, not left to tifffile, without names: it would guess them (two leading axes -> ZC).
        kwargs.update(ome=axes is not None, **({"metadata": self._ome_metadata(axes)} if axes else {}))
        return kwargs

    def _file_axes(self, shape: tuple[int, ...], photometric: str) -> str | None:
        """The file's axes (``ZYX``, ``TZYXS``), or None when the leading axes have no names."""
        samples = "S" if photometric == "rgb" else ""
        if lead_axis_names(self.axes) is None or len(self.axes) != len(shape) - 2 - len(samples):
            return None
        return "".join(self.axes).upper() + "YX" + samples

    def _ome_metadata(self, axes: str) -> dict[str, Any]:
        """OME metadata: the axes, and the voxel size in micrometers (OME's default unit) when known."""
        meta: dict[str, Any] = {"axes": axes}
        if self.pixel_size:
            meta.update(PhysicalSizeY=self.pixel_size[0], PhysicalSizeX=self.pixel_size[1])
        if self.z_step and "Z" in axes:  # only a z axis has a plane spacing; t and c planes have none
            meta["PhysicalSizeZ"] = self.z_step
        return meta

    def __enter__(self) -> dict[str, np.memmap]:
        import tifffile

        self._temps = ExitStack()
        try:
            for name, (path, shape, dtype, photometric) in self.specs.items():
                tmp = self._temps.enter_context(atomic_path(path))
                try:
                    self.maps[name] = tifffile.memmap(tmp, shape=shape, dtype=dtype,
                                                      **self._kwargs(shape, dtype, photometric))
                except OSError as err:  # the header, or extending the file to its size, did not fit
                    clear = space_error(err, Path(path), _nbytes(shape, dtype))
                    if clear is None:
                        raise
                    raise clear from err
                # tifffile leaves the pixel area a hole in the file; reserve it before any page is written.
                preallocate(tmp, os.path.getsize(tmp), Path(path))
        except BaseException as err:  # __exit__ is not called when __enter__ fails: delete what was made
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self.maps

    def __exit__(self, exc_type, exc, tb) -> None:
        temps, self._temps = self._temps, None
        try:
            for m in self.maps.values():
                m.flush()
                mmap = getattr(m, "_mmap", None)
                if mmap is not None:
                    mmap.close()
        except BaseException as err:  # a file that could not be flushed must not be renamed into place
            exc_type, exc, tb = type(err), err, err.__traceback__
            raise
        finally:
            self.maps.clear()
            if temps is not None:
                # Renames every temporary file into place, or deletes them all on an exception.
                temps.__exit__(exc_type, exc, tb)
