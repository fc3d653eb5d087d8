"""Corpus manifests (``manifest.csv``): one column's value per image, by path.

A manifest (``scripts/build_corpus.py`` writes one) lists images in a path column,
absolute or relative to the manifest's folder, with per-image columns such as
``source`` or ``weight``.  Evaluation groups by a column and training reads sampling
weights from one (:func:`read_manifest_column`); training's source split reads the
same path column (:func:`manifest_path_column`), so every reader accepts the same
files, including those saved by spreadsheet programs (UTF-8 with a byte-order mark).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from .files import as_written

__all__ = ["PATH_COLUMNS", "find_manifest_above", "decimal_point", "manifest_path_column", "read_manifest_column",
           "read_manifest_rows"]

#: Columns that may hold an image's path in a manifest, in order of preference.
PATH_COLUMNS = ("path", "file", "filename", "relpath", "image")


def find_manifest_above(path: str | os.PathLike, levels: int | None = None) -> Path | None:
    """The nearest ``manifest.csv`` in the folder of ``path`` (or ``path`` itself if a
    folder) or in a folder above it, at most ``levels`` folders up (None: any); None if
    there is none.  Evaluation looks any distance up (an image deep in a corpus is still
    the corpus's); training looks one level up (a data folder or the corpus holding it),
    so a stray manifest far above a user's photos never sets their sampling weights."""
    # Folders as written first (``corpus/data`` may be a link to photos stored elsewhere,
    # with the manifest in ``corpus``), then those of the resolved path.
    written, resolved = as_written(Path(path).expanduser()), Path(path).expanduser().resolve()
    for p in dict.fromkeys([written, resolved]):
        folders = ([p] if p.is_dir() else []) + list(p.parents)
        for folder in folders if levels is None else folders[:levels + 1]:
            candidate = folder / "manifest.csv"
            if candidate.is_file():
                return candidate
    return None


def delimiter_of(text: str) -> str:
    """The column separator of a CSV text: a comma, or a semicolon or tab where its header has no
    comma (a spreadsheet saved in a European locale, or as tab-separated text)."""
    header = text.split("\n", 1)[0]
    return next((d for d in (",", ";", "\t") if d in header), ",")


#: A number written with a decimal comma, as a European locale's spreadsheet saves it ("200,5").
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")


def decimal_point(cell: str, delimiter: str) -> str:
    """A cell of a file whose columns are separated by ``;`` or a tab, with a decimal comma
    made a point (``"200,5"`` -> ``"200.5"``), as a spreadsheet saved in a European locale
    writes numbers; other cells, and every cell of a comma-separated file (where a quoted
    ``"1,024"`` is a thousands separator), as they are."""
    if delimiter != "," and _DECIMAL_COMMA.fullmatch(cell.strip()):
        return cell.replace(",", ".")
    return cell


def read_manifest_rows(manifest: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """``(columns, rows)`` of a manifest, in file order: every name and value stripped of
    surrounding spaces, a missing value read as ``""``.

    Columns are separated by commas, or by semicolons or tabs where the header has no comma
    (a spreadsheet saved in a European locale, or as tab-separated text; its decimal commas
    are read as points, :func:`decimal_point`).

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ValueError
        If it is not text.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise
    # become part of the first column's name ("\ufefffile").
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ValueError(f"manifest {manifest} is not a text CSV file (UTF-8); give the CSV that lists the images "
                         "with their source") from None
    delimiter = delimiter_of(text)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): decimal_point((v or "").strip(), delimiter) for k, v in row.items()} for row in reader]
    return columns, rows


def manifest_path_column(manifest: str | os.PathLike, columns: list[str]) -> str:
    """The column of ``columns`` holding the image paths: the first of :data:`PATH_COLUMNS` present.

    Raises
    ------
    ValueError
        If there is none; the message names the columns the manifest has.
    """
    col = next((c for c in PATH_COLUMNS if c in columns), None)
    if col is None:
        raise ValueError(f"{manifest} has no path column ({', '.join(PATH_COLUMNS)}); it has {columns}: name the "
                         "column of image paths 'file' (relative to the manifest's folder, or absolute)")
    return col


def read_manifest_column(manifest: str | os.PathLike, column: str) -> tuple[dict[Path, str], dict[str, list[str]]]:
    """``({absolute image path: value}, {file name: [values]})`` of one column of a manifest.

    The path column (``path``, ``file``, ``filename``, ``relpath`` or ``image``, the first present) may be
    absolute or relative to the manifest's folder.

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ValueError
        If it has no path column or no ``column``.
    """
    manifest = Path(manifest)
    columns, rows = read_manifest_rows(manifest)
    col = manifest_path_column(manifest, columns)
    if column not in columns:
        raise ValueError(f"{manifest} has no column {column!r}; choose one of {[c for c in columns if c != col]}")
    root = manifest.resolve().parent
    by_path: dict[Path, str] = {}
    by_name: dict[str, list[str]] = {}
    for row in rows:
        p = Path(row[col])
        by_path[(p if p.is_absolute() else root / p).resolve()] = row[column]
        by_name.setdefault(p.name, []).append(row[column])
    return by_path, by_name
