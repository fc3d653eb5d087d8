"""Image I/O, the one place for it: which files are images, reading them, writing results.

* :mod:`.files` -- :data:`IMAGE_SUFFIXES`, :func:`is_zarr`, walking folders and globs
  (:func:`find_inputs` for colouring, :func:`scan_images` for training and evaluation).
* :mod:`.gray` -- :func:`read_image`: a gray image or stack from PNG, JPEG, BMP, WebP,
  TIFF or zarr, as :class:`Image` (pixels, pixel size, axes).  Built on :mod:`.raster`
  (Pillow), :mod:`.tiff` (tifffile) and :mod:`.stores` (zarr).
* :mod:`.colour` -- :func:`read_rgb`: colour images as uint8 RGB for training and
  evaluation.
* :mod:`.write` -- :func:`write_png`, :func:`tiff_memmaps`: results written atomically, with the
  input's catalogue text (:mod:`.provenance`);
  a full disk is one :class:`DiskFullError` per file and no temporary file remains.

Every read failure is an :class:`ImageReadError` (a ``ValueError``) naming the file
and saying what to do; what reading changed (colour turned into gray, alpha ignored)
is a :class:`ReadWarning`.
"""

from __future__ import annotations

from .._atomic import DiskFullError, FileTooLargeError, atomic_path, remove_stale_temps
from .colour import GRAY_CHROMA, is_gray, read_rgb, read_rgb_noted, rgb_to_unit
from .files import (IMAGE_SUFFIXES, as_written, find_inputs, image_stem, is_glob, is_our_output, is_zarr,
                    own_outputs_note, scan_images, shown_path, source_fingerprint, split_glob, walk_images)
from .gray import read_image, unreadable_message
from .hints_csv import read_hints_csv
from .manifest import PATH_COLUMNS, find_manifest_above, manifest_path_column, read_manifest_column, read_manifest_rows
from .image import ColourInputWarning, Image, ImageReadError, OwnOutputsNote, ReadWarning, refuse_empty
from .stores import series_output_path
from .tiff import LAZY_TIFF_BYTES
from .write import has_our_mark, tiff_memmaps, write_png

__all__ = ["Image", "ImageReadError", "ReadWarning", "ColourInputWarning", "OwnOutputsNote", "is_our_output",
           "own_outputs_note", "shown_path", "refuse_empty", "DiskFullError", "FileTooLargeError",
           "read_image", "read_rgb", "read_rgb_noted", "rgb_to_unit", "find_inputs", "scan_images", "walk_images", "atomic_path",
           "remove_stale_temps", "unreadable_message", "write_png", "is_gray", "GRAY_CHROMA", "PATH_COLUMNS", "find_manifest_above", "manifest_path_column", "read_manifest_column", "read_manifest_rows", "tiff_memmaps", "IMAGE_SUFFIXES", "LAZY_TIFF_BYTES", "is_zarr", "read_hints_csv", "source_fingerprint", "as_written", "is_glob", "split_glob", "image_stem", "has_our_mark",
           "series_output_path"]
