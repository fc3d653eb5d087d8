"""Which images a model was trained on, from its own metadata: scores on them flatter it.

A network looks better, and better calibrated, on its training images than on new ones
(the first default model beat gray on its own packages and lost to it on new photographs).
:func:`warn_if_trained_on` lets ``evaluate`` and ``calibrate`` say so when the images given
were used for training, as far as the model's ``training`` record tells.  A run records the
files it trained on (``trained_files``, :mod:`napari_colorize.training.trained_files`):
then exactly those count, not images added to its folders later nor those it skipped.

Fallback, for models written before that record (the shipped default model among them):
every image inside one of its data folders counts and, for a source-grouped split, only
those on the training side of its manifest (rebuilt from the manifest, if it still gives
the recorded number of training images).  For a fine-tuned model its base model's record
counts too.  Where the record cannot tell, nothing is claimed: a false warning would steer
users away from exactly the held-out images they should use.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.files import as_written
from ..training.splits import read_manifest_sources, split_by_sources
from ..training.trained_files import file_digest, trained_digests

__all__ = ["TrainedOnWarning", "trained_on", "warn_if_trained_on"]


class TrainedOnWarning(UserWarning):
    """Images given for evaluation or calibration were used to train the model."""


def _folders(data: Any) -> list[Path]:
    """A record's data folders, each as written (links kept) and resolved; [] for anything else."""
    items = [data] if isinstance(data, (str, os.PathLike)) else data if isinstance(data, (list, tuple)) else []
    paths = [Path(str(d)).expanduser() for d in items if isinstance(d, (str, os.PathLike))]
    return list(dict.fromkeys([*(as_written(p) for p in paths), *(p.resolve() for p in paths)]))


def _inside(names: tuple[Path, Path], folders: list[Path]) -> bool:
    """Whether an image, by either of its names (as given, resolved), lies in one of ``folders``:
    training walks linked sub-folders, so an image may be named through a link."""
    return any(name == folder or folder in name.parents for name in names for folder in folders)


def _manifest_candidates(recorded: str, folders: list[Path]) -> list[Path]:
    """Where a split's manifest may be: as recorded (absolute, or relative to where training ran,
    the current folder if it is the same), else that relative path from a data folder or one above it."""
    path = Path(recorded)
    if path.is_absolute():
        return [path]
    return list(dict.fromkeys([path, *(up / path for folder in folders for up in (folder, *folder.parents))]))


def _training_files(record: dict[str, Any], folders: list[Path]) -> set[Path] | None:
    """The training side of a split (:func:`napari_colorize.training.splits.split_by_sources`,
    as training made it); None when its manifest is not found or is not the one it was made
    from (another number of training images)."""
    held = {str(s) for key in ("val_sources", "test_sources") if isinstance(record.get(key), (list, tuple))
            for s in record[key]}
    for manifest in _manifest_candidates(str(record.get("manifest") or ""), folders):
        if not manifest.is_file():
            continue
        try:
            files, sources, links = read_manifest_sources(manifest)
            fold = split_by_sources(sources, held, links)
        except (OSError, ValueError, csv.Error):
            continue
        root = manifest.resolve().parent
        train = {(root / files[i]).resolve() for i in fold.train}  # as counted when recorded: distinct files
        # Models of earlier versions recorded the manifest's training side as train_images.
        if record.get("split_images", record.get("train_images")) not in (None, len(train)):
            continue  # a manifest of another corpus, or rebuilt since
        return train
    return None


def _used(record: dict[str, Any], names: list[tuple[Path, Path]], base: bool) -> set[Path]:
    """The resolved names of the images that the run of one training ``record`` trained on."""
    digests = trained_digests(record.get("trained_files"))
    if digests is not None:  # the files the run trained on, as it recorded them
        return {resolved for _, resolved in names if file_digest(resolved) in digests}
    # A record of an earlier version (see the module docstring): what its folders and split tell.
    folders = _folders(record.get("data"))
    inside = {resolved for given, resolved in names if folders and _inside((given, resolved), folders)}
    if not inside or (base and "held_out" not in record):
        return set()  # until 2026-12 a fine-tuned model's record of its base left out the split: it cannot tell
    held_out = record.get("held_out")
    if not isinstance(held_out, dict):
        return inside  # trained on every image of its folders
    files = _training_files(held_out, folders)
    return set() if files is None else inside & files


def trained_on(training: Any, paths: Iterable[str | os.PathLike | None]) -> list[Path]:
    """Those of ``paths`` (resolved) that a model's training record (``model.config.training``)
    says it trained on: the files it recorded (``trained_files``); for records without
    them, inside one of its data folders and, with a source-grouped split (``held_out``),
    on the split's training side; for a fine-tuned model also what its base model trained
    on (``init_training``, the same way).  Empty where the record cannot tell."""
    records, record, base = [], training, False
    while isinstance(record, dict) and len(records) < 16:
        records.append((record, base))
        record, base = record.get("init_training"), True
    if not any(_folders(r.get("data")) or "trained_files" in r for r, _ in records):
        return []
    names = [(as_written(Path(p).expanduser()), Path(p).expanduser().resolve()) for p in paths if p is not None]
    used: set[Path] = set()
    for record, base in records:
        used |= _used(record, names, base)
    return [resolved for _, resolved in names if resolved in used]


def warn_if_trained_on(model: Any, paths: Iterable[str | os.PathLike | None], task: str) -> None:
    """One :class:`TrainedOnWarning` when any of ``paths`` trained ``model`` (a loaded model).

    Never raises: it only advises, and odd metadata must not stop an evaluation.
    """
    paths = list(paths)
    try:
        used = trained_on(getattr(getattr(model, "config", None), "training", None), paths)
    except Exception:  # noqa: BLE001 - see the docstring
        return
    if used:
        source = getattr(model, "source", None)  # named: with several models compared, which one
        named = f", {source}" if isinstance(source, (str, os.PathLike)) else ""
        warnings.warn(f"{len(used)} of the {len(paths)} images {task} were used to train this model{named} "
                      f"(e.g. {used[0]}); "
                      "a model looks better and more certain on its training images than on new ones: use images "
                      "from other sources", TrainedOnWarning, stacklevel=3)
