"""Which images train, which validate and which are kept for testing: a source-grouped split.

Validation that shares sources with training measures memory, not generalisation (the
first default model beat gray on its own packages and lost to it on new photographs).
:func:`resolve_split` applies ``--val-sources`` / ``--val-fold K/N`` (and ``--hold-out``
folds) of a corpus manifest to the scanned training files, so no source validated or
tested on contributes a training image.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig, parse_fold
from .data import find_manifest
from .splits import read_manifest_sources, source_folds, split_by_sources

__all__ = ["HeldOut", "resolve_split", "keep_training_paths"]


@dataclass(frozen=True)
class HeldOut:
    """The outcome of a source-grouped split (paths are absolute)."""

    train: frozenset[Path]
    val: tuple[Path, ...]
    val_sources: tuple[str, ...]
    test_sources: tuple[str, ...]
    train_sources: tuple[str, ...]
    manifest: str
    dropped: int
    listed: frozenset[Path]

    def describe(self) -> str:
        return (f"source-grouped split of {self.manifest}: {len(self.train)} training images from "
                f"{len(self.train_sources)} sources; validation {len(self.val)} images from {', '.join(self.val_sources)}"
                + (f"; held out for testing: {', '.join(self.test_sources)}" if self.test_sources else "")
                + (f"; {self.dropped} composites straddling the split unused" if self.dropped else ""))

    def record(self) -> dict[str, object]:
        """What the model's metadata keeps, so its scores can be read against its split."""
        return {"manifest": self.manifest, "val_sources": list(self.val_sources), "test_sources": list(self.test_sources),
                "train_sources": list(self.train_sources), "train_images": len(self.train), "val_images": len(self.val)}


def _manifest_path(cfg: TrainConfig) -> Path:
    manifest = Path(cfg.manifest) if cfg.manifest else find_manifest(cfg.data)
    if manifest is None or not manifest.is_file():
        raise FileNotFoundError("--val-sources/--val-fold split a corpus by its manifest.csv (columns file, source), but "
                                + (f"{manifest} does not exist" if manifest else "none was found next to the data folders")
                                + "; give it with --manifest")
    return manifest


def resolve_split(cfg: TrainConfig) -> HeldOut | None:
    """The split asked for by ``cfg`` (None without ``val_sources``/``val_fold``).

    Raises
    ------
    FileNotFoundError, ValueError
        No manifest; unknown sources; a side left empty.
    """
    if cfg.val_sources is None and cfg.val_fold is None:
        return None
    manifest = _manifest_path(cfg)
    root = manifest.resolve().parent
    files, sources, links = read_manifest_sources(manifest)
    if cfg.val_fold is not None:
        k, n = parse_fold(cfg.val_fold)
        folds = source_folds(sources, n, cfg.seed, links)
        val_sources = folds[k].val_sources
        test_sources = tuple(sorted(s for f in cfg.hold_out for s in folds[f].val_sources))
    else:
        val_sources, test_sources = tuple(sorted(set(cfg.val_sources))), ()
    fold = split_by_sources(sources, set(val_sources) | set(test_sources), links)
    val_set, test_set = set(val_sources), set(test_sources)
    # A composite validates only if its backdrop is not a test source: choices made on it
    # would otherwise be made on held-out test pixels.
    val = tuple(root / files[i] for i in fold.val
                if sources[i] in val_set and not (links and links[i] in test_set))
    train = frozenset((root / files[i]).resolve() for i in fold.train)
    train_sources = tuple(sorted({sources[i] for i in fold.train}))
    if not val:
        raise ValueError(f"the validation sources {', '.join(val_sources)} have no images in {manifest}")
    listed = frozenset((root / f).resolve() for f in files)
    return HeldOut(train, val, val_sources, test_sources, train_sources, str(manifest), len(fold.dropped), listed)


def keep_training_paths(paths: list[Path], split: HeldOut | None) -> list[Path]:
    """The scanned files that may train: with a split, only its training side.

    Files the manifest does not list are left out with a warning: their source is
    unknown, so they could leak a held-out source into training.
    """
    if split is None:
        return paths
    kept = [p for p in paths if p.resolve() in split.train]
    unlisted = [p for p in paths if p.resolve() not in split.listed]
    if unlisted:
        print(f"warning: {len(unlisted)} scanned files are not in {split.manifest} and do not train "
              f"(e.g. {unlisted[0]}); add them to the manifest with their source", file=sys.stderr)
    return kept
