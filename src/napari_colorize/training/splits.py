"""Validation by source: folds that hold out whole sources, never single images.

A *source* is a package or a distinct photo set within one (a GCompris
activity, Stellarium's landscapes): images of one source share photographers,
subjects, cameras and processing, so a model scored on held-out images of a
source it trained on looks better than it will on a user's photographs.  Here
every source is either wholly in a fold's validation set or wholly absent from
it, like scikit-learn's ``GroupKFold``.

Composites (a stamp pasted onto a backdrop photograph) carry the backdrop's
source as a *link*: such an image is dropped from a fold when its own source
and its backdrop's source fall on different sides, because its pixels would
then appear on both.  A source whose every image is linked (the stamp
composites) is never validated on, only trained on: its images cannot all be
held out without their backdrops.

The corpus manifest (``scripts/build_corpus.py``) has the columns this module
reads: ``file``, ``source`` and ``backdrop_source``.  The path column is found as
every manifest reader finds it (:func:`napari_colorize.io.manifest_path_column`:
``path`` or ``file`` and a few other names), so a user's own ``path,source`` CSV splits too.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Collection, Sequence

import numpy as np

from ..io.manifest import manifest_path_column, read_manifest_rows

__all__ = ["Fold", "manifest_split", "read_manifest_sources", "source_folds", "sources_by_path",
           "split_by_sources"]


@dataclass(frozen=True)
class Fold:
    """One train/validation split.

    Attributes
    ----------
    train, val
        Sorted indices into the image list.
    val_sources
        The sources validated on, sorted.
    dropped
        Indices used on neither side (composites linking the two sides).
    """

    train: np.ndarray
    val: np.ndarray
    val_sources: tuple[str, ...]
    dropped: np.ndarray


def _check_links(sources: Sequence[str], links: Sequence[str] | None) -> list[str]:
    """The per-image link list, empty strings where an image has no link."""
    if links is None:
        return [""] * len(sources)
    if len(links) != len(sources):
        raise ValueError(f"links has {len(links)} entries for {len(sources)} images")
    return [link or "" for link in links]


def split_by_sources(sources: Sequence[str], val_sources: Collection[str],
                     links: Sequence[str] | None = None) -> Fold:
    """Put every image of ``val_sources`` in validation and the rest in training.

    Parameters
    ----------
    sources
        The source of each image.
    val_sources
        Sources to validate on; each must occur in ``sources``.
    links
        Optional second source per image (a composite's backdrop), "" for none.
        An image is kept only if its source and its link are on the same side.

    Returns
    -------
    Fold

    Raises
    ------
    ValueError
        When a validation source has no image, or when nothing is left for
        training or for validation.
    """
    held = set(val_sources)
    unknown = sorted(held - set(sources))
    if unknown:
        raise ValueError(f"validation sources not in the data: {', '.join(unknown)}")
    train, val, dropped = [], [], []
    for i, (src, link) in enumerate(zip(sources, _check_links(sources, links))):
        side = src in held
        if link and (link in held) != side:
            dropped.append(i)
        elif side:
            val.append(i)
        else:
            train.append(i)
    if not train or not val:
        raise ValueError(f"holding out {sorted(held)} leaves {len(train)} training and "
                         f"{len(val)} validation images; both must be non-empty")
    as_array = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Fold(as_array(train), as_array(val), tuple(sorted(held)), as_array(dropped))


def assign_sources(sources: Sequence[str], n_folds: int, seed: int = 0) -> dict[str, int]:
    """Map each source to the fold that validates it, balancing image counts.

    Greedy, as ``GroupKFold``: sources in decreasing order of image count go
    to the fold with the fewest images so far.  ``seed`` shuffles the order of
    equally large sources and breaks ties between equally full folds, so
    different seeds give different (equally balanced) folds.

    Raises
    ------
    ValueError
        When ``n_folds`` < 2 or there are fewer distinct sources than folds.
    """
    counts = Counter(sources)
    if n_folds < 2:
        raise ValueError(f"source-grouped validation needs at least 2 folds, got {n_folds}")
    if len(counts) < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} distinct sources, but the "
                         f"data has {len(counts)}: {', '.join(sorted(counts))}")
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    order = [names[i] for i in rng.permutation(len(names))]
    order.sort(key=lambda s: -counts[s])  # stable: the shuffle only orders ties
    totals = np.zeros(n_folds, dtype=np.int64)
    tiebreak = rng.permutation(n_folds)
    fold_of: dict[str, int] = {}
    for name in order:
        # Smallest total first, then the seeded tie-break rank.
        fold = int(min(range(n_folds), key=lambda f: (totals[f], tiebreak[f])))
        fold_of[name] = fold
        totals[fold] += counts[name]
    return fold_of


def source_folds(sources: Sequence[str], n_folds: int, seed: int = 0,
                 links: Sequence[str] | None = None) -> list[Fold]:
    """Source-grouped K-fold cross-validation.

    Every source is validated in exactly one fold and never trains the model
    it validates.  Folds are balanced by image count (``assign_sources``) and
    deterministic for a given ``seed``.  With ``links``, sources whose every
    image is linked (composites) are not validated on; they only train.

    Parameters
    ----------
    sources
        The source of each image (e.g. the manifest's ``source`` column).
    n_folds
        Number of folds, at least 2 and at most the number of sources.
    seed
        Seed of the tie-breaking shuffle.
    links
        Optional backdrop source per image (see :func:`split_by_sources`).

    Returns
    -------
    list of Fold
        ``n_folds`` folds, in fold order.
    """
    links = _check_links(sources, links)
    # Only sources with at least one unlinked image can be validated on.
    eligible = {s for s, link in zip(sources, links) if not link}
    fold_of = assign_sources([s for s in sources if s in eligible], n_folds, seed)
    folds = []
    for f in range(n_folds):
        held = [s for s, g in fold_of.items() if g == f]
        folds.append(split_by_sources(sources, held, links))
    return folds


def read_manifest_sources(manifest: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """Image paths (as written: relative to the manifest's folder, or absolute), sources
    and backdrop sources from a corpus ``manifest.csv``.

    Raises
    ------
    ValueError
        When the manifest lists no images, or has no path column or no ``source`` column.
    """
    columns, rows = read_manifest_rows(manifest)
    if not rows:  # it said "validation sources not in the data"
        raise ValueError(f"manifest {manifest} lists no images (it has {'only a header' if columns else 'no rows'}); "
                         "give one row per image: its path and its source")
    col = manifest_path_column(manifest, columns)
    if "source" not in columns:
        raise ValueError(f"{manifest} has no 'source' column (it has {columns}); add one naming each image's "
                         "source (photo set, lab, camera), or rebuild it with scripts/build_corpus.py")
    return ([r[col] for r in rows], [r["source"] for r in rows], [r.get("backdrop_source", "") for r in rows])


def sources_by_path(manifest: str | os.PathLike) -> dict[Path, str]:
    """``{absolute image path: source}`` for grouping evaluation results by source."""
    root = Path(manifest).resolve().parent
    files, sources, _ = read_manifest_sources(manifest)
    return {root / f: s for f, s in zip(files, sources)}


def manifest_split(manifest: str | os.PathLike, val_sources: Collection[str] | None = None,
                   n_folds: int | None = None, fold: int = 0, seed: int = 0,
                   ) -> tuple[list[Path], list[Path], tuple[str, ...]]:
    """Training and validation image paths of a corpus, split by source.

    Give either ``val_sources`` (hold these out) or ``n_folds`` and ``fold``
    (hold out fold ``fold`` of :func:`source_folds`).  Composites follow
    their backdrop (``backdrop_source`` column), as in :func:`split_by_sources`.

    Returns
    -------
    train_paths, val_paths
        Absolute paths (the manifest's ``file`` is relative to its folder).
    val_sources
        The sources held out.

    Raises
    ------
    ValueError
        When neither or both ways are given, or ``fold`` is out of range.
    """
    if (val_sources is None) == (n_folds is None):
        raise ValueError("give either val_sources or n_folds (with fold)")
    root = Path(manifest).resolve().parent
    files, sources, links = read_manifest_sources(manifest)
    if n_folds is not None:
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold {fold} is not in 0..{n_folds - 1}")
        chosen = source_folds(sources, n_folds, seed, links)[fold]
    else:
        chosen = split_by_sources(sources, val_sources, links)
    return ([root / files[i] for i in chosen.train], [root / files[i] for i in chosen.val],
            chosen.val_sources)
