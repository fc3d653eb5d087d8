"""Make docs/images/before_after.png: gray input | default model | truth.

Rows: the bundled cameraman sample (gray from the start: no truth) and photographs of the
corpus's *test* sources (fold 1 of the source-grouped split: never used for training,
early stopping or calibration): a hugin-data street panorama (GPL-2+), a stellarium-data
landscape (GPL-2+), a gcompris-qt-data monument photograph (GPL-3+) and matplotlib's
Grace Hopper portrait (public domain, US Navy).

Usage: python scripts/make_before_after.py [--corpus corpus] [--model default] [--out docs/images/before_after.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import napari_colorize as nc

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ("train/hugin-data_600px-Tuebingen-Neckarfront-small15-2006-06-11_01.png",
            "train/stellarium-data_guereins-panorama-sides_02.png",
            "train/gcompris-qt-data_cabrillo_01.png",
            "train/python-matplotlib-data_grace-hopper_01.png")


def panel(rgb: np.ndarray, height: int = 256) -> np.ndarray:
    """Nearest-neighbour resize to a common height (a figure, not a measurement)."""
    h, w = rgb.shape[:2]
    ys = (np.arange(height) * h / height).astype(int)
    xs = (np.arange(int(w * height / h)) * w / (w * height / h)).astype(int)
    return rgb[ys][:, xs]


def row(gray: np.ndarray, truth: np.ndarray | None, model: str = "default") -> np.ndarray:
    colour = nc.colorize(gray, model=model).rgb
    tiles = [np.repeat(gray[..., None], 3, -1), colour] + ([truth] if truth is not None else [np.ones_like(colour)])
    gap = np.ones((256, 8, 3), np.float32)
    parts = []
    for t in tiles:
        parts += [panel(t.astype(np.float32)), gap]
    return np.concatenate(parts[:-1], axis=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    p.add_argument("--model", default="default")
    p.add_argument("--out", type=Path, default=ROOT / "docs/images/before_after.png")
    args = p.parse_args()
    rows = [row(iio.imread(ROOT / "src/napari_colorize/data/photograph.png") / 255.0, None, args.model)]
    for name in HELD_OUT:
        truth = iio.imread(args.corpus / name)[..., :3] / 255.0
        rows.append(row(truth.mean(-1), truth, args.model))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, (np.concatenate(rows, 0) * 255).round().astype(np.uint8))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
