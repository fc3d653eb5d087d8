"""The shared atomic writer: permissions, no leftovers, full disks, killed runs, failed writes leave the old file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_colorize._atomic import DiskFullError, atomic_path, remove_stale_temps
from napari_colorize.io import tiff_memmaps, write_png


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
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_tiff_memmaps_failure_deletes_every_temp(tmp_path):
    import tifffile

    specs = {"a": (tmp_path / "a.tif", (8, 8), "float32", "minisblack"),
             "b": (tmp_path / "b.tif", (8, 8), "uint8", "minisblack")}
    with pytest.raises(RuntimeError), tiff_memmaps(specs) as maps:
        maps["a"][:] = 1
        raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    with tiff_memmaps(specs) as maps:
        maps["a"][:] = 0.5
        maps["b"][:] = 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), np.full((8, 8), 0.5, np.float32))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), np.full((8, 8), 7, np.uint8))


# ----------------------------------------------------------------------------- full disks

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_stops_tiff_memmaps_before_writing_and_leaves_no_temp(tmp_path, monkeypatch):
    (tmp_path / "b.tif").write_bytes(b"earlier result")
    monkeypatch.setattr(os, "posix_fallocate", _enospc, raising=False)
    specs = {"a": (tmp_path / "a.tif", (256, 256, 3), "uint8", "rgb"),
             "b": (tmp_path / "b.tif", (256, 256), "float32", "minisblack")}
    with pytest.raises(DiskFullError, match=r"^disk full while writing .*a\.tif: 0\.2 MB needed, .* MB free in .*"
                                            r"free some space or choose another output folder$") as info:
        with tiff_memmaps(specs):
            pytest.fail("the block must not run on a full disk")
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif"]
    assert (tmp_path / "b.tif").read_bytes() == b"earlier result"


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="needs posix_fallocate")
def test_tiff_space_is_reserved_up_front(tmp_path, monkeypatch):
    reserved = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, off, size: (reserved.append(size), real(fd, off, size)))
    with tiff_memmaps({"a": (tmp_path / "a.tif", (300, 200), "float32", "minisblack")}) as maps:
        assert reserved and reserved[0] >= 300 * 200 * 4  # before any pixel is written
        maps["a"][:] = 0.25
    assert (tmp_path / "a.tif").stat().st_size == reserved[0]


def test_file_systems_without_preallocation_compare_free_space(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    def unsupported(*args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError, match=r"a\.png: .* needed, 0\.0 MB free"):
        write_png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 0, 10**9))
    write_png(tmp_path / "a.png", np.zeros((64, 64), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_full_disk_while_writing_names_the_final_file(tmp_path):
    target = tmp_path / "model.safetensors"
    with pytest.raises(DiskFullError, match=r"disk full while writing .*model\.safetensors"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.iterdir())


_WRITE_OVER_LIMIT = """
import resource, signal, sys
import numpy as np
from pathlib import Path
from napari_colorize.io import tiff_memmaps, write_png
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on FAT32
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
out = Path(sys.argv[1])
big = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
for write in (lambda: write_png(out / "a.png", big),
              lambda: tiff_memmaps({"b": (out / "b.tif", (512, 512, 3), "uint8", "rgb")}).__enter__()):
    try:
        write()
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
"""


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_beyond_the_size_limit_is_one_line_per_file_and_no_leftovers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _WRITE_OVER_LIMIT, str(out)], capture_output=True, text=True,
                          timeout=120, check=False)
    lines = [line for line in proc.stderr.splitlines() if "Pydantic" not in line and line.strip()]
    assert proc.returncode == 0, proc.stderr
    assert len(lines) == 2, proc.stderr  # no "Exception ignored ... Traceback" from an encoder
    assert lines[0].startswith("error: ") and "a.png is too large (0.8 MB)" in lines[0]
    assert "b.tif is too large" in lines[1] and "another disk" in lines[1]
    assert not list(out.iterdir())


# ----------------------------------------------------------------------------- killed runs

_HOLD_TEMP = """
import sys, time
from pathlib import Path
from napari_colorize.io import tiff_memmaps
with tiff_memmaps({"a": (Path(sys.argv[1]) / "result.tif", (64, 64), "uint8", "minisblack")}) as maps:
    maps["a"][:] = 1
    print("writing", flush=True)
    time.sleep(120)
"""


def _start_writer(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_TEMP, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are recognised by process id on POSIX")
def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    killed = _start_writer(tmp_path)
    killed.kill()  # SIGKILL: no chance to clean up
    killed.wait()
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".result.") and stale[0].endswith(f"-{killed.pid}.tif")
    running = _start_writer(tmp_path)  # the next run writing into the folder
    try:
        temps = [p.name for p in tmp_path.iterdir()]
        assert len(temps) == 1 and temps[0].endswith(f"-{running.pid}.tif")  # the stale one is gone
        write_png(tmp_path / "next.png", np.zeros((8, 8), np.uint8))  # yet another run, while that one writes
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(temps + ["next.png"])  # a live run's file stays
        assert remove_stale_temps(tmp_path) == []
    finally:
        running.kill()
        running.wait()
    assert [p.name for p in remove_stale_temps(tmp_path)] == temps
    assert [p.name for p in tmp_path.iterdir()] == ["next.png"]


@pytest.mark.parametrize("stem", ["n" * 251, "é" * 125 + "n"])  # 255 bytes with .tif; the second cut mid-character
def test_the_longest_legal_name_gets_a_temporary_name_and_a_lock_that_fit(tmp_path, stem):
    # Temporary names added up to 58 bytes, so a legal 250-byte output name could not be written.
    from napari_colorize._locks import OutputLocks, lock_path

    target = tmp_path / f"{stem}.tif"
    assert len(os.fsencode(target.name)) == 255
    with OutputLocks([target]), atomic_path(target) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255 and len(os.fsencode(lock_path(target).name)) <= 255
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file or lock left
    # Two long names that share their first 240 bytes never share a lock.
    assert lock_path(tmp_path / ("n" * 250 + "a.tif")) != lock_path(tmp_path / ("n" * 250 + "b.tif"))
    # A killed run's lock on it is taken over (its ".break" companion was too long a name).
    from napari_colorize._atomic import HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(target).write_text(f"{dead.pid} {HOST}\n")
    with OutputLocks([target]):
        assert lock_path(target).read_text().startswith(str(os.getpid()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    # Names are cut between characters, never inside one (no valid name on macOS or Windows).
    assert all(not ("\udc80" <= c <= "\udcff") for c in lock_path(target).name)


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are recognised by process id on POSIX")
def test_a_temp_file_with_this_process_s_id_that_it_did_not_make_is_stale(tmp_path):
    # A restarted container gives its command the pid of the killed run (often 1): that run's
    # temporary file carries this very process's id, yet it is not being written by anyone.
    from napari_colorize._atomic import HOST

    left = tmp_path / f".result.0123abcd.tmp-{HOST}-{os.getpid()}.tif"
    left.write_bytes(b"torn")
    with atomic_path(tmp_path / "x.tif") as mine:  # the first write into the folder sweeps it
        mine.write_bytes(b"new")
        assert not left.exists() and mine.exists()
        assert remove_stale_temps(tmp_path) == []  # the one this process is writing stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are recognised by process id on POSIX")
def test_a_spill_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    # The PNG/TIFF writers' spill folder (pieces handed between stripes) was a random
    # TemporaryDirectory name: one left by a SIGKILL stayed in the output folder for good.
    from napari_colorize._atomic import HOST, temp_folder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f".napari_colorize_spill.0badcafe.tmp-{HOST}-{gone.pid}"
    stale.mkdir()
    (stale / "0-0.npy").write_bytes(b"piece")
    with temp_folder(tmp_path / "napari_colorize_spill") as spill:
        assert spill.is_dir() and spill.name.endswith(f"-{os.getpid()}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [spill.name]  # the dead run's folder is swept
        (spill / "piece.npy").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []  # removed with its contents


def test_a_lock_caught_while_its_run_fills_it_names_that_run(tmp_path):
    # Between O_EXCL's create and "pid host" written, a second run read an empty lock: it
    # named no run, and colorize counted the input as failed instead of left to that run
    # (tests/test_safety_cli.py::test_two_processes_on_one_output_folder, now and then).
    import threading

    from napari_colorize._atomic import HOST
    from napari_colorize._locks import OutputBusyError, _acquire, lock_path

    target = tmp_path / "x_colorized.png"
    lock = lock_path(target)
    lock.touch()  # made, not yet filled
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        filler = threading.Timer(0.03, lambda: lock.write_text(f"{sleeper.pid} {HOST}\n"))
        filler.start()
        with pytest.raises(OutputBusyError) as busy:
            _acquire(target)
        filler.join()
        assert busy.value.owner is not None and busy.value.owner.pid == sleeper.pid
        assert f"(pid {sleeper.pid})" in str(busy.value)
    finally:
        sleeper.kill()
        sleeper.wait()
