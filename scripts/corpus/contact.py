"""Contact sheets: a grid of thumbnails for reviewing what a source yields by eye."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw


def contact_sheet(images: Sequence[Image.Image], labels: Sequence[str], cols: int = 8,
                  cell: int = 160, label_height: int = 12) -> Image.Image:
    """Lay ``images`` out in a grid of ``cell``-pixel thumbnails with short labels.

    Parameters
    ----------
    images, labels
        Images (any mode) and one label each; labels are cut to fit the cell.
    cols
        Thumbnails per row.
    cell
        Size of the square each thumbnail is fitted into.
    label_height
        Pixels reserved under each thumbnail for its label.

    Returns
    -------
    PIL.Image.Image
        An RGB sheet; transparency is shown on mid-gray.
    """
    rows = max(1, -(-len(images) // cols))
    sheet = Image.new("RGB", (cols * cell, rows * (cell + label_height)), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    chars = max(4, cell // 6)
    for i, (im, label) in enumerate(zip(images, labels)):
        thumb = im.convert("RGBA")
        thumb.thumbnail((cell - 4, cell - 4))
        tile = Image.new("RGBA", thumb.size, (128, 128, 128, 255))
        tile.alpha_composite(thumb)
        x, y = (i % cols) * cell, (i // cols) * (cell + label_height)
        sheet.paste(tile.convert("RGB"), (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.text((x + 2, y + cell), label[-chars:], fill=(230, 230, 230))
    return sheet


def save_sheets(images: Sequence[Image.Image], labels: Sequence[str], stem: Path,
                per_sheet: int = 96, cols: int = 12, cell: int = 128) -> list[Path]:
    """Write ``stem_00.png``, ``stem_01.png``, ... with at most ``per_sheet`` images each."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(0, max(1, len(images)), per_sheet):
        path = stem.with_name(f"{stem.name}_{k // per_sheet:02d}.png")
        contact_sheet(images[k : k + per_sheet], labels[k : k + per_sheet], cols, cell).save(path)
        paths.append(path)
    return paths
