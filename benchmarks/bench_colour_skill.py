"""Does the model's colour follow the picture, or is it one tint everywhere?

Usage::

    python benchmarks/bench_colour_skill.py [--model default] [--splits train,val,test] [--side 256]

Per source of each split (the model's ``training`` metadata and the corpus manifest, as
``scripts/finalize_default.py`` reads them), the undecorated network's colour (median of the
histogram, T = 1, no fading, no gain: what the calibration starts from) beside the truth's,
both as the mean Lab (a, b) over the grid cells, and then per split:

* **tracking** -- the correlation, over images, between the mean predicted and the mean true
  a (and b).  A network that sees what the scene is tracks the truth; one that paints its
  training sources' average tint gives the same (a, b) whatever the truth, r near 0;
* **separability** -- the ROC AUC with which the chroma confidence (the quantity the
  calibrated fading keys on) tells the cells where the colour beats gray (smaller ab error
  than gray's) from those where it loses.  0.5 is a coin: then no confidence fading can keep
  the helpful colour and drop the harmful.

Both explain the frontier of ``bench_colour_budget.py``: where the colour is one tint and the
confidence cannot tell, every colour the fading keeps costs some source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from finalize_default import source_images, split_of

from napari_colorize.color import rgb_to_lab
from napari_colorize.decode import DecodeOptions
from napari_colorize.engine import get_model
from napari_colorize.evaluate import load_images
from napari_colorize.evaluate.calibration import _network_passes
from napari_colorize.inference import GRID_STRIDE, decode_grid
from napari_colorize.model import resolve_model_path
from napari_colorize.training.splits import manifest_split, sources_by_path


def cells(net, rgb: np.ndarray, probs: dict) -> dict[str, torch.Tensor]:
    """Per grid cell of one image: predicted and true (a, b) ``(N, 2)`` and the chroma confidence ``(N,)``."""
    grid = decode_grid(probs, net.space, DecodeOptions(method="median", fading=False))[0]
    truth = rgb_to_lab(torch.from_numpy(rgb).float())[..., 1:].permute(2, 0, 1)[None]
    truth = F.avg_pool2d(truth, GRID_STRIDE)[0]  # the mean true colour of each cell
    h, w = min(grid.shape[1], truth.shape[1]), min(grid.shape[2], truth.shape[2])
    return {"pred": grid[:2, :h, :w].reshape(2, -1).T, "truth": truth[:, :h, :w].reshape(2, -1).T,
            "confidence": grid[2, :h, :w].flatten()}


def roc_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    ranks = torch.from_numpy(_average_ranks(score.double().numpy()))
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def split_files(split: dict, name: str) -> tuple[list[Path], dict[Path, str]]:
    """The images of one split and their sources.  Training: the images the run trained on
    (composites follow their backdrop, so those over a held-out photograph are left out);
    validation and test: the held-out sources' photographs, as the calibration and the test
    tables read them."""
    manifest = Path(split["manifest"])
    if name != "train":
        return source_images(manifest, split[f"{name}_sources"])
    train, _, _ = manifest_split(manifest, val_sources=[*split["val_sources"], *split["test_sources"]])
    source = sources_by_path(manifest)
    return train, {path.resolve(): source[path] for path in train}


def split_report(net, name: str, files: list[Path], source: dict[Path, str], side: int) -> None:
    images = load_images(files, max_side=side, paths=True)
    per_image = []
    for (rgb, _, probs), (_, _, path) in zip(_network_passes(net, images), images):
        c = cells(net, rgb, probs)
        gain = c["truth"].norm(dim=1) - (c["pred"] - c["truth"]).norm(dim=1)  # > 0: colour beats gray
        per_image.append((source[Path(path).resolve()], c, gain))
    print(f"\n**{name}** ({len(per_image)} images, long side {side})\n")
    print("| source | n | predicted mean (a, b) | true mean (a, b) | cells where colour beats gray | separability |")
    print("|---|---|---|---|---|---|")
    for src in sorted({s for s, _, _ in per_image}):
        mine = [(c, g) for s, c, g in per_image if s == src]
        pred = torch.cat([c["pred"] for c, _ in mine]).mean(0)
        true = torch.cat([c["truth"] for c, _ in mine]).mean(0)
        gain = torch.cat([g for _, g in mine])
        conf = torch.cat([c["confidence"] for c, _ in mine])
        print(f"| {src} | {len(mine)} | ({pred[0]:+.1f}, {pred[1]:+.1f}) | ({true[0]:+.1f}, {true[1]:+.1f}) | "
              f"{100 * float((gain > 0).float().mean()):.0f} % | {roc_auc(conf, gain > 0):.2f} |")
    pred = torch.stack([c["pred"].mean(0) for _, c, _ in per_image]).numpy()
    true = torch.stack([c["truth"].mean(0) for _, c, _ in per_image]).numpy()
    r = [float(np.corrcoef(pred[:, i], true[:, i])[0, 1]) for i in (0, 1)]
    gain = torch.cat([g for _, _, g in per_image])
    conf = torch.cat([c["confidence"] for _, c, _ in per_image])
    print(f"\ntracking over images: r(a) = {r[0]:+.2f}, r(b) = {r[1]:+.2f}; spread of the predicted mean "
          f"(a, b) {pred.std(0)[0]:.1f}, {pred.std(0)[1]:.1f} against the truth's {true.std(0)[0]:.1f}, "
          f"{true.std(0)[1]:.1f}; separability pooled {roc_auc(conf, gain > 0):.3f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--splits", default="train,val,test", help="any of train, val, test")
    p.add_argument("--side", type=int, default=256, help="long side of the images (256: as calibrated)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    split = split_of([str(resolve_model_path(args.model))])
    net = get_model(args.model, "cpu")
    for name in args.splits.split(","):
        if name not in ("train", "val", "test"):
            p.error(f"unknown split {name!r}: give train, val or test")
        split_report(net, name, *split_files(split, name), args.side)


if __name__ == "__main__":
    main()
