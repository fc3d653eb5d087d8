"""Where a store lies (engine/placement.py): pixel size, unit and position are not part of the
job, so the same job run again brings them up to date; axis names are part of the layout."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
import zarr
from skimage import data

import napari_colorize as nc
from napari_colorize._atomic import HOST
from napari_colorize.engine.zarr_io import open_zarr_result, read_job
from napari_colorize.engine.zarr_read import read_placement

TILING = {"tile_size": 64, "overlap": 16, "device": "cpu"}
STACK = np.stack([data.camera()[:64, :80], data.camera()[64:128, :80]]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(3)
    return nc.save_model(nc.build_model("compact"), tmp_path_factory.mktemp("model") / "compact.safetensors")


def _transforms(store, image: str = "") -> list[dict]:
    group = zarr.open_group(os.path.join(str(store), image), mode="r")
    return dict(group.attrs)["multiscales"][0]["datasets"][0]["coordinateTransformations"]


def test_the_same_job_with_another_pixel_size_and_position_updates_them_without_recomputing(model_path, tmp_path):
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], unit="micrometer", origin=[4, 1, 2], **TILING)
    chunks = [os.path.join(root, f) for root, _, files in os.walk(out / "0") for f in files if f[0] != "."]
    stamps = {f: os.stat(f).st_mtime_ns for f in chunks}
    nc.colorize_to_zarr(STACK, out, model_path, scale=[3.0, 0.25, 0.25], unit="nanometer", origin=[6, 8, -2],
                        **TILING)
    axes, scale, translate = read_placement(out)
    assert scale == [3.0, 0.25, 0.25] and translate == [6.0, 8.0, -2.0]
    assert [a.get("unit") for a in axes] == ["nanometer"] * 3  # z, y, x are space axes
    # The colour image's transforms have the channel axis (scale 1, position 0), the maps not.
    assert _transforms(out) == [{"type": "scale", "scale": [1.0, 3.0, 0.25, 0.25]},
                                {"type": "translation", "translation": [0.0, 6.0, 8.0, -2.0]}]
    assert _transforms(out, "entropy")[0] == {"type": "scale", "scale": [3.0, 0.25, 0.25]}
    assert chunks and {f: os.stat(f).st_mtime_ns for f in chunks} == stamps  # no pixel written again
    assert read_job(out)["complete"]


def test_an_identical_run_writes_nothing_into_a_finished_store(model_path, tmp_path):
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], origin=[4, 1, 2], **TILING)
    attrs = [os.path.join(root, f) for root, _, files in os.walk(out) for f in files if f == ".zattrs"]
    stamps = {f: os.stat(f).st_mtime_ns for f in attrs}
    for f in attrs:  # a read-only store (a finished one on read-only media) must still be accepted
        os.chmod(f, 0o444)
    try:
        nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], origin=[4, 1, 2], **TILING)
    finally:
        for f in attrs:
            os.chmod(f, 0o644)
    assert {f: os.stat(f).st_mtime_ns for f in attrs} == stamps


def test_a_finished_store_in_a_read_only_folder_is_accepted_without_a_lock(model_path, tmp_path, monkeypatch):
    # No lock file can be made beside a store on read-only media (EROFS even for root);
    # nobody can write there, so the finished store is returned as it is.
    import errno

    from napari_colorize import _locks
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, **TILING)

    def read_only(lock):
        raise OSError(errno.EROFS, "Read-only file system", str(lock))
    monkeypatch.setattr(_locks, "_try_create", read_only)
    assert nc.colorize_to_zarr(STACK, out, model_path, **TILING) == out
    with pytest.raises(OSError, match="Read-only"):  # a new store there fails as it would anyway
        nc.colorize_to_zarr(STACK, tmp_path / "new.zarr", model_path, **TILING)
    # An empty folder, or the finished store asked with another pixel size (a write), is never
    # written without the lock: the lock's error says why.
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(OSError, match="Read-only"):
        nc.colorize_to_zarr(STACK, tmp_path / "empty.zarr", model_path, **TILING)
    with pytest.raises(OSError, match="Read-only"):
        nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], **TILING)


def test_a_store_that_cannot_be_written_is_named_not_its_inner_file(model_path, tmp_path, monkeypatch):
    # A read-only store (chattr +i; root ignores chmod) said "[Errno 1] Operation not permitted:
    # '.../o.zarr/.zgroup.ffac8dea...partial'", or "File exists: '.../.napari_colorize_spill'".
    import errno

    from napari_colorize.engine import zarr_io

    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, **TILING)

    def read_only(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted", str(out / ".zgroup.ffac8dea.partial"))
    monkeypatch.setattr(zarr_io, "refresh_placement", read_only)
    with pytest.raises(OSError, match=rf"^\[Errno 1\] cannot write in {re.escape(str(out))} \(Operation not permitted\): "
                                      "the store or its folder is read-only or not yours"):
        nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], **TILING)
    # An input that cannot be read is not the store's fault: its own error, as it was.
    import dask.array as da

    def unreadable(block):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/input.zarr/1.1")
    lazy = da.from_array(STACK, chunks=(1, 64, 64)).map_blocks(unreadable, dtype=STACK.dtype)
    with pytest.raises(PermissionError, match=r"^\[Errno 13\] Permission denied: '/data/input.zarr/1.1'$"):
        nc.colorize_to_zarr(lazy, tmp_path / "other.zarr", model_path, **TILING)


def test_paths_that_cannot_hold_a_local_store_are_refused_in_words(model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="s3://bucket/x.zarr is a URL; colorize_to_zarr writes local"):
        nc.colorize_to_zarr(STACK, "s3://bucket/x.zarr", model_path, **TILING)  # was written to ./s3:/bucket/x.zarr
    with pytest.raises(ValueError, match="the store path is empty"):  # was: the working folder "holds something"
        nc.colorize_to_zarr(STACK, "", model_path, **TILING)
    (tmp_path / "file.zarr").write_text("not a folder")
    with pytest.raises(FileExistsError, match=r"file.zarr is a file, so no store can be made inside it"):
        nc.colorize_to_zarr(STACK, tmp_path / "file.zarr" / "deeper" / "x.zarr", model_path, **TILING)
    assert sorted(os.listdir(tmp_path)) == ["file.zarr"]
    with pytest.raises(OSError, match=r"cannot write in /proc \(.*\); choose a folder you can write to$"):
        nc.colorize_to_zarr(STACK, "/proc/x.zarr", model_path, **TILING)  # named the hidden lock file


def test_a_finished_store_is_returned_while_another_run_holds_its_lock(model_path, tmp_path):
    # Callers that only want the finished store (as the busy message advises) refused each
    # other: the lock was taken before the store was found finished.
    from napari_colorize._locks import OutputBusyError, lock_path
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, **TILING)
    lock_path(out).write_text(f"{os.getppid()} {HOST}\n")  # a live run of this host holds it
    assert nc.colorize_to_zarr(STACK, out, model_path, **TILING) == out
    with pytest.raises(OutputBusyError):  # a write (another placement) still waits for that run
        nc.colorize_to_zarr(STACK, out, model_path, scale=[2.0, 0.5, 0.5], **TILING)


def test_the_same_job_under_other_axis_names_is_another_layout(model_path, tmp_path):
    """z puts the colour axis first (c, z, y, x), t after time (t, c, y, x): resuming one store
    under the other names would write the colour channels along the wrong axis."""
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(STACK, out, model_path, axes=["z"], **TILING)
    assert zarr.open_group(str(out), mode="r")["0"].shape == (3, 2, 64, 80)
    with pytest.raises(FileExistsError, match="axis names"):
        nc.colorize_to_zarr(STACK, out, model_path, axes=["t"], **TILING)
    nc.colorize_to_zarr(STACK, out, model_path, axes=["t"], overwrite=True, **TILING)
    assert zarr.open_group(str(out), mode="r")["0"].shape == (2, 3, 64, 80)
    assert [a["name"] for a in read_placement(out)[0]] == ["t", "y", "x"]


def test_a_left_out_size_1_axis_keeps_its_pixel_size_and_position(model_path, tmp_path):
    """One plane of a (t, c, z) series needs 6 axes with colour: size-1 axes are left out of the
    NGFF metadata, and their place is kept in the job record, so the store reopens at time 7."""
    plane = STACK[:1, None, None]  # (t, c, z, y, x) = (1, 1, 1, 64, 80)
    out = tmp_path / "o.zarr"
    scale, origin = [5.0, 1.0, 4.0, 0.5, 0.5], [7.0, 2.0, 12.0, 1.0, -1.0]
    nc.colorize_to_zarr(plane, out, model_path, axes=["t", "c", "z"], scale=scale, origin=origin, **TILING)
    assert read_job(out)["layout"]["stored"] != [0, 1, 2]  # something was left out
    assert read_placement(out)[1:] == (scale, origin)
    moved = [8.0] + origin[1:]  # the next time point's position, same job: updated in the record
    nc.colorize_to_zarr(plane, out, model_path, axes=["t", "c", "z"], scale=scale, origin=moved, **TILING)
    assert read_placement(out)[2] == moved
    assert open_zarr_result(out).rgb.shape == plane.shape + (3,)


@pytest.mark.parametrize("axes", [("z", "z"), ("q", "y"), ("t", "")])
def test_axis_names_that_make_invalid_ngff_are_refused_before_anything_is_written(model_path, tmp_path, axes):
    with pytest.raises(ValueError, match="must be distinct, not empty and neither 'y' nor 'x'"):
        nc.colorize_to_zarr(np.stack([STACK, STACK]), tmp_path / "o.zarr", model_path, axes=axes, **TILING)
    assert not (tmp_path / "o.zarr").exists()


def test_tifffile_upper_case_axis_names_make_valid_ngff(model_path, tmp_path):
    from ome_zarr_models.v04 import Image

    out = nc.colorize_to_zarr(np.stack([STACK, STACK]), tmp_path / "o.zarr", model_path, axes=("T", "Z"), **TILING)
    assert [a.name for a in Image.from_zarr(zarr.open_group(str(out), mode="r")).attributes.multiscales[0].axes] == [
        "t", "c", "z", "y", "x"]


@pytest.mark.parametrize("record", ["x", ["a"], {"scale": {"0": 1}}, {"origin": [None] * 6}])
def test_an_odd_placement_record_falls_back_to_the_ngff_metadata(model_path, tmp_path, record):
    plane = STACK[:1, None, None]
    out = tmp_path / "o.zarr"
    nc.colorize_to_zarr(plane, out, model_path, axes=["t", "c", "z"], origin=[7.0, 2.0, 12.0, 1.0, -1.0], **TILING)
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["napari_colorize"] = dict(dict(group.attrs)["napari_colorize"], placement=record)
    _, scale, translate = read_placement(out)
    assert len(scale) == len(translate) == 5 and translate[-2:] == [1.0, -1.0]


def test_an_ngff_axes_problem_is_said_once_per_store(model_path, tmp_path):
    """Custom axes NGFF 0.4 does not allow were said once per output: three notifications in the widget."""
    import warnings

    from napari_colorize.engine.ome import NgffWarning

    stack = np.stack([np.stack([STACK, STACK])] * 2)  # (2, 2, 2, y, x), no names: dim0, dim1, dim2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nc.colorize_to_zarr(stack, tmp_path / "o.zarr", model_path, **TILING)
    assert len([w for w in caught if issubclass(w.category, NgffWarning)]) == 1
