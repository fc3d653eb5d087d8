"""The descriptive text of an input (title, author, copyright, date, description), carried into
its PNG and TIFF outputs so that an archive's catalogue fields survive the colouring.

Read from the places archives keep it: a TIFF's tags, a JPEG's (or WebP's, PNG's) EXIF, and
a PNG's text chunks.  Kept under the PNG spec's keywords (``Title``, ``Author``,
``Description``, ``Copyright``, ``Creation Time``, ``Source``, ``Comment``); written back as
PNG text chunks and as the matching TIFF tags.  Only text is carried: never the EXIF
orientation (the pixels are already upright), dimensions or thumbnails, which would be wrong
for the output.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from .tiff import is_tiff

__all__ = ["PNG_KEYWORDS", "read_provenance", "tiff_text_tags"]

#: The PNG keywords carried, in the order they are written.
PNG_KEYWORDS = ("Title", "Author", "Description", "Copyright", "Creation Time", "Source", "Comment")

#: TIFF (and EXIF IFD0) tag -> PNG keyword.  ImageDescription is read but written back to PNG
#: only: a TIFF output's description holds its own axes and OME metadata.
_TAGS = {269: "Title", 315: "Author", 270: "Description", 33432: "Copyright", 306: "Creation Time"}
#: The TIFF tags an output gets, by keyword (no ImageDescription, above).
_TIFF_TAGS = {"Title": 269, "Author": 315, "Copyright": 33432, "Creation Time": 306}
#: The TIFF DateTime tag's one form.
_TIFF_DATE = re.compile(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d")
#: Longer values are cut: a catalogue field, not a document.
_MAX_CHARS = 4000


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The descriptive text fields of the image file ``path`` (empty for zarr stores, or when it
    has none or cannot be read: the text is a courtesy, never a reason for an input to fail)."""
    path = Path(path)
    if path.is_dir():
        return {}
    try:
        with warnings.catch_warnings():  # the pixels' reader has said what is odd about the file
            warnings.simplefilter("ignore")
            return _tiff_text(path) if is_tiff(path) else _pillow_text(path)  # by content, as the reader chooses
    except Exception:  # noqa: BLE001 -- an odd header must not fail an input that reads fine
        return {}


def tiff_text_tags(text: dict[str, str]) -> list[tuple[int, str, int, bytes, bool]]:
    """``text`` as tifffile ``extratags`` (ASCII tags holding UTF-8, as most writers do).  A
    date goes into DateTime only in its TIFF form ("YYYY:MM:DD HH:MM:SS"); a PNG's free text
    date has no place there."""
    return [(_TIFF_TAGS[key], "s", 0, value.encode("utf-8"), True) for key, value in text.items()
            if key in _TIFF_TAGS and (key != "Creation Time" or _TIFF_DATE.fullmatch(value))]


def _clean(fields: dict[str, object]) -> dict[str, str]:
    """Text values only, without NULs and padding, cut to a sane length, in :data:`PNG_KEYWORDS` order."""
    out = {}
    for key in PNG_KEYWORDS:
        value = fields.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.replace("\0", "").strip():
            out[key] = value.replace("\0", "").strip()[:_MAX_CHARS]
    return out


def _tiff_text(path: Path) -> dict[str, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        fields = {keyword: tags[code].value for code, keyword in _TAGS.items() if code in tags}
        if "Description" in fields and _generated(str(fields["Description"]), tif):
            del fields["Description"]
    return _clean(fields)


def _generated(description: str, tif) -> bool:
    """A description a program wrote for itself: tifffile's shape JSON, OME-XML, ImageJ's header."""
    text = description.lstrip()
    return (text.startswith(("{", "<?xml", "<OME", "ImageJ=")) or tif.is_ome or tif.is_imagej
            or tif.is_shaped)


def _pillow_text(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as im:
        fields: dict[str, object] = {k: v for k, v in im.info.items() if k in PNG_KEYWORDS}  # PNG text chunks
        exif = im.getexif()
        for code, keyword in _TAGS.items():
            if code in exif and keyword not in fields:
                fields[keyword] = exif[code]
    return _clean(fields)
