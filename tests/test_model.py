"""The hypercolumn colorizer: efficient head == reference, sparse == dense, weights I/O."""

from __future__ import annotations

import copy
import json
import struct
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from napari_colorize import build_model, load_model, save_model
from napari_colorize.model import GRID_STRIDE, HypercolumnColorizer, VGG16Backbone, read_config
from napari_colorize.model.factory import METADATA_KEY, vgg16_state_from_torchvision
from napari_colorize.spaces import get_space


def _strengthen(model: HypercolumnColorizer, seed: int = 0) -> HypercolumnColorizer:
    """He-initialise the backbone so deep taps (fc6, fc7) carry signal, and widen the logits.

    With PyTorch's default init the activations shrink layer by layer and the coarse taps
    would contribute next to nothing: an efficient-vs-naive check could not see a wrong
    upsampling there.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, 0.1)
        for head in model.heads.values():
            head.weight.mul_(20.0)
    return model.eval()


@pytest.fixture(scope="module")
def vgg16_models():
    torch.manual_seed(0)
    hue_chroma = _strengthen(build_model("vgg16", "hue_chroma", hidden=64))
    # The Lab model shares the (large) backbone: only the head differs.
    lab = HypercolumnColorizer(hue_chroma.backbone, get_space("lab"), hidden=64)
    for head in lab.heads.values():
        with torch.no_grad():
            head.weight.mul_(20.0)
    return {"hue_chroma": hue_chroma, "lab": lab.eval()}


@pytest.fixture(scope="module")
def compact_models():
    torch.manual_seed(1)
    return {space: _strengthen(build_model("compact", space)) for space in ("hue_chroma", "lab")}


def test_vgg16_hypercolumn_has_12417_channels(vgg16_models):
    model = vgg16_models["hue_chroma"]
    assert model.hypercolumn_channels == 12417
    assert [t.name for t in model.taps][-3:] == ["conv5_3", "fc6", "fc7"]
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        hc = model.hypercolumns(x)
    assert hc.shape == (1, 12417, 16, 16)
    # fc7 carries signal (so the next tests exercise the coarse, upsampled taps).
    assert hc[:, -4096:].abs().mean() > 1e-2


def test_compact_hypercolumn_channels_and_log_probs(compact_models):
    model = compact_models["hue_chroma"]
    assert model.hypercolumn_channels == 1 + sum(t.channels for t in model.backbone.taps)
    with torch.no_grad():
        log_probs = model(torch.rand(1, 1, 64, 64))
    for value in log_probs.values():
        assert value.shape == (1, 32, 16, 16)
        np.testing.assert_allclose(value.exp().sum(1).numpy(), 1.0, atol=1e-5)


def _assert_logits_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        scale = max(1.0, b[name].abs().max().item())
        assert b[name].std() > 0.5  # the logits vary: a real check, not one of near-zeros
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("space", ["hue_chroma", "lab"])
@pytest.mark.parametrize("backbone", ["vgg16", "compact"])
def test_efficient_head_equals_naive(vgg16_models, compact_models, backbone, space):
    model = (vgg16_models if backbone == "vgg16" else compact_models)[space]
    x = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast, naive = model.grid_logits(x), model.grid_logits_naive(x)
    assert fast[next(iter(fast))].shape[-2:] == (64 // GRID_STRIDE, 96 // GRID_STRIDE)
    _assert_logits_close(fast, naive)
    # Each pixel's bins are contiguous: the softmax and decoding read them in order.
    assert all(v.stride(1) == 1 for v in fast.values())


@pytest.mark.parametrize("backbone", ["vgg16", "compact"])
def test_point_logits_at_grid_cell_centres_equal_dense(vgg16_models, compact_models, backbone):
    model = (vgg16_models if backbone == "vgg16" else compact_models)["hue_chroma"]
    h, w = 64, 96
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(3))
    ii, jj = torch.meshgrid(torch.arange(h // 4), torch.arange(w // 4), indexing="ij")
    points = torch.stack((4 * jj + 2, 4 * ii + 2), dim=-1).reshape(1, -1, 2).float()  # (x, y)
    with torch.no_grad():
        dense = model.grid_logits(x)
        sparse = model.point_logits(x, points)
    for name in dense:
        expected = dense[name][0].flatten(1).T  # (N, K), row-major over (i, j) like points
        assert sparse[name].shape == (1, points.shape[1], dense[name].shape[1])
        np.testing.assert_allclose(sparse[name][0].numpy(), expected.numpy(), atol=1e-4 * max(1, expected.abs().max().item()))


@pytest.mark.parametrize("backbone, first, last", [
    ("vgg16", "backbone.features.0.weight", ("backbone.fc6.weight", "backbone.fc7.weight")),
    ("compact", "backbone.stages.0.0.0.weight", ("backbone.context.0.0.weight", "backbone.context.1.0.weight")),
])
def test_point_gradients_reach_every_layer(vgg16_models, backbone, first, last):
    torch.manual_seed(4)
    # Reuse the module's VGG-16 (building one takes seconds); leave it as it was found.
    model = vgg16_models["hue_chroma"] if backbone == "vgg16" else build_model(backbone, "hue_chroma")
    model.train()
    try:
        x = torch.rand(2, 1, 32, 32)  # batch 2: batch norm at stride 32 needs more than one value
        points = torch.rand(2, 16, 2) * 32
        logits = model.point_logits(x, points)
        target = torch.softmax(torch.randn(2, 16, 32), -1)
        loss = sum((-(target * torch.log_softmax(v, -1))).sum(-1).mean() for v in logits.values())
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
    finally:
        model.eval().zero_grad(set_to_none=True)
    for name in (first, *last, "projections.0.weight", f"projections.{len(model.taps) - 1}.weight",
                 "heads.hue.weight", "heads.chroma.weight"):
        grad = grads[name]
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_grid_logits_checks_its_input(compact_models):
    model = compact_models["hue_chroma"]
    with pytest.raises(ValueError, match="multiples of 32"):
        model.grid_logits(torch.rand(1, 1, 64, 70))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model.grid_logits(torch.rand(1, 3, 64, 64))


# --- ImageNet initialisation ---------------------------------------------------------


def test_imagenet_offline_gives_an_actionable_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as info:
        build_model("vgg16", pretrained="imagenet", hidden=16)
    message = str(info.value)
    assert "vgg16-397923af.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "no network" in message


def test_pretrained_only_for_vgg16():
    with pytest.raises(ValueError, match="vgg16"):
        build_model("compact", pretrained="imagenet")
    with pytest.raises(ValueError, match="choose one of"):
        build_model("resnet")


@pytest.fixture(scope="module")
def torchvision_vgg16():
    torch.manual_seed(5)
    return torchvision.models.vgg16().eval()


def test_conv1_folding_matches_torchvision_on_replicated_gray(torchvision_vgg16):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    state = vgg16_state_from_torchvision(torchvision_vgg16.state_dict(), mean, std)
    backbone = VGG16Backbone().eval()
    backbone.load_state_dict(state)  # strict: every tensor maps
    gray = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(6))
    rgb = (gray.repeat(1, 3, 1, 1) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torchvision_vgg16.features[0](rgb)
        folded = backbone.features[0](gray)
    # Zero padding differs at the border (torchvision pads the *normalised* image with 0).
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(folded[inner].numpy(), expected[inner].numpy(), atol=1e-5)
    assert not torch.allclose(folded[..., 0, :], expected[..., 0, :], atol=1e-3)
    # The other convolutions are copied as they are.
    src = torchvision_vgg16.state_dict()
    for key in ("features.2.weight", "features.28.bias"):
        assert torch.equal(state[key], src[key])


def test_fc6_fc7_reshape_matches_linear_layers(torchvision_vgg16):
    state = vgg16_state_from_torchvision(torchvision_vgg16.state_dict())
    fc6 = nn.Conv2d(512, 4096, 7, padding=3)
    fc7 = nn.Conv2d(4096, 4096, 1)
    fc6.load_state_dict({"weight": state["fc6.weight"], "bias": state["fc6.bias"]})
    fc7.load_state_dict({"weight": state["fc7.weight"], "bias": state["fc7.bias"]})
    pool5 = torch.rand(1, 512, 7, 7, generator=torch.Generator().manual_seed(7))
    linear6, linear7 = torchvision_vgg16.classifier[0], torchvision_vgg16.classifier[3]
    with torch.no_grad():
        # At the centre of a 7x7 map the 7x7 convolution sees exactly the whole map.
        conv6 = fc6(pool5)[0, :, 3, 3]
        np.testing.assert_allclose(conv6.numpy(), linear6(pool5.flatten(1))[0].numpy(), atol=1e-4)
        hidden = torch.relu(conv6)
        np.testing.assert_allclose(fc7(hidden.view(1, -1, 1, 1))[0, :, 0, 0].numpy(),
                                   linear7(hidden[None])[0].numpy(), atol=1e-4)


def test_build_model_imagenet_uses_torchvision_weights_api(monkeypatch, torchvision_vgg16):
    state = torchvision_vgg16.state_dict()
    calls = []

    def fake_download(url, *args, **kwargs):
        calls.append(url)
        return state

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    model = build_model("vgg16", pretrained="imagenet", hidden=16)
    assert calls == [torchvision.models.VGG16_Weights.IMAGENET1K_V1.url]
    assert torch.equal(model.backbone.features[2].weight, state["features.2.weight"])
    assert model.backbone.features[0].weight.shape == (64, 1, 3, 3)
    assert "IMAGENET1K_V1" in model.config.training["init"]


# --- save / load ------------------------------------------------------------------------


@pytest.fixture
def trained_like_model(make_model):
    model = copy.deepcopy(make_model("compact", "lab"))
    gen = torch.Generator().manual_seed(8)
    for module in model.modules():  # non-trivial batch-norm statistics must survive too
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
            module.num_batches_tracked.fill_(17)
    model.config.decoding = {"confidence_fading": [0.1, 0.4]}
    return model


def test_save_load_round_trip(trained_like_model, tmp_path):
    path = save_model(trained_like_model, tmp_path / "sub" / "model.safetensors", steps=123, data="unit test")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp left
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config.backbone == "compact" and loaded.config.space == "lab"
    assert loaded.config.training["steps"] == 123 and loaded.config.training["data"] == "unit test"
    assert loaded.config.decoding == {"confidence_fading": [0.1, 0.4]}
    for key, value in trained_like_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = trained_like_model.grid_logits(x), loaded.grid_logits(x)
    # Weights are compared bit for bit above; outputs may differ in the last bits when an
    # earlier test put the shared model's weights channels-last (get_model does, for speed).
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)
    assert read_config(path).training["steps"] == 123


def test_saved_file_is_plain_safetensors(trained_like_model, tmp_path):
    from safetensors import safe_open

    path = save_model(trained_like_model, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"  # neither a pickle nor a torch zip archive
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    assert meta["backbone"] == "compact" and meta["space"] == "lab" and meta["format_version"] == 1
    assert len(meta["bins"]["a"]["edges"]) == 17
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == set(trained_like_model.state_dict())
        assert METADATA_KEY in f.metadata()


def test_loading_foreign_or_broken_files_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(ValueError, match="no napari-colorize metadata"):
        load_model(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_model(garbage)
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "missing.safetensors")


def test_a_model_cut_short_is_called_damaged_not_foreign(trained_like_model, tmp_path):
    # A copy that stopped half-way used to be "not a safetensors file": a hint that the user
    # picked the wrong kind of file, when the file is ours and needs copying again.
    whole = save_model(trained_like_model, tmp_path / "whole.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[:len(whole) // 2])
    for attempt in (load_model, read_config):
        with pytest.raises(ValueError, match="cut.safetensors is a damaged napari-colorize model .cut short or "
                                             "corrupted.; copy it again"):
            attempt(cut)


def test_newer_format_version_is_refused(trained_like_model, tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(trained_like_model, tmp_path / "m.safetensors")
    doc = json.loads(read_config(path).to_json())
    doc["format_version"] = 99
    save_file(load_file(str(path)), str(path), metadata={METADATA_KEY: json.dumps(doc)})
    with pytest.raises(ValueError, match="upgrade napari-colorize"):
        load_model(path)


def test_mismatched_tensors_are_refused(trained_like_model, tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(trained_like_model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    tensors.pop("heads.ab.weight")
    save_file(tensors, str(path), metadata={METADATA_KEY: read_config(path).to_json()})
    with pytest.raises(ValueError, match=r"do not match .*missing \['heads.ab.weight'\]"):
        load_model(path)


def test_batch_norm_is_folded_for_inference_only():
    # In evaluation without gradients the compact backbone folds batch norm into the
    # convolutions: the same values as the plain conv -> BN -> ReLU, the same state dict,
    # and the folded weights follow changes to the running statistics.
    from napari_colorize.model.backbones import ConvBNReLU

    torch.manual_seed(3)
    model = build_model("compact", "lab").eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    block = model.backbone.stages[0][0]
    assert isinstance(block, ConvBNReLU) and [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    x = torch.rand(1, 1, 96, 128)
    plain = {k: v.detach() for k, v in model.grid_logits(x).items()}  # gradients on: the plain modules
    with torch.no_grad():
        folded = model.grid_logits(x)
        assert block._folded is not None
        np.testing.assert_allclose(folded["ab"], plain["ab"], atol=1e-5)
        block[1].running_mean += 0.3
        refolded = model.grid_logits(x)
    changed = {k: v.detach() for k, v in model.grid_logits(x).items()}
    np.testing.assert_allclose(refolded["ab"], changed["ab"], atol=1e-5)
    assert not torch.allclose(refolded["ab"], folded["ab"])
    assert "backbone.stages.0.0.1.running_mean" in model.state_dict()


# --- the backbone registry --------------------------------------------------------------


def test_backbone_registry_holds_each_backbones_defaults():
    from napari_colorize.model import BACKBONES, get_backbone

    assert tuple(BACKBONES) == ("compact", "vgg16")
    compact, vgg16 = get_backbone("compact"), get_backbone("vgg16")
    assert (compact.hidden, compact.min_size, compact.pretrained) == (128, 32, {})
    assert compact.tiling("cpu") == (1408, 384, 1536) and compact.tiling("cuda") == (4096, 384, 4096)
    assert (vgg16.hidden, vgg16.min_size, sorted(vgg16.pretrained)) == (1024, 32, ["imagenet"])
    assert vgg16.tiling("cpu") == (1024, 384, 1024) and vgg16.tiling("cuda") == (2048, 384, 2048)
    with torch.device("meta"):  # the default hidden width comes from the entry (no memory used)
        assert build_model("vgg16").projection_bias.shape == (1024,)
    assert build_model("compact").projection_bias.shape == (128,)
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet'; choose one of compact, vgg16"):
        get_backbone("resnet")


class _TinyBackbone(torch.nn.Module):
    """Two tapped convolutions, at strides 1 and 32."""

    multiple = 32
    min_size = 32

    def __init__(self) -> None:
        super().__init__()
        from napari_colorize.model import Tap

        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.taps = [Tap("c1", 4, 1), Tap("c2", 6, 32)]

    def forward(self, x):
        x = torch.relu(self.c1(x))
        yield x
        yield torch.relu(self.c2(torch.nn.functional.max_pool2d(x, 32)))


def test_adding_a_backbone_is_one_registry_entry(tmp_path):
    from napari_colorize.cli import build_parser
    from napari_colorize.inference import predict
    from napari_colorize.model import BACKBONES, BackboneSpec, register_backbone

    spec = BackboneSpec("tiny", _TinyBackbone, hidden=16, cpu_tiling=(256, 64), single_pass_max=256,
                        gpu_tiling=(512, 64), min_size=64)
    register_backbone(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_backbone(spec)
        model = build_model("tiny", "lab")
        assert model.min_size == 64 and model.projection_bias.numel() == 16
        loaded = load_model(save_model(model, tmp_path / "tiny.safetensors"))  # the schema accepts the new name
        rgb = predict(loaded, torch.rand(1, 64, 96))[0]
        assert rgb.shape == (1, 64, 96, 3)
        with pytest.raises(ValueError, match="at least 64 x 64"):
            predict(loaded, torch.rand(1, 48, 96))
        args = build_parser().parse_args(["train", "photos", "-o", "m.safetensors", "--backbone", "tiny"])
        assert args.backbone == "tiny"
    finally:
        del BACKBONES["tiny"]


def test_backbone_entries_are_checked_when_registered():
    from napari_colorize.model import BackboneSpec

    with pytest.raises(ValueError, match=r"hidden must lie in \[8, 4096\]"):
        BackboneSpec("wide", _TinyBackbone, hidden=10**6, cpu_tiling=(256, 64), single_pass_max=256,
                     gpu_tiling=(512, 64))
    with pytest.raises(ValueError, match="cpu_tiling needs tile > 2 x overlap"):
        BackboneSpec("seamy", _TinyBackbone, hidden=16, cpu_tiling=(256, 128), single_pass_max=256,
                     gpu_tiling=(512, 64))
