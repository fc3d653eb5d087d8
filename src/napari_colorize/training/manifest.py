"""Corpus manifests: where one is, and the per-image sampling weights it lists."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import find_manifest_above, read_manifest_column, read_manifest_rows

__all__ = ["find_manifest", "read_manifest_weights", "resolve_weights"]


def find_manifest(folders: Sequence[str | os.PathLike]) -> Path | None:
    """A ``manifest.csv`` in the first data folder, or in its parent folder."""
    return find_manifest_above(folders[0], levels=1) if folders else None


def read_manifest_weights(manifest: str | os.PathLike, paths: Sequence[Path]) -> tuple[np.ndarray, int]:
    """Per-image sampling weights from a CSV with a path column and a ``weight`` column.

    The manifest is read by :func:`napari_colorize.io.read_manifest_column` (path
    column ``path``, ``file``, ``filename``, ``relpath`` or ``image``, absolute or
    relative to the manifest's folder); rows are also matched by a unique file name.  Images the manifest does not list get the mean weight of those it does.

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
    text_by_path, text_by_name = read_manifest_column(manifest, "weight")
    by_path = {path: _weight(manifest, path, text) for path, text in text_by_path.items()}
    by_name = {name: [_weight(manifest, Path(name), t) for t in texts] for name, texts in text_by_name.items()}
    weights = np.full(len(paths), np.nan)
    for i, path in enumerate(paths):
        if path.resolve() in by_path:
            weights[i] = by_path[path.resolve()]
        elif len(by_name.get(path.name, [])) == 1:
            weights[i] = by_name[path.name][0]
    matched = int(np.isfinite(weights).sum())
    if matched == 0:
        raise ValueError(f"{manifest} lists none of the {len(paths)} training images; check its path column")
    top = np.nanmax(weights) or 1.0  # the mean of huge weights (1e308) overflowed into NaN
    weights[~np.isfinite(weights)] = top * np.nanmean(weights / top)
    if not weights.max() > 0:
        raise ValueError(f"{manifest}: all weights are 0")
    return weights, matched


def _weight(manifest: Path, path: Path, text: str) -> float:
    """A sampling weight from the manifest's text: a finite number >= 0, else a ValueError."""
    try:
        w = float(text)
    except ValueError:
        raise ValueError(f"{manifest}: weight {text!r} of {path} is not a number") from None
    if not (w >= 0 and math.isfinite(w)):
        raise ValueError(f"{manifest}: weight of {path} must be a finite number >= 0, got {w}")
    return w


def resolve_weights(weights: str | None, data: Sequence[str | os.PathLike],
                    paths: Sequence[Path]) -> tuple[np.ndarray | None, str | None, int]:
    """``(per-image weights or None, the file they came from, how many images it listed)``.

    ``weights`` is ``--weights``: a CSV, "none", or None to use a ``manifest.csv`` found
    next to the data (:func:`find_manifest`) if it has a ``weight`` column; a corpus
    manifest that only names sources or splits sets no weights.
    """
    if weights is not None and weights.lower() == "none":
        return None, None, 0
    manifest = Path(weights) if weights else find_manifest(data)
    if manifest is None:
        return None, None, 0
    if not manifest.is_file():
        raise FileNotFoundError(f"weights file {manifest} does not exist")
    if not weights and "weight" not in read_manifest_rows(manifest)[0]:
        return None, None, 0
    values, matched = read_manifest_weights(manifest, paths)
    return values, str(manifest), matched
