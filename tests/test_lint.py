"""The code passes the project's lint rules (``[tool.ruff]`` in pyproject.toml).

Ruff's bugbear, pyflakes and pylint-warning rules catch real bugs (closures over loop
variables, unchecked subprocesses, blind excepts without a reason); running them here
makes CI hold every change to them. Ruff is pinned in the ``testing`` extra so a new
release cannot fail an unchanged tree.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("src", "tests", "benchmarks", "scripts")


def test_ruff_finds_nothing():
    assert importlib.util.find_spec("ruff") is not None, 'ruff is missing: pip install -e ".[testing]"'
    present = [d for d in CHECKED if (ROOT / d).is_dir()]
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *present],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"ruff findings (fix them or say why with # noqa):\n{proc.stdout}{proc.stderr}"
