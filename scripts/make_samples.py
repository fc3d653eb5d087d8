"""Generate the sample images shipped in ``src/napari_colorize/data/`` (run once).

All are derived from public-domain / CC0 images bundled with scikit-image (no
download), so the package may ship them.  Provenance is in ``docs/plugin.md``.

- ``photograph.png``: the "cameraman" (``skimage.data.camera``, CC0), a photograph that
  was gray to begin with, uint8, 512 x 512.  Chosen because it is *not* in the default
  model's training corpus (scikit-image's colour images are), so what you see is what
  the model does on new images.
- ``archival_scan.png``: the coffee-cup photograph (``skimage.data.coffee``, CC0,
  Rachel Michetti; its colour original is in the default model's training corpus) made to look like a scanned old print: gray, faded blacks and
  highlights, soft focus, vignetting, film grain, dust specks, two scratches and a
  paper margin.  uint8, 464 x 664.
- ``microscopy_stack.tif``: a simulated focal series of a cell in saline
  (``skimage.data.cell``, a quantitative phase image, CC0, 0.107 um pixels): 10 planes
  0.5 um apart, each blurred by its distance from focus, photon noise, uint16 camera
  counts (offset 100, peak about 1,500), 2x binned to 0.214 um pixels, 256 x 256.
- ``ihc_slide_gray.png`` and ``ihc_reference.png``: the immunohistochemistry slide
  (``skimage.data.immunohistochemistry``, colonic glands, FHL2 in DAB brown with
  hematoxylin blue counterstain; "no known copyright restrictions"), cut in two: the
  right half in gray (uint8, 512 x 256, made with :func:`napari_colorize.color.rgb_to_gray`,
  so it is exactly the lightness a colorization keeps) and the left half in colour
  (uint8 RGB, 512 x 256) as the reference for guided colouring.  The colour original
  is in the default model's training corpus, like the coffee cup's.

Usage: ``python scripts/make_samples.py [NAME ...]`` (deterministic: fixed seeds);
names are the keys of ``WRITERS`` (default: all).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from scipy import ndimage
from skimage import data, transform

from napari_colorize.color import rgb_to_gray

OUT = Path(__file__).resolve().parents[1] / "src" / "napari_colorize" / "data"

#: Physical sampling of the microscopy stack, micrometres per pixel (z, y, x).
STACK_SPACING_UM = (0.5, 0.214, 0.214)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """gray = (R + G + B) / 3 in [0, 1] (the model's input convention)."""
    return rgb[..., :3].astype(np.float64).mean(-1) / 255.0


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


def make_photograph() -> np.ndarray:
    return data.camera().astype(np.uint8)


def make_archival_scan(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = gray_of(data.coffee())                         # (400, 600)
    img = ndimage.gaussian_filter(img, 1.0)              # soft print / lens
    img = 0.10 + 0.78 * img                              # faded blacks and highlights
    yy, xx = np.mgrid[-1:1:complex(0, img.shape[0]), -1:1:complex(0, img.shape[1])]
    img *= 1.0 - 0.22 * (xx ** 2 + yy ** 2)              # vignetting
    grain = ndimage.gaussian_filter(rng.normal(0.0, 1.0, img.shape), 0.8)
    img += 0.035 * grain / grain.std()                   # film grain (spatially correlated)
    for _ in range(60):                                  # dust: small dark and bright specks
        y, x = rng.integers(0, img.shape[0]), rng.integers(0, img.shape[1])
        r = rng.uniform(0.6, 2.0)
        mask = (yy * img.shape[0] / 2 - (y - img.shape[0] / 2)) ** 2 + (xx * img.shape[1] / 2 - (x - img.shape[1] / 2)) ** 2 < r ** 2
        img[mask] = rng.choice([0.05, 0.95])
    for x0, slope in ((170, 0.03), (455, -0.05)):         # two vertical scratches
        rows = np.arange(img.shape[0])
        cols = np.clip(np.round(x0 + slope * rows).astype(int), 0, img.shape[1] - 1)
        img[rows, cols] = np.minimum(img[rows, cols] + 0.35, 1.0)
    # A paper margin (slightly uneven off-white) around the print, as a flatbed scan shows.
    fibres = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (464, 664)), 3.0)
    page = 0.91 + 0.012 * fibres / fibres.std()
    page = np.clip(page, 0.85, 0.97)
    page[32:432, 32:632] = np.clip(img, 0.0, 1.0)
    return to_uint8(page)


def make_microscopy_stack(planes: int = 10, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cell = data.cell().astype(np.float64) / 255.0        # (660, 550), 0.107 um pixels
    cell = transform.downscale_local_mean(cell, (2, 2))  # 2x binning -> 0.214 um pixels
    cell = cell[62:318, 19:275]                          # 256 x 256 around the cell
    cell = (cell - cell.min()) / (cell.max() - cell.min())
    focus = (planes - 1) / 2.0
    stack = np.empty((planes, *cell.shape), np.uint16)
    for z in range(planes):
        defocus_um = abs(z - focus) * STACK_SPACING_UM[0]
        sigma_px = 0.6 + 2.2 * defocus_um                  # blur grows with distance from focus
        plane = ndimage.gaussian_filter(cell, sigma_px)
        photons = 100.0 + 1400.0 * plane * (1.0 - 0.04 * abs(z - focus))  # mild bleaching
        stack[z] = np.clip(rng.poisson(photons), 0, 65535).astype(np.uint16)
    return stack


def make_ihc_pair() -> tuple[np.ndarray, np.ndarray]:
    """(gray right half, colour left half) of the IHC slide, each 512 x 256 uint8.

    The halves share stain, scanner and tissue type but no pixels, which is the
    situation guided colouring is for: a colour slide of the same stain beside a gray
    scan.  The gray is the library's own ``(R + G + B) / 3`` so that scoring a
    colorization against the true right half compares colour only.
    """
    ihc = data.immunohistochemistry()                    # (512, 512, 3) uint8
    half = ihc.shape[1] // 2
    gray = to_uint8(rgb_to_gray(ihc[:, half:]).astype(np.float64))
    return gray, np.ascontiguousarray(ihc[:, :half])


def write_photograph() -> None:
    iio.imwrite(OUT / "photograph.png", make_photograph(), optimize=True)


def write_archival_scan() -> None:
    iio.imwrite(OUT / "archival_scan.png", make_archival_scan(), optimize=True)


def write_microscopy_stack() -> None:
    tifffile.imwrite(OUT / "microscopy_stack.tif", make_microscopy_stack(), compression="zlib",
                     predictor=True, imagej=False,
                     metadata={"axes": "ZYX", "spacing_um": list(STACK_SPACING_UM)})


def write_ihc() -> None:
    gray, reference = make_ihc_pair()
    iio.imwrite(OUT / "ihc_slide_gray.png", gray, optimize=True)
    iio.imwrite(OUT / "ihc_reference.png", reference, optimize=True)


#: Sample name -> writer; ``python scripts/make_samples.py ihc`` remakes one sample only.
WRITERS: dict[str, Callable[[], None]] = {"photograph": write_photograph, "archival_scan": write_archival_scan,
                                          "microscopy_stack": write_microscopy_stack, "ihc": write_ihc}


def main(names: list[str] | None = None) -> None:
    unknown = set(names or ()) - set(WRITERS)
    if unknown:
        raise SystemExit(f"unknown sample(s) {sorted(unknown)}; choose from {sorted(WRITERS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or WRITERS:
        WRITERS[name]()
    for path in sorted(OUT.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
