"""Numeric tests that tell photographs from drawings, renders and sprites."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .imaging import resize_long_side

CURATED_MIN_COLOURS = 150  # flat icons and line art have fewer
CURATED_MAX_FLAT = 0.25  # a quarter of mid-tones in exactly flat fills: a drawing
CROP_MIN_DETAIL = 0.008  # native crops below this are bokeh or blank (measured on GCompris crops)
MAX_TRANSPARENT = 0.02  # a photograph fills its frame; more see-through: a cut-out


def photo_metrics(im: Image.Image) -> dict[str, float]:
    """Cheap statistics that separate photographs from flat/vector art.

    * ``colours``: distinct 5-bit-per-channel colours in a 128 px thumbnail,
      over opaque pixels.  Clip art and vector art use a few hundred at most.
    * ``flat``: fraction of mid-tone pixels whose 4 neighbours are identical
      in a 256 px thumbnail.  Photos have noise/texture, so almost never
      exactly flat; fills in drawings are.  Clipped blacks/whites are
      ignored because photos legitimately saturate there.
    * ``detail``: mean absolute difference of neighbouring gray levels (in
      [0, 1]) in the 128 px thumbnail; out-of-focus backgrounds and clear sky
      are near 0.
    """
    rgba = im.convert("RGBA")
    small = resize_long_side(rgba, 128)
    a = np.asarray(small)
    mask = a[..., 3] >= 250
    q = (a[..., :3] >> 3).astype(np.int32)
    codes = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    colours = len(np.unique(codes[mask])) if mask.any() else 0
    gray = a[..., :3].astype(np.float32).mean(-1) / 255.0
    detail = float(np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean())

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
    return {"colours": float(colours), "flat": flat, "detail": detail}


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
    if kind == "crop":
        # A native-resolution window of a photograph that passed already: the
        # drawing tests do not apply (a window of sky has few colours and is
        # smooth), but a window of out-of-focus background teaches nothing.
        if metrics["detail"] < CROP_MIN_DETAIL:
            return f"out-of-focus or featureless crop (detail {metrics['detail']:.4f})"
        return None
    if kind == "curated":
        # Sets already screened by storage format and folder review (GCompris,
        # Jigzo, Hugin): many are small object photographs on white, with few
        # colours and some clipped background, so only flat graphics are caught.
        if metrics["colours"] < CURATED_MIN_COLOURS:
            return f"few distinct colours ({metrics['colours']:.0f})"
        if metrics["flat"] > CURATED_MAX_FLAT:
            return f"large flat fills ({metrics['flat']:.2f})"
        return None
    if metrics["colours"] < 400:
        return f"few distinct colours ({metrics['colours']:.0f})"
    if metrics["flat"] > 0.12:
        return f"large flat fills ({metrics['flat']:.2f})"
    return None


def storage_format(data: bytes) -> str:
    """How an image file stores its pixels: ``jpeg``, ``webp-lossy``, ``webp-lossless``, ``png`` or ``other``.

    WebP is a RIFF file; a ``VP8 `` chunk holds lossy (DCT) data, ``VP8L``
    lossless data, and the extended form ``VP8X`` is followed by one of them
    (possibly after ``ALPH``, ``ICCP`` or metadata chunks).
    """
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "other"
    pos = 12
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag == b"VP8 ":
            return "webp-lossy"
        if tag == b"VP8L":
            return "webp-lossless"
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return "other"


def transparent_fraction(im: Image.Image) -> float:
    """Fraction of pixels that are not (almost) opaque; 0 for images without alpha."""
    if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
        return 0.0
    alpha = np.asarray(im.convert("RGBA"))[..., 3]
    return float((alpha < 250).mean())


def frame_verdict(data: bytes, im: Image.Image) -> str | None:
    """Reject files stored or shaped like graphics rather than photographs.

    The rule, for sets where photographs and artwork sit side by side
    (GCompris): a photograph is stored lossily (JPEG or lossy WebP), because
    its authors compress photographs that way and keep sprites, icons and
    line art lossless; and it fills its rectangle, while cut-outs on
    transparency (cartoons, puzzle pieces, planets on nothing) do not.

    Parameters
    ----------
    data
        The file's bytes.
    im
        The decoded image (its alpha channel is inspected).

    Returns
    -------
    str or None
        The rejection reason, or None if the file may be a photograph.
    """
    fmt = storage_format(data)
    if fmt not in ("jpeg", "webp-lossy"):
        return f"lossless or unknown storage ({fmt}): graphics, not a photograph"
    frac = transparent_fraction(im)
    if frac > MAX_TRANSPARENT:
        return f"cut-out on transparency ({frac:.0%} transparent)"
    return None
