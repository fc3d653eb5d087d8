"""Peak memory of a 1024^2 colorization, automatic and guided, each in a fresh process.

Usage::

    python benchmarks/bench_guided_memory.py

Prints the peak resident memory (``ru_maxrss``) of each process and its rise over the
memory held before the call (Python, torch and the model loaded), for: automatic; a
reference (the photograph itself); 10 hints; both.  The photograph is the first of the
default model's validation sources (``corpus/manifest.csv``), resized to 1024 x 1024.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

CASES = ("automatic", "reference", "10 hints", "both")


def measure(case: str) -> None:
    import numpy as np
    from skimage.transform import resize

    import napari_colorize as nc
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_guided as bench

    photos = bench.held_out_photos("val", Path("corpus/manifest.csv"), 384, 1)
    rgb = resize(photos[0][1], (1024, 1024), anti_aliasing=True).astype(np.float32)
    gray = bench.gray_of(rgb)
    hints = bench.random_hints(rgb, 10, np.random.default_rng(0))
    model = nc.get_model("default", "cpu")
    kwargs = {"automatic": {}, "reference": {"reference": rgb}, "10 hints": {"hints": hints},
              "both": {"reference": rgb, "hints": hints}}[case]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.asarray(nc.colorize(gray, model, **kwargs).rgb)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"| {case} | {peak / 1024:.0f} MB | +{(peak - before) / 1024:.0f} MB |", flush=True)


def main() -> None:
    if len(sys.argv) > 1:
        measure(sys.argv[1])
        return
    print("| 1024 x 1024, CPU | peak RSS | rise during the call |\n|---|---|---|", flush=True)
    for case in CASES:
        subprocess.run([sys.executable, __file__, case], check=True)


if __name__ == "__main__":
    main()
