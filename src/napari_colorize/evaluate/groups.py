"""Which group an evaluated image belongs to: a parent folder's name, or a corpus manifest's column.

``--group-by`` specs (:func:`group_key`):

* ``level:N`` or ``N`` -- the name of the N-th folder above the file (1: the file's own
  folder, 2: the folder above it, ...), counted on the absolute path, up to a folder given
  as data (:func:`check_level_inside`).
* ``manifest:COLUMN=MANIFEST.csv``, ``manifest:COLUMN`` or ``COLUMN`` -- a column of a
  corpus ``manifest.csv`` (``scripts/build_corpus.py``), whose ``file`` column holds
  paths relative to the manifest's folder.  Without a manifest named, the nearest
  ``manifest.csv`` in the image's folder or a folder above it is used.

Kept free of :mod:`napari_colorize.training` (evaluation is the lower layer); the manifest
reader is :func:`napari_colorize.io.read_manifest_column`, shared with training's weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import as_written, find_manifest_above, read_manifest_column

__all__ = ["GroupSpec", "check_level_inside", "group_key", "parse_group_by"]

@dataclass(frozen=True)
class GroupSpec:
    """A parsed ``--group-by``: ``level`` (folder level) or ``column`` (+ ``manifest``) is set."""

    level: int | None = None
    column: str | None = None
    manifest: Path | None = None

    @property
    def label(self) -> str:
        return f"level:{self.level}" if self.level is not None else f"manifest:{self.column}"


def parse_group_by(spec: str, manifest: str | os.PathLike | None = None) -> GroupSpec:
    """Parse a ``--group-by`` spec (see the module docstring); ``manifest`` is ``--manifest``.

    Raises
    ------
    ValueError
        For a level below 1, an empty column, or two different manifests named.
    """
    text = str(spec).strip()
    m = re.fullmatch(r"(?:level:)?\s*(-?\d+)", text)
    if m:
        level = int(m.group(1))
        if level < 1:
            raise ValueError(f"--group-by {spec!r}: the level must be 1 (the file's folder) or more")
        if manifest is not None:
            raise ValueError(f"--manifest is only used with --group-by manifest:COLUMN, not with {spec!r}")
        return GroupSpec(level=level)
    if text.startswith("level:"):
        raise ValueError(f"--group-by {spec!r}: write level:N with a whole number N >= 1, e.g. level:1")
    text = text.removeprefix("manifest:")
    column, _, path = text.partition("=")
    column, path = column.strip(), path.strip()
    if not column:
        raise ValueError(f"--group-by {spec!r}: name a manifest column, e.g. manifest:source")
    named = Path(path).expanduser() if path else None
    given = Path(manifest).expanduser() if manifest is not None else None
    if named is not None and given is not None and named.resolve() != given.resolve():
        raise ValueError(f"two manifests named: {named} (in --group-by) and {given} (--manifest); give one")
    return GroupSpec(column=column, manifest=named or given)


def group_key(spec: str | GroupSpec, manifest: str | os.PathLike | None = None) -> Callable[[dict[str, Any]], str]:
    """A function ``row -> group name`` for a ``--group-by`` spec; rows need a ``path``.

    The function raises ValueError (with what to do) for an image without a file path,
    a level deeper than the path, or an image the manifest does not list; a manifest
    is matched by absolute path, else by a file name it lists once.
    """
    gs = spec if isinstance(spec, GroupSpec) else parse_group_by(spec, manifest)
    if gs.level is not None:
        return lambda row: _folder(_path_of(row, gs), gs.level)
    found: dict[Path, Path | None] = {}
    tables: dict[Path, tuple[dict[Path, str], dict[str, list[str]]]] = {}

    def key(row: dict[str, Any]) -> str:
        written = _path_of(row, gs)
        path = written.resolve()
        man = gs.manifest
        if man is None:
            if written.parent not in found:
                found[written.parent] = find_manifest_above(written.parent)
            man = found[written.parent]
            if man is None:
                raise ValueError(f"no manifest.csv next to or above {path}; name one with --manifest "
                                 "(or group by folder with --group-by level:1)")
        man = Path(man).resolve()
        if man not in tables:
            tables[man] = read_manifest_column(man, gs.column)
        by_path, by_name = tables[man]
        if path in by_path:
            return by_path[path]
        if len(by_name.get(path.name, [])) == 1:
            return by_name[path.name][0]
        raise ValueError(f"{path} is not in {man} (its 'file' column, relative to {man.parent}); add it to the "
                         "manifest, name the right one with --manifest, or group by folder with --group-by level:1")

    return key


def _path_of(row: dict[str, Any], gs: GroupSpec) -> Path:
    if not row.get("path"):
        raise ValueError(f"image {row.get('name')!r} has no file path (an array), so --group-by {gs.label} "
                         "cannot place it; evaluate files, or group rows with EvaluationTable.grouped")
    return Path(row["path"]).expanduser()


def _folder(path: Path, level: int) -> str:
    parents = [p for p in as_written(path).parents if p.name]  # the folders as written
    if level > len(parents):
        raise ValueError(f"--group-by level:{level} is deeper than {path} ({len(parents)} named folders above "
                         f"the file); use a level of 1 to {len(parents)}")
    return parents[level - 1].name


def check_level_inside(spec: GroupSpec, paths: list[str | None], data: Any) -> None:
    """Refuse a ``level:N`` that climbs above a folder given as data: every image would fall in
    one group named after a folder the user never gave (``level:5`` on ``photos/a/b/x.png``
    gave one group, "tmp").  The given folder itself is the highest level allowed.

    Raises
    ------
    ValueError
        Naming the folder and the levels that stay inside it.
    """
    if spec.level is None:
        return
    items = data if isinstance(data, (list, tuple)) else [data]
    folders = [as_written(Path(x).expanduser()) for x in items
               if isinstance(x, (str, os.PathLike)) and Path(x).expanduser().is_dir()]
    for path in filter(None, paths):
        written = as_written(path)
        # The highest given folder holding the image bounds it (folders may be nested).
        depths = [(len(written.parent.relative_to(f).parts) + 1, f) for f in folders if f in written.parents]
        if depths:
            depth, folder = max(depths, key=lambda d: d[0])  # the folder itself counts
            if spec.level > depth:
                raise ValueError(f"--group-by level:{spec.level} climbs above the folder {folder} that was given "
                                 f"(its image {written.relative_to(folder)} has {depth} folder level(s) up to it); "
                                 f"use a level of 1 to {depth}, or give the folder above")
