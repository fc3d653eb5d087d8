"""Training data: colour images from folders, random crops and sparse targets.

The paper's training (Larsson et al. 2016, section 3.3): random crops of colour
images with random scale and mirroring; the network sees the gray version
``(R + G + B) / 3``; the loss is computed at 128 random pixels per image, whose
targets are histograms of the true colour in a small window around the pixel.

Files are found and decoded by :mod:`napari_colorize.io` (:func:`~napari_colorize.io.scan_images`,
:func:`~napari_colorize.io.read_rgb`, re-exported here).  Images are decoded once,
reduced so that their long side is at most ``max_side`` pixels and kept in memory as
uint8 (a 512-pixel image is under 1 MB): decoding a large wallpaper JPEG takes tens
of milliseconds or more, while a crop of a decoded image with its targets takes about
2 ms (measured: 350-600 crops/s on 2 cores, against 20-45 images/s for the compact
network's training step).  Every crop is a pure function of ``(seed, step, slot)``
(:class:`StepBatchSampler`, :class:`ColorCropDataset`), so a run resumed from a
checkpoint sees exactly the batches of an uninterrupted one, whatever the number of
loader workers.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import IMAGE_SUFFIXES, ImageReadError, is_gray, read_rgb, read_rgb_noted, refuse_empty, scan_images
from ..model.hypercolumn import context_overview
from ..spaces import SpaceSpec, target_indices
from .degrade import degrade_gray
from .manifest import find_manifest, read_manifest_weights

__all__ = [
    "IMAGE_SUFFIXES",
    "scan_images",
    "read_rgb",
    "is_gray",
    "ImageSet",
    "load_image_set",
    "read_manifest_weights",
    "find_manifest",
    "StepBatchSampler",
    "ColorCropDataset",
    "point_histograms",
    "weight_summary",
    "skipped_counts",
]

@dataclass
class ImageSet:
    """Decoded colour images kept in memory, and what was left out.

    Attributes
    ----------
    images : list of uint8 arrays (H, W, 3)
    paths : list of Path
        The file of each image.
    skipped : dict of str -> list of (Path, str)
        Files left out, by reason ("broken", "gray", "too small"), with a message.
    """

    images: list[np.ndarray]
    paths: list[Path]
    skipped: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """A digest of the file list and the decoded pixels (checked when resuming).

        The pixels, not only the sizes: an image replaced by another of the same size (a
        re-export, a channel swap) is other training data, and resuming on it is refused.
        """
        h = hashlib.blake2b(digest_size=8)
        for p, im in zip(self.paths, self.images):
            h.update(f"{p}|{im.shape}\n".encode())
            h.update(np.ascontiguousarray(im).data)
        return h.hexdigest()

    def legacy_fingerprint(self) -> str:
        """The digest of checkpoints written before the pixels were part of it (file list
        and sizes only), so that their runs still resume."""
        h = hashlib.sha256()
        for p, im in zip(self.paths, self.images):
            h.update(f"{p}|{im.shape}\n".encode())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        parts = [f"{len(self)} usable colour images"]
        parts += [f"{len(v)} {k}" for k, v in self.skipped.items() if v]
        return ", ".join(parts)


def load_image_set(paths: Sequence[Path], max_side: int | None = 512, min_side: int = 0,
                   threads: int | None = None, progress: bool = False,
                   report: Callable[[str], None] | None = None, shown: Callable[[Path], str] = str) -> ImageSet:
    """Decode ``paths`` in parallel threads; skip broken, gray and too-small images.

    Parameters
    ----------
    paths : sequence of Path
    max_side : int or None
        Images are reduced so their long side is at most this many pixels.
    min_side : int
        Images whose short side (after reduction) is below this are skipped
        (they cannot give a crop of that size).
    threads : int, optional
        Decoding threads (Pillow and tifffile release the GIL); default: CPU count.
    progress : bool
        Show a progress bar.
    report : callable, optional
        Called with a message for each skipped file (default: :func:`warnings.warn`).
    shown : callable
        How a message names a file (default: its path as given; the CLI's: below the
        folder the user gave, :func:`~napari_colorize.io.shown_path`).

    Returns
    -------
    ImageSet
        In the order of ``paths``; skipped files are reported with a warning each.
    """
    def load(path: Path):
        try:
            refuse_empty(path)  # read_rgb would only say that no decoder knows it
            rgb, note = read_rgb_noted(path, max_side)
        except ImageReadError as err:  # our own words, naming the file and what to do
            return path, None, "broken", str(err)
        except Exception as err:  # noqa: BLE001 -- any decoding failure means "broken file" here
            return path, None, "broken", f"{type(err).__name__}: {err}"
        if is_gray(rgb):
            return path, None, "gray", "no colour (gray image)"
        if min(rgb.shape[:2]) < min_side:
            return path, None, "too small", f"short side {min(rgb.shape[:2])} px < crop {min_side} px"
        # The bit depth assumed for a kept image (reported from this thread, not warned
        # from the decoding one).
        return path, rgb, None, note or ""

    threads = threads or max(1, os.cpu_count() or 1)
    out = ImageSet([], [], {"broken": [], "gray": [], "too small": []})
    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(load, paths)
        if progress:
            from tqdm.auto import tqdm
            results = tqdm(results, total=len(paths), desc="decoding images", unit="img")
        for path, rgb, reason, message in results:
            if rgb is None:
                out.skipped[reason].append((path, message))
                (report or _warn)(f"skipping {shown(path)}: {message}")
            else:
                if message:
                    (report or _warn)(message)
                out.images.append(rgb)
                out.paths.append(path)
    return out


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(image index, crop seed)`` as a pure function of the step.

    Without weights every epoch is a fresh permutation of the images (each image
    once per epoch); with weights, images are drawn with replacement in proportion
    to them (like :class:`torch.utils.data.WeightedRandomSampler`).  Because batch
    ``s`` depends only on ``(seed, s)``, starting at ``start`` is an exact resume.

    Parameters
    ----------
    n : int
        Number of images.
    batch_size : int
    steps : int
        Total steps; batches ``start .. steps - 1`` are yielded.
    seed : int
    weights : array_like, optional
        Sampling weights per image (>= 0, not all 0).
    start : int
        First step (the sampler position when resuming).
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int = 0,
                 weights: np.ndarray | None = None, start: int = 0) -> None:
        self.n, self.batch_size, self.steps, self.seed, self.start = n, batch_size, steps, seed, start
        self.p = None if weights is None else _probabilities(np.asarray(weights, np.float64))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def _indices(self, step: int) -> np.ndarray:
        if self.p is not None:
            return _rng(self.seed, 1, step).choice(self.n, size=self.batch_size, p=self.p)
        first = step * self.batch_size
        positions = np.arange(first, first + self.batch_size)
        epochs, offsets = positions // self.n, positions % self.n
        perms = {e: _rng(self.seed, 2, e).permutation(self.n) for e in np.unique(epochs)}
        return np.array([perms[e][o] for e, o in zip(epochs, offsets)])

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The ``(image index, crop seed)`` pairs of batch ``step``."""
        seeds = _rng(self.seed, 3, step).integers(0, 2**31 - 1, size=self.batch_size)
        return [(int(i), int(s)) for i, s in zip(self._indices(step), seeds)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            yield self.batch(step)


def point_histograms(index: torch.Tensor, points_yx: torch.Tensor, k: int, window: int) -> torch.Tensor:
    """Histograms of bin indices in a ``window x window`` box around given pixels.

    Equal to :func:`napari_colorize.bins.windowed_histogram` sampled at the points,
    without building the ``(K, H, W)`` volume: ``R * R`` look-ups per point.

    Parameters
    ----------
    index : torch.Tensor, shape (H, W), integer
        Bin index per pixel.
    points_yx : torch.Tensor, shape (N, 2), integer
        Pixel (row, column) of each point.
    k : int
        Number of bins.
    window : int
        Odd window size R (1: one-hot).

    Returns
    -------
    torch.Tensor, shape (N, K), float32
        Each row sums to 1; near the border only pixels inside the image count.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    h, w = index.shape
    r = window // 2
    d = torch.arange(-r, r + 1)
    ys = points_yx[:, 0, None, None] + d[None, :, None]  # (N, R, 1)
    xs = points_yx[:, 1, None, None] + d[None, None, :]  # (N, 1, R)
    inside = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).reshape(len(points_yx), -1).float()
    idx = index[ys.clamp(0, h - 1), xs.clamp(0, w - 1)].reshape(len(points_yx), -1).long()
    hist = torch.zeros(len(points_yx), k).scatter_add_(1, idx, inside)
    return hist / hist.sum(dim=1, keepdim=True)


class ColorCropDataset(torch.utils.data.Dataset):
    """Random crops of in-memory colour images with sparse histogram targets.

    An item is addressed by ``(image index, crop seed)`` (see
    :class:`StepBatchSampler`) and returns a dict:

    ``gray`` (1, S, S) float32
        The crop's ``(R + G + B) / 3``, the network input.
    ``points`` (N, 2) float32
        (x, y) of the sampled pixels' centres, ``px + 0.5``.
    ``target_<head>`` (N, K) float32
        Target histogram per head of the colour space.
    ``chroma`` (N,) float32
        True chroma ``max - min`` in [0, 1] at the points (weights the hue loss).
    ``lightness`` (N,) float32
        Gray value at the points (for :func:`napari_colorize.losses.lightness_weight`).

    Parameters
    ----------
    images : list of uint8 arrays (H, W, 3)
    space : SpaceSpec
    crop : int
        Crop side S in pixels.
    points : int
        Points per crop (128 in the paper).
    scale : (float, float)
        Range of the random scale: a crop of ``S / scale`` source pixels is resized to
        S (1.0 = native resolution; smaller = zoomed out, more context).  It is
        clipped per image so that the crop fits inside the image.
    mirror : bool
        Flip horizontally with probability 1/2.
    window : int
        Target window R (1 = one-hot targets at the pixel).
    degrade : float
        Probability of each archival degradation of the gray input
        (:func:`.degrade.degrade_gray`); targets and ``lightness`` stay clean.
    context : int
        With a context model, the side of the overview of the *whole* image that each
        crop is returned with (``overview`` (1, side, side), degraded like the crop, with
        its own draws); 0: none.
    """

    def __init__(self, images: Sequence[np.ndarray], space: SpaceSpec, crop: int, points: int = 128,
                 scale: tuple[float, float] = (0.5, 1.0), mirror: bool = True, window: int = 1,
                 degrade: float = 0.0, context: int = 0) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {scale}")
        if not 0 <= degrade <= 1:
            raise ValueError(f"degrade must be a probability in [0, 1], got {degrade}")
        self.images, self.space, self.crop, self.points = images, space, crop, points
        self.scale, self.mirror, self.window, self.degrade = scale, mirror, window, degrade
        self.context = context

    def overview(self, index: int) -> torch.Tensor:
        """The gray overview ``(1, side, side)`` of the whole image ``index`` (what inference sees)."""
        gray = torch.from_numpy(self.images[index]).float().mean(dim=-1).div_(255.0)
        return context_overview(gray[None, None], self.context)[0]

    def __len__(self) -> int:
        return len(self.images)

    def crop_rgb(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """A random crop ``(S, S, 3)`` float32 in [0, 1] of image ``index``."""
        img = self.images[index]
        h, w = img.shape[:2]
        s = self.crop
        # scale = S / source side; the source side must fit in the image.
        lo = max(self.scale[0], s / min(h, w))
        hi = max(lo, self.scale[1])
        scale = rng.uniform(lo, hi)
        side = int(min(h, w, max(s, round(s / scale))))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = torch.from_numpy(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])).float().div_(255.0)
        if side != s:
            patch = F.interpolate(patch.permute(2, 0, 1)[None], size=(s, s), mode="bilinear",
                                  antialias=True, align_corners=False)[0].permute(1, 2, 0).clamp_(0, 1)
        if self.mirror and rng.random() < 0.5:
            patch = patch.flip(1)
        return patch.contiguous()

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        rng = np.random.default_rng(seed)
        rgb = self.crop_rgb(index, rng)
        s = self.crop
        flat = rng.choice(s * s, size=self.points, replace=self.points > s * s)
        yx = torch.from_numpy(np.stack((flat // s, flat % s), axis=1)).long()
        gray = rgb.mean(dim=-1)
        out = {"points": yx.flip(1).float() + 0.5}
        rgb_points = rgb[yx[:, 0], yx[:, 1]]
        if self.window == 1:
            indices, chroma = target_indices(rgb_points, self.space)
            for head, k in self.space.heads.items():
                out[f"target_{head}"] = F.one_hot(indices[head].long(), k).float()
        else:
            indices, _ = target_indices(rgb, self.space)
            chroma = rgb_points.max(dim=-1).values - rgb_points.min(dim=-1).values
            for head, k in self.space.heads.items():
                out[f"target_{head}"] = point_histograms(indices[head], yx, k, self.window)
        out["chroma"] = chroma.float()
        out["lightness"] = gray[yx[:, 0], yx[:, 1]]
        # Last, so the draws above (crop, points) do not depend on the degradation setting.
        out["gray"] = degrade_gray(gray, rng, self.degrade)[None]
        if self.context:
            out["overview"] = degrade_gray(self.overview(index)[0], rng, self.degrade)[None]
        return out


def weight_summary(weights: np.ndarray | None) -> str:
    """One line describing sampling weights (for the log)."""
    if weights is None:
        return "uniform sampling"
    w = np.asarray(weights)
    return f"weighted sampling (min {w.min():.3g}, median {np.median(w):.3g}, max {w.max():.3g})"


def skipped_counts(image_set: ImageSet) -> dict[str, int]:
    """How many files were skipped for each reason."""
    return dict(Counter({k: len(v) for k, v in image_set.skipped.items()}))


def _probabilities(weights: np.ndarray) -> np.ndarray:
    """Sampling weights as probabilities; scaled by the largest first, so that huge weights
    (1e308) do not overflow the sum into NaN ("Probabilities contain NaN")."""
    scaled = weights / weights.max()
    return scaled / scaled.sum()
