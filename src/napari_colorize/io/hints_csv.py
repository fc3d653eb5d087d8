"""Colour hints from a CSV file: :func:`read_hints_csv`.

The file is napari's Points CSV (*File > Save Selected Layers* on a Points layer
writes ``index, axis-0, axis-1, ...`` and one column per feature) with the hint
colours added as a feature or as columns:

* coordinates: the columns ``axis-0`` to ``axis-{D-1}``, one per image axis, in pixel
  (data) coordinates; ``D`` is how many there are (a file with ``axis-0`` and
  ``axis-2`` but no ``axis-1`` is refused);
* colour: **either** one column ``colour``, ``color`` or ``face_color`` holding hex
  ``#rrggbb`` or ``#rrggbbaa`` (alpha is ignored), **or** three columns ``r``, ``g``,
  ``b``.  The ``r, g, b`` values of a file are fractions in [0, 1] when every one is
  at most 1; when any is above 1, all of them are 8-bit levels: whole numbers from 0
  to 255, divided by 255;
* every other column (napari's ``index``, other features) is ignored.

Column names are matched without regard to case or surrounding spaces; a UTF-8 byte
order mark (Excel) is accepted.  Every problem is a ``ValueError`` naming the file,
the line (the header is line 1) and what to fix.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

import numpy as np

from .manifest import decimal_point, delimiter_of

__all__ = ["COLOUR_COLUMNS", "RGB_COLUMNS", "read_hints_csv"]

#: Names of the hex colour column, any one of them.
COLOUR_COLUMNS = ("colour", "color", "face_color")
#: Names of the three channel columns, the alternative to a hex column.
RGB_COLUMNS = ("r", "g", "b")

_AXIS = re.compile(r"axis-(\d+)")
_HEX = re.compile(r"#([0-9a-fA-F]{6})([0-9a-fA-F]{2})?")
_FORMAT = ("napari's Points CSV (columns axis-0, axis-1, ... in pixel coordinates) with a colour column "
           "(colour, color or face_color: #rrggbb) or three columns r, g, b")


def read_hints_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read colour hints from a CSV file (format: see the module docstring).

    Parameters
    ----------
    path : path
        The CSV file, e.g. saved from a napari Points layer with a colour feature.

    Returns
    -------
    points : float64 array (N, D)
        The ``axis-0 .. axis-{D-1}`` coordinates, as for
        ``napari_colorize.colorize(hints=(points, colours))``.
    colours : float32 array (N, 3)
        RGB in [0, 1].

    Raises
    ------
    ValueError
        A missing or unreadable file, no points, missing coordinate or colour
        columns, a bad hex colour, or a value that is not a number; the message
        names the file and line.
    """
    path = Path(path)
    header, rows = _read_table(path)
    names = [name.lower() for name in header]
    axes = _axis_columns(path, names)
    hex_column, rgb_columns = _colour_columns(path, names)
    if not rows:
        raise ValueError(f"{path}: the hints file has no points: add one row per hint below the header "
                         f"({', '.join(header)})")
    width = len(header)
    for line, row in rows:
        if len(row) != width:
            raise ValueError(f"{path}, line {line}: {len(row)} values, but the header has {width} columns; "
                             "give one value per column (quote values that contain commas)")
    points = np.array([[_number(path, line, header[c], row[c]) for c in axes] for line, row in rows], np.float64)
    if hex_column is not None:
        colours = np.array([_hex(path, line, row[hex_column]) for line, row in rows], np.float32)
    else:
        colours = _rgb(path, rows, [header[c] for c in rgb_columns], rgb_columns)
    return points, colours


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows with their line numbers (header = line 1)."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"hints file {path} {what}; give a CSV file (e.g. a napari Points layer saved as .csv)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        delimiter = delimiter_of(text)  # as manifests: ',', ';' or tab (then decimal commas too)
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        lines = [(reader.line_num, [decimal_point(cell, delimiter) for cell in row]) for row in reader]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file (not UTF-8); save the hints as CSV") from None
    except (OSError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read the hints file ({err}); save it again as CSV") from None
    lines = [(n, [cell.strip() for cell in row]) for n, row in lines if any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError(f"{path}: the hints file has no points (the file is empty); expected {_FORMAT}")
    return lines[0][1], lines[1:]


def _axis_columns(path: Path, names: list[str]) -> list[int]:
    """Indices of the columns axis-0 .. axis-{D-1}, in axis order."""
    found: dict[int, int] = {}
    for column, name in enumerate(names):
        match = _AXIS.fullmatch(name)
        if match is None:
            continue
        axis = int(match.group(1))
        if axis in found:
            raise ValueError(f"{path}: the column axis-{axis} appears twice in the header; keep one")
        found[axis] = column
    if not found:
        separated = " (columns must be separated by commas)" if any(";" in n or "\t" in n for n in names) else ""
        raise ValueError(f"{path}: no coordinate columns (axis-0, axis-1, ...) in the header "
                         f"{','.join(names)}{separated}; expected {_FORMAT}")
    missing = [axis for axis in range(max(found) + 1) if axis not in found]
    if missing:
        raise ValueError(f"{path}: the coordinate columns must be axis-0 to axis-{max(found)} without gaps; "
                         f"axis-{missing[0]} is missing")
    return [found[axis] for axis in range(len(found))]


def _colour_columns(path: Path, names: list[str]) -> tuple[int | None, list[int]]:
    """(index of the hex column, []) or (None, indices of r, g, b); exactly one of the two forms."""
    hex_columns = [c for c, name in enumerate(names) if name in COLOUR_COLUMNS]
    rgb = {name: c for c, name in enumerate(names) if name in RGB_COLUMNS}
    if len(hex_columns) > 1:
        raise ValueError(f"{path}: several colour columns ({', '.join(names[c] for c in hex_columns)}); keep one")
    if hex_columns and rgb:
        raise ValueError(f"{path}: both a {names[hex_columns[0]]} column and r/g/b columns; keep one of the two forms")
    if hex_columns:
        return hex_columns[0], []
    if len(rgb) == 3:
        return None, [rgb[name] for name in RGB_COLUMNS]
    if rgb:
        lacking = ", ".join(name for name in RGB_COLUMNS if name not in rgb)
        raise ValueError(f"{path}: the colour columns r, g, b must all be present; {lacking} is missing")
    raise ValueError(f"{path}: no colour column; add a column colour (or color, face_color) holding #rrggbb, "
                     "or three columns r, g, b (fractions in [0, 1] or 0-255)")


def _number(path: Path, line: int, column: str, text: str) -> float:
    """A finite number from a cell, or an error naming where it is."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        shown = repr(text) if text else "nothing"
        raise ValueError(f"{path}, line {line}: {column} holds {shown}, not a number; give a finite number")
    return value


def _hex(path: Path, line: int, text: str) -> tuple[float, float, float]:
    """``#rrggbb`` or ``#rrggbbaa`` -> RGB in [0, 1] (alpha dropped: a hint has no transparency)."""
    match = _HEX.fullmatch(text)
    if match is None:
        raise ValueError(f"{path}, line {line}: {text!r} is not a hex colour; write it as #rrggbb "
                         "(e.g. #ff8000) or #rrggbbaa")
    digits = match.group(1)
    return tuple(int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def _rgb(path: Path, rows: list[tuple[int, list[str]]], names: list[str], columns: list[int]) -> np.ndarray:
    """The r, g, b columns as RGB in [0, 1]: fractions, or 8-bit levels if any value is above 1."""
    values = np.array([[_number(path, line, name, row[c]) for name, c in zip(names, columns)] for line, row in rows])
    lines = [line for line, _ in rows]
    negative = np.argwhere(values < 0)
    if len(negative):
        i, k = negative[0]
        raise ValueError(f"{path}, line {lines[i]}: {names[k]} = {values[i, k]:g} is negative; give fractions "
                         "in [0, 1] or 8-bit levels 0-255")
    if values.max() <= 1:
        return values.astype(np.float32)
    bad = np.argwhere((values > 255) | (values != np.round(values)))
    if len(bad):
        i, k = bad[0]
        raise ValueError(f"{path}, line {lines[i]}: {names[k]} = {values[i, k]:g}; since some r, g, b values are "
                         "above 1 they are read as 8-bit levels, which must be whole numbers from 0 to 255 "
                         "(or give every value as a fraction in [0, 1])")
    return (values / 255.0).astype(np.float32)
