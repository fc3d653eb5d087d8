"""What a run trains and validates on: found and checked before any image is decoded.

Every folder is scanned, and every check that needs only file names is made (a
validation folder that does not exist, or one that shares images with the training
folders), before the training images are decoded: that can take minutes, and a mistake
in ``--val`` should not cost them.  What trained is then recorded as it was, not as the
manifest planned it: the split's images and sources (:meth:`.heldout.HeldOut.trained`);
the trainer records the files themselves (:mod:`.trained_files`, without those of weight 0).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import IMAGE_SUFFIXES, shown_path
from .config import TrainConfig
from .data import ImageSet, load_image_set, scan_images, skipped_counts
from .heldout import HeldOut, keep_training_paths, resolve_split
from .validation import load_validation_images

__all__ = ["RunInputs", "load_inputs"]


@dataclass
class RunInputs:
    """The decoded training images, the split (told what trained) and the validation images."""

    images: ImageSet
    split: HeldOut | None
    val_images: list[np.ndarray]


def load_inputs(cfg: TrainConfig) -> RunInputs:
    """Scan and check the training and validation files, then decode them.

    Raises
    ------
    FileNotFoundError, ValueError
        A folder missing or without images, too few usable images, ``--val`` sharing
        images with the training folders while early stopping chooses on it.
    """
    split = resolve_split(cfg)
    paths = keep_training_paths(scan_images(cfg.data, report=_note), split)
    val_paths, val_label = _validation_files(cfg, split)
    _check_overlap(cfg, val_paths, paths)
    images = _load_training_images(cfg, paths)
    if split is not None:
        split = split.trained(images.paths)
    val_images = load_validation_images(val_paths, cfg.val_images, label=val_label) if val_paths else []
    return RunInputs(images, split, val_images)


def _validation_files(cfg: TrainConfig, split: HeldOut | None) -> tuple[list[Path], str]:
    """The validation files (the split's, or those in ``--val``) and how to name them in an error."""
    if split is not None:
        return list(split.val), f"the validation sources {', '.join(split.val_sources)}"
    if not cfg.val:
        return [], ""
    folder = Path(cfg.val).expanduser()
    advice = "give --val a folder of colour images that are not in the training folders"
    if not folder.exists():
        raise FileNotFoundError(f"the validation folder {cfg.val} (--val) does not exist; {advice}")
    try:
        return scan_images([folder], report=_note), f"the validation folder {cfg.val}"
    except ValueError:  # scan_images' words are about training data
        raise ValueError(f"the validation folder {cfg.val} (--val) holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                         f"{advice}") from None


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _check_overlap(cfg: TrainConfig, val_paths: list[Path], train_paths: list[Path]) -> None:
    """Validation images that also train (``--val`` is, or holds, a training folder).

    Their scores flatter the model, so they are warned about; with ``--early-stop`` the run
    is refused: it would keep the weights that fit the training images best, the very choice
    held-out images are there to make, and the model file would silently be the wrong one.
    """
    if not cfg.val:
        return  # a source-grouped split is disjoint by construction
    shared = sorted({p.resolve() for p in val_paths} & {p.resolve() for p in train_paths})
    if not shared:
        return
    what = (f"{len(shared)} of the {len(val_paths)} images in the validation folder {cfg.val} (--val) are also in the "
            f"training folders (e.g. {shared[0]})")
    advice = "give --val a folder of images that are not in the training folders"
    if cfg.early_stop:
        raise ValueError(f"{what}: --early-stop would keep the weights that fit the training images best, not those "
                         f"that do best on new images; {advice}")
    print(f"warning: {what}: their validation scores will look better than on new images; {advice}", file=sys.stderr)


def _load_training_images(cfg: TrainConfig, paths: list[Path]) -> ImageSet:
    images = load_image_set(paths, max_side=cfg.max_side, min_side=cfg.crop, progress=cfg.progress,
                            report=lambda message: print(f"warning: {message}", file=sys.stderr),
                            shown=lambda path: shown_path(path, cfg.data))
    counts = skipped_counts(images)
    if len(images) == 0 and counts.get("too small") and counts["too small"] + counts.get("gray", 0) + counts.get("broken", 0) == len(paths):
        sizes = [int(m.split()[2]) for _, m in images.skipped["too small"]]
        raise ValueError(f"crop {cfg.crop} is larger than every image (largest short side {max(sizes)} px after "
                         f"reduction to a long side of at most {cfg.max_side} px); use --crop {max(32, max(sizes) // 32 * 32)} "
                         "or less, or larger images" + (" (or raise --max-side)" if max(sizes) >= cfg.max_side * 0.5 else ""))
    if len(images) < cfg.min_images:
        raise ValueError(f"too few usable colour images: found {len(images)} of {len(paths)} files "
                         f"({images.summary()}), need at least {cfg.min_images}")
    return images
