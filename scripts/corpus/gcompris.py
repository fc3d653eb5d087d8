"""Photographs from GCompris's activity bundles (``gcompris-qt-data``).

GCompris 3.1 ships its activities as Qt binary resource bundles
(``usr/share/gcompris-qt/rcc/*.rcc``), read here with :mod:`corpus.rcc`
(no Qt needed).  The bundles mix photographs (animals, monuments,
instruments, tools, places) with paintings, cartoons and sprites.  What is
kept is decided in three stated steps:

1. the reviewed folder list ``EXCLUDE`` below (paintings, cartoons, renders),
   built by looking at contact sheets of every raster in every bundle;
2. ``photo.frame_verdict``: lossy storage (JPEG / lossy WebP) and a filled
   frame (at most 2% transparent pixels);
3. the ``curated`` thresholds of ``photo.photo_verdict`` and the size and
   gray checks every source gets.

Each activity is its own *source* (``gcompris-qt-data/ACTIVITY``) for
validation by source.  Licences come from the package's DEP-5 copyright file,
whose paths are those of the source tree (``src/activities/...``) and often
name the file before its conversion to WebP, so the other usual extensions
are tried too.  Debian's file lags behind upstream renames, so where it only
has its ``Files: *`` default, the ``README`` that upstream ships next to the
images inside the bundle (the same stanza format, with exact file names) gives
the licence; the manifest says which of the two was used.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterator

from PIL import Image

from .candidates import Candidate
from .imaging import open_image
from .licences import CopyrightFile
from .photo import frame_verdict
from .rcc import iter_entries

PACKAGE = "gcompris-qt-data"
RCC_DIR = "usr/share/gcompris-qt/rcc"
IMAGE_EXTS = (".webp", ".jpg", ".jpeg", ".png")
#: Extensions a converted file may have had in the source tree.
SOURCE_EXTS = (".jpg", ".jpeg", ".png", ".svg", ".webp")

# Reviewed on contact sheets of all 882 rasters in the 186 bundles.  Keys are
# fnmatch patterns on the original path (``RCC_DIR/X.rcc:/gcompris/src/...``).
EXCLUDE: dict[str, str] = {
    "*/activities/paintings/*": "paintings (reproductions of artworks)",
    "*/activities/babyshapes/*": "paintings and puzzle pieces cut from two dog photos",
    "*/activities/details/*Gogh*": "painting (Van Gogh)",
    "*/activities/details/*Auvers*": "painting (Van Gogh, The Church at Auvers)",
    "*/activities/details/*Tanguy*": "painting (Van Gogh, Portrait of Pere Tanguy)",
    "*/activities/lang/*": "cartoon drawings",
    "*/activities/chronos/*": "drawings",
    "*/activities/solar_system/*": "planet globes on transparency (mosaics and renders)",
    "*/activities/gravity/*": "planet globes on transparency",
    "*/activities/hangman/*": "fog texture",
    "*/activities/louis-braille/resource/chart.webp": "braille chart graphic",
    "*/activities/louis-braille/resource/night_printing.webp": "render with lettering",
    "*/activities/louis-braille/resource/braille_ball.webp": "render",
    "*/activities/louis-braille/resource/louis.webp": "painted portrait",
}


def activity_of(resource: str) -> str:
    """Photo-set name of a resource path: its activity folder, or the top folder."""
    parts = resource.split("/")
    if len(parts) > 3 and parts[1:3] == ["src", "activities"]:
        return parts[3]
    return parts[2] if len(parts) > 2 else parts[0]


def source_names(resource: str) -> list[str]:
    """Paths the copyright file may use for a resource (source tree, any usual extension)."""
    rel = resource.split("/", 1)[1] if resource.startswith("gcompris/") else resource
    stem, _, ext = rel.rpartition(".")
    return [rel] + [f"{stem}{e}" for e in SOURCE_EXTS if e != f".{ext.lower()}"]


def normalise_licence(text: str) -> str:
    """Debian's short-name spelling of a README licence ("CC-BY-SA 4.0" -> "CC-BY-SA-4.0")."""
    text = " ".join(text.split())
    if text.lower() in ("public domain", "public-domain"):
        return "public-domain"
    return re.sub(r"\s+v?(\d+(\.\d+)?)$", r"-\1", text)


def parse_readme(text: str) -> dict[str, str]:
    """``{file name: licence}`` from an upstream GCompris resource README.

    The README is a list of blank-line separated stanzas with ``License:``
    and ``Files:`` fields; file names follow ``Files:`` on the same line or
    on the next lines, up to the end of the stanza or the next field.
    """
    out: dict[str, str] = {}
    for block in text.replace("\r\n", "\n").split("\n\n"):
        licence, files, in_files = None, [], False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            is_field = bool(sep) and key.strip() and " " not in key.strip() and not line[:1].isspace()
            if is_field:
                in_files = key.strip().lower() == "files"
                if key.strip().lower() == "license":
                    licence = normalise_licence(value)
                elif in_files:
                    files += value.split()
            elif in_files:
                files += line.split()
        if licence:
            out.update({name: licence for name in files})
    return out


def bundle_licence(cr: CopyrightFile, resource: str, readmes: dict[str, dict[str, str]]) -> str:
    """Licence of one resource: Debian's specific stanza, else upstream's README, else ``Files: *``."""
    lic = None
    for name in source_names(resource):
        lic = cr.specific_licence(name, loose=False)
        if lic is not None:
            return lic
    # A README names files relative to its own folder, which may be an ancestor.
    parts = resource.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        folder, name = "/".join(parts[:cut]), "/".join(parts[cut:])
        if name in readmes.get(folder, {}):
            return f"{readmes[folder][name]} (upstream README in the bundle)"
    return f"{cr.default()} (copyright file, Files: *)"


def make_precheck(data: bytes):
    """A precheck that applies ``frame_verdict`` to the stored bytes."""

    def precheck() -> str | None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return frame_verdict(data, im)

    return precheck


def make_loader(data: bytes):
    """A loader decoding the stored bytes to RGB (a filled frame needs no alpha)."""

    def load() -> Image.Image:
        return open_image(io.BytesIO(data)).convert("RGB")

    return load


def read_bundles(root: Path) -> tuple[dict[str, tuple[str, bytes]], dict[str, dict[str, str]]]:
    """Images and READMEs of all bundles.

    Returns
    -------
    images
        ``{resource path: (bundle path relative to root, bytes)}``; several
        bundles embed the same resource (the three ``erase`` activities), and
        the first bundle in name order provides it.
    readmes
        ``{resource folder: {file name: licence}}`` from upstream READMEs.
    """
    images: dict[str, tuple[str, bytes]] = {}
    readmes: dict[str, dict[str, str]] = {}
    for rcc in sorted((root / RCC_DIR).glob("*.rcc")):
        for entry in iter_entries(rcc.read_bytes()):
            folder, _, name = entry.path.rpartition("/")
            if name.lower() == "readme":
                readmes.setdefault(folder, {}).update(parse_readme(entry.read().decode("utf-8", "replace")))
            elif entry.path.lower().endswith(IMAGE_EXTS) and entry.path not in images:
                images[entry.path] = (str(rcc.relative_to(root)), entry.read())
    return images, readmes


def collect_gcompris(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Every raster image in the GCompris bundles, once per resource path."""
    images, readmes = read_bundles(root)
    for resource, (bundle, data) in images.items():
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            opaque = probe.mode in ("RGB", "L")
        original = f"{bundle}:/{resource}"
        yield Candidate(
            PACKAGE, original, f"{PACKAGE}:{original}", w * h,
            bundle_licence(cr, resource, readmes), make_loader(data),
            photo_set=f"{PACKAGE}/{activity_of(resource)}",
            precheck=make_precheck(data), size=(w, h) if opaque else None,
            screen_as="curated",
        )
