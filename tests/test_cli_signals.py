"""A double Ctrl-C: the command stops at the first and cleans up through the second.

A user test: two Ctrl-C 0.2 s apart ended ``napari-colorize colorize`` with
"terminate called without an active exception" and exit 134 (6 of 8 tries), not 130: the
second signal cut short the wait for the tiles in progress, and torch's threads met the
interpreter's exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize._locks import lock_path


def test_signals_after_the_first_pass_while_the_command_cleans_up():
    for first, raised in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, cli.Terminated)):
        with cli._terminate_as_interrupt():
            with pytest.raises(raised):
                signal.raise_signal(first)
            try:  # cleaning up: the second signal passes
                signal.raise_signal(signal.SIGTERM if first == signal.SIGINT else signal.SIGINT)
            except KeyboardInterrupt:  # caught: a KeyboardInterrupt reaching pytest would end the whole run
                pytest.fail("a signal during the clean-up interrupted it")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_third_signal_ends_a_clean_up_that_hangs():
    script = ("import signal, time\n"
              "from napari_colorize import cli\n"
              "with cli._terminate_as_interrupt():\n"
              "    try:\n"
              "        signal.raise_signal(signal.SIGTERM)\n"
              "    except KeyboardInterrupt:\n"
              "        signal.raise_signal(signal.SIGINT)  # passes\n"
              "        signal.raise_signal(signal.SIGINT)  # a third: out\n"
              "        print('still cleaning up')\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM  # the first signal's code
    assert "still cleaning up" not in done.stdout
    assert "napari-colorize: stopping at once; the next run clears what this one left" in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_double_ctrl_c_exits_130_and_leaves_no_lock(tmp_path):
    torch.manual_seed(0)
    model = nc.save_model(nc.build_model("compact"), tmp_path / "m.safetensors")
    gray = np.random.default_rng(0).integers(0, 255, (2000, 2400), dtype=np.uint8)  # seconds of tiles
    Image.fromarray(gray).save(tmp_path / "big.png")
    out = tmp_path / "out"
    command = [str(Path(sys.executable).with_name("napari-colorize")), "colorize", str(tmp_path / "big.png"), "-o",
               str(out), "--model", str(model), "--device", "cpu", "--format", "tiff", "--no-progress"]
    if not Path(command[0]).exists():
        pytest.skip("the napari-colorize command is not installed beside this Python")
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lock = lock_path(out / "big_colorized.tif")
    deadline = time.monotonic() + 120
    while not lock.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the lock is taken when colouring begins
    assert run.poll() is None, run.communicate()[1]
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "terminate called" not in err
    assert "napari-colorize colorize: interrupted (Ctrl-C); run the same command again to continue" in err
    assert not lock.exists()


def test_worker_processes_started_for_a_local_cluster_leave_ctrl_c_to_the_command():
    # Ctrl-C reaches the terminal's whole process group: each dask worker died of it mid-task and
    # printed a KeyboardInterrupt traceback over the summary (about 70 lines for --workers 2).
    from napari_colorize.engine.distributed import _children_leave_ctrl_c

    probe = [sys.executable, "-c", "import signal; h = signal.getsignal(signal.SIGINT); "
             "print('ignored' if h == signal.SIG_IGN else h)"]
    with _children_leave_ctrl_c():
        started_inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    started_after = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    assert started_inside.strip() == "ignored"
    assert "default_int_handler" in started_after
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command's own, given back


def test_the_module_runs_as_the_command():
    # The benchmarks time `python -m napari_colorize.cli ...`: without its __main__ block it did nothing, exit 0.
    done = subprocess.run([sys.executable, "-m", "napari_colorize.cli", "colorize", "/nonexistent/x.png", "-o",
                           "/nonexistent/out"], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "/nonexistent/x.png: no such file or folder" in done.stderr


def test_a_signal_while_the_cluster_closes_after_every_input_keeps_the_summary(tmp_path, monkeypatch, capsys):
    # A user test (--workers 2, the signal in the cluster's close): every output was written,
    # yet the run printed only "interrupted" and exited 130, without its summary.
    import contextlib

    from napari_colorize import cli_colorize

    @contextlib.contextmanager
    def closing_interrupted(args):
        yield None
        raise KeyboardInterrupt  # as Ctrl-C arriving while the workers shut down

    monkeypatch.setattr(cli_colorize, "_client", closing_interrupted)
    torch.manual_seed(0)
    model = nc.save_model(nc.build_model("compact"), tmp_path / "m.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80), dtype=np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["colorize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model),
                     "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "colorized 1 file(s)" in err and "interrupted" not in err
    assert (tmp_path / "out" / "a_colorized.png").exists()
