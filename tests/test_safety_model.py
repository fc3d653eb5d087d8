"""Model files and training outputs as a user meets them: edited metadata, mislabelled
weights, and ``train -o`` pointed at files that must not be lost (issue 12).

Every case runs the command line (``napari_colorize.cli.main``) or the API on real files
and checks the one-line message, the exit code, and that no file was changed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_colorize import build_model, load_model, save_model
from napari_colorize.cli import main
from napari_colorize.model import ModelMetadataError, factory, read_config
from napari_colorize.model.metadata import METADATA_KEY


def _colour_image(seed: int, size: int = 96) -> np.ndarray:
    """A colourful uint8 scene: a gradient from blue to yellow plus noise."""
    r = np.random.default_rng(seed)
    t = np.linspace(0, 1, size)[:, None] * np.ones((1, size))
    rgb = np.stack([t, t, 1 - t], axis=-1) * 0.7 + 0.15 + r.normal(0, 0.05, (size, size, 3))
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"p{i}.png", _colour_image(i))
    return folder


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(build_model("compact", "hue_chroma"), tmp_path / "mine.safetensors", steps=5, complete=True)


def _metadata(path: Path) -> dict:
    return json.loads(read_config(path).to_json())


def _write_metadata(path: Path, text: str) -> None:
    """Replace the metadata text of a model file, keeping its tensors (what a user's editor does)."""
    save_file(load_file(str(path)), str(path), metadata={METADATA_KEY: text})


def _edit(path: Path, **fields) -> Path:
    doc = _metadata(path)
    for key, value in fields.items():
        if "." in key:
            outer, inner = key.split(".")
            doc[outer][inner] = value
        else:
            doc[key] = value
    _write_metadata(path, json.dumps(doc))
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ----------------------------------------------------------------------------- edited metadata


@pytest.mark.parametrize(("fields", "expected"), [
    ({"backbone": "resnet"}, r"'backbone' is \"resnet\" \(a string\); choose one of compact, vgg16"),
    ({"hidden": "128"}, r"'hidden' is \"128\" \(a string\); it must be a whole number >= 8 and <= 4096"),
    ({"hidden": 10**9}, r"'hidden' is 1000000000 \(a whole number\); it must be a whole number >= 8 and <= 4096"),
    ({"hidden": True}, r"'hidden' is true \(a boolean\)"),
    ({"space": None}, r"'space' is null"),
    ({"dropout": 1.0}, r"'dropout' is 1.0 .*< 1"),
    ({"format_version": "1"}, r"'format_version' is \"1\""),
    ({"decoding": []}, r"'decoding' is \[\] \(a list\); it must be a JSON object"),
    ({"decoding.method": "best"}, r"'decoding.method' is \"best\".*choose one of expectation, median, mode, sample"),
    ({"decoding.confidence_fading": [0.6, 0.2]}, r"'decoding.confidence_fading' is \[0.6, 0.2\].*lo < hi"),
    ({"decoding.confidence_fading": [0.1, 7]}, r"'decoding.confidence_fading' is \[0.1, 7\].*<= 1"),
    ({"decoding.saturation": float("nan")}, r"'decoding.saturation' is nan"),
    ({"decoding.eta": 0}, r"'decoding.eta' is 0 .*> 0"),
])
def test_edited_metadata_is_refused_before_building(model_file, monkeypatch, fields, expected):
    _edit(model_file, **fields)

    def no_build(config):
        raise AssertionError("a network was built from metadata that fails the schema")

    monkeypatch.setattr(factory, "_from_config", no_build)
    with pytest.raises(ModelMetadataError, match=expected) as info:
        load_model(model_file)
    assert str(info.value).startswith(str(model_file))


def test_missing_required_field_and_non_object_metadata(model_file):
    doc = _metadata(model_file)
    del doc["backbone"]
    _write_metadata(model_file, json.dumps(doc))
    with pytest.raises(ModelMetadataError, match=r"no field 'backbone' \(e.g. \"backbone\": \"compact\"\)"):
        read_config(model_file)
    _write_metadata(model_file, "[1, 2]")
    with pytest.raises(ModelMetadataError, match="is a list, not a JSON object"):
        read_config(model_file)


def test_unknown_fields_are_kept_as_notes(model_file):
    _edit(model_file, notes="checked by Ada", **{"decoding.comment": "calibrated on slides"})
    assert load_model(model_file).config.decoding["comment"] == "calibrated on slides"


@pytest.mark.parametrize(("fields", "text", "expected"), [
    ({"backbone": "resnet"}, None, r"field 'backbone' is \"resnet\" \(a string\); choose one of compact, vgg16"),
    ({"hidden": "128"}, None, r"field 'hidden' is \"128\""),
    ({"hidden": 10**9}, None, r"field 'hidden' is 1000000000"),
    ({}, '{"backbone": "compact", "space": ', r"the model metadata is not valid JSON"),
])
def test_evaluate_and_train_init_report_edited_metadata(tmp_path, capsys, images, model_file, fields, text, expected):
    _edit(model_file, **fields) if text is None else _write_metadata(model_file, text)
    code, err = _run(capsys, "evaluate", images, "--model", model_file, "--device", "cpu")
    assert code == 2 and str(model_file) in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("napari-colorize evaluate: error: ")
    assert re.search(expected, err), err
    out = tmp_path / "tuned.safetensors"
    code, err = _run(capsys, "train", images, "-o", out, "--init", model_file, "--steps", "2", "--crop", "64",
                     "--max-side", "96", "--workers", "0", "--no-progress")
    assert code == 2 and str(model_file) in err and re.search(expected, err), err
    assert not out.exists() and not (tmp_path / "tuned.ckpt.safetensors").exists()


def test_newer_format_says_upgrade(model_file):
    _edit(model_file, format_version=7)
    with pytest.raises(ModelMetadataError, match="format version 7 .*upgrade napari-colorize"):
        read_config(model_file)


def test_build_model_checks_the_same_bounds():
    with pytest.raises(ModelMetadataError, match=r"build_model\(\): model metadata field 'hidden' is 1000000000"):
        build_model("compact", hidden=10**9)
    with pytest.raises(ValueError, match="unknown backbone 'resnet'; choose one of compact, vgg16"):
        build_model("resnet")


# ----------------------------------------------------------------------------- mislabelled weights


def test_compact_weights_labelled_vgg16_name_what_they_look_like(capsys, images, model_file):
    _edit(model_file, backbone="vgg16")
    code, err = _run(capsys, "evaluate", images, "--model", model_file, "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"the weights in {model_file} do not match" in err
    assert "(backbone 'vgg16', hidden 128) named in its metadata: they look like 'compact' weights" in err
    assert "size mismatch" not in err


def test_wrong_hidden_width_and_space_are_named(model_file):
    _edit(model_file, hidden=64)
    with pytest.raises(ValueError, match="their hidden width is 128, the metadata says 64"):
        load_model(model_file)
    _edit(model_file, hidden=128, space="lab")
    with pytest.raises(ValueError, match="their heads are those of a 'hue_chroma' model"):
        load_model(model_file)


def test_tensors_are_checked_before_they_are_read(model_file, monkeypatch):
    import safetensors.torch

    _edit(model_file, backbone="vgg16")
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("tensors were read"))
    with pytest.raises(ValueError, match="look like 'compact' weights"):
        load_model(model_file)


def test_a_folder_as_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is a folder; pass 'default' or the path of a .safetensors model file"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="the model is empty; pass 'default'"):  # --model '' was ". is a folder"
        load_model("")


def test_a_training_checkpoint_as_model_names_the_runs_model(tmp_path, capsys, images):
    from napari_colorize.model.metadata import TRAINING_STATE_KEY

    ckpt = tmp_path / "run.ckpt.safetensors"
    save_file({"w": torch.zeros(1)}, str(ckpt), metadata={TRAINING_STATE_KEY: "{}"})
    expected = f"{ckpt} is a training checkpoint .* not a model; pass its model, {tmp_path / 'run.safetensors'}"
    with pytest.raises(ValueError, match=expected):
        load_model(ckpt)
    code, err = _run(capsys, "colorize", images, "-o", tmp_path / "out", "--model", ckpt)
    assert code == 2 and re.search(expected, err)
    other = tmp_path / "state.safetensors"  # a --checkpoint of the user's own naming
    ckpt.rename(other)
    with pytest.raises(ValueError, match="pass the model file it wrote"):
        read_config(other)


def test_refused_commands_leave_no_folder_behind(tmp_path, capsys, images, model_file):
    gray = tmp_path / "gray"
    gray.mkdir()
    iio.imwrite(gray / "g.png", np.full((96, 96), 128, np.uint8))
    code, err = _run(capsys, "train", gray, "-o", tmp_path / "new" / "deep" / "m.safetensors", "--steps", "2",
                     "--batch-size", "2", "--crop", "64", "--workers", "0", "--no-progress")
    assert code == 2 and "too few usable colour images" in err
    code, err = _run(capsys, "calibrate", model_file, images, "-o", tmp_path / "new" / "cal" / "c.safetensors",
                     "--group-by", "source")
    assert code == 2 and "no manifest.csv" in err
    code, err = _run(capsys, "evaluate", images, "--model", model_file, "--json", tmp_path / "new" / "t" / "t.json",
                     "--group-by", "source")
    assert code == 2 and "no manifest.csv" in err
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- train -o


def _train(capsys, images, out, *extra):
    return _run(capsys, "train", images, "-o", out, "--steps", "2", "--batch-size", "2", "--crop", "64",
                "--max-side", "96", "--workers", "0", "--no-progress", *extra)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_never_writes_over_a_training_image(tmp_path, capsys, images):
    before = _snapshot(images)
    for extra in ((), ("--force",)):
        code, err = _train(capsys, images, images / "p0.png", *extra)
        assert code == 2 and "must be a .safetensors file" in err and "-o " in err
    assert _snapshot(images) == before  # the image is intact and no .ckpt/.log was laid beside it


@pytest.mark.parametrize("content", ["foreign", "text"])
def test_train_never_replaces_a_file_that_is_not_our_model(tmp_path, capsys, images, content):
    out = tmp_path / "weights.safetensors"
    if content == "foreign":
        save_file({"w": torch.zeros(3)}, str(out))
    else:
        out.write_text("my notes, unluckily named")
    before = out.read_bytes()
    for extra in ((), ("--force",)):
        code, err = _train(capsys, images, out, *extra)
        assert code == 2 and "exists and is not a napari-colorize model" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "weights.safetensors"]


def test_retraining_over_our_model_needs_force(tmp_path, capsys, images, model_file):
    before = model_file.read_bytes()
    code, err = _train(capsys, images, model_file)
    assert code == 2 and "is already a napari-colorize model (complete, 5 steps); add --force" in err
    assert model_file.read_bytes() == before and not (tmp_path / "mine.ckpt.safetensors").exists()
    code, err = _train(capsys, images, model_file, "--force")
    assert code == 0 and read_config(model_file).training["steps"] == 2
    assert f"resumable state {tmp_path / 'mine.ckpt.safetensors'}" in err
    assert f"log {tmp_path / 'mine.log.jsonl'}" in err


def test_an_earlier_runs_checkpoint_needs_resume_or_force(tmp_path, capsys, images):
    out = tmp_path / "m.safetensors"
    assert _train(capsys, images, out, "--log", "")[0] == 0
    out.unlink()  # the model is gone, its run's resumable state is not
    ckpt = tmp_path / "m.ckpt.safetensors"
    before = ckpt.read_bytes()
    code, err = _train(capsys, images, out, "--steps", "3", "--log", "")
    assert code == 2 and "holds the resumable state of an earlier run; add --resume" in err
    assert ckpt.read_bytes() == before and not out.exists()
    code, err = _train(capsys, images, out, "--steps", "3", "--log", "", "--resume")
    assert code == 0 and read_config(out).training["steps"] == 3


def test_interrupted_run_resumes_over_its_own_model_without_force(tmp_path, images):
    from napari_colorize.training import TrainConfig, train

    out = tmp_path / "m.safetensors"
    kw = dict(data=[str(images)], output=str(out), steps=3, batch_size=2, crop=64, max_side=96, points=16,
              workers=0, progress=False, log="")
    train(TrainConfig(stop_after=1, **kw))
    assert read_config(out).training["complete"] is False
    train(TrainConfig(resume=True, **kw))
    assert read_config(out).training["complete"] is True and read_config(out).training["steps"] == 3


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_fine_tuning_in_place_is_refused_before_anything_is_written(tmp_path, capsys, images, model_file, how):
    out = model_file
    if how != "same":
        out = tmp_path / "alias.safetensors"
        (out.symlink_to if how == "symlink" else out.hardlink_to)(model_file)
    before = _snapshot(tmp_path)
    for extra in (("--force",), ("--resume",)):
        code, err = _train(capsys, images, out, "--init", model_file, *extra)
        assert code == 2 and "training would overwrite the model it starts from" in err, err
        assert "write to another file" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(tmp_path) == before  # no checkpoint, log or write probe left behind


@pytest.fixture
def installed_default(tmp_path: Path, monkeypatch, model_file) -> Path:
    """A stand-in for the installed default model: a test must never put the real one at risk."""
    shipped = tmp_path / "site-packages" / "weights" / "default.safetensors"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(model_file.read_bytes())
    monkeypatch.setattr(factory, "_default_model_file", lambda: shipped)
    return shipped


@pytest.mark.parametrize("how", ["itself", "symlink", "hardlink"])
def test_the_installed_default_model_is_never_an_output(tmp_path, capsys, images, installed_default, how):
    from napari_colorize.evaluate import calibrate

    out = installed_default
    if how != "itself":
        out = tmp_path / "alias.safetensors"
        (out.symlink_to if how == "symlink" else out.hardlink_to)(installed_default)
    before = _snapshot(tmp_path)
    for extra in ((), ("--force",), ("--resume",)):
        code, err = _train(capsys, images, out, *extra)
        assert code == 2 and "is the installed default model" in err and "even with --force" in err, err
        assert "choose another -o" in err and "--model" in err and "add --force" not in err
    for extra in ((), ("--force",)):
        code, err = _run(capsys, "calibrate", "default", images, "-o", out, "--device", "cpu", *extra)
        assert code == 2 and "is the installed default model" in err and "add --force" not in err
    with pytest.raises(ValueError, match="is the installed default model.*colorize with model="):
        calibrate("default", images, output=out, device="cpu")
    assert _snapshot(tmp_path) == before  # nothing replaced, no checkpoint or log laid beside it


def _damage(ckpt: Path, how: str) -> None:
    """Damage a training checkpoint as a full disk, a bad copy or an editor does."""
    from safetensors import safe_open

    from napari_colorize.model.metadata import TRAINING_STATE_KEY

    if how.startswith("cut"):
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[:5000] if how == "cut in its header" else data[: len(data) // 2])
        return
    with safe_open(str(ckpt), framework="pt") as f:
        doc = json.loads(f.metadata()[TRAINING_STATE_KEY])
    if how == "no settings":
        del doc["info"]["settings"]
    else:
        doc["step"] = "ten"
    save_file(load_file(str(ckpt)), str(ckpt), metadata={TRAINING_STATE_KEY: json.dumps(doc)})


@pytest.mark.parametrize(("how", "problem"), [("cut in its header", "cut short or corrupted"),
                                              ("cut in its tensors", "cut short or corrupted"),
                                              ("no settings", r"lacks the run's settings \(info.settings\)"),
                                              ("step", "its step is 'ten', not a whole number of steps")])
def test_a_damaged_checkpoint_says_what_to_do_and_force_starts_over(tmp_path, capsys, images, how, problem):
    out, ckpt = tmp_path / "m.safetensors", tmp_path / "m.ckpt.safetensors"
    assert _train(capsys, images, out, "--log", "")[0] == 0
    _damage(ckpt, how)
    before = ckpt.read_bytes()
    code, err = _train(capsys, images, out, "--log", "", "--steps", "3", "--resume")
    assert code == 2 and f"the training checkpoint {ckpt} is damaged" in err and re.search(problem, err), err
    assert "restore the file from a backup, or start over with --force instead of --resume" in err
    out.unlink()  # the model is gone: the checkpoint alone is in the way of a new run
    code, err = _train(capsys, images, out, "--log", "", "--steps", "3")
    expected = "damaged resumable state of an earlier run" if how.startswith("cut") else "holds the resumable state"
    assert code == 2 and str(ckpt) in err and expected in err and "--force" in err, err
    assert ckpt.read_bytes() == before
    code, err = _train(capsys, images, out, "--log", "", "--steps", "3", "--force")
    assert code == 0 and read_config(out).training["steps"] == 3 and load_file(str(ckpt))


def test_a_damaged_model_of_ours_is_replaced_with_force_and_a_foreign_one_never(tmp_path, capsys, images, model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    code, err = _train(capsys, images, model_file, "--log", "")
    assert code == 2 and "is a damaged napari-colorize model" in err and "add --force" in err
    assert _train(capsys, images, model_file, "--log", "", "--force")[0] == 0 and read_config(model_file)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1000)}, str(foreign), metadata={"napari_colorize_notes": "x"})
    foreign.write_bytes(foreign.read_bytes()[:-100])  # cut short, and not ours
    code, err = _train(capsys, images, foreign, "--force")
    assert code == 2 and "exists and is not a napari-colorize model" in err


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_a_new_run_with_force_replaces_the_old_log_and_resume_appends(tmp_path, capsys, images):
    out, log = tmp_path / "m.safetensors", tmp_path / "m.log.jsonl"
    assert _train(capsys, images, out, "--steps", "3", "--log-every", "1")[0] == 0
    code, err = _train(capsys, images, out, "--force", "--steps", "1", "--log-every", "1")
    events = _events(log)  # only the new run: not the 3-step run it replaced
    assert [e["event"] for e in events] == ["start", "step", "end"] and events[1]["step"] == 1
    assert code == 0 and f"the log of an earlier run at {log} will be replaced" in err
    assert _train(capsys, images, out, "--steps", "2", "--log-every", "1", "--resume")[0] == 0
    starts = [e["step"] for e in _events(log) if e["event"] == "start"]
    assert starts == [0, 1] and [e["step"] for e in _events(log) if e["event"] == "step"] == [1, 2]


def test_checkpoint_and_log_never_replace_foreign_files(tmp_path, capsys, images):
    notes = tmp_path / "notes.txt"
    notes.write_text("field notes\n")
    state = tmp_path / "state.safetensors"
    state.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "m.safetensors"
    code, err = _train(capsys, images, out, "--log", notes)
    assert code == 2 and "is not a napari-colorize training log" in err
    code, err = _train(capsys, images, out, "--checkpoint", state, "--log", "")
    assert code == 2 and "is not a napari-colorize training checkpoint" in err
    code, err = _train(capsys, images, out, "--checkpoint", out)
    assert code == 2 and "the model and the checkpoint would both be written to" in err
    assert notes.read_text() == "field notes\n" and state.read_bytes() == b"not a checkpoint at all"
    assert not out.exists()


def test_output_must_be_a_safetensors_name(tmp_path, capsys, images):
    code, err = _train(capsys, images, tmp_path / "model.pt")
    assert code == 2 and f"use e.g. -o {tmp_path / 'model.safetensors'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_models_and_checkpoints_are_readable_by_others_as_the_umask_says(tmp_path):
    # A model is shared (a cluster's workers, a colleague): 0644 under umask 022, not 0600.
    from napari_colorize.training.checkpoint import save_training_state

    mask = os.umask(0)
    os.umask(mask)
    net = build_model("compact")
    model_path = save_model(net, tmp_path / "m.safetensors")
    state = save_training_state(tmp_path / "m.ckpt.safetensors", net, torch.optim.SGD(net.parameters(), lr=0.1), 3, {})
    for path in (model_path, state):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert load_model(model_path).config.backbone == "compact"
