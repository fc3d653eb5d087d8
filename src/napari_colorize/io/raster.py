"""Reading PNG, JPEG, BMP, WebP, GIF, Netpbm (PGM/PPM/PBM) and JPEG 2000 files through Pillow, by the colour mode each
file declares.

Gray modes keep their values and type (8-bit, 16-bit, 1-bit, 32-bit).  Gray + alpha
loses its alpha (the stored gray values are kept; a warning says so when some pixel
is transparent).  CMYK is converted to RGB by Pillow, palettes are looked up, and
every colour file comes back as RGB for :func:`napari_colorize.io.read_image` to turn
into gray.  A camera's EXIF orientation is applied (the picture is read upright, as
viewers show it, so the result is too).  Animated PNG/WebP frames are read as a stack; a JPEG's extra frames (MPO
previews, the second view of a stereo pair) are not images of their own and are
skipped.

Pillow holds colour at 8 bits a sample, so a 16-bit colour PNG (48-bit RGB, 64-bit RGBA,
32-bit gray + alpha) came back as its high bytes only: a 12-bit camera's values up to
4095 became 0-15, a black image.  Such files are decoded by imagecodecs (libpng) instead
(:func:`wide_png`), at their full depth.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .image import Image, ImageReadError, ReadWarning, warn_if_transparent

__all__ = ["read_raster", "frame_count", "wide_png"]

_GRAY_MODES = ("1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_RGB_MODES = ("RGB", "RGBA", "RGBX", "RGBa")
_ORIENTATION = 0x0112  # the EXIF orientation tag
_X_RESOLUTION = 0x011A  # the EXIF resolution tags (YResolution is the next one)
_RESOLUTION_UNIT = 0x0128  # 1 none, 2 inch (the default), 3 centimetre


def frame_count(im) -> int:
    """The frames of an open Pillow image that are read as planes: every frame of an animated
    PNG, GIF or WebP, only the first of a JPEG (an MPO's others are previews)."""
    return 1 if im.format in ("JPEG", "MPO") else int(getattr(im, "n_frames", 1))


#: PNG colour types whose 16-bit samples Pillow cuts to 8 bits: RGB, gray + alpha, RGBA.
_WIDE_PNG_TYPES = (2, 4, 6)


def wide_png(im, path: Path) -> np.ndarray | None:
    """The full-depth samples ``(Y, X, C)`` uint16 of ``im`` (open in Pillow, from ``path``) when it is a
    one-frame 16-bit colour PNG; None for any other file.

    Gray PNGs of 16 bits are left to Pillow, which keeps them (mode ``I;16``); so are
    animated ones (imagecodecs reads the first frame only).
    """
    if im.format != "PNG" or getattr(im, "n_frames", 1) != 1:
        return None
    with open(path, "rb") as f:
        head = f.read(26)
    # After the signature, the IHDR chunk: length, type, width, height, bit depth (byte 24), colour type (25).
    if len(head) < 26 or head[12:16] != b"IHDR" or head[24] != 16 or head[25] not in _WIDE_PNG_TYPES:
        return None
    import imagecodecs

    try:
        return np.asarray(imagecodecs.png_decode(Path(path).read_bytes()))
    except imagecodecs.PngError as err:
        raise ImageReadError(f"cannot read {path.name}: {err}; the file is damaged or incomplete") from None


def read_raster(path: Path) -> Image:
    """Read every frame of a Pillow-readable file: gray ``(Y, X)`` or RGB ``(Y, X, 3)`` (stacked if animated)."""
    from PIL import ImageOps

    with _opened(path) as im:
        pixel_size = _pixel_size_um(_stated_dpi(im))
        wide = wide_png(im, path)
        if wide is not None:
            plane, turned = _upright(_wide_frame(wide, path), im)
            pixel_size = pixel_size[::-1] if turned and pixel_size else pixel_size
            return Image(plane, pixel_size=pixel_size, unit="micrometer" if pixel_size else None)
        count = frame_count(im)
        planes, model = [], None
        for i in range(count):
            im.seek(i)
            # A camera's orientation tag: colour the picture the way every viewer shows it.
            rotated = count == 1 and im.getexif().get(_ORIENTATION, 1) != 1
            plane, model = _frame(ImageOps.exif_transpose(im) if rotated else im, path)
            if rotated and pixel_size and plane.shape[:2] != (im.height, im.width):  # turned a quarter
                pixel_size = pixel_size[::-1]
            planes.append(plane)
    if len({p.shape for p in planes}) > 1:
        raise ImageReadError(f"{path.name} holds {len(planes)} frames of different sizes; save each frame as a file "
                             "of its own")
    return Image(planes[0] if len(planes) == 1 else np.stack(planes), colour_model=model, pixel_size=pixel_size,
                 unit="micrometer" if pixel_size else None)


def _opened(path: Path):
    """``PIL.Image.open(path)``, Pillow's warning for images above its limit for untrusted files
    ("could be decompression bomb DOS attack") said as what it means here: a large scan, read
    whole into memory, where a TIFF would be read in tiles.  Other warnings pass unchanged."""
    from PIL import Image as PILImage

    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            return PILImage.open(path)
        except PILImage.DecompressionBombWarning:
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        im = PILImage.open(path)
    megapixels = im.width * im.height / 1e6
    try:
        warnings.warn(f"{path.name} has {megapixels:.0f} megapixels: as a {im.format} file it is read whole into "
                      f"memory (at least {megapixels / 1e3:.1f} GB before colouring); saved as TIFF, it would be read "
                      "in tiles at any size", ReadWarning, stacklevel=3)
    except BaseException:  # warnings turned into errors: the file is not left open
        im.close()
        raise
    return im


def _stated_dpi(im):
    """The resolution the file states, or None.

    For a JPEG only its JFIF density in inches or centimetres, or its EXIF resolution in
    inches (the default) or centimetres: Pillow reports 72 dpi whenever an EXIF block lacks
    a resolution or its unit, which is Pillow's guess, not the file's word.
    """
    if im.format not in ("JPEG", "MPO"):
        return im.info.get("dpi")
    unit, density = im.info.get("jfif_unit"), im.info.get("jfif_density")
    if unit in (1, 2) and density:
        return tuple(float(d) * (2.54 if unit == 2 else 1.0) for d in density)
    exif = im.getexif()
    unit, x = exif.get(_RESOLUTION_UNIT, 2), exif.get(_X_RESOLUTION)
    if unit not in (2, 3) or x is None:
        return None
    try:
        return tuple(float(v) * (2.54 if unit == 3 else 1.0) for v in (x, exif.get(_X_RESOLUTION + 1, x)))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _pixel_size_um(dpi) -> tuple[float, float] | None:
    """(y, x) pixel size in micrometers from a file's resolution in dots per inch (a scan's
    600 dpi: 42.3 µm), so that the outputs keep it; None when the file gives none."""
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    return (25400.0 / y, 25400.0 / x) if x > 0 and y > 0 and np.isfinite(x) and np.isfinite(y) else None


#: EXIF orientation -> (quarter turns counter-clockwise after a left-right flip?, flip first), as
#: Pillow's ImageOps.exif_transpose turns a picture upright.
_UPRIGHT = {2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}


def _upright(values: np.ndarray, im) -> tuple[np.ndarray, bool]:
    """``values`` of a 16-bit PNG turned as its EXIF orientation says; whether it turned a quarter.

    Only an eXIf chunk before the image data is read: Pillow finds a later one by decoding
    the whole image (8 bits a sample), which libpng has already done at full depth.
    """
    if "exif" not in im.info:
        return values, False
    turns, flip = _UPRIGHT.get(im.getexif().get(_ORIENTATION, 1), (0, False))
    values = values[:, ::-1] if flip else values
    return np.ascontiguousarray(np.rot90(values, turns)), turns % 2 == 1


def _wide_frame(values: np.ndarray, path: Path) -> np.ndarray:
    """A 16-bit PNG's gray (from gray + alpha) or RGB samples; the alpha only warns, as in :func:`_frame`."""
    if values.shape[-1] in (2, 4):
        warn_if_transparent(values[..., -1], path.name, 65535)
    return values[..., 0] if values.shape[-1] == 2 else values[..., :3]


def _frame(im, path: Path) -> tuple[np.ndarray, str | None]:
    """The current frame as a gray or RGB array, and the colour model it was converted from."""
    mode = im.mode
    if mode == "I" and im.format == "PPM":  # a 16-bit PGM, which Pillow holds as int32: its values fit uint16
        return np.asarray(im).astype(np.uint16), None
    if mode in _GRAY_MODES:
        return np.asarray(im), None
    if mode in ("LA", "La"):
        values = np.asarray(im)
        warn_if_transparent(values[..., 1], path.name, 255)
        return values[..., 0], None
    if mode in _RGB_MODES:
        values = np.asarray(im)
        if mode in ("RGBA", "RGBa"):
            warn_if_transparent(values[..., 3], path.name, 255)
        return values[..., :3], None
    if mode in ("P", "PA"):
        values = np.asarray(im.convert("RGBA"))
        warn_if_transparent(values[..., 3], path.name, 255)
        return values[..., :3], "palette"
    try:  # CMYK (Adobe's inverted CMYK JPEGs included), YCbCr, HSV ...
        return np.asarray(im.convert("RGB")), mode
    except ValueError:
        raise ImageReadError(f"{path.name} stores colour as {mode}, which cannot be converted to RGB here; "
                             "save it as an RGB or gray image first") from None
