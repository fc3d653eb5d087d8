"""Corpus manifests: where one is, and the per-image sampling weights it lists."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["find_manifest", "read_manifest_weights"]


def find_manifest(folders: Sequence[str | os.PathLike]) -> Path | None:
    """A ``manifest.csv`` in the first data folder, or in its parent folder."""
    if not folders:
        return None
    root = Path(folders[0]).expanduser()
    for candidate in (root / "manifest.csv", root.parent / "manifest.csv"):
        if candidate.is_file():
            return candidate
    return None


_PATH_COLUMNS = ("path", "file", "filename", "relpath", "image")


def read_manifest_weights(manifest: str | os.PathLike, paths: Sequence[Path]) -> tuple[np.ndarray, int]:
    """Per-image sampling weights from a CSV with a path column and a ``weight`` column.

    The path column (``path``, ``file``, ``filename``, ``relpath`` or ``image``) may be
    absolute or relative to the manifest's folder; rows are also matched by a unique
    file name.  Images the manifest does not list get the mean weight of those it does.

    Returns
    -------
    weights : ndarray, shape (len(paths),), float64, > 0
    matched : int
        How many of ``paths`` the manifest listed.

    Raises
    ------
    ValueError
        If the CSV has no weight or path column, a weight is not a number >= 0, or no
        row matches any image.
    """
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        col = next((c for c in _PATH_COLUMNS if c in columns), None)
        if "weight" not in columns or col is None:
            raise ValueError(f"{manifest} needs a 'weight' column and a path column ({', '.join(_PATH_COLUMNS)}); "
                             f"it has {columns}")
        rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
    by_path: dict[Path, float] = {}
    by_name: dict[str, list[float]] = {}
    for row in rows:
        try:
            w = float(row["weight"])
        except (TypeError, ValueError):
            raise ValueError(f"{manifest}: weight {row.get('weight')!r} of {row.get(col)!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"{manifest}: weight of {row.get(col)!r} must be a finite number >= 0, got {w}")
        p = Path(row[col])
        full = p if p.is_absolute() else manifest.parent / p
        by_path[full.resolve()] = w
        by_name.setdefault(p.name, []).append(w)
    weights = np.full(len(paths), np.nan)
    for i, path in enumerate(paths):
        if path.resolve() in by_path:
            weights[i] = by_path[path.resolve()]
        elif len(by_name.get(path.name, [])) == 1:
            weights[i] = by_name[path.name][0]
    matched = int(np.isfinite(weights).sum())
    if matched == 0:
        raise ValueError(f"{manifest} lists none of the {len(paths)} training images; check its path column")
    weights[~np.isfinite(weights)] = np.nanmean(weights)
    if not weights.sum() > 0:
        raise ValueError(f"{manifest}: all weights are 0")
    return weights, matched
