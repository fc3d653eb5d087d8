"""Collectors for the smaller photo sources of issue 9.

* ``jigzo-data``: the photograph each puzzle is cut from (:mod:`corpus.pzl`).
* ``kstars-data``: Debian's package ships no deep-sky image files (KStars
  downloads them on demand); the only deep-sky photograph is the one shown
  inside a FITS-viewer screenshot of the handbook, cut out with a reviewed box.
* ``hugin-data``: the handbook's photographs, from a reviewed allow-list (the
  rest are screenshots, projection and distortion demonstrations, upscaled
  crops and logos).
* ``python3-sklearn`` and ``python-matplotlib-data``: the sample photographs
  that ``sklearn.datasets.load_sample_images`` and matplotlib's
  ``sample_data`` return, taken from Debian's packages of those libraries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .candidates import Candidate, file_candidate, raster_files
from .imaging import open_image
from .licences import CopyrightFile
from .pzl import read_picture

JIGZO_DIR = "usr/share/games/jigzo/puzzles"
#: Puzzles left out, with the reason (licence from the copyright file).
JIGZO_EXCLUDE: dict[str, str] = {
    "*/penguin-3x2.pzl": "CC-BY-NC-SA-1.0: non-commercial licence",
}

KSTARS_DOC = "usr/share/doc/HTML/en/kstars"
#: Deep-sky photographs inside handbook screenshots: file -> (box, what it is).
#: Boxes were measured on the screenshot (the photo's edge against the
#: viewer's gray backdrop) and inset by 2 px.
KSTARS_PHOTOS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    f"{KSTARS_DOC}/fitsarea.png": ((83, 173, 695, 623), "Veil Nebula NGC 6992, H-alpha + RGB"),
}
# Not used: fitsviewer.png (Rosette Nebula in the SHO false-colour palette:
# its colours are a mapping of narrow-band filters, not the scene's colours)
# and kstars_hips.png (survey mosaic under a coordinate grid and labels).

HUGIN_DOC = "usr/share/hugin/xrc/data/help_en_EN"
#: The handbook's ordinary photographs (reviewed on a contact sheet).
HUGIN_PHOTOS: dict[str, str] = {
    "800px-C_Marchi-GrandCentral-adj.jpg": "Grand Central Terminal hall",
    "600px-Tuebingen_Neckarfront_small15_2006-06-11.jpg": "Tuebingen riverfront",
    "300px-Lamp_enfuse.jpg": "desk with lamp (exposure fusion)",
    "250px-LagardePont-defish.jpg": "footbridge, defished",
    "250px-Rectlinear.JPG": "church interior",
    "250px-TKS-Mmm-obliquev120-recti.png": "church interior under repair",
    "CA_tCA00.jpg": "office building and lawn",
    "CA_fringes00.jpg": "beech trees",
    "SB_Blended.jpg": "office with a hand holding a phone",
}

#: Sample photographs of Python libraries, as packaged by Debian, with the
#: licence stated next to the file (README.txt for scikit-learn; matplotlib's
#: Grace Hopper portrait is an official U.S. Navy photograph).
SAMPLE_PHOTOS: dict[str, dict[str, str]] = {
    "python3-sklearn": {
        "usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg":
            "CC-BY-2.0 (danielbuechele; sklearn/datasets/images/README.txt)",
        "usr/lib/python3/dist-packages/sklearn/datasets/images/flower.jpg":
            "CC-BY-2.0 (vultilion; sklearn/datasets/images/README.txt)",
    },
    "python-matplotlib-data": {
        "usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg":
            "public domain (official U.S. Navy photograph)",
    },
}
SAMPLE_SETS = {"python3-sklearn": "scikit-learn", "python-matplotlib-data": "matplotlib"}


def collect_jigzo(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """The whole photograph of every Jigzo puzzle."""
    pkg = "jigzo-data"
    for path in sorted((root / JIGZO_DIR).rglob("*.pzl")):
        rel = str(path.relative_to(root))
        picture = read_picture(path.read_bytes())
        # The copyright file names puzzles by their source path (puzzles/...).
        licence = cr.licence_for_any([rel.split("jigzo/", 1)[1]], loose=False)
        yield Candidate(pkg, rel, f"{pkg}:{rel}", picture.size[0] * picture.size[1], licence,
                        lambda p=picture: p, size=picture.size, screen_as="curated")


def collect_kstars(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Deep-sky photographs cut out of KStars handbook screenshots."""
    pkg = "kstars-data"
    for rel, (box, _what) in KSTARS_PHOTOS.items():
        path = root / rel
        if not path.exists():
            continue

        def load(path: Path = path, box: tuple[int, int, int, int] = box):
            return open_image(path).convert("RGB").crop(box)

        size = (box[2] - box[0], box[3] - box[1])
        yield Candidate(pkg, rel, f"{pkg}:{rel}", size[0] * size[1], cr.licence_for(rel), load,
                        "astro", tag="photo", size=size, background_ok=False)


def collect_hugin(root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """Every raster of Hugin's English handbook; only the allow-list survives the precheck."""
    pkg = "hugin-data"
    for path in raster_files(root, HUGIN_DOC):
        cand = file_candidate(pkg, root, path, cr)
        cand.screen_as = "curated"
        if path.name not in HUGIN_PHOTOS:
            cand.precheck = lambda: "not on the reviewed list (screenshot, projection demo, logo)"
        yield cand


def collect_samples(pkg: str, root: Path, cr: CopyrightFile) -> Iterator[Candidate]:
    """The sample photographs of a Python library's Debian package."""
    for rel, licence in SAMPLE_PHOTOS[pkg].items():
        path = root / rel
        if path.exists():
            cand = file_candidate(pkg, root, path, cr, photo_set=SAMPLE_SETS[pkg])
            cand.licence = licence
            yield cand
