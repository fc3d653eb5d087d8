"""Which images train, which validate and which are kept for testing: a source-grouped split.

Validation that shares sources with training measures memory, not generalisation (the
first default model beat gray on its own packages and lost to it on new photographs).
:func:`resolve_split` applies ``--val-sources`` / ``--val-fold K/N`` (and ``--hold-out``
folds) of a corpus manifest to the scanned training files, so no source validated or
tested on contributes a training image.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..io import IMAGE_SUFFIXES
from .config import TrainConfig, parse_fold
from .data import find_manifest
from .splits import read_manifest_sources, source_folds, split_by_sources

__all__ = ["HeldOut", "resolve_split", "keep_training_paths"]


@dataclass(frozen=True)
class HeldOut:
    """The outcome of a source-grouped split (paths are absolute).

    ``train`` and ``train_sources`` are the manifest's training side, ``source_of`` the
    source of each of its files (resolved).  Only some of them may train: the data
    folders given may hold only part of the corpus, and files are skipped (too small,
    gray, broken).  :meth:`trained` records those that did (``used``), and then
    :meth:`describe` and :meth:`record` tell of them alone.
    """

    train: frozenset[Path]
    val: tuple[Path, ...]
    val_sources: tuple[str, ...]
    test_sources: tuple[str, ...]
    train_sources: tuple[str, ...]
    manifest: str
    dropped: int
    listed: frozenset[Path]
    source_of: Mapping[Path, str] = field(default_factory=dict, compare=False)
    used: frozenset[Path] | None = None

    def trained(self, paths: Iterable[Path]) -> HeldOut:
        """This split, recording that ``paths`` (the images decoded for training) trained."""
        return replace(self, used=frozenset(Path(p).resolve() for p in paths))

    def _trained_images_and_sources(self) -> tuple[int, tuple[str, ...]]:
        if self.used is None:
            return len(self.train), self.train_sources
        return len(self.used), tuple(sorted({self.source_of[p] for p in self.used if p in self.source_of}))

    def describe(self) -> str:
        images, sources = self._trained_images_and_sources()
        return (f"source-grouped split of {self.manifest}: {images} training images from "
                f"{len(sources)} source{'' if len(sources) == 1 else 's'} ({_names(sources)}); validation {len(self.val)} images from "
                f"{', '.join(self.val_sources)}"
                + (f"; held out for testing: {', '.join(self.test_sources)}" if self.test_sources else "")
                + (f"; {self.dropped} composites straddling the split unused" if self.dropped else ""))

    def record(self) -> dict[str, object]:
        """What the model's metadata keeps, so its scores can be read against its split: the images
        and sources that trained (once :meth:`trained` has been told them; the manifest's training
        side before, as models of earlier versions recorded)."""
        images, sources = self._trained_images_and_sources()
        # split_images: the manifest's whole training side, by which a reader rebuilding the
        # split checks that it found the same manifest (train_images may be fewer).
        return {"manifest": self.manifest, "val_sources": list(self.val_sources), "test_sources": list(self.test_sources),
                "train_sources": list(sources), "train_images": images, "split_images": len(self.train),
                "val_images": len(self.val)}


def _names(sources: tuple[str, ...], most: int = 8) -> str:
    """Source names for a summary line: all of a few, the first ``most`` of many."""
    shown = ", ".join(sources[:most])
    return shown + (f", ... ({len(sources) - most} more)" if len(sources) > most else "")


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
    listed_val = [root / files[i] for i in fold.val if sources[i] in val_set and not (links and links[i] in test_set)]
    # A row may name a folder, a file since moved, or notes.txt: counted as validation images, they
    # made "validation 5 images" of 3, and a source of missing files failed as "no usable colour image".
    val = tuple(p for p in listed_val if _is_image_file(p))
    absent = [p for p in listed_val if not _is_image_file(p)]
    source_of = {(root / files[i]).resolve(): sources[i] for i in fold.train}
    train_sources = tuple(sorted(set(source_of.values())))
    if not listed_val:
        raise ValueError(f"the validation sources {', '.join(val_sources)} have no images in {manifest}")
    if absent:
        where = f"{len(absent)} of the {len(listed_val)} files {manifest} lists for the validation sources"
        if not val:
            raise FileNotFoundError(f"{where} are not image files (e.g. {absent[0]}); correct the manifest's file column "
                                    "(paths relative to its folder)")
        print(f"warning: {where} are not image files and do not validate (e.g. {absent[0]})", file=sys.stderr)
    listed = frozenset((root / f).resolve() for f in files)
    return HeldOut(frozenset(source_of), val, val_sources, test_sources, train_sources, str(manifest),
                   len(fold.dropped), listed, source_of)


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


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
