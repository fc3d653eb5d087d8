"""The unit of work of the corpus builder: a candidate image and what is kept of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from .imaging import open_image, opaque_crop
from .licences import CopyrightFile

RASTER_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass
class Candidate:
    """One image that may enter the corpus.

    ``parent`` identifies the original file the pixels come from: crops of the
    same file share it, and the dedup group is computed per parent so that
    crops of one photo always land in the same split.  ``photo_set`` is the
    *source* that validation holds out as a whole (a package, or a distinct
    set of photographs within one such as a GCompris activity); empty means
    the package itself.  ``precheck``, when given, is run before the pixels
    are loaded and returns a rejection reason or None (GCompris uses it to
    look at the file format).  ``screen_as`` picks the thresholds of
    ``photo_verdict`` when they differ from those of ``kind``.  ``size`` is the size of what ``load`` returns,
    when it is known without loading; only then can native crops be cut.
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
    photo_set: str = ""
    precheck: Callable[[], str | None] | None = None
    size: tuple[int, int] | None = None
    screen_as: str = ""  # thresholds of photo_verdict to use, if not those of ``kind``
    max_crops: int | None = None  # native crops of this parent; None: the global cap

    @property
    def set_name(self) -> str:
        """The source label used for validation by source."""
        return self.photo_set or self.source.split()[0]


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
    backdrop_source: str = ""  # for composites: the source of the backdrop photo


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
    pkg: str, root: Path, path: Path, cr: CopyrightFile, kind: str = "photo",
    photo_set: str = "",
) -> Candidate:
    """Candidate for a whole file, with its RGBA regions cropped to opaque parts."""
    rel = str(path.relative_to(root))
    with Image.open(path) as probe:
        w, h = probe.size
        # With transparency the opaque crop decides the final size, so it is
        # only known for files without an alpha channel.
        opaque = probe.mode in ("RGB", "L", "CMYK", "YCbCr", "I;16", "I") and "transparency" not in probe.info

    def load() -> Image.Image:
        im = open_image(path)
        if kind != "stamp" and im.mode == "RGBA":
            im = opaque_crop(im) or Image.new("RGB", (1, 1))
        return im

    return Candidate(pkg, rel, f"{pkg}:{rel}", w * h, cr.licence_for(rel), load, kind,
                     photo_set=photo_set, size=(w, h) if opaque else None)


def crop_candidate(cand: Candidate, box: tuple[int, int, int, int], tag: str) -> Candidate:
    """A candidate for the pixels of ``cand`` inside ``box`` (same parent, licence, source)."""

    def load(base: Callable[[], Image.Image] = cand.load) -> Image.Image:
        return base().crop(box)

    return Candidate(cand.source, cand.original, cand.parent, cand.parent_pixels, cand.licence,
                     load, cand.kind, tag=tag, background_ok=cand.background_ok,
                     photo_set=cand.photo_set, precheck=cand.precheck,
                     size=(box[2] - box[0], box[3] - box[1]), screen_as=cand.screen_as)
