"""Evaluation tables, method comparison and confidence-fading calibration."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from _scenes import colour_scene as _scene
from skimage.color import rgb2lab

from napari_colorize import build_model, colorize, save_model
from napari_colorize.evaluate import (
    EvaluationTable,
    calibrate,
    compare,
    evaluate,
    fit_confidence_fading,
    load_images,
)
from napari_colorize.evaluate.calibration import _select_fading
from napari_colorize.evaluate.runs import _colour_from_probabilities, _probabilities
from napari_colorize.inference import DecodeOptions, predict
from napari_colorize.metrics import colourfulness, psnr
from napari_colorize.model.factory import read_config


@pytest.fixture
def val_dir(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    root.mkdir()
    for i in range(3):
        iio.imwrite(root / f"s{i}.png", np.round(_scene(i) * 255).astype(np.uint8))
    return root


@pytest.fixture
def model(make_model):
    return copy.deepcopy(make_model())


def _truth(path: Path) -> np.ndarray:
    return iio.imread(path).astype(np.float32) / 255


def test_evaluate_rows_and_gray_baseline(val_dir, model):
    table = evaluate(val_dir, model=model, device="cpu")
    assert [r["name"] for r in table.rows] == ["s0.png", "s1.png", "s2.png"]
    truth = _truth(val_dir / "s1.png")
    gray = np.repeat(truth.mean(-1, keepdims=True), 3, -1)
    row = table.rows[1]
    assert row["psnr_gray"] == pytest.approx(psnr(gray, truth))
    e = np.linalg.norm(rgb2lab(gray)[..., 1:] - rgb2lab(truth)[..., 1:], axis=-1)
    assert row["rmse_ab_gray"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-3)
    assert row["auc_gray"] == pytest.approx(np.mean(np.clip(150 - e, 0, None)) / 150, rel=1e-3)
    assert row["colourfulness_truth"] == pytest.approx(colourfulness(truth))
    # The colorized output of a random (peaked) model is colourful and not gray.
    assert row["colourfulness"] > 1.0 and row["psnr"] != pytest.approx(row["psnr_gray"])
    assert table.mean["auc"] == pytest.approx(np.mean([r["auc"] for r in table.rows]))
    text = table.format()
    assert "mean" in text and "auc_gray" in text and "s2.png" in text


def test_evaluate_output_equals_predict(val_dir, model):
    truth = _truth(val_dir / "s0.png")
    gray = truth.mean(-1)
    options = DecodeOptions(method="median")
    ours = _colour_from_probabilities(model, _probabilities(model, gray), gray, options)
    ref = predict(model, torch.from_numpy(gray)[None], options)[0][0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    row = evaluate([("s0", truth)], model=model, method="median", device="cpu").rows[0]
    assert row["psnr"] == pytest.approx(psnr(ref, truth), rel=1e-5)


def test_full_fading_gives_exactly_the_gray_baseline(val_dir, model):
    table = evaluate(val_dir, model=model, device="cpu", confidence_fading=(0.999, 1.0))
    for row in table.rows:
        assert row["psnr"] == pytest.approx(row["psnr_gray"], rel=1e-4)
        assert row["auc"] == pytest.approx(row["auc_gray"], abs=1e-4)
        assert row["colourfulness"] == pytest.approx(0.0, abs=0.5)


def test_compare_calibrated_and_uncalibrated(val_dir, model):
    model.config.decoding["confidence_fading"] = [0.999, 1.0]  # a "calibration" that removes all colour
    table = compare(val_dir, [{"model": model, "name": "cal"}, {"model": model, "calibrated": False, "name": "uncal"},
                              {"model": model, "method": "mode", "calibrated": False}], device="cpu")
    names = [r["name"] for r in table.rows]
    assert names == ["cal", "uncal", "model mode uncalibrated", "gray (no colour)"]
    cal, uncal, _, gray = table.rows
    assert cal["auc"] == pytest.approx(gray["auc"], abs=1e-4) and uncal["colourfulness"] > cal["colourfulness"] + 1
    assert gray["psnr"] == pytest.approx(cal["psnr_gray"]) and not table.mean
    assert "| cal |" in table.to_markdown()


def test_fit_confidence_fading_follows_the_selection_rule(val_dir, model):
    grid = [(0.0, 0.05), (0.3, 0.6), (0.999, 1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen, table = fit_confidence_fading(model, val_dir, grid=grid, device="cpu", return_table=True)
    # Independent scores through evaluate(), then the rule: best AuC among colourful
    # candidates not worse than gray; else the most colourful one not worse than gray.
    scores = {g: evaluate(val_dir, model=model, device="cpu", max_side=256, confidence_fading=g).mean for g in grid}
    safe = [g for g in grid if scores[g]["auc"] >= scores[g]["auc_gray"] - 1e-6
            and scores[g]["psnr"] >= scores[g]["psnr_gray"] - 1e-4]
    good = [g for g in safe if scores[g]["colourfulness"] >= 0.5 * scores[g]["colourfulness_truth"]]
    expected = max(good, key=lambda g: scores[g]["auc"]) if good else max(safe, key=lambda g: scores[g]["colourfulness"])
    assert chosen == expected
    assert [(r["lo"], r["hi"]) for r in table.rows] == grid
    for r in table.rows:
        assert r["auc"] == pytest.approx(scores[(r["lo"], r["hi"])]["auc"], rel=1e-6)


def test_fit_confidence_fading_scores_the_stored_chroma_gain(val_dir, model):
    # A model calibrated with a chroma gain: its thresholds are judged on the colour the
    # front ends give it (evaluate decodes with the stored settings), not at gain 1.
    model.config.decoding["chroma_gain"] = 2.0
    grid = [(0.0, 0.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, table = fit_confidence_fading(model, val_dir, grid=grid, device="cpu", return_table=True)
        _, at_one = fit_confidence_fading(model, val_dir, grid=grid, device="cpu", return_table=True, chroma_gain=1.0)
    stored = evaluate(val_dir, model=model, device="cpu", max_side=256, confidence_fading=grid[0]).mean
    plain = evaluate(val_dir, model=model, device="cpu", max_side=256, confidence_fading=grid[0], chroma_gain=1.0).mean
    assert table.rows[0]["colourfulness"] == pytest.approx(stored["colourfulness"], rel=1e-6)
    assert at_one.rows[0]["colourfulness"] == pytest.approx(plain["colourfulness"], rel=1e-6)
    assert stored["colourfulness"] > 1.3 * plain["colourfulness"]  # the gain matters here
    assert table.info["chroma_gain"] == 2.0


def _row(lo, auc, psnr, colour, auc_gray=0.9, psnr_gray=22.0, truth=40.0):
    return {"lo": lo, "hi": 1.0, "auc": auc, "psnr": psnr, "colourfulness": colour, "auc_gray": auc_gray,
            "psnr_gray": psnr_gray, "colourfulness_truth": truth}


def test_select_fading_rule():
    rows = [_row(0.0, 0.95, 23.0, 30.0), _row(0.1, 0.96, 22.5, 25.0), _row(0.2, 0.97, 21.0, 35.0),
            _row(0.3, 0.91, 22.1, 10.0)]
    assert _select_fading(rows, "auc", 0.5)["lo"] == 0.1  # 0.2 scores higher but is below gray in PSNR
    assert _select_fading(rows, "psnr", 0.5)["lo"] == 0.0
    assert _select_fading(rows, "auc", 0.5, not_worse_than_gray=False)["lo"] == 0.2
    # The sepia case: nothing colourful is safe -> the most colourful safe one, with a warning.
    sepia = [_row(0.0, 0.85, 20.0, 30.0), _row(0.5, 0.905, 22.1, 8.0), _row(0.9, 0.9, 22.0, 1.0)]
    with pytest.warns(UserWarning, match="without scoring below gray"):
        assert _select_fading(sepia, "auc", 0.5)["lo"] == 0.5



def test_select_fading_keeps_every_source_and_neutral_scenes_safe():
    rows = [_row(0.0, 0.95, 23.0, 30.0), _row(0.1, 0.94, 22.5, 25.0), _row(0.2, 0.93, 22.4, 20.0)]
    assert _select_fading(rows, "auc", 0.5)["lo"] == 0.0
    # A source losing 1 AuC point to gray rules the best pooled candidate out ...
    rows[0]["worst_group_d_auc"], rows[1]["worst_group_d_auc"], rows[2]["worst_group_d_auc"] = -0.01, -0.002, 0.0
    assert _select_fading(rows, "auc", 0.5)["lo"] == 0.1
    assert _select_fading(rows, "auc", 0.5, max_group_loss=0.02)["lo"] == 0.0
    # ... and so does colouring near-neutral truths more than 1.5x their own colourfulness.
    rows[1]["neutral_ratio"] = 2.0
    assert _select_fading(rows, "auc", 0.5)["lo"] == 0.2
    assert _select_fading(rows, "auc", 0.5, max_neutral_ratio=None)["lo"] == 0.1


def test_fit_prefers_fading_when_colour_only_hurts(val_dir, model):
    # With no colourfulness requirement, maximising PSNR on a random model means
    # fading toward gray (its colours are wrong).
    chosen = fit_confidence_fading(model, val_dir, grid=[(0.0, 0.05), (0.999, 1.0)], objective="psnr",
                                   min_colourfulness=0.0, not_worse_than_gray=False, device="cpu")
    assert chosen == (0.999, 1.0)


def test_calibrate_stores_thresholds_used_by_colorize(tmp_path, val_dir, model):
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    out = tmp_path / "calibrated.safetensors"
    lo_hi = calibrate(str(path), val_dir, output=out, grid=[(0.999, 1.0)], min_colourfulness=0.0, device="cpu")
    assert lo_hi == (0.999, 1.0)
    assert read_config(out).decoding["confidence_fading"] == [0.999, 1.0]
    gray = _truth(val_dir / "s0.png").mean(-1)
    faded = colorize(gray, model=str(out), device="cpu").rgb
    vivid = colorize(gray, model=str(out), device="cpu", calibrated=False).rgb
    assert colourfulness(faded) < 0.5 and colourfulness(vivid) > 1.0


def test_load_images_skips_gray_and_broken(tmp_path, val_dir):
    iio.imwrite(val_dir / "gray.png", np.full((40, 40, 3), 128, np.uint8))
    (val_dir / "bad.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning) as record:
        images = load_images(val_dir)
    assert [n for n, _ in images] == ["s0.png", "s1.png", "s2.png"]
    assert len(record) == 2
    # The reader's own words, as colorize says them (it was "UnidentifiedImageError: cannot identify ...").
    assert any(str(w.message).endswith("bad.png: cannot read bad.png: not a PNG, JPEG, TIFF, BMP, WebP, GIF, PGM/PPM "
                                       "or JPEG 2000 image (or damaged beyond recognition); check the file, or "
                                       "convert it to PNG or TIFF") for w in record), [str(w.message) for w in record]
    (tmp_path / "grays").mkdir()
    iio.imwrite(tmp_path / "grays" / "g.png", np.full((40, 40, 3), 9, np.uint8))
    with pytest.raises(ValueError, match="no usable colour image"), pytest.warns(UserWarning):
        load_images(tmp_path / "grays")


def test_table_json_round_trip(tmp_path):
    table = EvaluationTable([{"name": "a", "psnr": float("inf"), "auc": 0.5}, {"name": "b", "psnr": 20.0, "auc": 0.7}])
    assert table.mean["psnr"] == 20.0 and table.mean["auc"] == pytest.approx(0.6)
    table.to_json(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["rows"][0]["psnr"] == "inf" and doc["mean"]["auc"] == pytest.approx(0.6)


def test_cli_evaluate(tmp_path, val_dir, model, capsys):
    from napari_colorize.cli import main

    path = tmp_path / "m.safetensors"
    save_model(model, path)
    code = main(["evaluate", str(val_dir), "--model", str(path), "--device", "cpu", "--json", str(tmp_path / "e.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "s1.png" in out and "mean" in out
    assert len(json.loads((tmp_path / "e.json").read_text())["rows"]) == 3
    code = main(["evaluate", str(val_dir), "--model", str(path), "--device", "cpu", "--both", "--summary"])
    assert code == 0
    out = capsys.readouterr().out
    assert "auto calibrated" in out and "auto uncalibrated" in out and "gray (no colour)" in out
    assert main(["evaluate", str(tmp_path / "nowhere"), "--model", str(path)]) == 2
    # --json replaces an earlier table only, and is checked before any scoring.
    image = next(val_dir.glob("*.png"))
    before = image.read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(val_dir), "--model", str(path), "--device", "cpu", "--json", str(image)]) == 2
    assert "is not an evaluation table" in capsys.readouterr().err and image.read_bytes() == before
    assert main(["evaluate", str(val_dir), "--model", str(path), "--device", "cpu", "--json",
                 str(tmp_path / "e.json"), "--summary"]) == 0  # an earlier table: replaced
    assert main(["evaluate", str(val_dir), "--model", str(path), "--json", str(image / "under-a-file.json")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
    assert main(["evaluate", str(val_dir), "--model", str(path), "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    # Two --model: compared in one table (the second used to replace the first without a word).
    torch.manual_seed(3)
    other = tmp_path / "other.safetensors"
    save_model(build_model("compact"), other)
    assert main(["evaluate", str(val_dir), "--model", str(path), "--model", str(other), "--device", "cpu",
                 "--summary"]) == 0
    out = capsys.readouterr().out
    assert "m: auto calibrated" in out and "other: auto calibrated" in out and "gray (no colour)" in out
    (tmp_path / "b").mkdir()
    save_model(build_model("compact"), tmp_path / "b" / "m.safetensors")  # the same stem: named by path
    assert main(["evaluate", str(val_dir), "--model", str(path), "--model", str(tmp_path / "b" / "m.safetensors"),
                 "--device", "cpu", "--summary"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: auto calibrated" in out and f"{tmp_path / 'b' / 'm.safetensors'}: auto calibrated" in out
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)  # one file by two names: scored once
    assert main(["evaluate", str(val_dir), "--model", str(path), "--model", str(tmp_path / "link" / "m.safetensors"),
                 "--device", "cpu", "--summary"]) == 0
    captured = capsys.readouterr()
    assert f"note: --model {tmp_path / 'link' / 'm.safetensors'} is the same file as --model {path}" in captured.err
    assert f"model: {path}" in captured.err  # one model's table, said so
    assert main(["evaluate", str(val_dir), "--model", str(path), "--device", "cpu", "--summary"]) == 0
    assert f"model: {path}" in capsys.readouterr().err  # the table alone does not say which


def test_the_calibration_record_says_whether_the_rule_was_met():
    from napari_colorize.evaluate.calibration import is_safe
    row = {"auc": 0.80, "auc_gray": 0.79, "psnr": 20.0, "psnr_gray": 19.5, "worst_group_d_auc": -0.001,
           "neutral_ratio": 1.2}
    assert is_safe(row)
    assert not is_safe({**row, "worst_group_d_auc": -0.004})  # a source 0.4 points below gray
    assert not is_safe({**row, "neutral_ratio": 1.6})
    assert not is_safe({**row, "psnr": 19.4})
    assert is_safe({**row, "psnr": 19.4}, not_worse_than_gray=False)
