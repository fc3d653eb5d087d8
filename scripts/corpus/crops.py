"""Distinct native-resolution crops of large photographs.

A 5120x2880 wallpaper shrunk to 512 px keeps its composition but loses all
texture; training crops of 160-224 px then see only a blurred thumbnail.
Cutting non-overlapping windows at the original resolution gives the model
real detail (bark, grass, water) from the same licensed files.
"""

from __future__ import annotations

from collections import defaultdict

from .candidates import Candidate, crop_candidate

Box = tuple[int, int, int, int]


def grid_boxes(size: tuple[int, int], side: int) -> list[Box]:
    """Non-overlapping ``side`` x ``side`` windows on a grid, centred in the image.

    Parameters
    ----------
    size
        (width, height) of the image.
    side
        Window size in pixels.

    Returns
    -------
    list of (x0, y0, x1, y1)
        Row-major; empty when the image is smaller than one window.
    """
    w, h = size
    nx, ny = w // side, h // side
    # Centre the grid so the leftover margin is split evenly on both sides.
    ox, oy = (w - nx * side) // 2, (h - ny * side) // 2
    return [(ox + i * side, oy + j * side, ox + (i + 1) * side, oy + (j + 1) * side)
            for j in range(ny) for i in range(nx)]


def spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (deterministic)."""
    if k >= n:
        return list(range(n))
    if k <= 1:
        return [n // 2] if k == 1 else []
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def native_crops(cands: list[Candidate], side: int, per_parent: int,
                 min_factor: float = 1.5) -> list[Candidate]:
    """Extra crop candidates cut at native resolution from large photographs.

    Every photo candidate (whole file or tile) whose size is known and whose
    short side is at least ``min_factor * side`` contributes its grid windows;
    per parent file at most ``per_parent`` windows are kept, spread evenly
    over all of them, so a long panorama does not swamp the corpus.

    Parameters
    ----------
    cands
        All candidates collected so far.
    side
        Window size, normally the corpus ``--max-side`` (so crops are stored
        at 1:1 scale).
    per_parent
        Most windows per parent file, unless its candidate sets ``max_crops``.
    min_factor
        Only images whose short side is at least this many windows are cut;
        smaller ones are already close to native scale after resizing.

    Returns
    -------
    list of Candidate
        New candidates tagged ``gridN`` (``TILE+gridN`` for tiles); they share
        the parent, licence and source of the image they come from.
    """
    pool: dict[str, list[tuple[Candidate, Box]]] = defaultdict(list)
    caps: dict[str, int] = {}
    for c in cands:
        # Only whole files and panorama tiles: windows of the mid-scale detail
        # crops would repeat windows of the whole file.
        whole = c.tag == "" or c.tag.startswith("tile")
        if c.kind != "photo" or c.size is None or not whole or min(c.size) < min_factor * side:
            continue
        for box in grid_boxes(c.size, side):
            pool[c.parent].append((c, box))
        caps[c.parent] = per_parent if c.max_crops is None else c.max_crops
    out: list[Candidate] = []
    for parent in sorted(pool):
        windows = pool[parent]
        for n, i in enumerate(spread(len(windows), caps[parent])):
            c, box = windows[i]
            tag = f"{c.tag}+grid{n}" if c.tag else f"grid{n}"
            out.append(crop_candidate(c, box, tag))
    return out


def crop_base(tag: str) -> str | None:
    """For a native crop's tag, the tag of the image it was cut from ("" = whole file).

    Returns None for tags that are not native crops.
    """
    if tag.startswith("grid"):
        return ""
    if "+grid" in tag:
        return tag.split("+grid", 1)[0]
    return None
