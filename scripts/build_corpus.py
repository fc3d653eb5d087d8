#!/usr/bin/env python3
"""Rebuild the training corpus for the default napari-colorize model.

The corpus is built *only* from openly licensed images that ship inside
scikit-image and a fixed list of Debian packages (see ``docs/corpus.md``).
Everything is deterministic given ``--seed``: the same inputs always give the
same files, split and sampling weights.

Pipeline
--------
1. ``apt-get download`` + ``dpkg -x`` each package into ``--cache`` (idempotent)
   and read licences from ``usr/share/doc/PKG/copyright``.
2. Collect raster images per source, with source-specific handling
   (panorama stitching for Stellarium, tiling for Marble, alpha stamps for
   Tux Paint) and drop non-photographs with measurable heuristics plus an
   explicit, reviewed exclude list.
3. Deduplicate with a 16x16 difference hash, keeping the largest original.
4. Resize (long side <= ``--max-side``, Lanczos), drop near-gray images, split
   train/val by a hash of the dedup group, composite Tux Paint stamps onto
   crops of same-split photos.
5. Compute hue statistics and per-image sampling weights that rebalance
   warm vs green vs blue content.
6. Write ``manifest.csv``, ``SOURCES.md`` and ``rejected.csv`` and print a summary.

Usage::

    python scripts/build_corpus.py --out /work/corpus [--cache DIR]
        [--max-side 512] [--val-fraction 0.12] [--seed 0]
"""

from __future__ import annotations

import argparse
import configparser
import csv
import fnmatch
import hashlib
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

# Some wallpapers and Marble textures exceed PIL's decompression-bomb guard;
# they are trusted distribution files, so lift the limit.
Image.MAX_IMAGE_PIXELS = None

# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------

#: Debian packages used, in the order they are processed.  ``marble-data`` in
#: Debian 12 only ships the handbook (screenshots); the satellite textures the
#: issue refers to live in ``marble-qt-data`` (same source package, same
#: copyright file), so that is what we use.  See docs/corpus.md.
WALLPAPERS: tuple[str, ...] = (
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
    "sway-backgrounds",
    "lomiri-wallpapers-20.04",
)
PACKAGES: tuple[str, ...] = WALLPAPERS + (
    "stellarium-data",
    "tuxpaint-stamps-default",
    "marble-qt-data",
    "opencv-doc",
)
WALLPAPER_PACKAGES = set(WALLPAPERS)

RASTER_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}

#: scikit-image sample images that are colour photographs and are bundled in
#: the wheel (no download needed), with the licence stated in each sample's
#: docstring.  Not used: ``stereo_motorcycle`` (Middlebury stereo data, no
#: clear licence), ``hubble_deep_field`` (essentially black), ``logo`` and
#: ``colorwheel`` (synthetic); the rest are grayscale or need a download.
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "immunohistochemistry": "public domain (no known copyright restrictions)",
    "retina": "CC0-1.0 (Wikimedia Commons, M. Haggstrom)",
}

# Exclude lists.  Every entry was inspected by eye on contact sheets (see
# docs/corpus.md).  Keys are fnmatch patterns on the path relative to the
# unpacked package root; values say why.  The heuristics in
# ``photo_verdict`` catch most flat/vector art; these lists catch the renders,
# paintings and smooth abstract art that heuristics cannot reliably reject.
EXCLUDE: dict[str, dict[str, str]] = {
    "gnome-backgrounds": {
        # GNOME 43 ships only abstract/rendered backgrounds.
        "*/adwaita-*": "abstract render",
        "*/grid-*": "abstract pattern",
        "*/licorice-*": "abstract pattern",
        "*/pixels-*": "illustration",
        "*/symbolic-*": "flat illustration",
        "*/truchet-*": "abstract pattern",
        "*/vnc-*": "flat colour",
        "*/wood-*": "rendered stripes, not a photograph",
    },
    "mate-backgrounds": {
        "*/mate/abstract/*": "abstract art",
        "*/mate/desktop/*": "logos / abstract renders",
    },
    "plasma-workspace-wallpapers": {
        "*/contents/screenshot.*": "preview thumbnail of a wallpaper",
        "*/Altai/*": "low-poly render",
        "*/Autumn/*": "painting",
        "*/Canopee/*": "illustration",
        "*/Cascade/*": "render",
        "*/Cluster/*": "abstract render",
        "*/ColorfulCups/*": "looks rendered (identical cups); excluded to be safe",
        "*/Elarun/*": "abstract",
        "*/Flow/*": "abstract",
        "*/FlyingKonqui/*": "cartoon",
        "*/Honeywave/*": "abstract",
        "*/IceCold/*": "abstract",
        "*/Kay/*": "abstract",
        "*/Kokkini/*": "abstract",
        "*/MilkyWay/*": "abstract render",
        "*/Opal/*": "abstract",
        "*/PastelHills/*": "low-poly render",
        "*/Patak/*": "abstract",
        "*/SafeLanding/*": "illustration",
        "*/Shell/*": "abstract",
        "*/Volna/*": "polygonal render of a beach",
    },
    "ukui-wallpapers": {
        # Every UKUI wallpaper is vector art or an abstract render.
        "*": "vector / abstract art",
    },
    "sway-backgrounds": {
        "*": "logo on flat background",
    },
    "lomiri-wallpapers-20.04": {
        "*/Fossa_by_Jasper_Roks.jpg": "abstract render",
        "*/Infinite-Sea_by_Aury88.jpg": "digital art composite",
        "*/Painting-Colors_by__herobrine7gamer.jpg": "abstract",
    },
    "stellarium-data": {
        "*/landscapes/trees/*": "fisheye with transparent sky, mostly alpha",
        "*/landscapes/*-256.png": "flat planet-surface colour swatches",
        "*/landscapes/moon/*": "grayscale",
        "*fog*": "fog overlay",
        "*illum*": "light-pollution overlay",
        "*-lgt.png": "lights overlay",
    },
    "tuxpaint-stamps-default": {
        # Whole categories that are clip art / symbols / drawings.
        "*/stamps/symbols/*": "symbols and letters (clip art)",
        "*/roadsigns/*": "flat road signs",
        "*/flags/*": "flat flags",
        "*/cartoon/*": "cartoons",
        "*/seasonal/easter/*": "cartoons",
        "*/seasonal/hanukkah/*": "cartoons",
        # Christmas: the *_photo*, pudding, mince pie, turkey and toy stamps
        # are photographs and stay; the rest are drawings.
        "*/christmas/Santa.png": "cartoon",
        "*/christmas/bow.png": "clip art",
        "*/christmas/candy_cane.png": "clip art",
        "*/christmas/hard_candy.png": "clip art",
        "*/christmas/lamp.png": "clip art",
        "*/christmas/santahat.png": "clip art",
        "*/christmas/star.png": "clip art",
        "*/christmas/stocking.png": "clip art",
        "*/christmas/tree.png": "cartoon",
        "*/christmas/xmas_tp_bulb.png": "clip art",
        "*/christmas/xmaswreath.png": "clip art",
        "*/seasonal/newyears/*": "fireworks/confetti/party drawings",
        # Halloween: the grave-* stones are photographs and stay.
        "*/halloween/bat_left.png": "silhouette",
        "*/halloween/blackcat.png": "silhouette",
        "*/halloween/ghost.png": "drawing",
        "*/halloween/jackolantern_mean.png": "cartoon",
        "*/halloween/skull.png": "clip art",
        "*/halloween/spider.png": "clip art",
        "*/space/planets/*": "planet renders would be pasted on Earth scenes",
        "*/space/moon/*": "grayscale",
        "*/clothes/*": "line drawings / clip art",
        # Individual drawings that pass the numeric heuristics.
        "*/hedgehog.png": "cartoon",
        "*/button.png": "clip art",
        "*/pizza.png": "cartoon",
        "*/eye.png": "cartoon",
        "*/inukshuk-outline.png": "line drawing",
        "*/spoke256.png": "drawing",
        "*/7spoke256.png": "drawing",
        "*/balloon360.png": "clip art",
        "*/chinese_junk.png": "drawing",
        "*/lightning*.png": "drawing",
        "*/fire.png": "drawing",
        "*/explosion.png": "drawing",
        "*/highlighter.png": "drawing",
        "*/Lightbulb.png": "drawing",
        "*/propeller_hat.png": "cartoon",
        "*/sombrero.png": "cartoon",
        "*/toilet.png": "drawing",
        "*/tennis_racket.png": "drawing",
        "*/rugby_goal_posts.png": "drawing",
        "*/clothespin*.png": "drawing",
        "*/tooth.png": "drawing",
        "*/bee.png": "clip art",
        "*/candle.png": "drawing",
        "*/glass.png": "drawing",
        "*/mug.png": "render",
        "*/sedan_police*.png": "cartoon",
    },
    "marble-qt-data": {
        # Only satellite imagery and aerial photos are collected at all (see
        # collect_marble); these are the remaining non-photographic maps.
        "*/citylights/*": "night lights: almost entirely black",
    },
    "opencv-doc": {
        "*/data/Blender_Suzanne*": "3D render",
        "*/data/HappyFish.jpg": "cartoon",
        "*/data/LinuxLogo.jpg": "logo",
        "*/data/WindowsLogo.jpg": "logo",
        "*/data/aloeGT.png": "disparity map",
        "*/data/aloeR.jpg": "stereo twin of aloeL",
        "*/data/basketball*": "grayscale",
        "*/data/blox.jpg": "render",
        "*/data/box*.png": "grayscale",
        "*/data/cards.png": "drawing",
        "*/data/chessboard.png": "synthetic",
        "*/data/detect_blob.png": "synthetic",
        "*/data/digits.png": "synthetic",
        "*/data/ela_modified.jpg": "tampered twin of ela_original",
        "*/data/ellipses.jpg": "synthetic",
        "*/data/gradient.png": "synthetic",
        "*/data/graf3.png": "viewpoint twin of graf1",
        "*/data/imageText*": "text",
        "*/data/left*": "calibration chessboards / stereo",
        "*/data/right*": "calibration chessboards / stereo",
        "*/data/leuvenB.jpg": "exposure twin of leuvenA",
        "*/data/licenseplate_motion.jpg": "synthetic motion blur",
        "*/data/mask.png": "synthetic",
        "*/data/ml.png": "cartoon",
        "*/data/notes.png": "sheet music",
        "*/data/opencv-logo*": "logo",
        "*/data/pca_test1.jpg": "drawing",
        "*/data/pic*.png": "synthetic shapes",
        "*/data/rubberwhale2.png": "optical-flow twin of rubberwhale1",
        "*/data/starry_night.jpg": "painting",
        "*/data/sudoku.png": "grayscale document",
        "*/data/templ.png": "template crop",
        "*/data/text_*": "text, synthetic blur",
        "*/data/tmpl.png": "template crop",
        "*/fuzzy/*": "anime drawing and masks",
        "*/reg/LR_*": "grayscale documents",
        "*/ximgproc/*": "drawings / maps",
        "*/shape/*": "silhouettes",
        "*/text/scenetext_char*": "tiny character crops",
        "*/text/scenetext_segmented*": "tiny word crops",
        "*/text/scenetext_word*": "tiny word crops",
        "*/alphamat/trimaps/*": "trimap",
        "*/alphamat/output_mattes/*": "matte",
        "*/dnn_superres/butterfly.png": "same butterfly as data/butterfly.jpg",
    },
}

# ---------------------------------------------------------------------------
# Tunables (why each value: see docs/corpus.md)
# ---------------------------------------------------------------------------

MIN_SIDE = 128  # smaller crops are useless for training at 128-256 px patches
GRAY_CHROMA = 0.03  # mean (max-min) chroma below this => essentially gray
DHASH_SIZE = 16  # 16x16 difference hash = 256 bits
DHASH_MAX_DIST = 26  # ~10% of bits; catches rescaled/recompressed copies
N_NEBULAE = 40  # deep-sky photos are dark and alike; keep the most colourful
DETAIL_CROPS_MIN_SHORT = 1600  # wallpapers this large also give 2 detail crops
STAMP_SOURCE_FACTOR = 0.4  # composites are less natural and very numerous
NEBULA_SOURCE_FACTOR = 0.5  # deep-sky photos are mostly black

# Hue bins in degrees (on the HSV hue circle), used for the balance statistics.
HUE_BINS: dict[str, tuple[float, float]] = {
    "warm": (-30.0, 70.0),  # red, orange, yellow (330..360 wraps to -30..0)
    "green": (70.0, 170.0),  # yellow-green .. green .. teal
    "blue": (170.0, 260.0),  # cyan .. sky blue .. blue
    "purple": (260.0, 330.0),  # violet, magenta
}
#: Target share of chromatic mass per bin after weighting: warm, green and blue
#: get equal shares; purple keeps roughly its natural (small) share.
HUE_TARGET: dict[str, float] = {"warm": 0.32, "green": 0.32, "blue": 0.32, "purple": 0.04}


# ---------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------


@dataclass
class Candidate:
    """One image that may enter the corpus.

    ``parent`` identifies the original file the pixels come from: crops of the
    same file share it, and the dedup group is computed per parent so that
    crops of one photo always land in the same split.
    """

    source: str
    original: str
    parent: str
    parent_pixels: int
    licence: str
    load: Callable[[], Image.Image]
    kind: str = "photo"  # photo | astro | stamp
    tag: str = ""  # disambiguates several crops of one parent
    background_ok: bool = True  # may serve as a backdrop for stamp composites


@dataclass
class Kept:
    """An accepted, resized image waiting to be written."""

    cand: Candidate
    image: Image.Image  # RGB, long side <= max_side
    group: str = ""
    split: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0
    file: str = ""


# ---------------------------------------------------------------------------
# Packages and licences
# ---------------------------------------------------------------------------


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command and return stdout, raising with stderr on failure."""
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def fetch_package(pkg: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``pkg`` into ``cache/pkgs/pkg``; return (root, version).

    Idempotent: an existing ``.deb`` or unpacked tree is reused, so reruns do
    not touch the network.
    """
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        run(["apt-get", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
    deb = found[-1]
    root = cache / "pkgs" / pkg
    marker = root / ".unpacked"
    if not marker.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        run(["dpkg", "-x", str(deb), str(root)])
        marker.write_text(deb.name)
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    return root, version


class CopyrightFile:
    """Minimal reader for a Debian ``copyright`` file.

    Machine-readable (DEP-5) files are matched per file: the last ``Files:``
    stanza whose pattern matches the path (or a suffix of it, since patterns
    are relative to the source tree, not the installed path) gives the
    licence.  Free-form files fall back to a keyword scan.
    """

    KEYWORDS = (
        ("CC-BY-SA-3.0", r"Attribution-ShareAlike 3\.0"),
        ("CC-BY-SA-2.0", r"Attribution-ShareAlike 2\.0"),
        ("CC-BY-3.0", r"Attribution 3\.0"),
        ("GPL-2+", r"GNU General Public License.*version 2"),
        ("public domain", r"public domain"),
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(errors="replace") if path.exists() else ""
        self.stanzas: list[tuple[list[str], str]] = []
        for block in re.split(r"\n\s*\n", self.text):
            files = re.search(r"^Files:\s*(.*(?:\n[ \t]+.*)*)", block, re.M)
            lic = re.search(r"^License:\s*(\S.*)$", block, re.M)
            if files and lic:
                self.stanzas.append((files.group(1).split(), lic.group(1).strip()))

    def default(self) -> str:
        """Licence of ``Files: *`` or, for free-form files, a keyword summary."""
        for pats, lic in self.stanzas:
            if "*" in pats:
                return lic
        found = [name for name, rx in self.KEYWORDS if re.search(rx, self.text, re.I | re.S)]
        return " / ".join(found) if found else "see copyright file"

    def licence_for(self, rel_path: str) -> str:
        """Licence short name for an installed path relative to the package root."""
        best = self.default()
        for pats, lic in self.stanzas:
            for pat in pats:
                if pat == "*" or pat.startswith("debian/"):
                    continue
                base = pat.rsplit("/", 1)[-1]
                if (
                    fnmatch.fnmatch(rel_path, pat)
                    or fnmatch.fnmatch(rel_path, "*/" + pat)
                    # Installed layout may drop source folders (e.g. lomiri's
                    # "20.04/X.jpg" is installed as backgrounds/X.jpg), so an
                    # exact file name also counts as a match.
                    or ("*" not in base and rel_path.rsplit("/", 1)[-1] == base)
                ):
                    best = lic
        return best


# ---------------------------------------------------------------------------
# Image helpers
# ---------------------------------------------------------------------------


def open_image(path: Path) -> Image.Image:
    """Open an image as RGB or RGBA (keeping real transparency only)."""
    im = Image.open(path)
    im.load()
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        im = im.convert("RGBA")
        if np.asarray(im)[..., 3].min() == 255:
            im = im.convert("RGB")
        return im
    return im.convert("RGB")


def resize_long_side(im: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the long side is at most ``max_side``."""
    w, h = im.size
    scale = max_side / max(w, h)
    if scale >= 1.0:
        return im.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def opaque_band(alpha: np.ndarray, min_frac: float = 0.995) -> tuple[int, int] | None:
    """Longest run of rows whose pixels are (almost) all opaque."""
    good = (alpha >= 250).mean(axis=1) >= min_frac
    best: tuple[int, int] | None = None
    start = None
    for i, g in enumerate(list(good) + [False]):
        if g and start is None:
            start = i
        elif not g and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def opaque_crop(im: Image.Image) -> Image.Image | None:
    """Crop an RGBA image to its largest fully opaque axis-aligned band/box."""
    if im.mode != "RGBA":
        return im
    a = np.asarray(im)[..., 3]
    rows = opaque_band(a)
    if rows is None:
        return None
    cols = opaque_band(a[rows[0] : rows[1]].T)
    if cols is None:
        return None
    box = (cols[0], rows[0], cols[1], rows[1])
    if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE // 2:
        return None
    return im.crop(box).convert("RGB")


def to_float(im: Image.Image) -> np.ndarray:
    """RGB image to float32 array in [0, 1]."""
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def hue_saturation(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, 0..360), chroma (max-min) and value (max) of an RGB array."""
    mx = arr.max(axis=-1)
    mn = arr.min(axis=-1)
    c = mx - mn
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    safe = np.where(c > 0, c, 1.0)
    h = np.where(
        mx == r,
        ((g - b) / safe) % 6.0,
        np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    return h * 60.0, c, mx


def mean_chroma(im: Image.Image) -> float:
    """Mean per-pixel (max - min) over RGB, in [0, 1]."""
    a = to_float(resize_long_side(im, 256))
    return float((a.max(-1) - a.min(-1)).mean())


def hue_stats(im: Image.Image) -> dict[str, float]:
    """Fractions of chromatic pixels per hue bin, plus the chromatic fraction.

    A pixel is chromatic when its chroma exceeds 0.12 and it is not nearly
    black; only those pixels carry reliable hue.
    """
    a = to_float(resize_long_side(im, 256))
    h, c, v = hue_saturation(a)
    chrom = (c > 0.12) & (v > 0.15)
    n = int(chrom.sum())
    out: dict[str, float] = {"chromatic": n / chrom.size}
    hh = h[chrom]
    hh = np.where(hh >= 330.0, hh - 360.0, hh)
    for name, (lo, hi) in HUE_BINS.items():
        out[name] = float(((hh >= lo) & (hh < hi)).sum() / n) if n else 0.0
    return out


# ---------------------------------------------------------------------------
# Photograph heuristics
# ---------------------------------------------------------------------------


def photo_metrics(im: Image.Image) -> dict[str, float]:
    """Cheap statistics that separate photographs from flat/vector art.

    * ``colours``: distinct 5-bit-per-channel colours in a 128 px thumbnail,
      over opaque pixels.  Clip art and vector art use a few hundred at most.
    * ``flat``: fraction of mid-tone pixels whose 4 neighbours are identical
      in a 256 px thumbnail.  Photos have noise/texture, so almost never
      exactly flat; fills in drawings are.  Clipped blacks/whites are
      ignored because photos legitimately saturate there.
    """
    rgba = im.convert("RGBA")
    small = resize_long_side(rgba, 128)
    a = np.asarray(small)
    mask = a[..., 3] >= 250
    q = (a[..., :3] >> 3).astype(np.int32)
    codes = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    colours = len(np.unique(codes[mask])) if mask.any() else 0

    mid = resize_long_side(rgba, 256)
    m = np.asarray(mid).astype(np.int16)
    rgb, op = m[..., :3], m[..., 3] >= 250
    core = rgb[1:-1, 1:-1]
    same = np.ones(core.shape[:2], bool)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        nb = rgb[1 + dy : rgb.shape[0] - 1 + dy, 1 + dx : rgb.shape[1] - 1 + dx]
        same &= np.all(nb == core, axis=-1)
    lum = core.mean(-1)
    valid = op[1:-1, 1:-1] & (lum > 12) & (lum < 243)
    flat = float(same[valid].mean()) if valid.any() else 1.0
    return {"colours": float(colours), "flat": flat}


def photo_verdict(metrics: dict[str, float], kind: str) -> str | None:
    """Return a rejection reason, or None when the image looks photographic."""
    if kind == "astro":
        # Star fields are mostly black, so colour count and flatness mislead.
        return None if metrics["colours"] >= 150 else "too few colours for a photo"
    if kind == "stamp":
        # A stamp covers a fraction of its canvas and often one material (a
        # black bird, a yellow lemon), so only near-monochrome stamps are
        # rejected on colour count; flat fills are the telling sign of
        # cartoons (photographed objects are never exactly flat).
        if metrics["colours"] < 20:
            return f"few distinct colours ({metrics['colours']:.0f})"
        if metrics["flat"] > 0.10:
            return f"large flat fills ({metrics['flat']:.2f})"
        return None
    if metrics["colours"] < 400:
        return f"few distinct colours ({metrics['colours']:.0f})"
    if metrics["flat"] > 0.12:
        return f"large flat fills ({metrics['flat']:.2f})"
    return None


# ---------------------------------------------------------------------------
# Collectors: one per source, each yields Candidates
# ---------------------------------------------------------------------------


def excluded(pkg: str, rel: str) -> str | None:
    """Reason from the reviewed exclude list, if ``rel`` is on it."""
    for pat, reason in EXCLUDE.get(pkg, {}).items():
        if fnmatch.fnmatch(rel, pat):
            return reason
    return None


def raster_files(root: Path, under: str = "") -> list[Path]:
    """Sorted raster images below ``root/under`` (SVGs are not photographs)."""
    base = root / under if under else root
    # Symlinks are skipped: Plasma ships one real file per wallpaper plus
    # symlinks named after other resolutions, which would only add duplicates.
    return sorted(
        p for p in base.rglob("*")
        if p.is_file() and not p.is_symlink() and p.suffix.lower() in RASTER_EXTS
    )


def file_candidate(
    pkg: str, root: Path, path: Path, cr: CopyrightFile, kind: str = "photo"
) -> Candidate:
    """Candidate for a whole file, with its RGBA regions cropped to opaque parts."""
    rel = str(path.relative_to(root))
    with Image.open(path) as probe:
        w, h = probe.size

    def load() -> Image.Image:
        im = open_image(path)
        if kind != "stamp" and im.mode == "RGBA":
            im = opaque_crop(im) or Image.new("RGB", (1, 1))
        return im

    return Candidate(pkg, rel, f"{pkg}:{rel}", w * h, cr.licence_for(rel), load, kind)


def detail_crops(cand: Candidate, size: tuple[int, int]) -> list[Candidate]:
    """Two extra fixed crops (left-centre, right-centre) of a large photo.

    Large wallpapers lose their fine texture when shrunk to 512 px; two crops
    of half the short side keep some native-resolution detail.  They share
    the parent, so they always go to the same split as the full frame.
    """
    w, h = size
    if min(w, h) < DETAIL_CROPS_MIN_SHORT:
        return []
    s = min(w, h) // 2
    boxes = [(w // 4 - s // 2, h // 2 - s // 2), (3 * w // 4 - s // 2, h // 2 - s // 2)]
    out = []
    for i, (x, y) in enumerate(boxes):
        x = min(max(0, x), w - s)

        def load(x: int = x, y: int = y, base: Callable[[], Image.Image] = cand.load) -> Image.Image:
            return base().crop((x, y, x + s, y + s))

        out.append(
            Candidate(cand.source, cand.original, cand.parent, cand.parent_pixels,
                      cand.licence, load, cand.kind, tag=f"crop{i}")
        )
    return out


def collect_skimage() -> Iterator[Candidate]:
    """Bundled scikit-image colour photographs (offline only)."""
    import skimage
    import skimage.data as skd

    for name, licence in SKIMAGE_PHOTOS.items():
        fn = getattr(skd, name)
        try:
            arr = fn()
        except Exception as exc:  # a sample that would need a download
            print(f"  skimage.data.{name}: unavailable offline ({exc.__class__.__name__})")
            continue
        arr = np.asarray(arr)
        if arr.ndim != 3:
            continue
        im = Image.fromarray(arr[..., :3].astype(np.uint8), "RGB")
        yield Candidate(
            f"scikit-image {skimage.__version__}",
            f"skimage.data.{name}",
            f"skimage:{name}",
            im.size[0] * im.size[1],
            licence,
            lambda im=im: im,
        )


def collect_wallpapers(pkg: str, root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Desktop wallpaper packages: every raster file, plus detail crops."""
    for path in raster_files(root, "usr/share"):
        rel = str(path.relative_to(root))
        if rel.startswith("usr/share/doc/"):
            continue
        cand = file_candidate(pkg, root, path, cr)
        yield cand
        with Image.open(path) as probe:
            yield from detail_crops(cand, probe.size)


def stitch_sides(ldir: Path, ini: configparser.SectionProxy) -> Image.Image | None:
    """Concatenate an old_style landscape's side textures in side order."""
    sides = []
    for i in range(int(ini.get("nbside", "0"))):
        spec = ini.get(f"side{i}", "")
        tex = spec.split(":")[0]
        fname = ini.get(tex, "")
        if not fname or not (ldir / fname).exists():
            return None
        sides.append(open_image(ldir / fname).convert("RGBA"))
    if not sides:
        return None
    h = min(s.size[1] for s in sides)
    sides = [s.resize((round(s.size[0] * h / s.size[1]), h), Image.Resampling.LANCZOS)
             if s.size[1] != h else s for s in sides]
    pano = Image.new("RGBA", (sum(s.size[0] for s in sides), h))
    x = 0
    for s in sides:
        pano.paste(s, (x, 0))
        x += s.size[0]
    return pano


def band_tiles(band: Image.Image, aspect: float = 1.5) -> list[tuple[int, int, int, int]]:
    """Non-overlapping boxes of ``aspect`` (w/h) covering a wide panorama band."""
    w, h = band.size
    tw = min(w, max(MIN_SIDE, round(h * aspect)))
    n = max(1, w // tw)
    step = (w - tw) // max(1, n - 1) if n > 1 else 0
    return [(i * step, 0, i * step + tw, h) for i in range(n)]


def collect_stellarium(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Stellarium landscapes (opaque parts of panoramas) and deep-sky photos."""
    pkg = "stellarium-data"
    base = root / "usr/share/stellarium"
    for ldir in sorted((base / "landscapes").iterdir()):
        ini_path = ldir / "landscape.ini"
        if not ini_path.exists():
            continue
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.read(ini_path, encoding="utf-8")
        ini = cp["landscape"]
        kind = ini.get("type", "")
        # (path relative to the package root, stitched image or None = load file)
        panos: list[tuple[str, Image.Image | None]] = []
        ldir_rel = str(ldir.relative_to(root))
        if kind == "old_style":
            # Not a real file: the side textures of the panorama, stitched.
            panos.append((f"{ldir_rel}/{ldir.name}-panorama(sides)", stitch_sides(ldir, ini)))
            if ini.get("groundtex"):
                panos.append((f"{ldir_rel}/{ini['groundtex']}", None))
        elif ini.get("maptex"):
            panos.append((f"{ldir_rel}/{ini['maptex']}", None))
        for rel, pano in panos:
            if excluded(pkg, rel):
                continue
            if pano is None:
                path = root / rel
                if not path.exists():
                    continue
                pano = open_image(path).convert("RGBA")
            band = opaque_crop(pano)
            if band is None:
                continue
            pixels = pano.size[0] * pano.size[1]
            for i, box in enumerate(band_tiles(band)):
                tile = band.crop(box)
                yield Candidate(pkg, rel, f"{pkg}:{rel}", pixels, cr.licence_for(rel),
                                lambda t=tile: t, "photo", tag=f"tile{i}")
    for path in raster_files(base / "nebulae"):
        rel = str(path.relative_to(root))
        with Image.open(path) as probe:
            if min(probe.size) < 256:
                continue
        yield file_candidate(pkg, root, path, cr, kind="astro")


def collect_tuxpaint(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Tux Paint stamps with transparency (composited onto photos later)."""
    pkg = "tuxpaint-stamps-default"
    for path in raster_files(root, "usr/share/tuxpaint/stamps"):
        cand = file_candidate(pkg, root, path, cr, kind="stamp")
        yield cand


def collect_marble(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Marble's Blue Marble satellite mosaic (tiled) and its aerial photos."""
    pkg = "marble-qt-data"
    earth = root / "usr/share/marble/data/maps/earth"
    bm = earth / "bluemarble/bluemarble.jpg"
    if bm.exists():
        rel = str(bm.relative_to(root))
        full = open_image(bm)
        w, h = full.size
        # 4 x 2 grid of square tiles (675 px): continents at native resolution.
        tw, th = w // 4, h // 2
        for j in range(2):
            for i in range(4):
                box = (i * tw, j * th, (i + 1) * tw, (j + 1) * th)
                # Satellite views make odd backdrops for animals and fruit.
                yield Candidate(pkg, rel, f"{pkg}:{rel}", w * h, cr.licence_for(rel),
                                lambda b=box, f=full: f.crop(b), "photo", tag=f"tile{j}{i}",
                                background_ok=False)
    # Landmark photos (aerial and ground) shown by the OpenStreetMap theme.
    for path in raster_files(earth / "openstreetmap"):
        if path.parent.name != "openstreetmap":
            continue  # map tiles below numbered folders are rendered maps
        yield file_candidate(pkg, root, path, cr)


def collect_opencv(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Example photographs shipped with OpenCV's samples."""
    pkg = "opencv-doc"
    for path in raster_files(root, "usr/share/doc/opencv-doc/examples"):
        yield file_candidate(pkg, root, path, cr)


# ---------------------------------------------------------------------------
# Deduplication and split
# ---------------------------------------------------------------------------


def dhash(im: Image.Image, size: int = DHASH_SIZE) -> np.ndarray:
    """Difference hash: sign of horizontal gradients of a gray thumbnail."""
    g = im.convert("RGBA")
    bg = Image.new("RGBA", g.size, (128, 128, 128, 255))
    bg.alpha_composite(g)
    small = bg.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    a = np.asarray(small, dtype=np.int16)
    return (a[:, 1:] > a[:, :-1]).ravel()


def dedup_groups(hashes: list[np.ndarray], max_dist: int = DHASH_MAX_DIST) -> list[int]:
    """Union-find over pairs whose Hamming distance is at most ``max_dist``."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        mat = np.stack(hashes).astype(np.uint8)
        for i in range(n):
            dist = (mat[i + 1 :] != mat[i]).sum(axis=1)
            for j in np.nonzero(dist <= max_dist)[0]:
                a, b = find(i), find(i + 1 + int(j))
                if a != b:
                    parent[b] = a
    return [find(i) for i in range(n)]


def split_of(group_key: str, seed: int, val_fraction: float) -> str:
    """Deterministic train/val assignment from a hash of the dedup group."""
    digest = hashlib.sha256(f"{seed}:{group_key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if u < val_fraction else "train"


# ---------------------------------------------------------------------------
# Stamp compositing
# ---------------------------------------------------------------------------


def composite_stamp(stamp: Image.Image, bg: Image.Image, rng: np.random.Generator,
                    max_side: int) -> Image.Image:
    """Paste an RGBA stamp onto a random crop of ``bg`` at random position/scale."""
    bw, bh = bg.size
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 4]))
    ch = int(min(bh, bw / aspect) * rng.uniform(0.6, 1.0))
    cw = int(ch * aspect)
    x0 = int(rng.integers(0, bw - cw + 1))
    y0 = int(rng.integers(0, bh - ch + 1))
    canvas = bg.crop((x0, y0, x0 + cw, y0 + ch))
    target = int(rng.integers(max_side * 3 // 4, max_side + 1))
    canvas = canvas.resize((round(cw * target / max(cw, ch)), round(ch * target / max(cw, ch))),
                           Image.Resampling.LANCZOS).convert("RGBA")
    bbox = stamp.getchannel("A").getbbox()
    if bbox:
        stamp = stamp.crop(bbox)
    frac = rng.uniform(0.35, 0.8)
    s = frac * min(canvas.size) / max(stamp.size)
    st = stamp.resize((max(1, round(stamp.size[0] * s)), max(1, round(stamp.size[1] * s))),
                      Image.Resampling.LANCZOS)
    px = int(rng.integers(0, canvas.size[0] - st.size[0] + 1))
    py = int(rng.integers(0, canvas.size[1] - st.size[1] + 1))
    canvas.alpha_composite(st, (px, py))
    return canvas.convert("RGB")


# ---------------------------------------------------------------------------
# Balancing
# ---------------------------------------------------------------------------


def hue_distribution(items: list[Kept], weights: Iterable[float]) -> dict[str, float]:
    """Share of chromatic pixel mass per hue bin, under per-image weights."""
    mass = Counter()
    for k, w in zip(items, weights):
        for b in HUE_BINS:
            mass[b] += w * k.stats["chromatic"] * k.stats[b]
    tot = sum(mass.values()) or 1.0
    return {b: mass[b] / tot for b in HUE_BINS}


def source_factor(k: Kept) -> float:
    """Prior weight of an image's kind, independent of its colours."""
    if k.cand.kind == "stamp":
        return STAMP_SOURCE_FACTOR
    if k.cand.kind == "astro":
        return NEBULA_SOURCE_FACTOR
    return 1.0


def balance_weights(items: list[Kept], iters: int = 200) -> list[float]:
    """Per-image sampling weights that move the hue mix toward ``HUE_TARGET``.

    Each hue bin b gets a multiplier r_b; an image's weight is
    ``prior * clip(prod_b r_b ** (t * f_b), 0.2, 5)`` with
    ``t = min(1, c / 0.1)``, where c is its chromatic fraction, f_b its bin
    fractions and prior its source factor.  The geometric mix matters: with
    a linear mix a mostly-warm photo with a patch of sky would be boosted
    almost as much as a blue seascape, and the fit cannot converge.  The
    hue term takes over fully
    once 10% of the pixels are chromatic, while nearly gray images (whose
    hue histogram is noise) keep weight ~prior.  r_b is fitted by damped
    iterative proportional scaling until the weighted hue distribution
    matches the target (or the clip stops it), then weights are normalised
    to mean 1.  The clip bounds keep any image from dominating or vanishing.
    """
    r = {b: 1.0 for b in HUE_BINS}
    prior = [source_factor(k) for k in items]

    def weights() -> list[float]:
        out = []
        for k, p in zip(items, prior):
            t = min(1.0, k.stats["chromatic"] / 0.1)
            log_mix = t * sum(k.stats[b] * np.log(r[b]) for b in HUE_BINS)
            out.append(p * min(5.0, max(0.2, float(np.exp(log_mix)))))
        return out

    for _ in range(iters):
        dist = hue_distribution(items, weights())
        for b in HUE_BINS:
            if dist[b] > 0:
                r[b] *= (HUE_TARGET[b] / dist[b]) ** 0.5
        # Only ratios between bins matter; keep their geometric mean at 1 so
        # the clip bounds act symmetrically.
        norm = float(np.exp(np.mean([np.log(v) for v in r.values()])))
        r = {b: v / norm for b, v in r.items()}
    w = weights()
    mean = sum(w) / len(w)
    return [x / mean for x in w]


# ---------------------------------------------------------------------------
# Main pipeline
# ---------------------------------------------------------------------------


def slug(text: str) -> str:
    """Filesystem-friendly short name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[-60:]


def gather(cache: Path) -> tuple[list[Candidate], dict[str, tuple[str, str, str]]]:
    """Fetch every source and return candidates and per-source (version, licence, path)."""
    cands: list[Candidate] = []
    info: dict[str, tuple[str, str, str]] = {}
    print("collecting scikit-image samples")
    sk = list(collect_skimage())
    cands += sk
    if sk:
        info[sk[0].source] = (sk[0].source.split()[-1], "per image (see manifest)",
                              "skimage.data docstrings")
    for pkg in PACKAGES:
        print(f"collecting {pkg}")
        root, version = fetch_package(pkg, cache)
        cr_path = root / "usr/share/doc" / pkg / "copyright"
        cr = CopyrightFile(cr_path)
        info[pkg] = (version, cr.default(), str(cr_path))
        if pkg in WALLPAPER_PACKAGES:
            cands += collect_wallpapers(pkg, root, cr)
        elif pkg == "stellarium-data":
            cands += collect_stellarium(root, cr)
        elif pkg == "tuxpaint-stamps-default":
            cands += collect_tuxpaint(root, cr)
        elif pkg == "marble-qt-data":
            cands += collect_marble(root, cr)
        elif pkg == "opencv-doc":
            cands += collect_opencv(root, cr)
    return cands, info


def screen(cands: list[Candidate], max_side: int,
           rejected: list[tuple[str, str, str]]) -> list[Kept]:
    """Apply exclude list, photo heuristics, size and gray checks; resize survivors."""
    kept: list[Kept] = []
    for c in cands:
        label = f"{c.original}{'#' + c.tag if c.tag else ''}"
        reason = excluded(c.source, c.original)
        if reason is None:
            im = c.load()
            if min(im.size) < (64 if c.kind == "stamp" else MIN_SIDE):
                reason = f"too small {im.size}"
            elif c.kind == "stamp" and im.mode != "RGBA":
                reason = "stamp without transparency"
            else:
                reason = photo_verdict(photo_metrics(im), c.kind)
            # Stamps are judged for grayness after compositing: a gray object
            # on a coloured background is still a useful example.
            if reason is None and c.kind != "stamp" and mean_chroma(im) < GRAY_CHROMA:
                reason = "essentially gray"
        if reason is not None:
            rejected.append((c.source, label, reason))
            continue
        small = resize_long_side(im, max_side if c.kind != "stamp" else max_side)
        kept.append(Kept(c, small if c.kind == "stamp" else small.convert("RGB")))
    return kept


def pick_nebulae(kept: list[Kept], rejected: list[tuple[str, str, str]]) -> list[Kept]:
    """Keep only the ``N_NEBULAE`` most colourful deep-sky photos."""
    astro = [k for k in kept if k.cand.kind == "astro" and k.cand.source == "stellarium-data"]
    if len(astro) <= N_NEBULAE:
        return kept

    def score(k: Kept) -> float:
        st = hue_stats(k.image)
        return st["chromatic"]

    ranked = sorted(astro, key=lambda k: (-score(k), k.cand.original))
    drop = {id(k) for k in ranked[N_NEBULAE:]}
    for k in ranked[N_NEBULAE:]:
        rejected.append((k.cand.source, k.cand.original, "not among most colourful nebulae"))
    return [k for k in kept if id(k) not in drop]


def deduplicate(kept: list[Kept], rejected: list[tuple[str, str, str]]) -> list[Kept]:
    """Group near-duplicate parents; keep the largest original of each group.

    Hashes are computed per parent (its first candidate, i.e. the full frame
    or first tile), so all crops of a parent stay together.  The group key is
    the surviving parent's id, which makes the split stable across runs.
    """
    parents: dict[str, list[Kept]] = defaultdict(list)
    for k in kept:
        parents[k.cand.parent].append(k)
    names = list(parents)
    hashes = [dhash(parents[p][0].image) for p in names]
    roots = dedup_groups(hashes)
    groups: dict[int, list[str]] = defaultdict(list)
    for name, root in zip(names, roots):
        groups[root].append(name)
    out: list[Kept] = []
    for members in groups.values():
        best = max(members, key=lambda p: (parents[p][0].cand.parent_pixels, p))
        key = hashlib.sha1(best.encode()).hexdigest()[:12]
        for p in members:
            if p != best:
                for k in parents[p]:
                    rejected.append((k.cand.source, k.cand.original, f"duplicate of {best}"))
        for k in parents[best]:
            k.group = key
            out.append(k)
    return out


def make_composites(stamps: list[Kept], photos: list[Kept], seed: int,
                    max_side: int) -> list[Kept]:
    """Composite each stamp onto a crop of a natural photo from the same split."""
    natural = [p for p in photos if p.cand.kind == "photo" and p.cand.background_ok]
    by_split = {s: sorted((p for p in natural if p.split == s), key=lambda p: p.file)
                for s in ("train", "val")}
    out = []
    for k in stamps:
        pool = by_split[k.split] or natural
        h = int.from_bytes(hashlib.sha256(f"{seed}:{k.cand.original}".encode()).digest()[:8], "big")
        rng = np.random.default_rng(h)
        bg = pool[int(rng.integers(0, len(pool)))]
        k.image = composite_stamp(k.image, bg.image, rng, max_side)
        k.cand.tag = f"on:{bg.file}"
        out.append(k)
    return out


def source_name(k: Kept) -> str:
    """Short source label for file names and tables."""
    return k.cand.source.split()[0]


def write_outputs(out: Path, items: list[Kept], info: dict[str, tuple[str, str, str]],
                  rejected: list[tuple[str, str, str]]) -> None:
    """Write images, manifest.csv, SOURCES.md and rejected.csv."""
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "split", "source_package", "original_path", "licence",
                     "width", "height", "weight", "dedup_group"])
        for k in sorted(items, key=lambda k: k.file):
            k.image.save(out / k.file, optimize=False, compress_level=6)
            orig = k.cand.original + (f"#{k.cand.tag}" if k.cand.tag else "")
            wr.writerow([k.file, k.split, source_name(k), orig, k.cand.licence,
                         k.image.size[0], k.image.size[1], f"{k.weight:.4f}", k.group])
    with open(out / "rejected.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["source_package", "original_path", "reason"])
        wr.writerows(sorted(rejected))
    lines = ["# Corpus sources", "",
             "Generated by `scripts/build_corpus.py`; see `docs/corpus.md`.", "",
             "| source | version | images kept | licences of kept images | copyright file |",
             "| --- | --- | --- | --- | --- |"]
    per_src: dict[str, list[Kept]] = defaultdict(list)
    for k in items:
        per_src[source_name(k)].append(k)
    for src, (version, default_lic, path) in info.items():
        ks = per_src.get(src.split()[0], [])
        lics = sorted({k.cand.licence for k in ks}) or [default_lic]
        if src.startswith("scikit-image"):
            lics = ["CC0 / public domain (per-image notes in manifest)"]
        lines.append(f"| {src.split()[0]} | {version} | {len(ks)} | {'; '.join(lics)} | `{path}` |")
    lines += ["", "Rejected candidates and reasons: `rejected.csv`.", ""]
    (out / "SOURCES.md").write_text("\n".join(lines))


def print_summary(items: list[Kept]) -> None:
    """Counts per source and split, megapixels and the hue balance."""
    table: dict[str, Counter] = defaultdict(Counter)
    for k in items:
        table[source_name(k)][k.split] += 1
        table[source_name(k)]["mpx"] += k.image.size[0] * k.image.size[1]
    print(f"\n{'source':32s} {'train':>6s} {'val':>5s} {'Mpx':>7s}")
    tot = Counter()
    for src in sorted(table):
        c = table[src]
        print(f"{src:32s} {c['train']:6d} {c['val']:5d} {c['mpx'] / 1e6:7.1f}")
        tot.update(c)
    print(f"{'TOTAL':32s} {tot['train']:6d} {tot['val']:5d} {tot['mpx'] / 1e6:7.1f}")
    un = hue_distribution(items, [1.0] * len(items))
    we = hue_distribution(items, [k.weight for k in items])
    print("\nhue share of chromatic pixels   " + "  ".join(f"{b:>7s}" for b in HUE_BINS))
    print("  unweighted                    " + "  ".join(f"{un[b]:7.3f}" for b in HUE_BINS))
    print("  weighted                      " + "  ".join(f"{we[b]:7.3f}" for b in HUE_BINS))
    ws = sorted(k.weight for k in items)
    print(f"weights: min {ws[0]:.2f} median {ws[len(ws) // 2]:.2f} max {ws[-1]:.2f}")


def build(out: Path, cache: Path, max_side: int, val_fraction: float, seed: int) -> None:
    """Run the whole pipeline into ``out`` (which is recreated)."""
    cands, info = gather(cache)
    print(f"{len(cands)} candidates")
    rejected: list[tuple[str, str, str]] = []
    kept = screen(cands, max_side, rejected)
    kept = pick_nebulae(kept, rejected)
    kept = deduplicate(kept, rejected)
    counters: Counter = Counter()
    for k in sorted(kept, key=lambda k: (k.cand.parent, k.cand.tag)):
        k.split = split_of(k.group, seed, val_fraction)
        name = Path(k.cand.original).name
        if Path(name).suffix.lower() in RASTER_EXTS:
            name = Path(name).stem
        base = f"{source_name(k)}_{slug(name.replace('skimage.data.', ''))}"
        counters[base] += 1
        k.file = f"{k.split}/{base}_{counters[base]:02d}.png"
    photos = [k for k in kept if k.cand.kind != "stamp"]
    stamps = make_composites([k for k in kept if k.cand.kind == "stamp"], photos, seed, max_side)
    items = photos + stamps
    # Composites inherit the stamp's split, so a near-gray check is still due.
    items = [k for k in items if mean_chroma(k.image) >= GRAY_CHROMA]
    for k in items:
        k.stats = hue_stats(k.image)
    for k, w in zip(items, balance_weights(items)):
        k.weight = w
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_outputs(out, items, info, rejected)
    print_summary(items)
    print(f"\nwrote {len(items)} images to {out} ({len(rejected)} candidates rejected)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output corpus directory")
    ap.add_argument("--cache", type=Path, default=None,
                    help="download/unpack cache (default: OUT/../corpus_cache)")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--val-fraction", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cache = args.cache or args.out.parent / "corpus_cache"
    build(args.out.resolve(), cache.resolve(), args.max_side, args.val_fraction, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
