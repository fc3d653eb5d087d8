"""How much colour the calibration rule can allow a model on its validation sources.

Usage::

    python benchmarks/bench_colour_budget.py [--model default] [--side 256] [--gains 1,2,3]

Issue 9 asks for colourfulness >= 0.35 of the truth's *and* no held-out source more than 0.3
AuC points below gray.  This prints the trade-off between the two on the model's validation
sources (``training.held_out`` in its metadata; files from the corpus manifest):

1. every confidence fading of the calibration grid at each chroma gain (the decoder family
   that :func:`napari_colorize.evaluate.calibrate` chooses from), reduced to its frontier:
   for each colourfulness level, the candidate whose worst source loses least;
2. the *expected-AuC* decoder: per grid cell, the shrink ``s`` of the median colour (``s`` in
   0 ... 3) that maximises the expected AuC score ``E_p[max(0, 150 - |s m - y|)] / 150``
   under the model's own histogram ``p``, at T = 1 and at the fitted temperature, each with
   a per-unit-shrink margin.  It is the Bayes decision for the metric, so if it cannot meet
   the rule either, no decoder of these histograms can: the histograms themselves are wrong
   on the binding sources.

The network runs once per image; every decoding reuses its histograms.

``--ensemble A,B`` averages the histograms of ``--model`` and models A, B (trained on the same
split) before decoding; ``--mc-dropout N`` averages N passes of ``--model`` with its dropout on.
Both test whether the members' disagreement marks the scenes where the colour is not earned
(it would fade them); decoding keeps ``--model``'s stored settings.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from finalize_default import source_images, split_of

from napari_colorize.decode import DecodeOptions, check_gains, temper
from napari_colorize.engine import decode_options_for, get_model
from napari_colorize.evaluate import fit_temperature, load_images
from napari_colorize.evaluate.calibration import _fit_fading, _network_passes, _worst_group
from napari_colorize.evaluate.scoring import prepared_truth, score
from napari_colorize.evaluate.table import summary_row
from napari_colorize.inference import GRID_STRIDE, compose, decode_grid
from napari_colorize.metrics import AUC_MAX_THRESHOLD
from napari_colorize.model import resolve_model_path

#: Colourfulness levels (output / truth) of the frontier table.
LEVELS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)
#: Shrinks of the median colour the expected-AuC decoder chooses from.
SHRINKS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def describe(row: dict) -> str:
    """A summary row (:func:`summary_row` with :func:`_worst_group`'s columns) as table cells."""
    neutral = row.get("neutral_ratio")
    return (f"{row['colourfulness'] / row['colourfulness_truth']:.3f} | {100 * (row['auc'] - row['auc_gray']):+.2f} | "
            f"{row['psnr'] - row['psnr_gray']:+.2f} | {100 * row['worst_group_d_auc']:+.2f} "
            f"({row['worst_group']}) | {'-' if neutral is None else f'{neutral:.2f}'}")


def fading_rows(net, passes: list, groups: list[str], gains: list[float]) -> list[dict]:
    """The calibration's own candidates (:func:`napari_colorize.evaluate.calibrate`): every fading
    of its grid at each gain, with the model's stored method and temperature."""
    stored = decode_options_for(net)
    with warnings.catch_warnings():  # "no fading is colourful enough": the frontier shows it
        warnings.simplefilter("ignore")
        _, rows = _fit_fading(net, passes, method=stored.method, temperature=stored.temperature, groups=groups,
                              gains=gains)
    return [r | {"name": f"gain {r['gain']:g}, fading ({r['lo']:.2f}, {r['hi']:.2f})"} for r in rows]


def expected_scores(joint: torch.Tensor, centres: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``E_p[1 - min(|x - y|, 150) / 150]`` per grid cell for colours ``x = (u, v)`` ``(h, w)``
    under the joint (a, b) histogram ``joint`` ``(K, h, w)`` with bin centres ``centres`` ``(K, 2)``."""
    k, h, w = joint.shape
    dist = torch.cdist(torch.stack((u, v), -1).reshape(-1, 2), centres).clamp(max=AUC_MAX_THRESHOLD)
    return (1.0 - (joint.reshape(k, -1).T * dist).sum(1) / AUC_MAX_THRESHOLD).reshape(h, w)


def expected_auc_colour(net, probs: dict, gray: np.ndarray, temperature: float, margin: float) -> np.ndarray:
    """RGB of the expected-AuC decoder (module docstring) for one image's histograms."""
    space = net.space
    a, b = space.a_bins.centers_tensor(probs["ab"]).float(), space.b_bins.centers_tensor(probs["ab"]).float()
    centres = torch.stack((a.repeat_interleave(space.b_bins.k), b.repeat(space.a_bins.k)), 1)  # a-major joint index
    tempered = {k: temper(v, temperature) for k, v in probs.items()}
    grid = decode_grid(tempered, space, DecodeOptions(method="median"))
    u, v = grid[0, 0], grid[0, 1]
    joint = space.joint(tempered)[0]
    best = shrink = None
    for s in SHRINKS:
        value = expected_scores(joint, centres, s * u, s * v) - margin * s
        if best is None:
            best, shrink = value, torch.full_like(value, s)
        else:
            better = value > best
            best, shrink = torch.where(better, value, best), torch.where(better, torch.full_like(value, s), shrink)
    h, w = gray.shape
    colour = F.interpolate(torch.stack((u * shrink, v * shrink))[None], scale_factor=GRID_STRIDE, mode="bilinear",
                           align_corners=False)[..., :h, :w]
    return compose(colour, torch.from_numpy(gray)[None], space)[0].numpy()


def averaged_passes(nets: list, images: list, mc_dropout: int) -> list[tuple]:
    """``(rgb, gray, histograms)`` per image: the mean histogram of every net's pass, or of
    ``mc_dropout`` passes of the first net with its dropout active (0: off)."""
    if mc_dropout:
        net = nets[0]
        net.dropout.train()  # only the head's dropout: batch norm stays in evaluation mode
        try:
            runs = [_network_passes(net, images) for _ in range(mc_dropout)]
        finally:
            net.dropout.eval()
    else:
        runs = [_network_passes(net, images) for net in nets]
    return [(rgb, gray, {k: torch.stack([run[i][2][k] for run in runs]).mean(0) for k in probs})
            for i, (rgb, gray, probs) in enumerate(runs[0])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--side", type=int, default=256, help="long side of the images (256: as calibrated)")
    p.add_argument("--gains", default="1,2,3", help="chroma gains of the fading family")
    p.add_argument("--margins", default="0,0.01,0.02", help="margins of the expected-AuC decoder")
    p.add_argument("--ensemble", default="", help="more models (same split) whose histograms are averaged with --model's")
    p.add_argument("--mc-dropout", type=int, default=0, help="average this many passes with dropout on (0: off)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    members = [args.model, *filter(None, args.ensemble.split(","))]
    if args.mc_dropout and len(members) > 1:
        p.error("--mc-dropout averages passes of --model alone; give it without --ensemble")
    split = split_of([str(resolve_model_path(m)) for m in members])
    files, source = source_images(Path(split["manifest"]), split["val_sources"])
    images = load_images(files, max_side=args.side, paths=True)
    groups = [source[Path(path).resolve()] for _, _, path in images]
    nets = [get_model(m, "cpu") for m in members]
    net = nets[0]
    if any(n.space.name != net.space.name for n in nets):
        p.error(f"the members predict different histograms ({', '.join(n.space.name for n in nets)}); "
                "average models of one colour space")
    if args.mc_dropout and net.dropout.p == 0:
        p.error(f"{args.model} has no dropout (p = 0): its dropout passes would all be the same")
    averaged = f", mean of {args.mc_dropout} dropout passes" if args.mc_dropout else ""
    print(f"{' + '.join(members)}: {len(images)} images of {len(set(groups))} validation sources, "
          f"long side {args.side}{averaged}")
    torch.manual_seed(0)
    passes = averaged_passes(nets, images, args.mc_dropout)
    rows = fading_rows(net, passes, groups, check_gains(args.gains))
    print("\n**Confidence fading x chroma gain: the frontier** (per level, the candidate at least that "
          "colourful whose worst source loses least)\n")
    print("| colour / truth at least | candidate | colour / truth | Δ AuC | Δ PSNR dB | worst source Δ AuC | near-neutral ratio |")
    print("|---|---|---|---|---|---|---|")
    for level in LEVELS:
        ok = [r for r in rows if r["colourfulness"] >= level * r["colourfulness_truth"]]
        if ok:
            r = max(ok, key=lambda r: r["worst_group_d_auc"])
            print(f"| {level:.2f} | {r['name']} | {describe(r)} |")

    temperatures = [1.0]
    if len(nets) == 1 and not args.mc_dropout:  # the fit is one network's; averaged histograms have none
        temperatures.append(fit_temperature(net, images, device="cpu", max_side=None))
    print(f"\n**Expected-AuC decoder** (temperatures {', '.join(f'{t:.2f}' for t in temperatures)})\n")
    print("| T | margin | colour / truth | Δ AuC | Δ PSNR dB | worst source Δ AuC | near-neutral ratio |")
    print("|---|---|---|---|---|---|---|")
    cached = [(rgb, *prepared_truth(rgb), gray, probs) for rgb, gray, probs in passes]
    for t in temperatures:
        for margin in (float(m) for m in args.margins.split(",")):
            scores = [score(expected_auc_colour(net, probs, gray, t, margin), rgb, lab, base)
                      for rgb, lab, base, gray, probs in cached]
            print(f"| {t:.2f} | {margin:g} | {describe(summary_row(scores) | _worst_group(scores, groups))} |",
                  flush=True)


if __name__ == "__main__":
    main()
