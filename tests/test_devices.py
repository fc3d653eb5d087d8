"""Device choice and autocast precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_colorize import colorize
from napari_colorize.devices import autocast, available_devices, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")


def test_auto_picks_the_best_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if available_devices()[0] == "mps" else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert available_devices()[-1] == "cpu"
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@no_cuda
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="not available.*'auto'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not available"):
        colorize(np.zeros((64, 64), np.float32), model="unused", device="cuda:0")


def test_missing_gpu_index_and_unknown_names():
    with pytest.raises(ValueError, match="not available"):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="the device is empty; use 'auto'"):  # --device '' ran as auto
        resolve_device(" ")


def test_fp32_autocast_is_a_no_op():
    a, b = torch.rand(8, 8), torch.rand(8, 8)
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        out = a @ b
    assert out.dtype == torch.float32
    assert torch.equal(out, a @ b)


def test_reduced_precision_refused_on_cpu():
    with pytest.raises(ValueError, match="needs a GPU.*fp32"):
        autocast(torch.device("cpu"), "bf16")
    with pytest.raises(ValueError, match="needs a GPU"):
        autocast(torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="choose one of"):
        autocast(torch.device("cpu"), "int8")


@pytest.mark.cuda
@pytest.mark.parametrize("space", ["hue_chroma", "lab"])
def test_bf16_on_cuda_matches_fp32(make_model, space):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    image = ((np.sin(xx / 13.0) * np.cos(yy / 11.0) + 1) / 2 * 0.8 + 0.2 * rng.random((256, 256))).astype(np.float32)
    model = make_model("compact", space)
    cpu = colorize(image, model=model, device="cpu")
    fp32 = colorize(image, model=model, device="cuda")
    bf16 = colorize(image, model=model, device="cuda", precision="bf16")
    model.to("cpu")  # the session-cached model stays on the CPU for other tests
    assert fp32.info["device"].startswith("cuda")
    assert np.abs(fp32.rgb - cpu.rgb).mean() < 1e-3
    assert np.abs(bf16.rgb - fp32.rgb).mean() < 0.02
    assert np.abs(bf16.rgb.mean(-1) - image).max() <= 1 / 255  # lightness is never reduced-precision
