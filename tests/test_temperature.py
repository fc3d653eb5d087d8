"""The histogram temperature: decoding, the model metadata, every front end, and its fit.

A model's stored ``decoding["temperature"]`` T makes every front end decode
``softmax(logits / T)``; :func:`napari_colorize.evaluate.fit_temperature` fits T by
held-out NLL and :func:`napari_colorize.evaluate.calibrate` fits T, then the
confidence fading at T.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import zarr
from _scenes import colour_scene

import napari_colorize as nc
from napari_colorize.cli import main
from napari_colorize.decode import DecodeOptions, normalized_entropy, temper
from napari_colorize.engine import decode_options_for
from napari_colorize.engine.cache import clear_caches
from napari_colorize.evaluate import calibrate, evaluate, fit_temperature
from napari_colorize.inference import (
    decode_grid,
    decode_histograms,
    histograms,
    predict_maps,
)
from napari_colorize.metrics import colourfulness, lab_of
from napari_colorize.model import ModelMetadataError, pad_to_multiple, read_config
from napari_colorize.model.metadata import METADATA_KEY

BAD_TEMPERATURES = [0, 0.0, -1.0, float("nan"), float("inf"), "x", "3", True, None]


def _scene(seed: int, size: int = 64) -> np.ndarray:
    return colour_scene(seed, size).astype(np.float32)


@pytest.fixture(autouse=True)
def _fresh_tile_cache():
    clear_caches()


@pytest.fixture
def model(make_model):
    return copy.deepcopy(make_model())


@pytest.fixture
def gray() -> np.ndarray:
    return _scene(7, 64)[:, :56].mean(-1)


def _decode(model, gray: np.ndarray, options: DecodeOptions) -> dict[str, torch.Tensor]:
    return predict_maps(model, torch.from_numpy(gray)[None], options)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("space", ["hue_chroma", "lab"])
def test_temperature_one_is_bit_identical(make_model, gray, space):
    model = make_model(space=space)
    g = torch.from_numpy(gray)[None]
    probs = histograms(model, g)
    p = next(iter(probs.values()))
    assert temper(p, 1.0) is p and temper(p, 1) is p
    for method in (None, "mode"):
        plain = decode_histograms(model, dict(probs), g, DecodeOptions(method=method))
        t1 = decode_histograms(model, dict(probs), g, DecodeOptions(method=method, temperature=1.0).validated())
        assert plain.keys() == t1.keys()
        for name in plain:
            assert torch.equal(plain[name], t1[name]), name
    assert decode_options_for(model).temperature == 1.0


@pytest.mark.parametrize("space", ["hue_chroma", "lab"])
def test_higher_temperature_spreads_the_histograms(make_model, gray, space):
    model = make_model(space=space)
    g = torch.from_numpy(gray)[None]
    probs = histograms(model, g)
    # temper(softmax(z), T) == softmax(z / T)
    with torch.no_grad():
        logits = model.grid_logits(pad_to_multiple(g[:, None], model.multiple))
    for head, z in logits.items():
        np.testing.assert_allclose(temper(probs[head], 2.5), torch.softmax(z.float() / 2.5, dim=1), atol=1e-6)
    entropies = [normalized_entropy(temper(p, t)) for p in probs.values() for t in (0.5, 1.0, 3.0)]
    for low, mid, high in zip(entropies[::3], entropies[1::3], entropies[2::3]):
        assert torch.all(low <= mid + 1e-6) and torch.all(mid <= high + 1e-6) and high.mean() > mid.mean() + 0.01
    # The uncertainty maps see the tempered histograms: confidence down, hue entropy up.
    cold = decode_grid(probs, model.space, DecodeOptions())
    hot = decode_grid(probs, model.space, DecodeOptions(temperature=3.0))
    assert torch.all(hot[:, 2] <= cold[:, 2] + 1e-6) and hot[:, 2].mean() < cold[:, 2].mean() - 0.01
    assert torch.all(hot[:, 3] >= cold[:, 3] - 1e-6) and hot[:, 3].mean() > cold[:, 3].mean() + 0.01
    assert not torch.allclose(hot[:, :2], cold[:, :2])  # and the colour changes


@pytest.mark.parametrize("bad", BAD_TEMPERATURES)
def test_temperature_is_validated(model, bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        DecodeOptions(temperature=bad).validated()
    p = torch.full((1, 4, 2, 2), 0.25)
    with pytest.raises(ValueError, match="temperature"):
        temper(p, bad)
    if bad is not None:  # decode_options_for drops None keyword values (keeps the stored/default T)
        with pytest.raises(ValueError, match="temperature"):
            decode_options_for(model, temperature=bad)
    assert DecodeOptions(temperature=2).validated().temperature == 2.0
    assert isinstance(DecodeOptions(temperature=2).validated().temperature, float)


# ----------------------------------------------------------------------------- every front end


def test_stored_temperature_is_applied_by_every_front_end(tmp_path, model, gray):
    model.config.decoding["temperature"] = 3
    path = nc.save_model(model, tmp_path / "hot.safetensors")
    ref = _decode(model, gray, DecodeOptions(temperature=3.0))
    ref = {k: v[0].numpy() for k, v in ref.items()}
    cold = {k: v[0].numpy() for k, v in _decode(model, gray, DecodeOptions()).items()}
    assert np.abs(ref["rgb"] - cold["rgb"]).max() > 0.02
    assert ref["chroma_confidence"].mean() < cold["chroma_confidence"].mean() - 0.01

    def check(rgb, conf, ent, atol=1e-5):
        np.testing.assert_allclose(rgb, ref["rgb"], atol=atol)
        np.testing.assert_allclose(conf, ref["chroma_confidence"], atol=atol)
        np.testing.assert_allclose(ent, ref["hue_entropy"], atol=atol)

    # API: a path and an in-memory model; calibrated=False is T = 1.
    for source in (str(path), model):
        result = nc.colorize(gray, model=source, device="cpu")
        assert result.info["decode"]["temperature"] == 3.0
        check(result.rgb, result.chroma_confidence, result.hue_entropy)
    uncal = nc.colorize(gray, model=str(path), device="cpu", calibrated=False)
    np.testing.assert_allclose(uncal.rgb, cold["rgb"], atol=1e-5)

    # OME-Zarr, read back.
    store = nc.colorize_to_zarr(gray, tmp_path / "out.zarr", model=str(path), device="cpu", rgb_dtype="float32")
    root = zarr.open_group(str(store), mode="r")
    check(np.moveaxis(np.asarray(root["0"]), 0, -1), np.asarray(root["confidence/0"]), np.asarray(root["entropy/0"]))

    # Command line: a PNG in, PNGs out (uint8: within one level of the float result).
    gray8 = np.round(gray * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "g.png", gray8)
    code = main(["colorize", str(tmp_path / "g.png"), "-o", str(tmp_path / "cli"), "--model", str(path),
                 "--device", "cpu", "--no-progress"])
    assert code == 0
    png = iio.imread(tmp_path / "cli" / "g_colorized.png").astype(np.float64) / 255
    expected = _decode(model, gray8.astype(np.float32) / 255, DecodeOptions(temperature=3.0))["rgb"][0].numpy()
    np.testing.assert_allclose(png, expected, atol=1 / 255 + 1e-6)
    cold8 = _decode(model, gray8.astype(np.float32) / 255, DecodeOptions())["rgb"][0].numpy()
    assert np.abs(png - cold8).max() > 0.02


# ----------------------------------------------------------------------------- metadata


def test_metadata_round_trip(tmp_path, model):
    model.config.decoding.update(temperature=2.5, confidence_fading=[0.2, 0.5])
    path = nc.save_model(model, tmp_path / "m.safetensors")
    assert read_config(path).decoding["temperature"] == 2.5
    loaded = nc.load_model(path)
    options = decode_options_for(loaded)
    assert options.temperature == 2.5 and options.confidence_fading == (0.2, 0.5)
    assert decode_options_for(loaded, temperature=1.5).temperature == 1.5
    assert decode_options_for(loaded, calibrated=False).temperature == 1.0


@pytest.mark.parametrize("bad", [0, -2.0, "x", None, True, [3]])
def test_bad_temperature_in_metadata_is_refused_on_load(tmp_path, model, bad):
    from safetensors.torch import load_file, save_file

    path = nc.save_model(model, tmp_path / "m.safetensors")
    doc = json.loads(read_config(path).to_json())
    doc["decoding"]["temperature"] = bad
    save_file(load_file(str(path)), str(path), metadata={METADATA_KEY: json.dumps(doc)})
    with pytest.raises(ModelMetadataError, match=r"'decoding.temperature'.*a number > 0"):
        nc.load_model(path)
    with pytest.raises(ModelMetadataError, match="decoding.temperature"):
        read_config(path)


# ----------------------------------------------------------------------------- fitting


def _overconfident(model):
    """Sharpen every head 20-fold: the same (random, wrong) colours, asserted with near certainty."""
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.mul_(20.0)
            head.bias.mul_(20.0)
    return model


def _ab_rms(rgb: np.ndarray) -> float:
    """RMS of the output's (a, b) in Lab: its distance from gray."""
    return float(np.sqrt(np.mean(lab_of(rgb)[..., 1:] ** 2)))


def test_fit_temperature_minimises_the_nll(model):
    images = [(f"a{i}", _scene(i)) for i in range(3)]
    sharp = _overconfident(copy.deepcopy(model))
    t, details = fit_temperature(sharp, images, device="cpu", return_details=True)
    assert t > 1.5 and details["nll_after"] < details["nll_before"] and details["images"] == 3
    assert details["cells"] == 3 * 16 * 16
    # The search agrees with a grid; a grid returns its best candidate.
    grid = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
    best = fit_temperature(sharp, images, device="cpu", grid=grid)
    assert best in grid
    _, at = fit_temperature(sharp, images, device="cpu", grid=[t], return_details=True)
    _, at_best = fit_temperature(sharp, images, device="cpu", grid=[best], return_details=True)
    assert at["nll_after"] <= at_best["nll_after"] * (1 + 1e-3)
    with pytest.raises(ValueError, match="temperature"):
        fit_temperature(sharp, images, device="cpu", grid=[0.0])


def test_the_search_recovers_a_known_temperature():
    from napari_colorize.evaluate.calibration import _golden_section, _nll
    from napari_colorize.spaces import get_space

    space = get_space("lab")
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8000, 256, generator=gen) * 3.0
    labels = torch.multinomial(torch.softmax(z / 2.0, dim=-1), 1, generator=gen)[:, 0]
    data = [({"ab": torch.log_softmax(z, dim=-1)}, {"ab": labels}, torch.zeros(len(labels)))]
    u = _golden_section(lambda u: _nll(space, data, math.exp(u)), math.log(0.5), math.log(20.0))
    assert math.exp(u) == pytest.approx(2.0, rel=0.05)
    assert _golden_section(lambda x: (x - 0.3) ** 2, -1.0, 2.0) == pytest.approx(0.3, abs=1e-3)
    assert _golden_section(lambda x: x, -1.0, 2.0) == pytest.approx(-1.0, abs=1e-3)  # a minimum at the bound


def test_calibration_moves_an_overconfident_model_toward_gray_on_other_images(model):
    fit_set = [(f"fit{i}", _scene(i)) for i in range(4)]
    other = [(f"other{i}", _scene(100 + i)) for i in range(4)]
    sharp = _overconfident(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no colourful thresholds are safe": expected for a random model
        lo, hi = calibrate(sharp, fit_set, device="cpu")
    decoding = sharp.config.decoding
    t = decoding["temperature"]
    assert t > 1.0 and decoding["confidence_fading"] == [lo, hi]
    info = decoding["calibration"]
    assert info["images"] == 4 and info["temperature_fitted"] and info["nll_after"] < info["nll_before"]
    assert info["scores"]["auc_gray"] > 0 and math.isfinite(info["scores"]["psnr"])

    uncal = evaluate(other, model=sharp, device="cpu", calibrated=False)
    cal = evaluate(other, model=sharp, device="cpu")
    assert cal.info["confidence_fading"] == [lo, hi]
    assert cal.mean["colourfulness"] < uncal.mean["colourfulness"]
    assert cal.mean["auc"] >= uncal.mean["auc"] - 1e-6 and cal.mean["rmse_ab"] <= uncal.mean["rmse_ab"] + 1e-6
    # On the other images: the temperature lowers the confidence, and the calibrated decoding's colour
    # is nearer gray than the uncalibrated one's.
    for name, rgb in other:
        g = rgb.mean(-1)
        hot = _decode(sharp, g, DecodeOptions(temperature=t))
        cold = _decode(sharp, g, DecodeOptions())
        assert hot["chroma_confidence"].mean() < cold["chroma_confidence"].mean()
        full = _decode(sharp, g, decode_options_for(sharp))["rgb"][0].numpy()
        assert _ab_rms(full) <= _ab_rms(cold["rgb"][0].numpy()) + 1e-6, name
        assert colourfulness(full) <= colourfulness(cold["rgb"][0].numpy()) + 1e-6, name


@pytest.mark.parametrize("method", [None, "expectation"])
def test_calibration_scores_what_the_front_ends_will_decode(model, method):
    # The fading is fitted for the decoding every front end then applies: the model's stored
    # method (and saturation) unless the call names a method, which is then stored.
    images = [(f"a{i}", _scene(i)) for i in range(3)]
    model = _overconfident(model)  # colourful even where faded a little: the methods differ
    model.config.decoding = {"method": "mode", "saturation": 0.7}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate(model, images, method=method, grid=[(0.0, 0.05)], device="cpu", max_side=64)
    assert model.config.decoding["calibration"]["scores"]["colourfulness"] > 1.0
    assert model.config.decoding["method"] == (method or "mode")
    recorded = model.config.decoding["calibration"]["scores"]
    measured = evaluate(images, model=model, device="cpu", max_side=64).mean
    for key in ("auc", "psnr", "colourfulness"):
        assert recorded[key] == pytest.approx(measured[key], rel=1e-5, abs=1e-6), key


def test_calibrate_without_temperature_and_with_a_fixed_one(model):
    images = [(f"a{i}", _scene(i)) for i in range(2)]
    model.config.decoding["temperature"] = 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate(model, images, temperature=False, grid=[(0.0, 0.05), (0.999, 1.0)], device="cpu")
        assert "temperature" not in model.config.decoding
        assert not model.config.decoding["calibration"]["temperature_fitted"]
        calibrate(model, images, temperature=2.0, grid=[(0.0, 0.05)], device="cpu")
    assert model.config.decoding["temperature"] == 2.0
    info = model.config.decoding["calibration"]
    assert info["nll_after"] != info["nll_before"]


@pytest.mark.parametrize("truth_gain, expected", [(2.0, 2.0), (0.5, 1.0)])
def test_calibration_takes_a_chroma_gain_only_where_the_truth_is_that_colourful(model, truth_gain, expected):
    # Truths made by the model itself at a known chroma gain: the network's colours are right,
    # only fainter (2.0) or brighter (0.5) than the truth.  The gain that reproduces the truth
    # scores best; a gain that overshoots it must lose.
    grid = [(0.0, 0.05)]
    truth_options = decode_options_for(model, None, 1.0, calibrated=False, confidence_fading=grid[0],
                                       chroma_gain=truth_gain)
    images = []
    for i in range(3):
        g = _scene(i).mean(-1)
        images.append((f"t{i}", _decode(model, g, truth_options)["rgb"][0].numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate(model, images, temperature=False, grid=grid, gains=(1.0, 2.0), device="cpu")
    decoding = model.config.decoding
    assert decoding.get("chroma_gain", 1.0) == expected
    assert decoding["calibration"]["gains"] == [1.0, 2.0]
    if expected != 1.0:  # every front end then decodes at the gain: here, the truth itself
        out = nc.colorize(images[0][1].mean(-1), model, device="cpu").rgb
        np.testing.assert_allclose(np.asarray(out), images[0][1], atol=2e-3)


def _sets(root: Path) -> Path:
    """Colour images in two folders, a (2, plus a gray one that is skipped) and b (1)."""
    for source, seeds in (("a", (60, 61)), ("b", (62,))):
        (root / source).mkdir(parents=True)
        for seed in seeds:
            iio.imwrite(root / source / f"{source}{seed}.png", np.round(_scene(seed) * 255).astype(np.uint8))
    iio.imwrite(root / "a" / "gray.png", np.full((64, 64, 3), 128, np.uint8))
    return root


def test_calibrating_a_model_file_leaves_the_model_colorize_uses_alone(tmp_path, model):
    # The process caches a file's model for colorize: calibrating the file works on a copy, so
    # colorize(model=path) decodes as the file says until a calibrated file is written and used.
    source = nc.save_model(_overconfident(model), tmp_path / "m.safetensors")
    images = [(f"c{i}", _scene(i)) for i in range(2)]
    cached = nc.get_model(str(source), "cpu")
    calibrate(str(source), images, output=tmp_path / "cal.safetensors", device="cpu", grid=[(0.0, 0.05)])
    assert nc.get_model(str(source), "cpu") is cached and cached.config.decoding == {}
    assert read_config(tmp_path / "cal.safetensors").decoding["temperature"] > 1.0
    # A model object is calibrated itself, as documented; one in training mode is colorized through
    # a copy, which must follow the object's decoding.
    obj = copy.deepcopy(model).train()
    calibrate(obj, images, device="cpu", temperature=False, grid=[(0.0, 0.05)])
    assert obj.config.decoding["confidence_fading"] == [0.0, 0.05]
    assert nc.get_model(obj, "cpu") is not obj and decode_options_for(nc.get_model(obj, "cpu")).confidence_fading == (0.0, 0.05)


def test_calibrate_finds_groups_from_files_and_checks_its_arguments_first(tmp_path, model, monkeypatch):
    from napari_colorize.evaluate import store

    root = _sets(tmp_path / "sets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrate(model, root, device="cpu", max_side=64, grid=[(0.0, 0.05)], group_by="level:1")
    info = model.config.decoding["calibration"]
    assert (info["groups"], info["group_by"], info["images"]) == (2, "level:1", 3)

    def refuse(*args, **kwargs):
        raise AssertionError("the network ran before the arguments were checked")

    monkeypatch.setattr(store, "_network_passes", refuse)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        calibrate(model, root, device="cpu", bogus=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 4 files, 3 images used (the gray one is skipped): groups must follow the images used.
        with pytest.raises(ValueError, match=r"groups has 4 entries for the 3 images used .*give group_by"):
            calibrate(model, root, device="cpu", max_side=64, groups=["a", "a", "a", "b"])
        with pytest.raises(ValueError, match="not both"):
            calibrate(model, root, device="cpu", groups=["a", "a", "b"], group_by="level:1")
        with pytest.raises(ValueError, match="no manifest.csv"):
            calibrate(model, root, device="cpu", max_side=64, group_by="source")
    # The fit's own choices too (they were checked only after the network had run on every image).
    for bad, message in [({"method": "bogus"}, "unknown decoding method"), ({"objective": "bogus"}, "unknown objective"),
                         ({"gains": (-1,)}, "gain"), ({"grid": []}, "grid of .* is empty")]:
        with pytest.raises(ValueError, match=message):
            calibrate(model, root, device="cpu", **bad)


# ----------------------------------------------------------------------------- command line


@pytest.fixture
def held_out(tmp_path: Path) -> Path:
    folder = tmp_path / "held_out"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"h{i}.png", np.round(_scene(50 + i) * 255).astype(np.uint8))
    return folder


@pytest.mark.parametrize("gains, message", [("0,1", "chroma_gain must be"), ("1,x", "numbers separated by commas"),
                                            (",", "gains is empty")])
def test_cli_calibrate_refuses_bad_gains_before_loading(tmp_path, held_out, capsys, gains, message):
    out = tmp_path / "cal.safetensors"
    # The model does not exist: the gains are checked first, so their error is the one reported.
    argv = ["calibrate", str(tmp_path / "missing.safetensors"), str(held_out), "-o", str(out), "--gains", gains]
    assert main(argv) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_calibrate(tmp_path, model, held_out, capsys):
    source = nc.save_model(_overconfident(model), tmp_path / "m.safetensors")
    out = tmp_path / "cal.safetensors"
    argv = ["calibrate", str(source), str(held_out), "-o", str(out), "--device", "cpu", "--max-side", "64"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "temperature: T = " in text and "confidence fading:" in text and "vs gray" in text
    decoding = read_config(out).decoding
    assert decoding["temperature"] > 1.0 and len(decoding["confidence_fading"]) == 2
    assert decoding["calibration"]["images"] == 3
    assert "temperature" not in read_config(source).decoding  # the input model is unchanged
    before = out.read_bytes()
    # Never over an existing file without --force.
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*argv, "--no-temperature", "--force"]) == 0
    assert "not fitted" in capsys.readouterr().out
    assert "temperature" not in read_config(out).decoding
    # Never into an input folder, nor anything but a .safetensors file.
    bad_out = tmp_path / "imgs.safetensors"
    bad_out.mkdir()
    iio.imwrite(bad_out / "c.png", np.round(_scene(3) * 255).astype(np.uint8))
    assert main(["calibrate", str(source), str(bad_out), "-o", str(bad_out), "--device", "cpu", "--force"]) == 2
    assert main(["calibrate", str(source), str(held_out), "-o", str(tmp_path / "x.pt"), "--device", "cpu"]) == 2
    capsys.readouterr()
    # Never over a training checkpoint or a file not ours, even with --force; an unwritable -o before fitting.
    from napari_colorize.training.checkpoint import save_training_state

    ckpt = tmp_path / "m.ckpt.safetensors"
    save_training_state(ckpt, model, torch.optim.SGD(model.parameters(), lr=0.1), 3, {})
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"not ours")
    for target in (ckpt, foreign):
        before = target.read_bytes()
        assert main(["calibrate", str(source), str(held_out), "-o", str(target), "--device", "cpu", "--force"]) == 2
        assert "not a napari-colorize model" in capsys.readouterr().err and target.read_bytes() == before
    under_a_file = tmp_path / "m.safetensors" / "cal.safetensors"
    assert main(["calibrate", str(source), str(held_out), "-o", str(under_a_file), "--device", "cpu"]) == 2
    assert "cannot create the folder" in capsys.readouterr().err


def test_cli_calibrate_by_source(tmp_path, model, capsys):
    """--group-by: each source's images are a group; the record says how many."""
    root = _sets(tmp_path / "sets")
    src = nc.save_model(_overconfident(model), tmp_path / "m.safetensors")
    out = tmp_path / "cal.safetensors"
    assert main(["calibrate", str(src), str(root), "-o", str(out), "--device", "cpu", "--max-side", "64",
                 "--group-by", "level:1"]) == 0
    info = read_config(out).decoding["calibration"]
    assert info["groups"] == 2 and info["max_group_loss"] == 0.003 and info["images"] == 3
    assert info["group_by"] == "level:1"
    assert main(["calibrate", str(src), str(root), "-o", str(out), "--force", "--manifest", "m.csv"]) == 2
    assert "--group-by" in capsys.readouterr().err
