"""Ctrl-C and SIGTERM during training: the step in progress finishes, is saved, and --resume
continues from it to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from napari_colorize.training import TrainConfig, train

_OPTIONS = dict(steps=6, batch_size=2, crop=64, max_side=96, points=32, workers=0, lr=3e-3, checkpoint_every=2)


def _checkpoint_step(path: Path) -> int:
    with safe_open(str(path), "np") as f:
        return json.loads(f.metadata()["napari_colorize_state"])["step"]


def _signal_during_step(monkeypatch, step: int, signum: int) -> None:
    """Send ``signum`` to this process in the middle of step ``step`` (0-based): after its loss,
    before its backward pass and optimizer update."""
    from napari_colorize.training import trainer

    calls = {"n": 0}
    real = trainer.compute_loss

    def loss_then_signal(*args, **kwargs):
        loss = real(*args, **kwargs)
        if calls["n"] == step:
            signal.raise_signal(signum)
        calls["n"] += 1
        return loss

    monkeypatch.setattr(trainer, "compute_loss", loss_then_signal)


def _cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "-o", str(out), "--steps", "6", "--batch-size", "2", "--crop", "64", "--max-side", "96",
            "--points", "32", "--workers", "0", "--lr", "3e-3", "--checkpoint-every", "2", "--no-progress", *extra]


@pytest.mark.parametrize("signum, code, words", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                 (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_between_checkpoints_saves_the_step_and_resume_is_exact(tmp_path, photo_dir, monkeypatch, capsys,
                                                                          signum, code, words):
    from napari_colorize.cli import main

    full = tmp_path / "full.safetensors"
    train(TrainConfig(data=[str(photo_dir)], output=str(full), progress=False, **_OPTIONS))
    part = tmp_path / "part.safetensors"
    _signal_during_step(monkeypatch, 2, signum)  # the third step, between the checkpoints of steps 2 and 4
    assert main(_cli_args(photo_dir, part)) == code
    err = capsys.readouterr().err
    assert (f"napari-colorize train: {words}; stopped at step 3; the checkpoint holds step 3: continue with the "
            "same command and --resume") in err
    assert _checkpoint_step(tmp_path / "part.ckpt.safetensors") == 3
    assert '"event": "stopped", "step": 3' in (tmp_path / "part.log.jsonl").read_text()
    monkeypatch.undo()
    assert main(_cli_args(photo_dir, part, "--resume")) == 0
    for pair in ((full, part), (tmp_path / "full.ckpt.safetensors", tmp_path / "part.ckpt.safetensors")):
        a, b = (load_file(str(p)) for p in pair)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (pair[0].name, key)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back


def test_a_second_signal_while_saving_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, photo_dir, monkeypatch):
    from napari_colorize.training import trainer

    out = tmp_path / "m.safetensors"
    _signal_during_step(monkeypatch, 2, signal.SIGINT)
    real_save = trainer.save_training_state

    def save_with_second_ctrl_c(path, model, optimizer, step, info):
        if step == 3:  # the save the first Ctrl-C asked for: Ctrl-C again
            signal.raise_signal(signal.SIGINT)
        return real_save(path, model, optimizer, step, info)

    monkeypatch.setattr(trainer, "save_training_state", save_with_second_ctrl_c)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(TrainConfig(data=[str(photo_dir)], output=str(out), progress=False, **_OPTIONS))
    assert not hasattr(stopped.value, "step")  # not saved: a plain Ctrl-C
    assert _checkpoint_step(tmp_path / "m.ckpt.safetensors") == 2  # the periodic one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt.safetensors", "m.log.jsonl", "m.safetensors", "train"]


def test_a_second_run_on_a_model_another_run_is_writing_is_refused(tmp_path, photo_dir, capsys):
    # Two runs on one -o (the second with --resume or --force, as the first's message invited)
    # interleaved their steps in one log and checkpoint; the last to finish won.
    from _runs import held_by_another_run

    from napari_colorize.cli import main

    out = tmp_path / "sub" / "m.safetensors"
    out.parent.mkdir()
    with held_by_another_run(out):
        for extra in ((), ("--force",), ("--resume",)):
            assert main(_cli_args(photo_dir, out, *extra)) == 2
            assert (f"m.safetensors is being written by another run (pid {os.getpid()}); let it finish (or stop it), "
                    "or write to another -o") in capsys.readouterr().err
        assert sorted(p.name for p in out.parent.iterdir()) == [".m.safetensors.lock"]  # the other run's, alone
    assert main(_cli_args(photo_dir, out)) == 0
    assert not (out.parent / ".m.safetensors.lock").exists()


def test_a_checkpoint_or_log_another_run_is_writing_is_refused_for_another_model(tmp_path, photo_dir, capsys):
    # Two runs of different models given one --checkpoint both passed its owner check before
    # either had written it, then took turns overwriting it.
    from _runs import held_by_another_run

    from napari_colorize.cli import main

    shared = {"--checkpoint": tmp_path / "shared.ckpt.safetensors", "--log": tmp_path / "shared.log.jsonl"}
    advice = "let it finish (or stop it), or give --checkpoint and --log names of this run's own"
    for option, path in shared.items():
        with held_by_another_run(tmp_path / "first.safetensors", path):
            assert main(_cli_args(photo_dir, tmp_path / "second.safetensors", option, str(path))) == 2
            assert (f"{path.name} is being written by another run (pid {os.getpid()}); {advice}"
                    in capsys.readouterr().err)
            assert not path.exists() and not (tmp_path / "second.safetensors").exists()
    # A run's default checkpoint named by another run, and the reverse: the same race.
    first_ckpt = tmp_path / "first.ckpt.safetensors"
    with held_by_another_run(tmp_path / "first.safetensors", first_ckpt, tmp_path / "first.log.jsonl"):
        assert main(_cli_args(photo_dir, tmp_path / "second.safetensors", "--checkpoint", str(first_ckpt))) == 2
        assert f"first.ckpt.safetensors is being written by another run (pid {os.getpid()}); {advice}" in (
            capsys.readouterr().err)
    with held_by_another_run(tmp_path / "first.safetensors", tmp_path / "third.ckpt.safetensors"):
        assert main(_cli_args(photo_dir, tmp_path / "third.safetensors")) == 2  # its default checkpoint
        assert f"third.ckpt.safetensors is being written by another run (pid {os.getpid()}); {advice}" in (
            capsys.readouterr().err)
    # The same file named twice is still refused in words, not as busy with this run's own lock.
    out = tmp_path / "m.safetensors"
    assert main(_cli_args(photo_dir, out, "--checkpoint", str(out))) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert main(_cli_args(photo_dir, out, "--checkpoint", str(shared["--checkpoint"]))) == 0
    assert shared["--checkpoint"].exists() and not list(tmp_path.glob(".*.lock"))


def test_a_closed_output_pipe_leaves_no_loader_worker_behind(tmp_path, photo_dir, monkeypatch):
    # `napari-colorize train ... | head -2` hung at exit: the loader's workers ignore SIGTERM, and
    # the interpreter joined them forever when the broken pipe stopped the run before its loop.
    import multiprocessing
    import sys

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", ClosedPipe())
    with pytest.raises(BrokenPipeError) as caught:
        train(TrainConfig(data=[str(photo_dir)], output=str(tmp_path / "m.safetensors"), progress=False,
                          **{**_OPTIONS, "workers": 1}))
    # Asked while the error (and with it every frame of the run) is still alive, as at the CLI's exit.
    assert caught.tb is not None and multiprocessing.active_children() == []


def test_an_unfinished_run_used_as_a_model_is_noted(tmp_path, photo_dir, capsys):
    # A half-trained model (the file is rewritten at every checkpoint) was used without a word.
    import imageio.v3 as iio
    from _runs import held_by_another_run

    from napari_colorize.cli import main

    part = tmp_path / "part.safetensors"
    train(TrainConfig(data=[str(photo_dir)], output=str(part), progress=False, stop_after=2, **_OPTIONS))
    capsys.readouterr()
    gray = tmp_path / "gray.png"
    iio.imwrite(gray, (np.linspace(0, 255, 64 * 64).reshape(64, 64)).astype(np.uint8))
    note = (f"note: {part} is an unfinished training run (saved at step 2): its colours may be poorer than the "
            "finished model's; finish it with the same train command and --resume")
    assert main(["colorize", str(gray), "-o", str(tmp_path / "out"), "--model", str(part)]) == 0
    assert note in capsys.readouterr().err
    assert main(["evaluate", str(photo_dir), "--model", str(part), "--device", "cpu", "--summary"]) == 0
    assert note in capsys.readouterr().err
    with held_by_another_run(part):  # its run goes on: --resume would be refused, so not advised
        assert main(["colorize", str(gray), "-o", str(tmp_path / "out1"), "--model", str(part)]) == 0
        assert (f"note: {part} is being trained now (pid {os.getpid()}; these are the weights of step 2)"
                in capsys.readouterr().err)
    # Calibrating it says so too; its calibrated copy cannot be resumed, so it points to the run.
    copy = tmp_path / "copy.safetensors"
    assert main(["calibrate", str(part), str(photo_dir), "-o", str(copy), "--device", "cpu", "--max-side", "64"]) == 0
    err = capsys.readouterr().err
    assert note in err and "note: calibrating on 4 image(s): a temperature and fading fitted on so few" in err
    assert main(["colorize", str(gray), "-o", str(tmp_path / "out3"), "--model", str(copy)]) == 0
    assert (f"note: {copy} is a copy of an unfinished training run ({part}, saved at step 2): its colours may be "
            "poorer than the finished model's; finish that run with its train command and --resume, then make the "
            "copy again") in capsys.readouterr().err
    same_name = tmp_path / "calibrated" / "part.safetensors"  # a copy of the same name, elsewhere
    same_name.parent.mkdir()
    same_name.write_bytes(copy.read_bytes())
    link = tmp_path / "latest.safetensors"  # a link to the run is the run
    link.symlink_to(part)
    assert main(["colorize", str(gray), "-o", str(tmp_path / "out4"), "--model", str(same_name)]) == 0
    assert f"note: {same_name} is a copy of an unfinished training run ({part}," in capsys.readouterr().err
    assert main(["colorize", str(gray), "-o", str(tmp_path / "out5"), "--model", str(link)]) == 0
    assert f"note: {link} is an unfinished training run (saved at step 2)" in capsys.readouterr().err
    train(TrainConfig(data=[str(photo_dir)], output=str(part), progress=False, resume=True, **_OPTIONS))
    capsys.readouterr()
    assert main(["colorize", str(gray), "-o", str(tmp_path / "out2"), "--model", str(part)]) == 0
    assert "is an unfinished training run" not in capsys.readouterr().err  # finished: nothing to say
