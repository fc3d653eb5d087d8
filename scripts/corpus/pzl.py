"""Read Jigzo puzzle files (``.pzl``): the photograph a puzzle is cut from.

A ``.pzl`` file is a few text lines (``PzlF``, format version, title, URL),
then named sections, each ``NAME\\n``, ``SIZE\\n`` (decimal) and SIZE bytes.
The first section is the texture map (text); a line
``image X Y W H ...`` in it gives the box of the whole picture inside the
texture atlas ``TITLE.jpg`` (1024x1024), whose remaining area holds the
cut pieces.  ``TITLE-t.jpg`` is a thumbnail and ``TITLE.png`` the piece masks.
"""

from __future__ import annotations

import io

from PIL import Image

MAGIC = b"PzlF"
HEADER_LINES = 4


class PzlError(ValueError):
    """A malformed ``.pzl`` file."""


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` (without newline) and the position after it."""
    end = data.find(b"\n", pos)
    if end < 0:
        raise PzlError(f"missing newline after byte {pos}")
    return data[pos:end], end + 1


def read_sections(data: bytes) -> dict[str, bytes]:
    """All named sections of a ``.pzl`` file, in file order.

    Raises
    ------
    PzlError
        When the magic is missing or a section runs past the end.
    """
    if not data.startswith(MAGIC + b"\n"):
        raise PzlError("not a Jigzo puzzle (no 'PzlF' magic)")
    pos = 0
    for _ in range(HEADER_LINES):
        _, pos = _line(data, pos)
    sections: dict[str, bytes] = {}
    while pos < len(data):
        name, pos = _line(data, pos)
        size_text, pos = _line(data, pos)
        size = int(size_text)
        if pos + size > len(data):
            raise PzlError(f"section {name!r} runs past the end of the file")
        sections[name.decode()] = data[pos : pos + size]
        pos += size
    return sections


def picture_box(texture_map: str) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) box of the whole picture from the ``image`` line of the map."""
    for line in texture_map.splitlines():
        parts = line.split()
        if parts and parts[0] == "image" and len(parts) >= 5:
            x, y, w, h = (int(v) for v in parts[1:5])
            return x, y, x + w, y + h
    raise PzlError("texture map has no 'image' line")


def read_picture(data: bytes) -> Image.Image:
    """The puzzle's whole photograph, cut from its texture atlas, as RGB."""
    sections = read_sections(data)
    names = list(sections)
    box = picture_box(sections[names[0]].decode("utf-8", "replace"))
    atlases = [n for n in names if n.endswith(".jpg") and not n.endswith("-t.jpg")]
    if not atlases:
        raise PzlError("no texture atlas (.jpg) section")
    atlas = Image.open(io.BytesIO(sections[atlases[0]]))
    atlas.load()
    return atlas.convert("RGB").crop(box)
