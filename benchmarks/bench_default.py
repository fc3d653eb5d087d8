"""The default model end to end: time to colorize the bundled sample, and its evaluation.

Usage::

    python benchmarks/bench_default.py [--val /work/corpus/val]

Prints (1) the wall time of ``napari-colorize colorize`` on the bundled photograph in a
fresh process (start-up, model load and writing three PNGs included) and of the
in-process call alone; (2) if ``--val`` is given, the evaluation table of the default
model against the gray baseline (the model card's numbers come from
``scripts/finalize_default.py``, which uses the held-out test half of that split).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio

import napari_colorize as nc

SAMPLE = Path(nc.__file__).parent / "data" / "photograph.png"


def end_to_end() -> None:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "napari_colorize.cli", "colorize", str(SAMPLE), "-o", out,
                            "--no-progress"], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        print(f"[sample] CLI, fresh process: {wall:.2f} s wall (rc={r.returncode}; "
              f"{len(list(Path(out).iterdir()))} files written)")
    gray = iio.imread(SAMPLE)
    nc.colorize(gray[:64, :64])  # load the model once
    t = time.perf_counter()
    nc.colorize(gray)
    print(f"[sample] in-process colorize of {gray.shape[0]}x{gray.shape[1]}: {time.perf_counter() - t:.3f} s")


def evaluation(folder: str) -> None:
    from napari_colorize.evaluate import evaluate

    table = evaluate(folder, model="default")
    m = table.mean
    print(f"[evaluate] {folder}: {len(table.rows) - 0} images")
    for key in ("psnr", "rmse_ab", "auc", "colourfulness"):
        base = m.get(f"{key}_gray", m.get("colourfulness_truth") if key == "colourfulness" else None)
        print(f"[evaluate] {key:14s} model {m[key]:.4f}   {'gray' if key != 'colourfulness' else 'truth'} {base:.4f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--val", default=None)
    args = p.parse_args()
    end_to_end()
    if args.val:
        evaluation(args.val)


if __name__ == "__main__":
    main()
