"""The shared atomic writer: permissions, no leftovers, failed writes leave the old file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_colorize._atomic import atomic_path
from napari_colorize.io import tiff_memmaps


def _umask() -> int:
    mask = os.umask(0)  # tests run single-threaded here
    os.umask(mask)
    return mask


def test_replaces_with_umask_permissions(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp.exists()
        assert target.read_text() == "old"  # nothing visible until the block ends
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    if os.name == "posix":  # like open(path, "w"), not mkstemp's 0600
        assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_tiff_memmaps_failure_deletes_every_temp(tmp_path):
    import tifffile

    specs = {"a": (tmp_path / "a.tif", (8, 8), "float32", "minisblack"),
             "b": (tmp_path / "b.tif", (8, 8), "uint8", "minisblack")}
    with pytest.raises(RuntimeError):
        with tiff_memmaps(specs) as maps:
            maps["a"][:] = 1
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    with tiff_memmaps(specs) as maps:
        maps["a"][:] = 0.5
        maps["b"][:] = 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), np.full((8, 8), 0.5, np.float32))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), np.full((8, 8), 7, np.uint8))
