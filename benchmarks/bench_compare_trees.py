"""Default-model throughput of two source trees, alternated in one run (a refactor's cost).

Usage: python benchmarks/bench_compare_trees.py OLD_SRC NEW_SRC [--rounds 2] [--repeats 4]

Each measurement runs in a fresh interpreter with ``OLD_SRC`` or ``NEW_SRC`` first on
``sys.path`` (e.g. a ``git worktree`` of an older commit's ``src``), colours a 1024 x 1024
plane on the CPU with the tile cache cleared before every call, and prints the best and
median megapixels per second.  Timings on a shared machine are noisy: read the two trees
as a ratio within one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

_CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import napari_colorize as nc
from napari_colorize.engine import clear_caches
from skimage import data, transform
img = transform.resize(data.astronaut().mean(-1) / 255.0, (1024, 1024)).astype(np.float32)
nc.colorize(img, device="cpu")
times = []
for _ in range(int(sys.argv[2])):
    clear_caches()
    t = time.perf_counter(); nc.colorize(img, device="cpu"); times.append(time.perf_counter() - t)
times.sort()
print(f"{sys.argv[1]}: 1024^2 default model on CPU, best {1.048576 / times[0]:.2f} MP/s, "
      f"median {1.048576 / times[len(times) // 2]:.2f} MP/s")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for tree in (args.old, args.new):
            subprocess.run([sys.executable, "-c", _CHILD, tree, str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
