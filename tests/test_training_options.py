"""The options of ``train``: their defaults, their checks, and what may change on resume."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import pytest
from _scenes import synthetic_image
from _scenes import to_u8 as _u8

from napari_colorize import build_model, save_model
from napari_colorize.model.factory import read_config
from napari_colorize.training import TrainConfig, train


def _config(data: Path, output: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], output=str(output), steps=2, batch_size=2, crop=64, max_side=96, points=32,
                workers=0, progress=False, log="", checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


def test_fine_tuning_defaults_to_the_shipped_models_learning_rate(tmp_path, photo_dir):
    # The documented fine-tuning command gives no --lr: 2e-3, the from-scratch rate, undid the
    # --init model's training in a few steps.
    base = save_model(build_model("compact", "lab"), tmp_path / "base.safetensors")
    runs = {"tuned": dict(init=str(base)), "scratch": {}, "chosen": dict(init=str(base), lr=1e-3),
            "sgd": dict(init=str(base), optimizer="sgd")}
    lrs = {}
    for name, kw in runs.items():
        out = tmp_path / f"{name}.safetensors"
        train(_config(photo_dir, out, **kw))
        lrs[name] = read_config(out).training["lr"]
    assert lrs == {"tuned": 5e-4, "scratch": 2e-3, "chosen": 1e-3, "sgd": 1e-3}


def test_resume_says_when_lr_changes_and_otherwise_keeps_the_runs_own(tmp_path, photo_dir, capsys):
    # lr is not refused on resume (a lower one is how a run whose loss became NaN goes on), but
    # the run then differs from an uninterrupted one: a note says so.
    out = tmp_path / "m.safetensors"
    train(_config(photo_dir, out, steps=3, lr=1e-3, stop_after=1))
    train(_config(photo_dir, out, steps=3, stop_after=1, resume=True))  # no --lr: the run's own, said nothing
    assert read_config(out).training["lr"] == 1e-3 and "note: --lr" not in capsys.readouterr().err
    train(_config(photo_dir, out, steps=3, lr=1e-2, resume=True))
    assert ("note: --lr 0.01 differs from the checkpoint's 1e-3: the run continues at 0.01 from step 2, so it will "
            "not equal an uninterrupted run") in capsys.readouterr().err
    assert read_config(out).training["lr"] == 1e-2


def _calibrate_in_place(path: Path) -> None:
    """What ``calibrate PATH ... -o PATH --force`` leaves: a calibration fitted to the file's weights."""
    from napari_colorize.model import load_model

    model = load_model(path)
    model.config.decoding = {"temperature": 1.5, "confidence_fading": [0.1, 0.3], "calibration": {"images": 4}}
    save_model(model, path)


def test_resuming_without_the_runs_init_says_so_first(tmp_path, photo_dir):
    # --init sets the space: without it the message named only "space", an option the user never typed.
    base = save_model(build_model("compact", "lab"), tmp_path / "base.safetensors")
    out = tmp_path / "m.safetensors"
    train(_config(photo_dir, out, steps=4, stop_after=2, init=str(base)))
    with pytest.raises(ValueError, match=f"settings differ from the checkpoint: the run was started with --init "
                                         f"{base}, now without; space: checkpoint 'lab', now 'hue_chroma'"):
        train(_config(photo_dir, out, steps=4, resume=True))
    with pytest.raises(ValueError) as refused:  # the same file by another name is not a difference
        train(_config(photo_dir, out, steps=4, resume=True, batch_size=4, init=os.path.relpath(base)))
    assert "batch_size: checkpoint 2, now 4" in str(refused.value) and "--init" not in str(refused.value)


def test_a_resumed_run_keeps_a_calibration_fitted_in_place_and_says_to_refit_it(tmp_path, photo_dir, capsys):
    # It was replaced by the run's own decoding (here none), unsaid.
    out = tmp_path / "m.safetensors"
    train(_config(photo_dir, out, steps=4, stop_after=2))
    _calibrate_in_place(out)
    capsys.readouterr()
    train(_config(photo_dir, out, steps=4, stop_after=1, resume=True))
    kept = {"temperature": 1.5, "confidence_fading": [0.1, 0.3],
            "calibration": {"images": 4, "inherited_from": f"{out} at step 2"}}
    assert {k: read_config(out).decoding.get(k) for k in kept} == kept
    train(_config(photo_dir, out, steps=4, resume=True))  # resumed again: still that calibration, still marked
    assert {k: read_config(out).decoding.get(k) for k in kept} == kept
    assert (f"note: its decoding calibration was fitted to the weights of {out} at step 2; fit it to these on "
            "held-out colour images") in capsys.readouterr().err
    _calibrate_in_place(out)
    train(_config(photo_dir, out, steps=2, force=True))  # a new run replaces the model, calibration and all
    assert (f"note: {out} carries a calibration that calibrate fitted to its step-4 weights; the new run replaces "
            "the model and that calibration with it") in capsys.readouterr().err
    assert "calibration" not in read_config(out).decoding


@pytest.mark.parametrize("option, words", [
    (["--lambda-hue", "-1"], "argument --lambda-hue: must be 0 or a positive number, got -1"),
    (["--warmup", "-5"], "argument --warmup: must be 0 or a positive integer, got -5"),
    (["--lr", "0"], "argument --lr: must be a positive number, got 0"),
    (["--lr", "-1"], "argument --lr: must be a positive number, got -1"),
    (["--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["--weight-decay", "-0.1"], "argument --weight-decay: must be 0 or a positive number, got -0.1"),
    (["--workers", "-1"], "argument --workers: must be 0 or a positive integer, got -1"),
    (["--steps", "nan"], "argument --steps: must be a positive integer (digits only), got 'nan'"),  # named _positive_int
    (["--steps", "1e12"], "argument --steps: must be a positive integer (digits only), got '1e12'"),
    (["--context-dropout", "0.5"], "--context-dropout 0.5 drops the image-level context, but the new model has none: "
                                   "give --context SIDE too"),
])
def test_options_that_cannot_train_are_refused_before_any_image_is_read(tmp_path, photo_dir, monkeypatch, capsys,
                                                                       option, words):
    from napari_colorize.cli import main
    from napari_colorize.training import inputs

    def refuse(*args, **kwargs):
        raise AssertionError("training images were read before the check")

    monkeypatch.setattr(inputs, "load_image_set", refuse)
    out = tmp_path / "m.safetensors"
    assert main(["train", str(photo_dir), "-o", str(out), "--steps", "2", "--no-progress", *option]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("settings, words", [
    (dict(lr=0.0), "--lr must be a positive number, got 0.0"), (dict(lambda_hue=-1.0), "--lambda-hue must be a number >= 0"),
    (dict(warmup=-5), "--warmup must be 0 or a positive integer, got -5"),
    (dict(context_dropout=0.5), "--context-dropout 0.5 drops the image-level context"),
])
def test_the_api_refuses_the_same_settings(tmp_path, photo_dir, settings, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        train(_config(photo_dir, tmp_path / "m.safetensors", **settings))


@pytest.mark.parametrize("command", ["train", "calibrate"])
def test_an_empty_output_is_called_empty(tmp_path, photo_dir, capsys, command):
    from napari_colorize.cli import main

    args = [str(photo_dir), "-o", ""] if command == "train" else ["default", str(photo_dir), "-o", ""]
    assert main([command, *args]) == 2
    assert f"napari-colorize {command}: error: -o is empty; give " in capsys.readouterr().err


def test_notes_about_what_force_replaces_come_only_once_the_run_may_start(tmp_path, photo_dir, capsys):
    out = tmp_path / "m.safetensors"
    train(_config(photo_dir, out, log=str(tmp_path / "m.log.jsonl")))
    capsys.readouterr()
    with pytest.raises(FileNotFoundError, match="--val"):
        train(_config(photo_dir, out, log=str(tmp_path / "m.log.jsonl"), force=True, val=str(tmp_path / "nowhere")))
    assert "note:" not in capsys.readouterr().err  # refused: nothing will be replaced
    train(_config(photo_dir, out, log=str(tmp_path / "m.log.jsonl"), force=True))
    err = capsys.readouterr().err
    assert "the checkpoint of an earlier run at" in err and "the log of an earlier run at" in err


def test_skipped_files_are_named_below_the_folder_given_in_train_and_evaluate(tmp_path, photo_dir, monkeypatch, capsys):
    from napari_colorize.cli import main

    monkeypatch.chdir(tmp_path)
    (photo_dir / "empty.png").write_bytes(b"")
    iio.imwrite(photo_dir / "gray.png", _u8(synthetic_image(1).mean(-1)))
    assert main(["train", "train", "-o", "m.safetensors", "--steps", "1", "--batch-size", "2", "--crop", "64",
                 "--max-side", "96", "--workers", "0", "--no-progress", "--log", ""]) == 0
    err = capsys.readouterr().err
    empty = ("skipping train/empty.png: empty.png is empty (0 bytes): it was not written or copied completely; "
             "copy or export it again")
    assert empty in err and "skipping train/gray.png: no colour (gray image)" in err
    assert main(["evaluate", "train", "--model", "m.safetensors", "--device", "cpu", "--max-side", "64"]) == 0
    err = capsys.readouterr().err
    assert empty in err and "skipping train/gray.png: no colour (gray image), nothing to compare with" in err


def test_another_models_checkpoint_and_log_are_never_taken(tmp_path, photo_dir):
    # --log or --checkpoint naming another model's files: the run appended to that log, and with
    # --force replaced its history and its resumable state.
    first = tmp_path / "ft.safetensors"
    train(_config(photo_dir, first, log=None))
    ckpt, log = tmp_path / "ft.ckpt.safetensors", tmp_path / "ft.log.jsonl"
    before = (ckpt.read_bytes(), log.read_bytes())
    other = tmp_path / "w.safetensors"
    with pytest.raises(FileExistsError, match=r"ft.log.jsonl is the log of the run of .*ft.safetensors, not of "
                                              r".*w.safetensors; training appends only to its own model's log"):
        train(_config(photo_dir, other, log=str(log)))
    for force in (False, True):
        with pytest.raises(FileExistsError, match=r"holds the resumable state of the run of .*ft.safetensors, not "
                                                  r"of .*w.safetensors; it is never replaced by another model's run"):
            train(_config(photo_dir, other, checkpoint=str(ckpt), force=force))
    assert (ckpt.read_bytes(), log.read_bytes()) == before and not other.exists()
    train(_config(photo_dir, first, log=None, force=True))  # its own run may replace them
