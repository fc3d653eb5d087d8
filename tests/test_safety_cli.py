"""No silent loss through `napari-colorize colorize` and the zarr writer (issue 12), as a user meets it.

Each test runs the command line (``cli.main``) or the API on real files and checks the
exit code, the message, and that nothing was lost or overwritten.  docs/safety.md lists
each case with its test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import dask.array as da
import zarr
from skimage import data, transform

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize._atomic import HOST
from napari_colorize._locks import lock_path
from napari_colorize.engine.cache import clear_caches
from napari_colorize.engine import zarr_io
from napari_colorize.engine.zarr_io import (
    MARKERS,
    is_complete,
    open_group,
    open_zarr_result,
    read_job,
)

TILES = ["--tile-size", "128", "--overlap", "32", "--device", "cpu", "--no-progress"]
PNGS = ("colorized", "confidence", "entropy")


@pytest.fixture(autouse=True)
def _only_colorize(monkeypatch):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))
    clear_caches()


@pytest.fixture(scope="module")
def cam8():
    return (transform.resize(data.camera(), (96, 112), anti_aliasing=True) * 255).astype(np.uint8)


def _run(*argv) -> int:
    return cli.main(["colorize", *map(str, argv)])


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: to show that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line or "FAILED" in line]


# --- 1. output names: sub-folders kept, remaining clashes refused ---------------------------------


def test_same_name_in_two_subfolders_keeps_both(tmp_path, model_path, cam8):
    scans = tmp_path / "scans"
    (scans / "a").mkdir(parents=True)
    (scans / "b").mkdir()
    iio.imwrite(scans / "a" / "y.png", cam8)
    iio.imwrite(scans / "b" / "y.png", cam8[::-1].copy())
    out = tmp_path / "out"
    assert _run(scans, "-o", out, "--model", model_path, *TILES) == 0
    a = iio.imread(out / "a" / "y_colorized.png").astype(float)
    b = iio.imread(out / "b" / "y_colorized.png").astype(float)
    # Each result is its own input's colouring: its lightness follows that input, not the other.
    assert np.abs(a.mean(-1) - cam8).mean() < 3 and np.abs(b.mean(-1) - cam8[::-1]).mean() < 3
    assert not (out / "y_colorized.png").exists()


def test_same_stem_in_one_folder_is_refused_before_starting(tmp_path, model_path, cam8, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    iio.imwrite(scans / "x.png", cam8)
    iio.imwrite(scans / "x.jpg", cam8)
    before = _tree(scans)
    out = tmp_path / "out"
    assert _run(scans, "-o", out, "--model", model_path, *TILES) == 2
    err = capsys.readouterr().err
    assert "x.png" in err and "x.jpg" in err and "would both write" in err and "rename one" in err
    assert "nothing was written" in err
    assert not out.exists() and _tree(scans) == before


def test_same_name_from_two_folder_arguments_is_refused(tmp_path, model_path, cam8, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        iio.imwrite(tmp_path / name / "y.png", cam8)
    out = tmp_path / "out"
    assert _run(tmp_path / "a", tmp_path / "b", "-o", out, "--model", model_path, *TILES) == 2
    err = capsys.readouterr().err
    assert "would both write" in err and str(out / "y_colorized.png") in err
    assert not out.exists()


# --- 2. existing outputs: refuse, --skip-existing, --overwrite; the same rule for png/tiff/zarr ---


@pytest.mark.parametrize("fmt,suffix", [("png", ".png"), ("tiff", ".tif")])
def test_rerun_refuses_existing_outputs_and_names_both_flags(tmp_path, model_path, cam8, capsys, fmt, suffix):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    assert _run(tmp_path / "x.png", "-o", out, "--format", fmt, "--model", model_path, *TILES) == 0
    first = _tree(out)
    capsys.readouterr()
    assert _run(tmp_path / "x.png", "-o", out, "--format", fmt, "--model", model_path, "--saturation", "2",
                *TILES) == 2
    err = capsys.readouterr().err
    for name in PNGS:  # one line per existing output
        assert f"x_{name}{suffix} already exists: pass --skip-existing" in err
    assert "--overwrite" in err and "nothing was written" in err
    assert _tree(out) == first


def test_skip_existing_writes_only_missing_outputs(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    assert _run(tmp_path / "x.png", "-o", out, "--outputs", "rgb", "--model", model_path, *TILES) == 0
    rgb = out / "x_colorized.png"
    stamp = rgb.stat().st_mtime_ns
    assert _run(tmp_path / "x.png", "-o", out, "--skip-existing", "--model", model_path, *TILES) == 0
    assert rgb.stat().st_mtime_ns == stamp
    assert (out / "x_confidence.png").exists() and (out / "x_entropy.png").exists()
    # Everything there now: the input is skipped.
    capsys.readouterr()
    assert _run(tmp_path / "x.png", "-o", out, "--skip-existing", "--model", model_path, *TILES) == 0
    err = capsys.readouterr().err
    assert "colorized 0 file(s)" in err and "skipped 1" in err
    assert rgb.stat().st_mtime_ns == stamp


def test_overwrite_replaces_our_files(tmp_path, model_path, cam8):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, "--saturation", "0", *TILES) == 0
    gray = iio.imread(out / "x_colorized.png")
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, "--overwrite", *TILES) == 0
    colour = iio.imread(out / "x_colorized.png")
    assert np.ptp(gray.astype(int), axis=-1).max() <= 1 < np.ptp(colour.astype(int), axis=-1).max()


def test_overwrite_replaces_our_tiffs(tmp_path, model_path, cam8):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    argv = (tmp_path / "x.png", "-o", out, "--format", "tiff", "--model", model_path, "--outputs", "rgb", *TILES)
    assert _run(*argv, "--saturation", "0") == 0
    gray = tifffile.imread(out / "x_colorized.tif")
    assert _run(*argv, "--overwrite") == 0
    assert not np.array_equal(tifffile.imread(out / "x_colorized.tif"), gray)


@pytest.mark.parametrize("policy", ["--overwrite", "--skip-existing", None])
def test_a_file_without_our_mark_is_never_replaced(tmp_path, model_path, cam8, capsys, policy):
    # A user's notes, another program's PNG and a plain TIFF at our output names (or results of a
    # version before the mark): none is provably ours, so none is replaced, nor taken for done.
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_colorized.png").write_text("my notes")
    iio.imwrite(out / "x_confidence.png", cam8)
    before = _tree(out)
    if policy == "--skip-existing":  # left as they are, like our own outputs (an earlier version's, say)
        assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, policy, "--outputs", "rgb,confidence",
                    *TILES) == 0
        assert "skipped 1" in capsys.readouterr().err and _tree(out) == before
        return
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *([policy] if policy else []), *TILES) == 2
    err = capsys.readouterr().err
    for name in ("x_colorized.png", "x_confidence.png"):
        assert f"{out / name} was not written by napari-colorize" in err
    assert "never replaced, not even with --overwrite" in err and "nothing was written" in err
    assert _tree(out) == before


def test_overwrite_and_skip_existing_together_is_a_usage_error(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    assert _run(tmp_path / "x.png", "-o", tmp_path / "out", "--overwrite", "--skip-existing",
                "--model", model_path, *TILES) == 2
    assert "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def zarr_input(tmp_path, cam8):
    z = zarr.open_array(str(tmp_path / "z.zarr"), mode="w", shape=cam8.shape, chunks=(64, 64), dtype="uint8")
    z[:] = cam8
    return tmp_path / "z.zarr"


def test_zarr_store_rules(tmp_path, model_path, zarr_input, capsys):
    out = tmp_path / "out"
    store = out / "z_colorized.zarr"
    assert _run(zarr_input, "-o", out, "--model", model_path, *TILES) == 0
    first = _tree(store)
    # A finished store: refused by default, kept with --skip-existing.
    assert _run(zarr_input, "-o", out, "--model", model_path, "--saturation", "2", *TILES) == 2
    assert "z_colorized.zarr already exists: pass --skip-existing" in capsys.readouterr().err
    assert _run(zarr_input, "-o", out, "--model", model_path, "--saturation", "2", "--skip-existing", *TILES) == 0
    assert _tree(store) == first
    # An unfinished store of the same job is resumed without any flag (not an overwrite).
    open_group(str(store), "r+").attrs["napari_colorize"] = dict(read_job(store), complete=False)
    (store / MARKERS).mkdir()
    assert _run(zarr_input, "-o", out, "--model", model_path, *TILES) == 0
    assert is_complete(store) and _tree(store) == first
    # An unfinished store of another job: that input fails, naming --overwrite; the store is kept.
    open_group(str(store), "r+").attrs["napari_colorize"] = dict(read_job(store), complete=False)
    capsys.readouterr()
    assert _run(zarr_input, "-o", out, "--model", model_path, "--saturation", "2", *TILES) == 1
    err = capsys.readouterr().err
    assert "different colorization job" in err and "--overwrite" in err
    assert read_job(store)["options"]["decode"]["saturation"] == 1.0
    # --overwrite replaces a store of ours holding another job.
    assert _run(zarr_input, "-o", out, "--model", model_path, "--saturation", "2", "--overwrite", *TILES) == 0
    assert is_complete(store) and read_job(store)["options"]["decode"]["saturation"] == 2.0


def test_foreign_folder_where_a_store_goes_is_never_deleted(tmp_path, model_path, zarr_input, capsys):
    out = tmp_path / "out"
    (out / "z_colorized.zarr").mkdir(parents=True)
    (out / "z_colorized.zarr" / "precious.txt").write_text("keep me")
    assert _run(zarr_input, "-o", out, "--model", model_path, "--overwrite", *TILES) == 2
    err = capsys.readouterr().err
    assert "not written by napari-colorize" in err and "never deleted, not even with --overwrite" in err
    assert (out / "z_colorized.zarr" / "precious.txt").read_text() == "keep me"


def test_folder_where_a_png_goes_is_never_replaced(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    (out / "x_colorized.png").mkdir(parents=True)
    (out / "x_colorized.png" / "note.txt").write_text("mine")
    assert _run(tmp_path / "x.png", "-o", out, "--overwrite", "--model", model_path, *TILES) == 2
    assert "is a folder where this output file goes" in capsys.readouterr().err
    assert (out / "x_colorized.png" / "note.txt").read_text() == "mine"


# --- 3. a source inside its destination ------------------------------------------------------------


def test_api_refuses_a_result_store_coloured_into_itself(tmp_path, model_path, cam8):
    store = nc.colorize_to_zarr(cam8, tmp_path / "r.zarr", model_path, tile_size=128, overlap=32, device="cpu")
    before = _tree(store)
    own = open_zarr_result(store)
    for source in (own.chroma_confidence, own.rgb[..., 0], zarr.open_array(str(store / "confidence" / "0"), mode="r")):
        with pytest.raises(ValueError, match="inside the destination"):
            nc.colorize_to_zarr(source, store, model_path, overwrite=True, tile_size=128, overlap=32, device="cpu")
    assert is_complete(store) and _tree(store) == before


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_api_refuses_a_destination_inside_the_input_store(tmp_path, model_path, cam8, zarr_format):
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=zarr_format)
    group.create_group("plate").create_array("0", shape=cam8.shape, dtype="uint8")[:] = cam8
    # The array opened by its own path has a store rooted at itself: the group above is the input's all the same.
    by_own_path = zarr.open_array(str(tmp_path / "in.zarr" / "plate" / "0"), mode="r")
    for source in (group["plate/0"], by_own_path, da.from_zarr(str(tmp_path / "in.zarr" / "plate" / "0"))):
        with pytest.raises(ValueError, match=f"inside the input's store {tmp_path / 'in.zarr'}:"):
            nc.colorize_to_zarr(source, tmp_path / "in.zarr" / "out.zarr", model_path, tile_size=128, overlap=32,
                                device="cpu")
    assert not (tmp_path / "in.zarr" / "out.zarr").exists()


def test_cli_refuses_an_input_inside_an_output_store(tmp_path, model_path, cam8, capsys):
    scans = tmp_path / "scans"
    z = zarr.open_array(str(scans / "a" / "z.zarr"), mode="w", shape=cam8.shape, dtype="uint8")
    z[:] = cam8
    out = tmp_path / "out"
    assert _run(scans, "-o", out, "--model", model_path, *TILES) == 0
    store = out / "a" / "z_colorized.zarr"
    before = _tree(store)
    # The result's own array given as an input beside the folder that writes that result again.
    assert _run(scans, store / "confidence" / "0", "-o", out, "--overwrite", "--model", model_path, *TILES) == 2
    assert "would be written over the input" in capsys.readouterr().err
    assert _tree(store) == before


# --- 4. clear messages, checked once before starting -----------------------------------------------


def test_output_naming_a_file(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    (tmp_path / "notes.txt").write_text("mine")
    assert _run(tmp_path / "x.png", "-o", tmp_path / "notes.txt", "--model", model_path, *TILES) == 2
    err = capsys.readouterr().err
    assert "is a file; -o takes a folder" in err and "Errno" not in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_on_the_output_path_is_one_error(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    assert _run(tmp_path / "x.png", "-o", tmp_path / "x.png" / "sub", "--model", model_path, *TILES) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"napari-colorize colorize: error: cannot create the output folder {tmp_path / 'x.png' / 'sub'}: "
        f"{tmp_path / 'x.png'} is a file; move it or choose another -o"]


def test_an_unwritable_output_folder_is_one_error_before_starting(tmp_path, model_path, cam8, capsys, monkeypatch):
    iio.imwrite(tmp_path / "x.png", cam8)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root may write anywhere: be an ordinary user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    try:
        assert _run(tmp_path / "x.png", "-o", locked, "--model", model_path, *TILES) == 2
        assert _error_lines(capsys.readouterr().err) == [
            f"napari-colorize colorize: error: cannot write in the output folder {locked}: permission denied; "
            "choose another -o or make it writable"]
        assert _run(tmp_path / "x.png", "-o", locked / "new", "--model", model_path, *TILES) == 2
        assert f"cannot create the output folder {locked / 'new'} in {locked}" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_a_finished_read_only_folder_can_be_rerun_with_skip_existing(tmp_path, model_path, cam8, capsys,
                                                                     monkeypatch):
    # Nothing is to be written, so its permissions do not matter (an archived results folder).
    iio.imwrite(tmp_path / "x.png", cam8)
    done = tmp_path / "done"
    assert _run(tmp_path / "x.png", "-o", done, "--model", model_path, *TILES) == 0
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == done else real(p, mode))
    capsys.readouterr()
    assert _run(tmp_path / "x.png", "-o", done, "--model", model_path, "--skip-existing", *TILES) == 0
    assert "skipped" in capsys.readouterr().err.lower()


def test_missing_inputs_are_named_and_a_failed_run_leaves_no_empty_folder(tmp_path, model_path, capsys):
    assert _run(tmp_path / "missing.png", "-o", tmp_path / "out", "--model", model_path, *TILES) == 2
    assert f"{tmp_path / 'missing.png'}: no such file or folder" in capsys.readouterr().err
    (tmp_path / "fake.png").write_text("not an image")
    assert _run(tmp_path / "fake.png", "-o", tmp_path / "out", "--model", model_path, *TILES) == 1
    assert "FAILED" in capsys.readouterr().err and not (tmp_path / "out").exists()
    (tmp_path / "in" / "sub").mkdir(parents=True)  # nested inputs get nested output folders
    (tmp_path / "in" / "sub" / "bad.png").write_text("not an image")
    (tmp_path / "in" / "bad2.png").write_text("not an image")
    assert _run(tmp_path / "in", "-o", tmp_path / "out", "--model", model_path, *TILES) == 1
    assert "FAILED" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.fixture
def folder_of_inputs(tmp_path, cam8):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        iio.imwrite(folder / f"img{i:02d}.png", cam8)
    return folder


def _edited_model(model_path: str, path: Path, **changes) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(model_path, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open handles are not iterable
        meta = json.loads(f.metadata()["napari_colorize"])
    meta.update(changes)
    save_file(tensors, str(path), metadata={"napari_colorize": json.dumps(meta)})
    return path


@pytest.mark.parametrize("bad", ["missing", "not_safetensors", "bad_metadata"])
def test_bad_model_is_one_error_before_starting(tmp_path, model_path, folder_of_inputs, capsys, bad):
    model = tmp_path / "bad.safetensors"
    if bad == "not_safetensors":
        model.write_bytes(b"not a model at all")
    elif bad == "bad_metadata":
        _edited_model(model_path, model, backbone="resnet9000")
    out = tmp_path / "out"
    assert _run(folder_of_inputs, "-o", out, "--model", model, *TILES) == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "--model" in err and "FAILED" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--saturation", "-1"], "saturation must be"),
    (["--precision", "bf16"], "needs a GPU"),
    (["--batch-size", "0"], "--batch-size: must be a whole number >= 1"),
    (["--device", ""], "the device is empty"),  # ran on 'auto'
    (["--scheduler", " "], "--scheduler is empty"),  # ran without a cluster
])
def test_bad_option_is_one_error_before_starting(tmp_path, model_path, folder_of_inputs, capsys, argv, message):
    out = tmp_path / "out"
    assert _run(folder_of_inputs, "-o", out, "--model", model_path, *TILES, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(_error_lines(err)) == 1
    assert not out.exists()


# --- 5. tiling validated as the engine does, from the model's backbone ----------------------------


def test_tiling_is_checked_against_the_real_defaults(tmp_path, model_path, cam8, capsys):
    wide = tmp_path / "wide.png"
    iio.imwrite(wide, np.tile(cam8[:40], (1, 15)))  # 40 x 1680: wider than one pass, so tiled
    out = tmp_path / "out"
    # The compact default tile is 1408, so an overlap of 600 is valid (the old check assumed 1024).
    assert _run(wide, "-o", out, "--model", model_path, "--overlap", "600", "--device", "cpu", "--no-progress") == 0
    assert (out / "wide_colorized.png").exists()
    capsys.readouterr()
    assert _run(wide, "-o", tmp_path / "o2", "--model", model_path, "--overlap", "720", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "tile size (1408) must be more than twice the overlap (720)" in err and len(_error_lines(err)) == 1
    # The backbone comes from the model file: a vgg16 model's tiles are 1024, so 600 is too much there.
    vgg = _edited_model(model_path, tmp_path / "vgg.safetensors", backbone="vgg16")
    assert _run(wide, "-o", tmp_path / "o3", "--model", vgg, "--overlap", "600", "--device", "cpu") == 2
    assert "tile size (1024) must be more than twice the overlap (600)" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


# --- 6. two runs on one output folder -------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_output_locked_by_a_live_run_is_reported_not_written(tmp_path, model_path, cam8, capsys):
    iio.imwrite(tmp_path / "x.png", cam8)
    iio.imwrite(tmp_path / "y.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(out / "x_confidence.png")
        lock.write_text(f"{other.pid} {HOST}\n")
        # Left to the run that holds the lock, not a failure: it used to say FAILED and exit 1.
        assert _run(tmp_path / "x.png", tmp_path / "y.png", "-o", out, "--model", model_path, *TILES) == 0
        err = capsys.readouterr().err
        assert "; skipped 0; failed 0; left to another run 1\n" in err and "FAILED" not in err
        assert (f"  LEFT {tmp_path / 'x.png'}: {out / 'x_confidence.png'} is being written by another run "
                f"(pid {other.pid}); let it finish, then run again with --skip-existing") in err
        assert not list(out.glob("x_*.png"))  # none of x's outputs, not even the unlocked ones
        assert (out / "y_colorized.png").exists()
        assert lock.read_text().startswith(str(other.pid))  # another run's lock is left alone
    finally:
        other.kill()
        other.wait()
    # Its process gone, the lock is stale: taken over, the rest coloured, no lock left.
    assert _run(tmp_path / "x.png", tmp_path / "y.png", "-o", out, "--skip-existing", "--model", model_path,
                *TILES) == 0
    assert (out / "x_confidence.png").exists() and not list(out.glob(".*.lock"))


def test_inputs_left_to_other_runs_are_one_line_after_the_first():
    # Two runs sharing a folder of thousands printed three lines of advice per file handed over.
    import io as _io

    from napari_colorize.cli_report import Summary

    stream = _io.StringIO()
    Summary(left=[(f"s{i}.png", "being written by another run (pid 7); let it finish") for i in range(15)]).report(stream)
    lines = stream.getvalue().splitlines()
    assert lines[1:] == ["  LEFT s0.png: being written by another run (pid 7); let it finish",
                         "  LEFT the same way: " + ", ".join(f"s{i}.png" for i in range(1, 11)) + ", and 4 more"]


def test_a_lock_whose_pid_a_later_process_reuses_is_a_failure_not_left(tmp_path, model_path, cam8, capsys):
    # A run killed by SIGKILL (or a reboot) leaves its lock; a process started later reuses its
    # pid.  That lock looks alive, but its input would never be coloured: it must not exit 0.
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(out / "x_colorized.png")
        lock.write_text(f"{later.pid} {HOST}\n")
        hour_ago = time.time() - 3600
        os.utime(lock, (hour_ago, hour_ago))  # written an hour before that process started
        assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 1
        err = capsys.readouterr().err
        assert "failed 1" in err and "left to another run" not in err
        assert f"(if no such run is active, delete {lock})" in err
    finally:
        later.kill()
        later.wait()


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path, model_path, cam8):
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    lock_path(out / "x_colorized.png").write_text(f"{_dead_pid()} {HOST}\n")
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 0
    assert (out / "x_colorized.png").exists() and not list(out.glob(".*.lock"))


def test_two_processes_on_one_output_folder(tmp_path, model_path, cam8):
    # Two runs sharing the work with --skip-existing: each used to report the file the other was
    # writing as FAILED and exit 1, though every file was coloured exactly once.
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(6):
        iio.imwrite(scans / f"img{i}.png", np.roll(cam8, 9 * i, axis=1))
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from napari_colorize import cli
        sys.exit(cli.main(["colorize", {str(scans)!r}, "-o", {str(out)!r}, "--model", {model_path!r},
                           "--skip-existing", {", ".join(map(repr, TILES))}]))
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    done = 0
    for code, err in results:
        assert code == 0 and "FAILED" not in err, err
        done += int(err.split("colorized ")[-1].split(" file")[0])
        left = int(err.split("left to another run ")[-1].split()[0]) if "left to another run" in err else 0
        assert err.count("  LEFT ") == min(left, 2)  # the first in full, the others on one line
    assert done == 6  # every input coloured by exactly one of the runs
    for i in range(6):
        for name in PNGS:
            image = iio.imread(out / f"img{i}_{name}.png")  # complete, readable files
            assert image.shape[:2] == cam8.shape
    assert not list(out.glob(".*"))  # no lock or temporary file left


# --- paths: the output folder inside the input folder ---------------------------------------------


def test_output_folder_inside_the_input_folder_is_not_walked_as_input(tmp_path, model_path, cam8, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    iio.imwrite(scans / "x.png", cam8)
    out = scans / "out"
    assert _run(scans, "-o", out, "--model", model_path, *TILES) == 0
    assert _run(scans, "-o", out, "--skip-existing", "--model", model_path, *TILES) == 0
    assert "skipped 1" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == [f"x_{name}.png" for name in PNGS]


def test_skip_existing_does_not_take_a_store_lacking_outputs_for_done(tmp_path, model_path, zarr_input, capsys):
    out = tmp_path / "out"
    assert _run(zarr_input, "-o", out, "--outputs", "rgb", "--model", model_path, *TILES) == 0
    first = _tree(out)
    assert _run(zarr_input, "-o", out, "--skip-existing", "--model", model_path, *TILES) == 2
    assert "without some of the outputs asked for" in capsys.readouterr().err
    assert _tree(out) == first
    assert _run(zarr_input, "-o", out, "--overwrite", "--model", model_path, *TILES) == 0
    assert read_job(out / "z_colorized.zarr")["outputs"] == ["rgb", "confidence", "entropy"]


# --- full disks -------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 300 kB file system (a tmpfs), where root may mount one; the test is skipped elsewhere."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = hasattr(os, "geteuid") and os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)], capture_output=True, check=False).returncode == 0
    if not mounted:
        pytest.skip("needs permission to mount a small tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_is_one_clear_error_per_input(tmp_path, small_disk, model_path, capsys):
    big = zarr.open_array(str(tmp_path / "big.zarr"), mode="w", shape=(512, 512), chunks=(256, 256), dtype="uint8")
    big[:] = data.camera()
    iio.imwrite(tmp_path / "x.png", data.camera())
    assert _run(tmp_path / "big.zarr", tmp_path / "x.png", "-o", small_disk / "out", "--format", "tiff",
                "--model", model_path, *TILES) == 1
    err = capsys.readouterr().err
    assert err.count("disk full while writing") == 2 and "Errno" not in err and "Traceback" not in err
    assert not [p for p in (small_disk / "out").rglob(".*") if p.is_file()]  # no lock or temporary file
    assert _run(tmp_path / "big.zarr", "-o", small_disk / "out2", "--model", model_path, *TILES) == 1
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "run the same command again" in err and "Errno" not in err
    store = small_disk / "out2" / "big_colorized.zarr"
    assert read_job(store) is not None and not is_complete(store)  # ours, unfinished: resumable, never "done"


# --- paths and interruptions ----------------------------------------------------------------------


def test_output_name_too_long_for_the_file_system_is_refused_before_starting(tmp_path, model_path, cam8, capsys):
    long = tmp_path / ("n" * 245 + ".png")  # a valid name; its outputs' (n * 245 + "_confidence.png") are not
    iio.imwrite(long, cam8)
    assert _run(long, "-o", tmp_path / "out", "--model", model_path, *TILES) == 2
    err = capsys.readouterr().err
    assert "too long a file name: this file system takes 255 bytes; shorten the input's name" in err
    assert "Errno" not in err and not (tmp_path / "out").exists()
    longest = tmp_path / ("n" * 240 + ".png")  # outputs of up to 255 bytes: written (they were refused)
    iio.imwrite(longest, cam8)
    assert _run(longest, "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    assert max(len(p.name) for p in (tmp_path / "out").iterdir()) == 255


def test_interrupted_run_leaves_no_lock_behind(tmp_path, model_path, cam8, monkeypatch, capsys):
    from napari_colorize import cli_colorize

    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while colouring

    monkeypatch.setattr(cli_colorize, "_colorize_one", interrupted)
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()  # no lock, no temporary file, no output, and no folder it made


def test_sigterm_stops_a_run_like_ctrl_c_and_leaves_no_lock_behind(tmp_path, model_path, cam8, monkeypatch, capsys):
    # What a batch system sends at its time limit (and timeout, kill, docker stop).
    import signal
    import time

    from napari_colorize import cli_colorize

    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"

    def unhandled(signum, frame):  # stands in for SIGTERM's default, which would end the test session
        raise RuntimeError("SIGTERM reached its default handler")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises here

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(cli_colorize, "_colorize_one", terminated)
        assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored after the command
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ("terminated (SIGTERM); run the same command again to continue, with --skip-existing if it colours "
            "several inputs") in capsys.readouterr().err
    assert not out.exists()  # no lock, no temporary file, no output, and no folder it made


def test_an_interrupted_zarr_run_into_a_new_folder_resumes(tmp_path, model_path, zarr_input, capsys, monkeypatch):
    # Ctrl-C before the first chunk: the run's empty folders go, the store (and its markers folder) stay.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr_io, "_write_chunks", interrupted)
    out = tmp_path / "new" / "out"
    assert _run(zarr_input, "-o", out, "--model", model_path, *TILES) == 130
    store = out / "z_colorized.zarr"
    assert store.is_dir() and not is_complete(store)
    monkeypatch.undo()
    assert _run(zarr_input, "-o", out, "--model", model_path, *TILES) == 0
    assert is_complete(store)


def test_store_killed_while_being_created_is_redone_by_the_same_command(tmp_path, model_path, zarr_input, capsys):
    store = tmp_path / "out" / "z_colorized.zarr"
    open_group(str(store), "w")  # arrays made, job record not yet written: then killed
    (store / MARKERS).mkdir()
    # It holds no result (the record comes before any chunk): nothing to lose, no flag needed.
    assert _run(zarr_input, "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    assert is_complete(store)


def test_output_folder_inside_an_input_store_is_refused(tmp_path, model_path, zarr_input, capsys):
    before = _tree(zarr_input)
    assert _run(zarr_input, "-o", zarr_input / "results", "--model", model_path, *TILES) == 2
    assert "is inside the input" in capsys.readouterr().err
    assert _tree(zarr_input) == before and not (zarr_input / "results").exists()


# --- 7. found by a user test: output folders, locks, interrupts and messages in the CLI's words ----


def test_an_unwritable_folder_inside_the_output_folder_is_one_error_before_starting(tmp_path, model_path, cam8,
                                                                                   capsys, monkeypatch):
    # A read-only (or another user's) existing sub-folder of -o used to give one PermissionError per
    # input, naming a hidden lock file.
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    for name in ("x.png", "y.png"):
        iio.imwrite(scans / "sub" / name, cam8)
    out = tmp_path / "out"
    locked = out / "sub"
    locked.mkdir(parents=True, mode=0o555)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root may write anywhere: be an ordinary user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    try:
        assert _run(scans, "-o", out, "--model", model_path, *TILES) == 2
        assert _error_lines(capsys.readouterr().err) == [
            f"napari-colorize colorize: error: cannot write in {locked} (where x_colorized.png goes, inside the output "
            "folder): permission denied; make it writable or choose another -o"]
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_a_lock_left_with_this_process_s_pid_is_stale(tmp_path, model_path, cam8):
    # A restarted container runs its command with the pid the killed run had (often 1): a lock of
    # this very pid and host that this process did not make is that run's, not a live one's.
    from napari_colorize._atomic import HOST
    from napari_colorize._locks import OutputBusyError, OutputLocks

    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    lock_path(out / "x_colorized.png").write_text(f"{os.getpid()} {HOST}\n")
    assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 0
    assert (out / "x_colorized.png").exists() and not list(out.glob(".*.lock"))
    # A lock this process holds is still busy for it.
    with OutputLocks([out / "y.png"]), pytest.raises(OutputBusyError), OutputLocks([out / "y.png"]):
        pass
    assert not list(out.glob(".*.lock"))


def test_a_lock_of_another_pid_namespace_with_this_hostname_is_never_taken_over(tmp_path, model_path, cam8, capsys):
    # Containers sharing a hostname (host networking) each have their own pids, often 1 in every one
    # of them: a lock recorded in another pid namespace is a live run's for all this process can tell.
    from napari_colorize._atomic import HOST

    assert "_" in HOST  # the hostname, then this process's pid namespace
    other = HOST.rsplit("_", 1)[0] + "_1"
    iio.imwrite(tmp_path / "x.png", cam8)
    out = tmp_path / "out"
    out.mkdir()
    for pid in (os.getpid(), 999_999_999):  # as this process, and as a pid that is dead here
        lock_path(out / "x_colorized.png").write_text(f"{pid} {other}\n")
        # Not taken over, and not "left" either: a lock that cannot be checked may be a killed
        # run's, so the input fails (exit 1) and the line says which lock to delete.
        assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 1
        assert not (out / "x_colorized.png").exists() and lock_path(out / "x_colorized.png").exists()
        err = capsys.readouterr().err
        assert "failed 1" in err and "left to another run" not in err and f"on {other}); " in err
        assert f"(if no such run is active, delete {lock_path(out / 'x_colorized.png')})" in err


def test_ctrl_c_reports_what_finished_and_how_to_continue(tmp_path, model_path, cam8, monkeypatch, capsys):
    # It said only "interrupted", unlike SIGTERM, which said how to carry on.
    from napari_colorize import cli_colorize

    for name in ("a.png", "b.png", "c.png"):
        iio.imwrite(tmp_path / name, cam8)
    real = cli_colorize._colorize_one

    def second_is_interrupted(job, *args, **kwargs):
        if job.written.name == "b.png":
            raise KeyboardInterrupt  # Ctrl-C while colouring the second input
        return real(job, *args, **kwargs)

    monkeypatch.setattr(cli_colorize, "_colorize_one", second_is_interrupted)
    inputs = [tmp_path / n for n in ("a.png", "b.png", "c.png")]
    assert _run(*inputs, "-o", tmp_path / "out", "--model", model_path, *TILES) == 130
    err = capsys.readouterr().err
    assert "colorized 1 file(s)" in err and "not finished 2" in err
    assert ("interrupted (Ctrl-C); run the same command again to continue, with --skip-existing if it colours "
            "several inputs") in err


def test_another_jobs_store_with_skip_existing_says_what_to_do_in_cli_words(tmp_path, model_path, zarr_input, capsys):
    # "pass overwrite=True (--overwrite)" is the API's advice, and --overwrite cannot go with --skip-existing.
    out = tmp_path / "out"
    store = out / "z_colorized.zarr"
    assert _run(zarr_input, "-o", out, "--model", model_path, *TILES) == 0
    open_group(str(store), "r+").attrs["napari_colorize"] = dict(read_job(store), complete=False)
    capsys.readouterr()
    argv = ["--model", model_path, "--saturation", "2", *TILES]
    assert _run(zarr_input, "-o", out, "--skip-existing", *argv) == 1
    err = capsys.readouterr().err
    assert ("different colorization job (another input, model, options or axis names); delete that store, or colour "
            "that input alone with --overwrite instead of --skip-existing, or choose another -o") in err
    assert _run(zarr_input, "-o", out, *argv) == 1
    assert "; pass --overwrite to replace it, or choose another -o" in capsys.readouterr().err


def test_an_empty_or_dangling_output_folder_is_refused(tmp_path, model_path, cam8, capsys, monkeypatch):
    # -o '' wrote into the current folder; a dangling link said "a file is in the way".
    iio.imwrite(tmp_path / "x.png", cam8)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert _run(tmp_path / "x.png", "-o", "", "--model", model_path, *TILES) == 2
    assert _error_lines(capsys.readouterr().err) == [
        "napari-colorize colorize: error: -o is empty; give the folder to write the results into (-o . for the "
        "current folder)"]
    (tmp_path / "dangling").symlink_to("/nonexistent/dir")
    for out in (tmp_path / "dangling", tmp_path / "dangling" / "sub"):
        assert _run(tmp_path / "x.png", "-o", out, "--model", model_path, *TILES) == 2
        assert _error_lines(capsys.readouterr().err) == [
            f"napari-colorize colorize: error: cannot create the output folder {out}: {tmp_path / 'dangling'} is a "
            "broken link (it points to /nonexistent/dir, which does not exist); fix or remove the link, or choose "
            "another -o"]
    assert not list(here.iterdir())


def test_a_negative_tile_size_is_named_as_such(tmp_path, model_path, cam8, capsys):
    # Its derived overlap (-5 // 4 = -2) was checked first: "overlap must be >= 0 pixels, got -2".
    iio.imwrite(tmp_path / "x.png", cam8)
    assert _run(tmp_path / "x.png", "-o", tmp_path / "out", "--model", model_path, "--tile-size", "-5",
                "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "tile size -5 is smaller than the model's minimum input" in err and "overlap" not in err


def test_a_model_giving_nan_is_a_failure_not_a_black_image(tmp_path, cam8, capsys):
    # A diverged training run saves NaN weights; NaN cast to integers wrote black images
    # under "colorized 1 file(s)", and a store marked complete.
    torch.manual_seed(3)
    model = nc.build_model("compact")
    with torch.no_grad():
        next(iter(model.heads.values())).bias.fill_(float("nan"))
    broken = nc.save_model(model, tmp_path / "nan.safetensors")
    iio.imwrite(tmp_path / "cam.png", cam8)
    out = tmp_path / "out"
    assert _run(tmp_path / "cam.png", "-o", out, "--model", broken, *TILES) == 1
    assert "non-finite colours" in capsys.readouterr().err
    assert not (out.exists() and list(out.glob("*.png")))
    with pytest.raises(FloatingPointError, match="non-finite"):
        nc.colorize_to_zarr(cam8, tmp_path / "r.zarr", model=broken, device="cpu", tile_size=128, overlap=32)
    assert not is_complete(tmp_path / "r.zarr")
