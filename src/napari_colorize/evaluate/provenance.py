"""Which images a model was trained on, from its own metadata: scores on them flatter it.

A network looks better, and better calibrated, on its training images than on new ones
(the first default model beat gray on its own packages and lost to it on new photographs).
:func:`warn_if_trained_on` lets ``evaluate`` and ``calibrate`` say so when the images given
were used for training, as far as the model's ``training`` record tells: its data folders
and, for a source-grouped split, the training sources of its manifest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.manifest import find_manifest_above, manifest_path_column, read_manifest_rows

__all__ = ["TrainedOnWarning", "trained_on", "warn_if_trained_on"]


class TrainedOnWarning(UserWarning):
    """Images given for evaluation or calibration were used to train the model."""


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _find_manifest(record: dict[str, Any], folders: list[Path]) -> Path | None:
    """The split's manifest: as recorded (relative to where training ran), else the nearest
    ``manifest.csv`` at or above a data folder, as training itself looks for one."""
    manifest = Path(str(record.get("manifest") or ""))
    if manifest.is_file():
        return manifest
    return next((found for found in map(find_manifest_above, folders) if found is not None), None)


def _training_files(record: dict[str, Any], folders: list[Path]) -> set[Path] | None:
    """Images of the split's training sources (composites only if their backdrop trains too);
    None when the manifest cannot be found from here."""
    manifest = _find_manifest(record, folders)
    if manifest is None:
        return None
    try:
        columns, rows = read_manifest_rows(manifest)
        column = manifest_path_column(manifest, columns)
    except (OSError, ValueError):
        return None
    train, root = set(record.get("train_sources") or ()), manifest.resolve().parent
    return {(root / row[column]).resolve() for row in rows
            if row.get("source") in train and row.get("backdrop_source", "") in train | {""}}


def trained_on(training: dict[str, Any], paths: Iterable[str | os.PathLike | None]) -> list[Path]:
    """Those of ``paths`` that a model's training record (``model.config.training``) says it
    trained on: inside one of its data folders, and with a source-grouped split
    (``held_out``) also listed under a training source in its manifest; for a fine-tuned
    model also what its base model trained on (``init_training``, the same way).  Empty where
    the record cannot tell (no data folders; a split whose manifest is not found)."""
    paths = [Path(q).resolve() for q in paths if q is not None]
    used: set[Path] = set()
    record: dict[str, Any] | None = training
    while record:  # a fine-tuned model (train --init) also learnt from its base model's images
        used.update(_used(record, _folders(record.get("data")), paths))
        record = record.get("init_training")
    return [p for p in paths if p in used]


def _folders(data: Any) -> list[Path]:
    data = data or ()
    return [Path(str(d)).resolve() for d in ([data] if isinstance(data, (str, os.PathLike)) else data)]


def _used(training: dict[str, Any], folders: list[Path], paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that the run of one training record (not its base model's) trained on."""
    if not folders:
        return []
    inside = [p for p in paths if _inside(p, folders)]
    record = training.get("held_out")
    if not inside or not record:
        return inside
    files = _training_files(record, folders)
    return [] if files is None else [p for p in inside if p in files]


def warn_if_trained_on(model: Any, paths: Iterable[str | os.PathLike | None], task: str) -> None:
    """One :class:`TrainedOnWarning` when any of ``paths`` trained ``model`` (a loaded model)."""
    config = getattr(model, "config", None)
    paths = list(paths)
    used = trained_on(getattr(config, "training", None) or {}, paths)
    if used:
        warnings.warn(f"{len(used)} of the {len(paths)} images {task} were used to train this model (e.g. {used[0]}); "
                      "a model looks better and more certain on its training images than on new ones: use images "
                      "from other sources", TrainedOnWarning, stacklevel=3)
