"""Fetch Debian packages into a local cache (``apt-get download`` + ``dpkg -x``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command and return stdout, raising with stderr on failure."""
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def fetch_package(pkg: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``pkg`` into ``cache/pkgs/pkg``; return (root, version).

    Idempotent: an existing ``.deb`` or unpacked tree is reused, so reruns do
    not touch the network.
    """
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        run(["apt-get", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
    deb = found[-1]
    root = cache / "pkgs" / pkg
    marker = root / ".unpacked"
    if not marker.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        run(["dpkg", "-x", str(deb), str(root)])
        marker.write_text(deb.name)
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    return root, version
