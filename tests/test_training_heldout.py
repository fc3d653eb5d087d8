"""Training that generalises: degradations of the gray input, source-held-out validation,
early stopping on held-out loss.  CPU, tiny generated images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from _scenes import synthetic_image
from _scenes import to_u8 as _u8
from safetensors.torch import load_file

from napari_colorize.model.factory import read_config
from napari_colorize.spaces import get_space
from napari_colorize.training import TrainConfig, train
from napari_colorize.training.best import BestWeights
from napari_colorize.training.config import check_config, parse_fold
from napari_colorize.training.data import ColorCropDataset
from napari_colorize.training.degrade import DEGRADATIONS, degrade_gray
from napari_colorize.training.heldout import resolve_split


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A corpus of 6 sources x 3 images with a manifest, plus a composite on source s0."""
    root = tmp_path / "corpus"
    (root / "train").mkdir(parents=True)
    rows = []
    for s in range(6):
        for i in range(3):
            name = f"train/s{s}_{i}.png"
            iio.imwrite(root / name, _u8(synthetic_image(10 * s + i)))
            rows.append({"file": name, "source": f"src{s}", "backdrop_source": ""})
    iio.imwrite(root / "train/comp.png", _u8(synthetic_image(99)))
    rows.append({"file": "train/comp.png", "source": "stamps", "backdrop_source": "src0"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "source", "backdrop_source"])
        w.writeheader()
        w.writerows(rows)
    return root


def _cfg(corpus: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(corpus / "train")], output=str(out), steps=4, batch_size=2, crop=64, max_side=96,
                points=32, workers=0, progress=False, log="", checkpoint_every=100, weights="none")
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- degradations

@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_each_degradation_keeps_gray_in_unit_range_and_changes_it(name):
    rng = np.random.default_rng(0)
    gray = torch.from_numpy(synthetic_image(3).mean(-1).astype(np.float32))
    out = DEGRADATIONS[name](gray.clone(), rng).clamp(0, 1)
    assert out.shape == gray.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - gray).abs().mean()) > 1e-3, name


def test_degrade_gray_p0_is_identity_and_p1_stays_in_range():
    gray = torch.from_numpy(synthetic_image(4).mean(-1).astype(np.float32))
    assert degrade_gray(gray, np.random.default_rng(0), 0.0) is gray
    out = degrade_gray(gray, np.random.default_rng(0), 1.0)
    assert float(out.min()) >= 0 and float(out.max()) <= 1 and not torch.equal(out, gray)


def test_degradations_leave_the_colour_target_unchanged():
    images = [_u8(synthetic_image(i)) for i in range(3)]
    clean = ColorCropDataset(images, get_space("lab"), crop=64, points=32)
    damaged = ColorCropDataset(images, get_space("lab"), crop=64, points=32, degrade=1.0)
    for item in [(0, 5), (1, 7), (2, 11)]:
        a, b = clean[item], damaged[item]
        for key in a:
            if key == "gray":
                assert not torch.equal(a[key], b[key])
                assert float(b[key].min()) >= 0 and float(b[key].max()) <= 1
            else:  # targets, points, chroma and the lightness weighting come from the clean crop
                assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="probability"):
        ColorCropDataset(images, get_space("lab"), crop=64, degrade=1.5)


# ----------------------------------------------------------------------------- split

def test_parse_fold_and_split_checks(corpus, tmp_path):
    assert parse_fold("1/5") == (1, 5)
    for bad in ("5/5", "x", "1/1", "-1/3"):
        with pytest.raises(ValueError, match="fold"):
            parse_fold(bad)
    out = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="not both"):
        check_config(_cfg(corpus, out, val_fold="0/3", val_sources=["src1"]))
    with pytest.raises(ValueError, match="needs --val-fold"):
        check_config(_cfg(corpus, out, hold_out=[1]))
    with pytest.raises(ValueError, match="differ from the validation fold"):
        check_config(_cfg(corpus, out, val_fold="0/3", hold_out=[0]))
    with pytest.raises(ValueError, match="held-out images"):
        check_config(_cfg(corpus, out, early_stop=2))


def _source_of(path: Path) -> str:
    return "stamps" if path.name == "comp.png" else "src" + path.name[1]


def test_training_split_never_puts_a_source_on_both_sides(corpus, tmp_path):
    for fold in range(3):
        split = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_fold=f"{fold}/3", hold_out=[(fold + 1) % 3]))
        train_sources = {_source_of(p) for p in split.train}
        val_sources = {_source_of(p) for p in split.val}
        assert val_sources == set(split.val_sources)
        assert not train_sources & (set(split.val_sources) | set(split.test_sources))
        assert not set(split.val_sources) & set(split.test_sources)
        # The composite on src0 trains only if src0 trains.
        assert ("stamps" in train_sources) == ("src0" in train_sources)
    named = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["src2", "src4"]))
    assert {_source_of(p) for p in named.val} == {"src2", "src4"} and len(named.train) == 4 * 3 + 1
    with pytest.raises(ValueError, match="not in the data"):
        resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["nope"]))


def test_a_composite_on_a_test_backdrop_never_validates(corpus, tmp_path):
    # "stamps" gets a plain photograph (so it can validate) and a composite on src3: whenever
    # stamps validates and src3 is a test source, that composite must not validate (choices
    # would be made on test pixels).
    iio.imwrite(corpus / "train/comp3.png", _u8(synthetic_image(98)))
    iio.imwrite(corpus / "train/plain.png", _u8(synthetic_image(97)))
    with open(corpus / "manifest.csv", "a", newline="") as f:
        f.write("train/comp3.png,stamps,src3\ntrain/plain.png,stamps,\n")
    seen = 0
    for seed in range(12):
        for k in range(3):
            for j in {(k + 1) % 3, (k + 2) % 3}:
                split = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_fold=f"{k}/3", hold_out=[j],
                                           seed=seed))
                names = {p.name for p in split.val}
                if "stamps" in split.val_sources and "src3" in split.test_sources:
                    seen += 1
                    assert "comp3.png" not in names
                assert not any(p.name == "comp3.png" for p in split.train) or "src3" not in split.test_sources
    assert seen, "no fold put stamps in validation with src3 held out: the test checked nothing"


def test_split_needs_a_manifest(tmp_path):
    (tmp_path / "d").mkdir()
    iio.imwrite(tmp_path / "d" / "a.png", _u8(synthetic_image(1)))
    with pytest.raises(FileNotFoundError, match="--manifest"):
        resolve_split(_cfg(tmp_path, tmp_path / "m.safetensors", data=[str(tmp_path / "d")], val_sources=["x"]))


def test_manifest_rows_that_are_not_files_do_not_count_as_validation_images(corpus, tmp_path, capsys):
    # A folder row and a moved file were counted as validation images; a source of only such
    # rows failed as "no usable colour image" instead of naming the missing files.
    (corpus / "train/s1_0.png").unlink()
    (corpus / "train/notes.txt").write_text("stained with H&E")
    with open(corpus / "manifest.csv", "a", newline="") as f:
        csv.writer(f).writerow(["train/notes.txt", "src1", ""])
    split = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["src1"]))
    assert [p.name for p in split.val] == ["s1_1.png", "s1_2.png"] and split.record()["val_images"] == 2
    assert "warning: 2 of the 4 files" in capsys.readouterr().err
    for i in (1, 2):
        (corpus / f"train/s1_{i}.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"4 of the 4 files .*manifest.csv lists for the validation sources "
                                                r"are not image files \(e\.g\. .*s1_0\.png\); correct the manifest"):
        resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["src1"]))


def _rewrite_manifest(manifest: Path, path_column: str, bom: bool) -> None:
    """The manifest as a user may save it: Excel's "CSV UTF-8" (with a byte-order mark), or
    its path column named ``path``."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(manifest, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow([path_column, "source", "backdrop_source"])
        w.writerows([r["file"], r["source"], r["backdrop_source"]] for r in rows)


@pytest.mark.parametrize(("path_column", "bom"), [("file", True), ("path", False), ("path", True)])
def test_split_reads_spreadsheet_manifests_and_a_path_column(corpus, tmp_path, path_column, bom):
    from napari_colorize.training.splits import manifest_split, sources_by_path

    _rewrite_manifest(corpus / "manifest.csv", path_column, bom)
    named = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["src2", "src4"]))
    assert {_source_of(p) for p in named.val} == {"src2", "src4"} and len(named.train) == 4 * 3 + 1
    split = resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_fold="0/3"))
    assert len(split.val) > 0 and not {_source_of(p) for p in split.train} & set(split.val_sources)
    train, val, held = manifest_split(corpus / "manifest.csv", val_sources=["src1"])
    assert (len(train), len(val), held) == (16, 3, ("src1",)) and all(p.is_file() for p in train + val)
    assert sources_by_path(corpus / "manifest.csv")[corpus.resolve() / "train/s3_1.png"] == "src3"


def test_split_manifest_without_a_path_column_says_which_columns_it_has(corpus, tmp_path):
    _rewrite_manifest(corpus / "manifest.csv", "name", bom=True)
    with pytest.raises(ValueError, match=r"no path column \(path, file.*it has \['name', 'source', 'backdrop_source'\]"):
        resolve_split(_cfg(corpus, tmp_path / "m.safetensors", val_sources=["src2"]))


def test_training_on_a_split_uses_only_training_sources_and_records_them(corpus, tmp_path):
    out = tmp_path / "m.safetensors"
    result = train(_cfg(corpus, out, val_sources=["src1"], val_every=2, val_images=3))
    assert result["images"] == 5 * 3 + 1 and result["val"]["step"] == 4
    held = read_config(out).training["held_out"]
    assert held["val_sources"] == ["src1"] and "src1" not in held["train_sources"]
    assert held["train_images"] == 16 and held["val_images"] == 3


def test_the_split_summary_and_record_tell_what_trained_not_the_manifest(corpus, tmp_path, capsys):
    # Only part of the corpus is given (src0, src1 in their own folder); src1 validates. The
    # manifest's training side also holds src2..src5 and the stamps, which were never scanned;
    # one src0 image is too small for the crop and is skipped.
    part = tmp_path / "part"
    part.mkdir()
    for name in ("s0_0", "s0_1", "s0_2", "s1_0"):
        (part / f"{name}.png").symlink_to(corpus / "train" / f"{name}.png")
    iio.imwrite(corpus / "train" / "s0_2.png", _u8(synthetic_image(3))[:40, :40])
    out = tmp_path / "m.safetensors"
    train(_cfg(corpus, out, data=[str(part)], manifest=str(corpus / "manifest.csv"), val_sources=["src1"]))
    err = capsys.readouterr().err
    assert "2 training images from 1 source (src0); validation 3 images from src1" in err and "used 2 images" in err
    held = read_config(out).training["held_out"]
    assert held["train_images"] == 2 and held["train_sources"] == ["src0"]


# ----------------------------------------------------------------------------- early stopping

def test_best_weights_keeps_the_lowest_loss_and_stops_after_patience():
    model = torch.nn.Linear(2, 2)
    best = BestWeights(patience=2)
    assert best.update(3.0, 10, model)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not best.update(3.5, 20, model) and not best.should_stop
    assert not best.update(3.0, 30, model) and best.should_stop  # equal is not better
    saved = best.model_to_save(model)
    assert saved is not model and torch.equal(saved.weight, kept["weight"])
    assert best.history() == {"loss": 3.0, "step": 10, "stale": 2}
    assert BestWeights().model_to_save(model) is model  # patience 0: only records


def test_early_stopping_writes_the_best_weights(corpus, tmp_path, monkeypatch, capsys):
    import napari_colorize.training.trainer as trainer

    losses = iter([5.0, 4.0, 4.5, 4.6, 4.7, 4.8])
    real = trainer.validate

    def scripted(*args, **kwargs):
        return {**real(*args, **kwargs), "loss": next(losses)}

    monkeypatch.setattr(trainer, "validate", scripted)
    out = tmp_path / "m.safetensors"
    log = tmp_path / "log.jsonl"
    result = train(_cfg(corpus, out, steps=40, val_sources=["src1"], val_every=2, val_images=2, early_stop=2,
                        checkpoint_every=2, log=str(log)))
    # Validations at 2 (5.0), 4 (4.0 best), 6, 8 -> two without improvement: stop at step 8.
    assert result["steps"] == 8
    assert f"wrote {out} after 8 steps, holding the weights of step 4 (the lowest held-out loss), in" in \
        capsys.readouterr().err
    meta = read_config(out).training
    assert meta["complete"] is True and meta["stopped_early"] is True
    assert meta["best_val"]["step"] == 4 and meta["weights_step"] == 4
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "best"] == [2, 4]
    # The model file holds the step-4 weights, not the last ones (the checkpoint has those).
    model_w = load_file(str(out))
    last = load_file(str(tmp_path / "m.ckpt.safetensors"))
    key = "heads.ab.weight" if "heads.ab.weight" in model_w else next(k for k in model_w if k.startswith("heads."))
    assert not torch.equal(model_w[key], last["model." + key])


@pytest.mark.parametrize("first_early_stop", [0, 2])
def test_resuming_with_early_stop_keeps_the_model_files_metadata_true(corpus, tmp_path, monkeypatch, capsys,
                                                                     first_early_stop):
    """The model file's weights_step and best_val describe the tensors it holds, whatever the first run's
    --early-stop: a first run without it wrote its last weights there, not the best ones."""
    import napari_colorize.training.trainer as trainer
    from napari_colorize.model import load_model

    scripted_losses = {1: 5.0, 2: 4.0, 3: 4.5, 4: 4.6, 5: 4.7, 6: 4.8, 7: 4.9, 8: 5.0}
    seen: dict[int, dict[str, torch.Tensor]] = {}  # validated step -> the weights it scored
    real = trainer.validate

    def scripted(model, *args, **kwargs):
        step = len(seen) + 1  # validate every step: the n-th call scores step n
        seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {**real(model, *args, **kwargs), "loss": scripted_losses[step]}

    monkeypatch.setattr(trainer, "validate", scripted)
    out = tmp_path / "m.safetensors"
    common = dict(val_sources=["src1"], val_every=1, val_images=1)
    train(_cfg(corpus, out, steps=4, early_stop=first_early_stop, **common))
    capsys.readouterr()
    train(_cfg(corpus, out, steps=8, early_stop=1, resume=True, **common))
    err = capsys.readouterr().err
    meta = read_config(out).training
    stored = load_model(out).state_dict()
    step = meta["weights_step"]
    assert all(torch.equal(stored[k], seen[step][k]) for k in stored), f"the file does not hold step {step}'s weights"
    assert meta["best_val"]["step"] == step and meta["best_val"]["loss"] == scripted_losses[step]
    # Carried only when the file held the best weights (the early-stopping first run); else found anew after step 4.
    assert step == (2 if first_early_stop else 5)
    assert ("finds its best anew" in err) == (not first_early_stop)  # the user is told
