"""Measure and picture guided colouring of a gray IHC slide (docs/tutorial-ihc.md).

The plugin's "immunohistochemistry slide" sample is scikit-image's IHC image cut in two:
the right half in gray (the input) and the left half in colour (the reference).  This
script colours the gray half with the shipped default model

* without a reference,
* with the left half as reference, at a few strengths (the default included),
* with an unrelated colour photograph as reference (what a wrong reference does),

scores each against the true right half with the package's metrics (PSNR, RMSE of
Lab a/b, AuC of the a/b-error CMF, colourfulness; the gray input is scored the same way
as the baseline) plus two stain-aware measures the image-wide metrics miss: the share
of blue pixels and how many of them are blue in the truth (did the hematoxylin
counterstain come back, and on the nuclei?) and the mean chroma on the truly DAB-brown
pixels against elsewhere (is the brown where the stain is?); prints a markdown table,
and saves

* ``docs/images/ihc-tutorial.png``: reference | gray input | no reference | with
  reference | truth;
* ``docs/images/ihc-confidence.png``: the chroma confidence without and with the
  reference.

Caveat printed with the table: the whole IHC image (both halves) is in the default
model's training corpus, so "no reference" is an optimistic baseline here.

Usage: ``python scripts/ihc_tutorial.py [--model default] [--out-dir docs/images]``
(about 15 s on 2 CPU cores; deterministic).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from napari_colorize import colorize
from napari_colorize._qt._sample_data import ihc_slide  # reads files; imports no Qt
from napari_colorize.color import rgb_to_gray
from napari_colorize.evaluate.scoring import score
from napari_colorize.guidance import DEFAULT_REFERENCE_STRENGTH
from napari_colorize.metrics import lab_of

ROOT = Path(__file__).resolve().parents[1]
#: Reference strengths tried besides "none"; the default is among them.
STRENGTHS = (0.5, DEFAULT_REFERENCE_STRENGTH, 2.0, 4.0)
#: A pixel counts as blue (hematoxylin-stained nuclei) below this CIE Lab b*.  -3 keeps
#: the near-neutral background out: 16 % of the true right half's pixels pass, the
#: nuclei; the DAB-brown glands have b* of +10 and more.
BLUE_B_STAR = -3.0
#: A true-colour pixel counts as DAB brown above this CIE Lab b* (47 % of the right half).
DAB_B_STAR = 8.0


@dataclass
class Run:
    """One colorization of the gray slide and what it was made with."""

    label: str
    rgb: np.ndarray               # (Y, X, 3) float in [0, 1]
    confidence: np.ndarray | None  # (Y, X) chroma confidence; None for the gray input
    seconds: float


def load_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gray slide uint8, colour reference uint8, true colour of the slide in [0, 1]).

    Input and reference come from the shipped sample files, exactly what a user gets
    from File > Open Sample; the truth is the right half of scikit-image's original.
    """
    (gray, _, _), (reference, _, _) = ihc_slide()
    ihc = data.immunohistochemistry()
    truth = ihc[:, ihc.shape[1] - gray.shape[1]:].astype(np.float64) / 255.0
    return gray, reference, truth


def colour_once(gray: np.ndarray, label: str, model: str, reference: np.ndarray | None = None,
                strength: float | None = None) -> Run:
    start = time.perf_counter()
    result = colorize(gray, model=model, device="cpu", reference=reference, reference_strength=strength)
    seconds = time.perf_counter() - start
    rgb = np.asarray(result.rgb, dtype=np.float64)
    # The library's promise: lightness is the input's; a guided run must keep it too.
    drift = float(np.abs(rgb_to_gray(rgb) - gray / 255.0).max())
    if drift > 1e-4:
        raise AssertionError(f"{label}: lightness changed by up to {drift:.2g}")
    return Run(label, rgb, np.asarray(result.chroma_confidence), seconds)


def all_runs(gray: np.ndarray, reference: np.ndarray, model: str) -> list[Run]:
    gray_rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
    runs = [Run("gray input (baseline)", gray_rgb, None, 0.0),
            colour_once(gray, "no reference", model)]
    for strength in STRENGTHS:
        tag = " (default)" if strength == DEFAULT_REFERENCE_STRENGTH else ""
        runs.append(colour_once(gray, f"left half as reference, strength {strength:g}{tag}", model, reference,
                                strength))
    # A colour photograph with nothing to do with the slide: the prior then pulls towards
    # the wrong colours, which is why the reference must show the same stain.
    runs.append(colour_once(gray, "unrelated reference (coffee photograph)", model, data.coffee()))
    return runs


def is_blue(rgb: np.ndarray) -> np.ndarray:
    """The blue pixels (b* < BLUE_B_STAR): where the counterstain is (or was put)."""
    return lab_of(rgb)[..., 2] < BLUE_B_STAR


def blue_cell(rgb: np.ndarray, true_blue: np.ndarray) -> str:
    """Share of blue pixels, and of them the share blue in the truth: "22% (7% on nuclei)"."""
    blue = is_blue(rgb)
    if not blue.any():
        return f"{blue.mean():.0%}"
    return f"{blue.mean():.0%} ({np.mean(true_blue[blue]):.0%} on nuclei)"


def chroma_split(rgb: np.ndarray, dab: np.ndarray) -> str:
    """Mean Lab chroma on the DAB-brown pixels of the truth / on the others, as "on / off"."""
    lab = lab_of(rgb)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    return f"{chroma[dab].mean():.1f} / {chroma[~dab].mean():.1f}"


def markdown_table(runs: list[Run], truth: np.ndarray, reference: np.ndarray) -> str:
    dab = lab_of(truth)[..., 2] > DAB_B_STAR
    true_blue = is_blue(truth)
    header = ("| colouring | PSNR (dB) | RMSE a/b | AuC a/b | colourfulness | blue pixels "
              "| chroma on DAB / elsewhere | mean chroma confidence |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        s = score(run.rgb, truth)
        conf = "" if run.confidence is None else f"{run.confidence.mean():.2f}"
        lines.append(f"| {run.label} | {s['psnr']:.2f} | {s['rmse_ab']:.1f} | {s['auc']:.3f} | "
                     f"{s['colourfulness']:.1f} | {blue_cell(run.rgb, true_blue)} | {chroma_split(run.rgb, dab)} | {conf} |")
    ref = reference / 255.0
    lines.append(f"| truth (right half in colour) | | 0 | 1 | {score(truth, truth)['colourfulness']:.1f} | "
                 f"{true_blue.mean():.0%} | {chroma_split(truth, dab)} | |")
    lines.append(f"| the reference itself (left half) | | | | {score(ref, ref)['colourfulness']:.1f} | "
                 f"{is_blue(ref).mean():.0%} | | |")
    return "\n".join(lines)


def save_rgb(fig: plt.Figure, path: Path) -> None:
    """Write a figure as an optimised RGB PNG: no alpha channel, a quarter smaller in the docs."""
    fig.canvas.draw()
    iio.imwrite(path, np.asarray(fig.canvas.buffer_rgba())[..., :3], optimize=True)
    plt.close(fig)


def save_figure(path: Path, reference: np.ndarray, gray: np.ndarray, plain: Run, guided: Run,
                truth: np.ndarray) -> None:
    panels = [(reference, "reference (left half, colour)"), (gray, "gray input (right half)"),
              (plain.rgb, "no reference"), (guided.rgb, f"with reference (strength {DEFAULT_REFERENCE_STRENGTH:g})"),
              (truth, "truth (right half)")]
    # About one screen pixel per image pixel (the halves are 256 wide): sharp, not bloated.
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 5.6), dpi=100)
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    save_rgb(fig, path)


def save_confidence(path: Path, plain: Run, guided: Run) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 4.9), dpi=100, layout="constrained")
    for ax, run, title in ((axes[0], plain, "no reference"), (axes[1], guided, "with reference")):
        shown = ax.imshow(run.confidence, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"chroma confidence\n{title} (mean {run.confidence.mean():.2f})", fontsize=10)
        ax.axis("off")
    fig.colorbar(shown, ax=axes, fraction=0.05)
    save_rgb(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model name or .safetensors path (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images",
                        help="where the two pictures go (default: docs/images)")
    args = parser.parse_args()
    gray, reference, truth = load_pair()
    runs = all_runs(gray, reference, args.model)
    print(markdown_table(runs, truth, reference))
    print("\nNote: the whole IHC image is in the default model's training corpus, so the "
          "no-reference row is optimistic.")
    print("Seconds per colorization: " + ", ".join(f"{r.seconds:.1f}" for r in runs[1:]))
    plain = runs[1]
    guided = next(r for r in runs if r.label.endswith("(default)"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(args.out_dir / "ihc-tutorial.png", reference, gray, plain, guided, truth)
    save_confidence(args.out_dir / "ihc-confidence.png", plain, guided)
    print(f"wrote {args.out_dir / 'ihc-tutorial.png'} and {args.out_dir / 'ihc-confidence.png'}")


if __name__ == "__main__":
    main()
