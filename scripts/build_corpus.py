#!/usr/bin/env python3
"""Rebuild the training corpus for the default napari-colorize model.

The corpus is built *only* from openly licensed images that ship inside
scikit-image and a fixed list of Debian packages (see ``docs/corpus.md``).
The helpers live in the ``corpus`` package next to this script (Qt resource
and Jigzo puzzle readers, licences, photo tests, dedup, crops, the sources
added by issue 9).
Everything is deterministic given ``--seed``: the same inputs always give the
same files, split and sampling weights.

Pipeline
--------
1. ``apt-get download`` + ``dpkg -x`` each package into ``--cache`` (idempotent)
   and read licences from ``usr/share/doc/PKG/copyright``.
2. Collect raster images per source, with source-specific handling
   (panorama stitching for Stellarium, tiling for Marble, alpha stamps for
   Tux Paint, Qt resource bundles for GCompris, puzzle files for Jigzo), add
   native-resolution crops of large photographs, and drop non-photographs
   with measurable heuristics plus an explicit, reviewed exclude list.
3. Deduplicate with a 16x16 difference hash, keeping the largest original.
4. Resize (long side <= ``--max-side``, Lanczos), drop near-gray images, split
   train/val by a hash of the dedup group, composite Tux Paint stamps onto
   crops of same-split photos.
5. Compute hue statistics and per-image sampling weights that rebalance
   warm vs green vs blue content.
6. Write ``manifest.csv`` (with each image's *source*, for validation by
   source, and whether it is a composite), ``SOURCES.md`` and
   ``rejected.csv`` and print a summary.

Usage::

    python scripts/build_corpus.py --out corpus [--cache DIR] [--max-side 512]
        [--val-fraction 0.12] [--seed 0] [--crops-per-photo 6]
        [--max-composite-share 0.25] [--contact-sheets DIR]
"""

from __future__ import annotations

import argparse
import configparser
import csv
import fnmatch
import hashlib
import os
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import extra, gcompris
from corpus.candidates import RASTER_EXTS, Candidate, Kept, crop_candidate, file_candidate, raster_files
from corpus.contact import save_sheets
from corpus.crops import crop_base, native_crops
from corpus.debs import fetch_package
from corpus.dedup import dedup_groups, dhash
from corpus.imaging import (
    MIN_SIDE,
    hue_saturation,
    mean_chroma,
    open_image,
    opaque_crop,
    resize_long_side,
    to_float,
)
from corpus.licences import CopyrightFile
from corpus.photo import photo_metrics, photo_verdict

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
    # Added by issue 9 (photographs only; see corpus/gcompris.py, corpus/extra.py).
    "gcompris-qt-data",
    "jigzo-data",
    "kstars-data",
    "hugin-data",
    "python3-sklearn",
    "python-matplotlib-data",
)
WALLPAPER_PACKAGES = set(WALLPAPERS)

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
    # Issue 9 sources: their reviewed lists live with their collectors.
    "gcompris-qt-data": gcompris.EXCLUDE,
    "jigzo-data": extra.JIGZO_EXCLUDE,
}

#: Photo sets within a package that validation holds out separately
#: (``source`` column of the manifest): fnmatch on the original path -> set.
#: GCompris and the library samples name their sets in their collectors.
PHOTO_SETS: dict[str, dict[str, str]] = {
    "stellarium-data": {"*/landscapes/*": "stellarium-data/landscapes",
                        "*/nebulae/*": "stellarium-data/nebulae"},
    "marble-qt-data": {"*/bluemarble/*": "marble-qt-data/bluemarble",
                       "*/openstreetmap/*": "marble-qt-data/openstreetmap"},
}

# ---------------------------------------------------------------------------
# Tunables (why each value: see docs/corpus.md)
# ---------------------------------------------------------------------------

GRAY_CHROMA = 0.03  # mean (max-min) chroma below this => essentially gray
N_NEBULAE = 40  # deep-sky photos are dark and alike; keep the most colourful
DETAIL_CROPS_MIN_SHORT = 1600  # wallpapers this large also give 2 detail crops
CROPS_PER_PHOTO = 6  # native-resolution windows per large photograph (--crops-per-photo)
MAX_COMPOSITE_SHARE = 0.25  # composites stay a minority (--max-composite-share)
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
# Hue statistics
# ---------------------------------------------------------------------------


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
# Collectors: one per source, each yields Candidates
# ---------------------------------------------------------------------------


def excluded(pkg: str, rel: str) -> str | None:
    """Reason from the reviewed exclude list, if ``rel`` is on it."""
    for pat, reason in EXCLUDE.get(pkg, {}).items():
        if fnmatch.fnmatch(rel, pat):
            return reason
    return None



def detail_crops(cand: Candidate, size: tuple[int, int]) -> list[Candidate]:
    """Two extra fixed crops (left-centre, right-centre) of a large photo.

    Large wallpapers lose their fine texture when shrunk to 512 px; two crops
    of half the short side keep some mid-scale detail (the native-resolution
    windows of ``corpus.crops`` keep the finest).  They share the parent, so
    they always go to the same split as the full frame.
    """
    w, h = size
    if min(w, h) < DETAIL_CROPS_MIN_SHORT:
        return []
    s = min(w, h) // 2
    boxes = [(w // 4 - s // 2, h // 2 - s // 2), (3 * w // 4 - s // 2, h // 2 - s // 2)]
    out = []
    for i, (x, y) in enumerate(boxes):
        x = min(max(0, x), w - s)
        out.append(crop_candidate(cand, (x, y, x + s, y + s), f"crop{i}"))
    return out


def collect_skimage() -> Iterator[Candidate]:
    """Bundled scikit-image colour photographs (offline only)."""
    import skimage
    import skimage.data as skd

    for name, licence in SKIMAGE_PHOTOS.items():
        fn = getattr(skd, name)
        try:
            arr = fn()
        except Exception as exc:  # noqa: BLE001 -- a sample that would need a download
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
                                lambda t=tile: t, "photo", tag=f"tile{i}", size=tile.size)
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
    """Marble's Blue Marble satellite mosaic and its aerial photos.

    The mosaic (2700x1350) enters whole, and ``corpus.crops`` cuts all of its
    ten 512 px windows at native resolution (continents, coasts, ice).
    """
    pkg = "marble-qt-data"
    earth = root / "usr/share/marble/data/maps/earth"
    bm = earth / "bluemarble/bluemarble.jpg"
    if bm.exists():
        cand = file_candidate(pkg, root, bm, cr)
        cand.background_ok = False  # satellite views make odd backdrops for animals and fruit
        cand.max_crops = 10
        yield cand
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


def source_factor(k: Kept, siblings: int = 1) -> float:
    """Prior weight of an image, independent of its colours.

    By kind (composites and deep-sky photos count less), divided by the
    square root of the number of images cut from the same parent file: a
    wallpaper with its whole frame and eight crops weighs 3 photographs, not
    9, yet more than one small photograph because it holds more detail.
    """
    base = 1.0
    if k.cand.kind == "stamp":
        base = STAMP_SOURCE_FACTOR
    elif k.cand.kind == "astro":
        base = NEBULA_SOURCE_FACTOR
    return base / float(np.sqrt(max(1, siblings)))


def hue_target(natural: dict[str, float]) -> dict[str, float]:
    """``HUE_TARGET`` with purple at no more than its natural share.

    Purple is rare in photographs (under 1% of chromatic pixels here); pushing
    it to a fixed 4% gave a few purple images the maximum weight (one fish
    25 times the mean).  The share purple does not take goes equally to warm,
    green and blue.
    """
    purple = min(HUE_TARGET["purple"], natural["purple"])
    rest = (1.0 - purple) / (1.0 - HUE_TARGET["purple"])
    return {b: (purple if b == "purple" else HUE_TARGET[b] * rest) for b in HUE_BINS}


def balance_weights(items: list[Kept], iters: int = 200) -> list[float]:
    """Per-image sampling weights that move the hue mix toward ``HUE_TARGET``.

    Each hue bin b gets a multiplier r_b; an image's weight is
    ``prior * clip(prod_b r_b ** (t * f_b), 0.2, 5)`` with
    ``t = min(1, c / 0.1)``, where c is its chromatic fraction, f_b its bin
    fractions and prior its source factor (``source_factor``).  The geometric mix matters: with
    a linear mix a mostly-warm photo with a patch of sky would be boosted
    almost as much as a blue seascape, and the fit cannot converge.  The
    hue term takes over fully
    once 10% of the pixels are chromatic, while nearly gray images (whose
    hue histogram is noise) keep weight ~prior.  r_b is fitted by damped
    iterative proportional scaling until the weighted hue distribution
    matches the target (or the clip stops it), then weights are normalised
    to mean 1.  The clip bounds keep any image from dominating or vanishing.
    """
    r = dict.fromkeys(HUE_BINS, 1.0)
    siblings = Counter(k.cand.parent for k in items)
    prior = [source_factor(k, siblings[k.cand.parent]) for k in items]
    target = hue_target(hue_distribution(items, prior))

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
                r[b] *= (target[b] / dist[b]) ** 0.5
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


def photo_set_of(pkg: str, original: str) -> str:
    """The source label of a file from ``PHOTO_SETS``, or "" for the package itself."""
    for pat, name in PHOTO_SETS.get(pkg, {}).items():
        if fnmatch.fnmatch(original, pat):
            return name
    return ""


def collect_package(pkg: str, root: Path, cr: CopyrightFile) -> Iterable[Candidate]:
    """The candidates of one Debian package, by its collector."""
    if pkg in WALLPAPER_PACKAGES:
        return collect_wallpapers(pkg, root, cr)
    collectors = {
        "stellarium-data": collect_stellarium,
        "tuxpaint-stamps-default": collect_tuxpaint,
        "marble-qt-data": collect_marble,
        "opencv-doc": collect_opencv,
        "gcompris-qt-data": gcompris.collect_gcompris,
        "jigzo-data": extra.collect_jigzo,
        "kstars-data": extra.collect_kstars,
        "hugin-data": extra.collect_hugin,
    }
    if pkg in collectors:
        return collectors[pkg](root, cr)
    return extra.collect_samples(pkg, root, cr)


def gather(cache: Path, max_side: int, crops_per_photo: int
           ) -> tuple[list[Candidate], dict[str, tuple[str, str, str]]]:
    """Fetch every source and return candidates and per-source (version, licence, path).

    After collection, large photographs get up to ``crops_per_photo`` extra
    windows cut at native resolution (``corpus.crops.native_crops``).
    """
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
        for c in collect_package(pkg, root, cr):
            c.photo_set = c.photo_set or photo_set_of(pkg, c.original)
            cands.append(c)
    crops = native_crops(cands, max_side, crops_per_photo)
    print(f"{len(crops)} native-resolution crops of large photographs")
    return cands + crops, info


def reject(rejected: list[tuple[str, str, str, str]], c: Candidate, reason: str) -> None:
    """Record a candidate left out (package, source, original path with tag, reason)."""
    label = f"{c.original}{'#' + c.tag if c.tag else ''}"
    rejected.append((c.source.split()[0], c.set_name, label, reason))


def screen(cands: list[Candidate], max_side: int,
           rejected: list[tuple[str, str, str, str]]) -> list[Kept]:
    """Apply exclude list, prechecks, photo heuristics, size and gray checks; resize survivors.

    Native crops (``corpus.crops``) come after the image they were cut from:
    they are dropped with it, and otherwise only need to be textured and
    coloured, not to pass the drawing tests again.
    """
    kept: list[Kept] = []
    accepted: dict[tuple[str, str], bool] = {}  # (parent, tag) of whole files and tiles
    for c in cands:
        base = crop_base(c.tag)
        verdict_kind = c.screen_as or c.kind
        reason = excluded(c.source, c.original)
        if reason is None and base is not None:
            if not accepted.get((c.parent, base), True):
                reason = "cut from a rejected image"
            verdict_kind = "crop"
        if reason is None and c.precheck is not None:
            reason = c.precheck()
        if reason is None:
            im = c.load()
            if min(im.size) < (64 if c.kind == "stamp" else MIN_SIDE):
                reason = f"too small {im.size}"
            elif c.kind == "stamp" and im.mode != "RGBA":
                reason = "stamp without transparency"
            else:
                reason = photo_verdict(photo_metrics(im), verdict_kind)
            # Stamps are judged for grayness after compositing: a gray object
            # on a coloured background is still a useful example.
            if reason is None and c.kind != "stamp" and mean_chroma(im) < GRAY_CHROMA:
                reason = "essentially gray"
        if base is None:
            accepted[(c.parent, c.tag)] = reason is None
        if reason is not None:
            reject(rejected, c, reason)
            continue
        small = resize_long_side(im, max_side)
        kept.append(Kept(c, small if c.kind == "stamp" else small.convert("RGB")))
    return kept


def pick_nebulae(kept: list[Kept], rejected: list[tuple[str, str, str, str]]) -> list[Kept]:
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
        reject(rejected, k.cand, "not among most colourful nebulae")
    return [k for k in kept if id(k) not in drop]


def deduplicate(kept: list[Kept], rejected: list[tuple[str, str, str, str]]) -> list[Kept]:
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
                    reject(rejected, k.cand, f"duplicate of {best}")
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
        k.backdrop_source = bg.cand.set_name
        out.append(k)
    return out


def cap_composites(stamps: list[Kept], n_photos: int, share: float, seed: int,
                   rejected: list[tuple[str, str, str, str]]) -> list[Kept]:
    """Keep composites a minority: at most ``share`` of all images.

    With P photographs, at most ``share / (1 - share) * P`` stamps are kept,
    chosen by a seeded hash of their path so the choice is stable.
    """
    limit = int(share / (1.0 - share) * n_photos) if share < 1.0 else len(stamps)
    if len(stamps) <= limit:
        return stamps

    def rank(k: Kept) -> bytes:
        return hashlib.sha256(f"{seed}:{k.cand.original}".encode()).digest()

    ordered = sorted(stamps, key=rank)
    for k in ordered[limit:]:
        reject(rejected, k.cand, f"composite cap ({share:.0%} of the corpus)")
    return ordered[:limit]


def source_name(k: Kept) -> str:
    """Short source label for file names and tables."""
    return k.cand.source.split()[0]


MANIFEST_COLUMNS = ["file", "split", "source_package", "original_path", "licence", "width",
                    "height", "weight", "dedup_group", "source", "composite", "backdrop_source"]


def manifest_row(k: Kept) -> list[object]:
    """One manifest row (``MANIFEST_COLUMNS``) for a kept image."""
    orig = k.cand.original + (f"#{k.cand.tag}" if k.cand.tag else "")
    composite = int(k.cand.kind == "stamp")
    return [k.file, k.split, source_name(k), orig, k.cand.licence, k.image.size[0],
            k.image.size[1], f"{k.weight:.4f}", k.group, k.cand.set_name, composite,
            k.backdrop_source]


def sources_table(items: list[Kept]) -> list[str]:
    """Markdown rows: per source, images (train/val), composites and licences."""
    per: dict[str, list[Kept]] = defaultdict(list)
    for k in items:
        per[k.cand.set_name].append(k)
    rows = ["| source | images | train | val | composites | licences |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(per):
        ks = per[name]
        lics = Counter(k.cand.licence for k in ks)
        lic_text = "; ".join(f"{lic} ({n})" for lic, n in lics.most_common())
        n_val = sum(k.split == "val" for k in ks)
        n_comp = sum(k.cand.kind == "stamp" for k in ks)
        rows.append(f"| {name} | {len(ks)} | {len(ks) - n_val} | {n_val} | {n_comp} | {lic_text} |")
    return rows


def write_outputs(out: Path, items: list[Kept], info: dict[str, tuple[str, str, str]],
                  rejected: list[tuple[str, str, str, str]]) -> None:
    """Write images, manifest.csv, SOURCES.md and rejected.csv."""
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(MANIFEST_COLUMNS)
        for k in sorted(items, key=lambda k: k.file):
            k.image.save(out / k.file, optimize=False, compress_level=6)
            wr.writerow(manifest_row(k))
    with open(out / "rejected.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["source_package", "source", "original_path", "reason"])
        wr.writerows(sorted(rejected))
    lines = ["# Corpus sources", "",
             "Generated by `scripts/build_corpus.py`; see `docs/corpus.md`.", "",
             "## Packages", "",
             "| package | version | images kept | licences of kept images | copyright file |",
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
    lines += ["", "## Sources (validation holds these out whole)", ""] + sources_table(items)
    lines += ["", "Rejected candidates and reasons: `rejected.csv`.", ""]
    (out / "SOURCES.md").write_text("\n".join(lines))


#: Prefixes of the reasons the pipeline itself writes, and their class in the summary;
#: any other reason comes from a reviewed exclude list.
REASON_KINDS: tuple[tuple[str, str], ...] = (
    ("duplicate of ", "duplicate"),
    ("composite cap", "composite cap"),
    ("too small", "too small"),
    ("stamp without transparency", "too small"),
    ("essentially gray", "gray"),
    ("not among most colourful nebulae", "nebula cap"),
    ("not on the reviewed list", "not on allow-list"),
    ("lossless or unknown storage", "graphics (lossless storage)"),
    ("cut-out on transparency", "graphics (cut-out on transparency)"),
    ("few distinct colours", "graphics (few colours)"),
    ("too few colours for a photo", "graphics (few colours)"),
    ("large flat fills", "graphics (flat fills)"),
    ("out-of-focus or featureless crop", "crop without detail"),
    ("cut from a rejected image", "crop of a rejected image"),
)


def reason_kind(reason: str) -> str:
    """Coarse class of a rejection reason, for the summary."""
    for prefix, kind in REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    return "reviewed exclude list"


def print_summary(items: list[Kept], rejected: list[tuple[str, str, str, str]]) -> None:
    """Counts per source and split, rejections by reason, and the hue balance."""
    table: dict[str, Counter] = defaultdict(Counter)
    for k in items:
        table[k.cand.set_name][k.split] += 1
        table[k.cand.set_name]["composite"] += int(k.cand.kind == "stamp")
        table[k.cand.set_name]["mpx"] += k.image.size[0] * k.image.size[1]
    print(f"\n{'source':40s} {'train':>6s} {'val':>5s} {'comp':>5s} {'Mpx':>7s}")
    tot: Counter = Counter()
    for src in sorted(table):
        c = table[src]
        print(f"{src:40s} {c['train']:6d} {c['val']:5d} {c['composite']:5d} {c['mpx'] / 1e6:7.1f}")
        tot.update(c)
    print(f"{'TOTAL':40s} {tot['train']:6d} {tot['val']:5d} {tot['composite']:5d} {tot['mpx'] / 1e6:7.1f}")
    drops: dict[str, Counter] = defaultdict(Counter)
    for _pkg, src, _orig, reason in rejected:
        drops[src][reason_kind(reason)] += 1
    print("\nrejected, by source and reason")
    for src in sorted(drops):
        print(f"  {src:40s} " + ", ".join(f"{kind} {n}" for kind, n in sorted(drops[src].items())))
    un = hue_distribution(items, [1.0] * len(items))
    we = hue_distribution(items, [k.weight for k in items])
    print("\nhue share of chromatic pixels   " + "  ".join(f"{b:>7s}" for b in HUE_BINS))
    print("  unweighted                    " + "  ".join(f"{un[b]:7.3f}" for b in HUE_BINS))
    print("  weighted                      " + "  ".join(f"{we[b]:7.3f}" for b in HUE_BINS))
    ws = sorted(k.weight for k in items)
    print(f"weights: min {ws[0]:.2f} median {ws[len(ws) // 2]:.2f} max {ws[-1]:.2f}")


def write_contact_sheets(items: list[Kept], folder: Path) -> None:
    """One set of contact sheets per source, for reviewing what was kept by eye."""
    per: dict[str, list[Kept]] = defaultdict(list)
    for k in items:
        per[k.cand.set_name].append(k)
    for name, ks in sorted(per.items()):
        ks = sorted(ks, key=lambda k: k.file)
        save_sheets([k.image for k in ks], [Path(k.file).stem for k in ks],
                    folder / slug(name))


def assign_files(kept: list[Kept], seed: int, val_fraction: float) -> None:
    """Set each image's split (by dedup group) and its output file name."""
    counters: Counter = Counter()
    for k in sorted(kept, key=lambda k: (k.cand.parent, k.cand.tag)):
        k.split = split_of(k.group, seed, val_fraction)
        path = Path(k.cand.original)
        name = path.stem if path.suffix.lower() in RASTER_EXTS else path.name
        if re.fullmatch(r"\d+x\d+", name):
            # Plasma names files by resolution; the wallpaper's name is its folder.
            name = path.parts[-4] if len(path.parts) >= 4 else name
        base = f"{source_name(k)}_{slug(name.replace('skimage.data.', ''))}"
        counters[base] += 1
        k.file = f"{k.split}/{base}_{counters[base]:02d}.png"


def build(out: Path, cache: Path, max_side: int, val_fraction: float, seed: int,
          crops_per_photo: int = CROPS_PER_PHOTO, max_composite_share: float = MAX_COMPOSITE_SHARE,
          contact_sheets: Path | None = None) -> None:
    """Run the whole pipeline into ``out`` (which is recreated)."""
    start = time.monotonic()
    cands, info = gather(cache, max_side, crops_per_photo)
    print(f"{len(cands)} candidates")
    rejected: list[tuple[str, str, str, str]] = []
    kept = screen(cands, max_side, rejected)
    kept = pick_nebulae(kept, rejected)
    kept = deduplicate(kept, rejected)
    photos = [k for k in kept if k.cand.kind != "stamp"]
    stamps = cap_composites([k for k in kept if k.cand.kind == "stamp"], len(photos),
                            max_composite_share, seed, rejected)
    assign_files(photos + stamps, seed, val_fraction)
    stamps = make_composites(stamps, photos, seed, max_side)
    items = []
    # Composites inherit the stamp's split, so a near-gray check is still due.
    for k in photos + stamps:
        if mean_chroma(k.image) >= GRAY_CHROMA:
            items.append(k)
        else:
            reject(rejected, k.cand, "essentially gray after compositing")
    for k in items:
        k.stats = hue_stats(k.image)
    for k, w in zip(items, balance_weights(items)):
        k.weight = w
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_outputs(out, items, info, rejected)
    if contact_sheets is not None:
        write_contact_sheets(items, contact_sheets)
    print_summary(items, rejected)
    print(f"\nwrote {len(items)} images to {out} ({len(rejected)} candidates rejected) "
          f"in {time.monotonic() - start:.0f} s")


def default_cache() -> Path:
    """Download cache outside the repository: ``$XDG_CACHE_HOME/napari-colorize/corpus``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-colorize" / "corpus"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output corpus directory (recreated)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="download/unpack cache (default: ~/.cache/napari-colorize/corpus)")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--val-fraction", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crops-per-photo", type=int, default=CROPS_PER_PHOTO,
                    help="native-resolution windows per large photograph")
    ap.add_argument("--max-composite-share", type=float, default=MAX_COMPOSITE_SHARE,
                    help="largest share of stamp composites in the corpus")
    ap.add_argument("--contact-sheets", type=Path, default=None,
                    help="also write contact sheets of the kept images per source here")
    args = ap.parse_args(argv)
    cache = args.cache or default_cache()
    build(args.out.resolve(), cache.resolve(), args.max_side, args.val_fraction, args.seed,
          args.crops_per_photo, args.max_composite_share,
          args.contact_sheets.resolve() if args.contact_sheets else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
