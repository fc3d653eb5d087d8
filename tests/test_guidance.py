"""Guided colour: reference images and colour hints (napari_colorize.guidance, engine.guided).

Checked against independent references: lightness by ``rgb_to_gray``, colour differences
by ``skimage.color.rgb2lab``, influence fields and priors by hand-computed values; on the
CPU with small images.
"""

from __future__ import annotations

import inspect
import math

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from skimage import color, data, transform

import napari_colorize as nc
from napari_colorize.api import decode_options_for
from napari_colorize.color import rgb_to_gray
from napari_colorize.engine import cache, graph, tile_cache
from napari_colorize.engine import guided as guided_engine
from napari_colorize.engine.guided import build_guidance
from napari_colorize.guidance import (
    Guidance,
    HintField,
    fit_log_prior,
    influence_field,
    reference_histograms,
)
from napari_colorize.guidance.reference import band_weights
from napari_colorize.inference import decode_grid, histograms
from napari_colorize.model.hypercolumn import GRID_STRIDE

#: A hint colour whose gray (RGB mean) is 0.5, and one whose gray is 0.3.
ORANGE = (0.8, 0.4, 0.3)
BROWN = (0.5, 0.25, 0.15)
CPU = {"device": "cpu"}


def _clear_caches():
    tile_cache.clear()
    histograms_cache = getattr(cache, "histogram_cache", None)  # the network's histograms, where kept
    if histograms_cache is not None:
        histograms_cache.clear()


@pytest.fixture(autouse=True)
def _empty_cache():
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture(scope="module")
def cam() -> np.ndarray:
    return transform.resize(data.camera(), (128, 128), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def cam256() -> np.ndarray:
    return transform.resize(data.camera(), (256, 256), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return data.astronaut()[::4, ::4]  # uint8 (128, 128, 3)


def _lab(rgb) -> np.ndarray:
    return color.rgb2lab(np.asarray(rgb, dtype=np.float64))


def _ab_delta(a, b) -> np.ndarray:
    """Per-pixel Euclidean distance in (a*, b*)."""
    return np.linalg.norm(_lab(a)[..., 1:] - _lab(b)[..., 1:], axis=-1)


def _chroma(rgb) -> np.ndarray:
    return np.linalg.norm(_lab(rgb)[..., 1:], axis=-1)


def _hints(points, colours):
    return np.asarray(points, np.float64), np.asarray(colours, np.float64)


def _plain_guidance(image, model, **kwargs) -> Guidance:
    return build_guidance(image, model, decode_options_for(model), None, None, **kwargs)


# --- 1. guidance changes colour only ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["reference", "hints", "both"])
def test_guidance_keeps_the_input_lightness(cam, reference, kind):
    hints = _hints([[30, 30], [100, 90], [64, 20]], [[0.9, 0.2, 0.1], [0.1, 0.4, 0.9], [0.2, 0.8, 0.2]])
    kwargs = {"reference": reference if kind != "hints" else None, "hints": hints if kind != "reference" else None}
    plain = nc.colorize(cam, **CPU)
    guided = nc.colorize(cam, **CPU, **kwargs)
    rgb = np.asarray(guided.rgb)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb_to_gray(rgb), cam, atol=1e-5)
    # Not trivially: the colour did change, and is clearly chromatic.
    assert _ab_delta(rgb, plain.rgb).mean() > 1.0
    assert _chroma(rgb).mean() > 3.0
    assert guided.info["guidance"]["hints"] == (0 if kind == "reference" else 3)
    assert guided.info["guidance"]["references"] == (0 if kind == "hints" else 1)


# --- 2. a hint's colour is reproduced at its point -------------------------------------------------------------------

def _patches(shape, points, level, background=0.25) -> np.ndarray:
    """A textured background at another gray, with 13 x 13 patches at ``level`` around ``points``."""
    rng = np.random.default_rng(1)
    gray = np.clip(background + 0.1 * rng.random(shape), 0, 1).astype(np.float32)
    for y, x in np.floor(np.asarray(points) + 0.5).astype(int):
        gray[max(y - 6, 0):y + 7, max(x - 6, 0):x + 7] = level
    return gray


def _hint_errors(model, shape, points, colour) -> list[float]:
    """Delta ab between the output and the hint colour at each hint, the gray there being the colour's own."""
    gray = _patches(shape, points, float(np.mean(colour)))
    rgb = np.asarray(nc.colorize(gray, model=model, **CPU, hints=_hints(points, [colour] * len(points))).rgb)
    np.testing.assert_allclose(rgb_to_gray(rgb), gray, atol=1e-5)
    return [float(_ab_delta(rgb[y, x], np.asarray(colour))) for y, x in np.floor(np.asarray(points) + 0.5).astype(int)]


@pytest.mark.parametrize("which", ["default", "hue_chroma", "lab"])
@pytest.mark.parametrize("colour", [ORANGE, (0.2, 0.35, 0.85), (0.3, 0.75, 0.25), (0.6, 0.5, 0.1)])
def test_a_hint_reproduces_its_colour_at_its_point(make_model, which, colour):
    model = "default" if which == "default" else make_model("compact", which)
    # The size is not a multiple of the grid; points are fractional, at the first corner and at the
    # last row of a height of 98 (98 = 4 * 24 + 2: the last pixel's bilinear neighbours are in the image).
    shape = (98, 128)
    points = [[20.4, 30.6], [70, 100], [0, 0], [97, 60]]
    errors = _hint_errors(model, shape, points, colour)
    assert max(errors) < 6.0, (which, colour, errors)
    # The unguided result is far from the hint colour there: the hint did it.
    plain = np.asarray(nc.colorize(_patches(shape, points, float(np.mean(colour))), model=model, **CPU).rgb)
    assert _ab_delta(plain[20, 31], np.asarray(colour)) > 10.0


# The last pixel of a side = 3 or 0 (mod 4) is interpolated partly from a padded grid cell
# beyond the image: its hint weight must repeat the edge's (was 0, and leaked).
@pytest.mark.parametrize("which", ["default", "lab"])
def test_a_hint_at_the_far_corner_reproduces_its_colour(make_model, which):
    model = "default" if which == "default" else make_model("compact", which)
    shape = (99, 131)  # both sides 3 (mod 4)
    errors = _hint_errors(model, shape, [[98, 130], [0, 130], [98, 0]], (0.2, 0.35, 0.85))
    assert max(errors) < 6.0, errors


@pytest.mark.parametrize("level", [0.5, 0.7, 0.9])
def test_a_saturated_blue_hint_on_a_lighter_gray_stays_blue(level):
    # It came out violet, then pink ((254, 179, 255) at 0.9): CIELab's blue hue, lightened.
    gray = np.full((64, 64), level, np.float32)
    rgb = np.asarray(nc.colorize(gray, **CPU, hints=_hints([[32, 32]], [(0.0, 0.0, 1.0)])).rgb)[32, 32]
    r, g, b = rgb.tolist()
    assert b > g > r and b - r > 0.1, rgb
    np.testing.assert_allclose(rgb.mean(), level, atol=1e-5)


def test_two_hints_each_win_at_their_own_point(make_model):
    gray = np.full((96, 96), 0.5, np.float32)
    blue = (0.3, 0.45, 0.75)
    result = nc.colorize(gray, model=make_model(), **CPU, hints=_hints([[20, 20], [75, 75]], [ORANGE, blue]))
    rgb = np.asarray(result.rgb)
    assert _ab_delta(rgb[20, 20], np.asarray(ORANGE)) < 6.0
    assert _ab_delta(rgb[75, 75], np.asarray(blue)) < 6.0


@pytest.mark.parametrize("which", ["default", "hue_chroma"])
def test_many_hints_of_many_hues_stay_finite(make_model, which):
    # Each hint adds about log 1e-6 to every bin unlike its colour; a dozen hints of a dozen hues
    # used to underflow a cell's whole histogram to 0 and the colour to NaN.
    import colorsys

    model = "default" if which == "default" else make_model("compact", which)
    gray = np.full((128, 128), 0.5, np.float32)
    points = np.stack([np.full(16, 64.0), np.linspace(40, 88, 16)], 1)
    colours = np.array([colorsys.hsv_to_rgb(h, 0.8, 0.8) for h in np.arange(16) / 16])
    rgb = np.asarray(nc.colorize(gray, model=model, **CPU, hints=(points, colours)).rgb)
    assert np.isfinite(rgb).all()
    np.testing.assert_allclose(rgb_to_gray(rgb), gray, atol=1e-5)


# --- 3. a hint does not cross a strong edge --------------------------------------------------------------------------

def _split(shape=(96, 192), left=0.3, right=0.7) -> np.ndarray:
    gray = np.full(shape, left, np.float32)
    gray[:, shape[1] // 2:] = right
    return gray


@pytest.mark.parametrize("which", ["default", "hue_chroma"])
def test_a_hint_stops_at_a_strong_edge(make_model, which):
    model = "default" if which == "default" else make_model()
    hints = _hints([[48, 40]], [BROWN])  # gray 0.3, in the left half
    gray = _split()
    plain = np.asarray(nc.colorize(gray, model=model, **CPU).rgb)
    guided = np.asarray(nc.colorize(gray, model=model, **CPU, hints=hints).rgb)
    delta = _ab_delta(guided, plain)
    assert delta[:, :80].mean() > 10.0  # the hinted side changed a lot
    assert delta[:, 104:].max() < 0.5  # beyond a few pixels across the edge: (nearly) nothing
    # Without the edge the same hint does reach that far (the default reach is the long side, 192 px):
    # the edge is what stopped it.
    flat = np.full(gray.shape, 0.3, np.float32)
    reach = _ab_delta(np.asarray(nc.colorize(flat, model=model, **CPU, hints=hints).rgb),
                      np.asarray(nc.colorize(flat, model=model, **CPU).rgb))
    assert reach[:, 104:140].mean() > 5.0


def test_influence_field_by_hand():
    # Uniform gray: geodesic distance is the grid distance (MCP, unit cost per cell step), the gray
    # gate is 1, so w = exp(-d^2 / 2 sigma^2) with sigma = reach / 3, 0 beyond the reach.
    cells = np.full((41, 41), 0.5)
    hint_range = 64.0  # 16 cells
    field = influence_field(cells, (20, 20), hint_range)
    reach = hint_range / GRID_STRIDE
    for k in (0, 1, 5, 10, 16):
        expected = math.exp(-0.5 * (k / (reach / 3)) ** 2)
        assert field[20, 20 + k] == pytest.approx(expected, abs=1e-6)
        assert field[20 - k, 20] == pytest.approx(expected, abs=1e-6)
    assert field[20, 20 + 17] == 0 and field[0, 0] == 0  # beyond 16 cells
    assert field[20 + 5, 20 + 5] == pytest.approx(math.exp(-0.5 * (5 * math.sqrt(2) / (reach / 3)) ** 2), abs=1e-6)
    # A gray step between the hint and a cell: the field there collapses.
    cells[:, 25:] = 0.9
    stepped = influence_field(cells, (20, 20), hint_range)
    assert stepped[20, 28] < 1e-3 and stepped[20, 18] == pytest.approx(field[20, 18], abs=1e-6)


def test_a_long_reach_applies_the_gray_gate_once():
    # 200 x 200 cells (a window larger than MAX_FIELD_CELLS: the coarse path), gray 0.5 then
    # 0.8 with a smooth ramp, no edge cost: only distance and the gray gate act.
    from napari_colorize.guidance.hints import GRAY_SIMILARITY, influence_field
    x = np.arange(200)
    cells = np.tile(0.5 + 0.3 * np.clip((x - 90) / 20, 0, 1), (200, 1)).astype(np.float32)
    centre, reach = (100, 40), 760.0
    field = influence_field(cells, centre, reach, edge_scale=1e9)
    ungated = influence_field(cells, centre, reach, edge_scale=1e9, similarity=np.inf)
    for cx in (130, 160, 190):  # 0.3 brighter than the hint: the documented gate exp(-0.5 (0.3 / s)^2)
        gate = math.exp(-0.5 * (0.3 / GRAY_SIMILARITY) ** 2)
        assert field[100, cx] == pytest.approx(ungated[100, cx] * gate, rel=1e-4)



@pytest.mark.parametrize("col", [98, 100, 102])
def test_a_long_reach_keeps_weight_1_at_the_hint_beside_an_edge(col):
    # A reach beyond MAX_FIELD_CELLS is computed on a coarser grid and interpolated back; the
    # interpolation used to mix in cells across a nearby step (0.88 at the hint's own cell).
    cells = np.full((200, 200), 0.3, np.float32)
    cells[:, 103:] = 0.7
    field = influence_field(cells, (100, col), hint_range=800.0)
    assert field[100, col] == pytest.approx(1.0)
    assert field[100, 110] < field[100, 2 * col - 110]  # damped across the step (the coarse grid blurs it)
    assert field[100, 60] > 0.3  # and still reaching far


# --- 4. tiled equals untiled -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("space, many", [("hue_chroma", {"tile_size": 160, "overlap": 64}),
                                         ("lab", {"tile_size": 160, "overlap": 64}),
                                         # sizes off the network's 32-pixel grid: tiles still start on it
                                         ("hue_chroma", {"tile_size": 150, "overlap": 50})])
def test_guided_tiles_match_one_tile(make_model, cam256, reference, space, many):
    model = make_model("compact", space)
    hints = _hints([[60, 60], [200, 180], [128, 40], [90, 100]],
                   [[0.9, 0.3, 0.2], [0.2, 0.5, 0.9], [0.3, 0.8, 0.3], [0.7, 0.7, 0.2]])
    kwargs = {"reference": reference, "hints": hints}
    one = {"tile_size": 512}
    plain_one = np.asarray(nc.colorize(cam256, model=model, **CPU, **one).rgb)
    guided_one = nc.colorize(cam256, model=model, **CPU, **one, **kwargs)
    plain_many = nc.colorize(cam256, model=model, **CPU, **many).rgb.compute()
    guided_many = nc.colorize(cam256, model=model, **CPU, **many, **kwargs)
    assert guided_one.info["n_tiles"] == 1 and guided_many.info["n_tiles"] >= 4
    rgb_many = guided_many.rgb.compute()
    np.testing.assert_allclose(rgb_to_gray(rgb_many), cam256, atol=1e-5)
    effect_one = _lab(guided_one.rgb)[..., 1:] - _lab(plain_one)[..., 1:]
    effect_many = _lab(rgb_many)[..., 1:] - _lab(plain_many)[..., 1:]
    assert np.linalg.norm(effect_one, axis=-1).mean() > 5.0  # guidance does something here
    diff = np.abs(effect_many - effect_one).max(-1)
    assert diff.mean() < 0.25 and np.percentile(diff, 99) < 1.5
    np.testing.assert_allclose(guided_many.chroma_confidence.compute(), guided_one.chroma_confidence, atol=0.05)


def _global_fields(guidance: Guidance, grid: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for hint in guidance.hints:
        field = np.zeros(grid, np.float32)
        h, w = hint.weight.shape
        field[hint.cell_y:hint.cell_y + h, hint.cell_x:hint.cell_x + w] = hint.weight
        out.append(field)
    return out


def test_tile_guides_are_crops_of_one_global_field(make_model, cam256):
    model = make_model()
    hints = _hints([[60, 60], [200, 180], [128, 140]], [ORANGE, [0.2, 0.5, 0.9], [0.3, 0.8, 0.3]])
    guidance = _plain_guidance(cam256, model, hints=hints, hint_range=80)
    grid = (256 // GRID_STRIDE, 256 // GRID_STRIDE)
    fields = _global_fields(guidance, grid)
    boxes = [(0, 0, 160, 160), (96, 96, 160, 160), (96, 0, 160, 160), (0, 96, 160, 160), (32, 64, 100, 90)]
    pasted = [np.full(grid, np.nan) for _ in fields]
    for y0, x0, h, w in boxes:
        guide = guidance.for_tile((), y0, x0, h, w)
        cy, cx, gh, gw = y0 // GRID_STRIDE, x0 // GRID_STRIDE, -(-h // GRID_STRIDE), -(-w // GRID_STRIDE)
        window = (slice(cy, cy + gh), slice(cx, cx + gw))
        reaching = [m for m, f in enumerate(fields) if f[window].any()]
        assert guide is not None and len(guide.weights) == len(reaching)
        assert guide.weights.shape[1:] == (gh, gw)
        for pos, m in enumerate(reaching):
            np.testing.assert_array_equal(guide.weights[pos], fields[m][window])
            np.testing.assert_array_equal(guide.channels[pos], guidance.hints[m].channels)
            # Pasting the tiles back: every overlap agrees with what is already there.
            seen = pasted[m][window]
            known = ~np.isnan(seen)
            np.testing.assert_array_equal(seen[known], guide.weights[pos][known])
            pasted[m][window] = guide.weights[pos]
        # A sub-tile's crop is the sub-tile's own guide.
        sub = guide.crop(32, 16, 64, 48)
        own = guidance.for_tile((), y0 + 32, x0 + 16, 64, 48)
        np.testing.assert_array_equal(sub.weights.sum(0), own.weights.sum(0) if own is not None else 0)


def test_guidance_commutes_with_cutting_the_grid(make_model, cam256, reference):
    # Guidance acts cell by cell on the histograms: decoding a tile's histograms with its tile
    # guide gives exactly the crop of decoding the whole grid with the whole guide.
    model = make_model("compact", "lab")
    hints = _hints([[60, 60], [150, 120]], [ORANGE, [0.2, 0.5, 0.9]])
    guidance = _plain_guidance(cam256, model, reference=reference, hints=hints)
    opts = decode_options_for(model)
    gray = torch.from_numpy(cam256)[None]
    probs = histograms(model, gray)
    whole = decode_grid(dict(probs), model.space, opts, [guidance.for_tile((), 0, 0, 256, 256)], gray)
    y0, x0, h, w = 96, 64, 128, 160
    cy, cx = y0 // GRID_STRIDE, x0 // GRID_STRIDE
    gh, gw = h // GRID_STRIDE, w // GRID_STRIDE
    crop = {k: p[..., cy:cy + gh, cx:cx + gw] for k, p in probs.items()}
    part = decode_grid(crop, model.space, opts, [guidance.for_tile((), y0, x0, h, w)], gray[:, y0:y0 + h, x0:x0 + w])
    torch.testing.assert_close(part, whole[..., cy:cy + gh, cx:cx + gw], atol=1e-5, rtol=0)
    unguided = decode_grid(dict(probs), model.space, opts)
    assert (whole[:, :2] - unguided[:, :2]).abs().max() > 0.1


# --- 5. stacks -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Three different mid-gray textures (room for chroma everywhere)."""
    yy, xx = np.mgrid[:96, :96].astype(np.float32)
    return np.stack([0.5 + 0.12 * np.sin(xx / (5 + z) + z) * np.cos(yy / (7 - z)) for z in range(3)]).astype(np.float32)


def test_a_hint_colours_its_own_plane_only(make_model, stack):
    model = make_model()
    plain = np.asarray(nc.colorize(stack, model=model, **CPU).rgb)
    guided = np.asarray(nc.colorize(stack, model=model, **CPU, hints=_hints([[1, 48, 48]], [ORANGE])).rgb)
    np.testing.assert_array_equal(guided[0], plain[0])
    np.testing.assert_array_equal(guided[2], plain[2])
    assert _ab_delta(guided[1], plain[1])[40:56, 40:56].mean() > 10.0
    np.testing.assert_allclose(rgb_to_gray(guided), stack, atol=1e-5)


def test_a_hint_in_a_4d_stack_finds_its_plane(make_model, cam):
    model = make_model()
    image = np.stack([np.stack([cam[:96, :96], cam[32:, 32:]]), np.stack([cam[16:112, :96], cam[:96, 32:]])])
    plain = np.asarray(nc.colorize(image, model=model, **CPU).rgb)
    guided = np.asarray(nc.colorize(image, model=model, **CPU, hints=_hints([[1, 0, 50, 40]], [ORANGE])).rgb)
    changed = [[not np.array_equal(guided[t, z], plain[t, z]) for z in range(2)] for t in range(2)]
    assert changed == [[False, False], [True, False]]


@pytest.mark.parametrize("ndim", [2, 3])
def test_hint_planes_all_colours_every_plane(make_model, stack, ndim):
    model = make_model()
    point = [48, 48] if ndim == 2 else [1, 48, 48]
    plain = np.asarray(nc.colorize(stack, model=model, **CPU).rgb)
    guided = np.asarray(nc.colorize(stack, model=model, **CPU, hints=_hints([point], [ORANGE]),
                                    hint_planes="all").rgb)
    for z in range(3):
        assert _ab_delta(guided[z], plain[z])[44:52, 44:52].mean() > 10.0, z
    assert nc.colorize(stack, model=model, **CPU, hints=_hints([point], [ORANGE]),
                       hint_planes="all").info["guidance"]["hint_planes"] == "all"


def test_one_plane_coloured_with_its_stacks_hints_gets_that_plane_of_the_whole_stack(make_model, stack):
    # Hints on planes 0 and 2 for every plane: plane 1 coloured alone computes their fields on
    # their own planes of hint_stack, as the whole stack's run does (the widget's "current slice").
    model = make_model()
    hints = _hints([[0, 30, 30], [2, 60, 50]], [ORANGE, BROWN])
    whole = np.asarray(nc.colorize(stack, model=model, **CPU, hints=hints, hint_planes="all").rgb)
    alone = np.asarray(nc.colorize(stack[1:2], model=model, **CPU, hints=hints, hint_planes="all",
                                   hint_stack=stack).rgb)
    np.testing.assert_allclose(alone[0], whole[1], atol=1e-5)
    assert _ab_delta(alone[0], nc.colorize(stack[1], model=model, **CPU).rgb)[26:34, 26:34].mean() > 10.0
    with pytest.raises(ValueError, match="hint_stack= is for hint_planes='all'"):
        nc.colorize(stack[1], model=model, **CPU, hints=hints, hint_stack=stack)
    with pytest.raises(ValueError, match=r"hint_stack must be a stack \(\.\.\., Y, X\) with the image's planes"):
        nc.colorize(stack[1], model=model, **CPU, hints=hints, hint_planes="all", hint_stack=stack[:, :50])


def test_identical_planes_stay_identical(make_model, cam, reference):
    model = make_model()
    plane = cam[:96, :96]
    image = np.stack([plane] * 3)
    hints = _hints([[30, 60]], [ORANGE])
    for kwargs in ({"reference": reference}, {"reference": reference, "hints": hints, "hint_planes": "all"}):
        rgb = np.asarray(nc.colorize(image, model=model, **CPU, **kwargs).rgb)
        np.testing.assert_array_equal(rgb[1], rgb[0])
        np.testing.assert_array_equal(rgb[2], rgb[0])
        single = np.asarray(nc.colorize(plane, model=model, **CPU, **kwargs).rgb)
        np.testing.assert_allclose(rgb[0], single, atol=1e-4)
        assert _ab_delta(single, nc.colorize(plane, model=model, **CPU).rgb).mean() > 1.0


def test_a_reference_gives_every_plane_the_same_prior(make_model, stack, reference):
    guidance = _plain_guidance(stack, make_model(), reference=reference)
    guides = [guidance.for_tile((z,), 0, 0, 96, 96) for z in range(3)]
    assert all(g is not None and not g.has_hints for g in guides)
    for g in guides[1:]:
        assert g.log_prior.keys() == guides[0].log_prior.keys()
        for head in g.log_prior:
            np.testing.assert_array_equal(g.log_prior[head], guides[0].log_prior[head])


# --- 6. lazy inputs and zarr output ----------------------------------------------------------------------------------

def test_dask_input_matches_numpy(make_model, cam256, reference):
    model = make_model()
    kwargs = {"reference": reference, "hints": _hints([[60, 60], [200, 180]], [ORANGE, [0.2, 0.5, 0.9]]),
              "tile_size": 128, "overlap": 32}
    lazy = nc.colorize(da.from_array(cam256, chunks=(100, 70)), model=model, **CPU, **kwargs)
    assert isinstance(lazy.rgb, da.Array) and lazy.info["lazy"]
    eager = nc.colorize(cam256, model=model, **CPU, **kwargs)
    np.testing.assert_array_equal(lazy.rgb.compute(), np.asarray(eager.rgb))
    np.testing.assert_array_equal(lazy.chroma_confidence.compute(), np.asarray(eager.chroma_confidence))
    assert lazy.info["guidance"] == eager.info["guidance"]


def test_zarr_output_with_hints_matches_colorize(make_model, cam256, tmp_path):
    model = make_model()
    image = np.stack([cam256[:160, :200], cam256[96:, 56:]])
    kwargs = {"hints": _hints([[1, 60, 60], [0, 100, 150]], [ORANGE, [0.2, 0.5, 0.9]]),
              "tile_size": 128, "overlap": 32, "device": "cpu"}
    out = nc.colorize_to_zarr(image, tmp_path / "out.zarr", model, rgb_dtype="float32", **kwargs)
    root = zarr.open_group(str(out), mode="r")
    written = np.moveaxis(np.asarray(root["0"]), 0, -1)  # (c, z, y, x) -> (z, y, x, c)
    expected = nc.colorize(image, model=model, **kwargs)
    np.testing.assert_allclose(written, np.asarray(expected.rgb), atol=1e-6)
    np.testing.assert_allclose(np.asarray(root["confidence/0"]), np.asarray(expected.chroma_confidence), atol=1e-6)
    plain = nc.colorize(image, model=model, tile_size=128, overlap=32, device="cpu")
    assert _ab_delta(written[1], np.asarray(plain.rgb[1]))[52:68, 52:68].mean() > 10.0
    assert root.attrs["napari_colorize"]["options"]["guidance"]["hints"] == 2


def test_cached_results_are_not_changed_by_guidance(make_model, cam, reference):
    # The caches keep the network's output per tile; guidance must update copies, never them.
    model = make_model()
    kwargs = {"reference": reference, "hints": _hints([[30, 30]], [ORANGE])}
    before = np.asarray(nc.colorize(cam, model=model, **CPU).rgb)
    tile_cache.clear()
    guided = np.asarray(nc.colorize(cam, model=model, **CPU, **kwargs).rgb)
    tile_cache.clear()
    after = np.asarray(nc.colorize(cam, model=model, **CPU).rgb)
    np.testing.assert_array_equal(after, before)
    _clear_caches()
    np.testing.assert_array_equal(nc.colorize(cam, model=model, **CPU, **kwargs).rgb, guided)
    assert _ab_delta(guided, before).mean() > 1.0


# --- 7. uncertainty ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["default", "lab"])
def test_confidence_rises_at_a_hint(make_model, cam, which):
    model = "default" if which == "default" else make_model("compact", which)
    y, x = 110, 110  # gray 0.56: a mid tone, where colour is free
    colour = (0.7, 0.3, 0.2)
    plain = nc.colorize(cam, model=model, **CPU)
    guided = nc.colorize(cam, model=model, **CPU, hints=_hints([[y, x]], [colour]))
    near = (slice(y - 3, y + 4), slice(x - 3, x + 4))
    before = np.asarray(plain.chroma_confidence)[near].mean()
    after = np.asarray(guided.chroma_confidence)[near].mean()
    assert after > before + 0.1 and after > 0.5, (before, after)
    assert np.asarray(guided.hue_entropy)[near].mean() < np.asarray(plain.hue_entropy)[near].mean()


# --- 8. cost ---------------------------------------------------------------------------------------------------------

def test_a_tile_beyond_every_hint_gets_no_guide(make_model, reference):
    model = make_model()
    gray = np.full((96, 512), 0.5, np.float32)
    guidance = _plain_guidance(gray, model, hints=_hints([[48, 20]], [ORANGE]), hint_range=32)
    assert guidance.for_tile((), 0, 0, 128, 128).has_hints
    assert guidance.for_tile((), 0, 96, 128, 128) is None  # a 32 px reach from x = 20 ends before x = 60
    assert guidance.for_tile((), 0, 384, 96, 128) is None
    with_reference = _plain_guidance(gray, model, hints=_hints([[48, 20]], [ORANGE]), hint_range=32,
                                     reference=reference)
    far = with_reference.for_tile((), 0, 384, 96, 128)
    assert far is not None and not far.has_hints and far.log_prior is not None
    assert _plain_guidance(gray, model, reference=reference, reference_strength=0).for_tile((), 0, 0, 96, 96) is None


def test_far_tiles_run_unguided_in_the_graph(make_model, monkeypatch):
    model = make_model()
    rng = np.random.default_rng(3)
    gray = (0.4 + 0.2 * rng.random((96, 512))).astype(np.float32)
    seen = []
    real = graph.predict_tiles
    signature = inspect.signature(real)

    def recording(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        seen.extend(given.get("guides") or [None] * len(given["gray"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(graph, "predict_tiles", recording)
    tiles = {"tile_size": 128, "overlap": 32}
    guided = nc.colorize(gray, model=model, **CPU, **tiles, hints=_hints([[48, 20]], [ORANGE]), hint_range=32)
    rgb = guided.rgb.compute(scheduler="synchronous")
    n = guided.info["n_tiles"]
    assert len(seen) == n and sum(g is not None for g in seen) == 1
    plain = nc.colorize(gray, model=model, **CPU, **tiles).rgb.compute()
    np.testing.assert_array_equal(rgb[:, 160:], plain[:, 160:])
    assert _ab_delta(rgb[40:56, 12:28], plain[40:56, 12:28]).mean() > 10.0


# --- 9. bad guidance -------------------------------------------------------------------------------------------------

GOOD_HINTS = _hints([[10, 10]], [ORANGE])


def _bad_guidance(reference):
    gray_reference = np.repeat(np.asarray(reference, np.float32).mean(-1, keepdims=True) / 255, 3, -1)
    return [
        ({"hints": _hints([[10, 96]], [ORANGE])}, "lies outside the image"),
        ({"hints": _hints([[-1, 10]], [ORANGE])}, "lies outside the image"),
        ({"hints": _hints([[10, 10]], [[1.2, 0.4, 0.3]])}, r"RGB\(A\) in \[0, 1\]"),
        ({"hints": _hints([[10, 10]], [[200, 100, 50]])}, "divide 8-bit colours by 255"),
        ({"hints": ([[10, 10], [20, 20]], ["red", "blue"])}, r"not names or text; got \['red', 'blue'\]"),
        ({"hints": _hints([[10, 10]], [[np.nan, 0.4, 0.3]])}, r"in \[0, 1\]; hint 0 has \[nan, 0.4, 0.3\] \(give finite values\)"),
        ({"hints": _hints([[10, 10]], [[-0.1, 0.4, 0.3]])}, r"\(values below 0 are not colours\)"),
        ({"hints": _hints(np.zeros((0, 2)), np.zeros((0, 3)))}, "no points"),
        ({"hints": ([], [])}, "no points"),
        ({"hints": _hints([[0, 10, 10]], [ORANGE])}, "2 coordinates each"),
        ({"hints": _hints([[10]], [ORANGE])}, "2 coordinates each"),
        ({"hints": _hints([[10, 10], [20, 20]], [ORANGE])}, "one per point"),
        ({"hints": _hints([[10, 10]], [[0.5, 0.5]])}, "one per point"),
        ({"hints": _hints([[np.nan, 10]], [ORANGE])}, "NaN"),
        ({"hints": np.zeros((1, 2))}, "pair"),
        ({"reference": np.asarray(reference)[..., 0]}, "a gray image"),
        ({"reference": gray_reference}, "is gray"),
        ({"reference": np.asarray(reference)[..., :2]}, r"\(H, W, 3\)"),
        ({"reference": []}, "empty list"),
        ({"reference": "photo.png"}, r"reference is a file name \('photo.png'\); pass its pixels: napari_colorize.io.read_rgb"),
        ({"reference": np.full((8, 8, 3), 2.0)}, r"must lie in \[0, 1\]"),
        ({"reference": np.full((8, 8, 3), 200.0)}, r"spans \[200, 200\]; values up to 255 look like 8-bit colour: divide by 255"),
        ({"reference": np.full((8, 8, 3), 300.0)}, r"spans \[300, 300\]$"),
        ({"reference": np.full((8, 8, 3), 1.02)}, r"spans \[1.02, 1.02\]; clip it to \[0, 1\] \(np.clip\) if it only"),
        ({"reference": reference, "hints": _hints([[10, 96]], [ORANGE])}, "lies outside the image"),
        ({"hints": GOOD_HINTS, "hint_planes": "every"}, "hint_planes must be one of"),
        ({"hint_planes": "every"}, "hint_planes must be one of"),
        ({"hints": GOOD_HINTS, "hint_range": 0}, "hint range"),
        ({"hints": GOOD_HINTS, "hint_range": -5.0}, "hint range"),
        ({"hints": GOOD_HINTS, "hint_range": float("nan")}, "hint range"),
        ({"hints": GOOD_HINTS, "hint_range": "far"}, "hint range"),
        ({"hint_range": float("inf")}, "hint range"),
        ({"reference": reference, "reference_strength": -1}, "reference strength"),
        ({"reference": reference, "reference_strength": float("nan")}, "reference strength"),
        ({"reference": reference, "reference_strength": "strong"}, "reference strength"),
        ({"reference_strength": True}, "reference strength"),
    ]


def test_bad_guidance_is_refused_before_anything_is_written(make_model, reference, tmp_path, monkeypatch):
    model = make_model()
    gray = np.full((64, 96), 0.5, np.float32)
    calls = []
    monkeypatch.setattr(graph, "predict_tiles", lambda *a, **k: calls.append("tiles"))
    monkeypatch.setattr(guided_engine, "histograms", lambda *a, **k: calls.append("overview"))  # the reference's pass
    for i, (kwargs, match) in enumerate(_bad_guidance(reference)):
        with pytest.raises(ValueError, match=match):
            nc.colorize(gray, model=model, **CPU, **kwargs)
        path = tmp_path / f"out{i}.zarr"
        with pytest.raises(ValueError, match=match):
            nc.colorize_to_zarr(gray, path, model, device="cpu", **kwargs)
        assert not path.exists(), kwargs
    assert not calls


def test_stack_hints_need_every_coordinate_unless_all_planes(make_model, stack):
    model = make_model()
    with pytest.raises(ValueError, match="3 coordinates each"):
        nc.colorize(stack, model=model, **CPU, hints=_hints([[48, 48]], [ORANGE]))
    with pytest.raises(ValueError, match="lies outside the image"):
        nc.colorize(stack, model=model, **CPU, hints=_hints([[3, 48, 48]], [ORANGE]))
    with pytest.raises(ValueError, match=r"3 coordinates each \(one per image axis, image shape \(\d+, \d+, \d+\)\) "
                                         r"or 2 for \(row, column\) on every plane, got shape \(1, 4\)"):
        nc.colorize(stack, model=model, **CPU, hints=_hints([[0, 0, 48, 48]], [ORANGE]), hint_planes="all")


def test_rgba_hints_and_references_are_accepted(make_model, cam, reference):
    # napari's face_color is RGBA: alpha is ignored; an RGBA reference's transparent pixels are ignored.
    model = make_model()
    rgb = nc.colorize(cam, model=model, **CPU, hints=_hints([[30, 30]], [ORANGE])).rgb
    rgba = nc.colorize(cam, model=model, **CPU, hints=_hints([[30, 30]], [(*ORANGE, 0.3)])).rgb
    np.testing.assert_array_equal(rgba, rgb)
    ref = np.asarray(reference)
    opaque = np.concatenate([ref, np.full(ref.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(nc.colorize(cam, model=model, **CPU, reference=opaque).rgb,
                                  nc.colorize(cam, model=model, **CPU, reference=ref).rgb)


def test_a_reference_switches_off_the_stored_fading_and_gain_but_not_the_calls_saturation(make_model, cam, reference):
    import copy
    plain = make_model()
    calibrated = copy.deepcopy(plain)
    calibrated.config.decoding = {"confidence_fading": [0.9, 0.95], "chroma_gain": 3.0}
    for saturation in (1.0, 0.5):
        want = nc.colorize(cam, model=plain, **CPU, reference=reference, saturation=saturation).rgb
        got = nc.colorize(cam, model=calibrated, **CPU, reference=reference, saturation=saturation).rgb
        np.testing.assert_allclose(got, want, atol=1e-6)
    # Without a reference both stored settings apply.
    unguided = nc.colorize(cam, model=calibrated, **CPU).rgb
    assert not np.allclose(unguided, nc.colorize(cam, model=plain, **CPU).rgb, atol=1e-3)


# --- 10. the reference prior -----------------------------------------------------------------------------------------

def test_zero_strength_is_no_reference(make_model, cam, reference):
    model = make_model()
    for extra in ({}, {"hints": _hints([[30, 30]], [ORANGE])}):
        without = nc.colorize(cam, model=model, **CPU, **extra)
        zero = nc.colorize(cam, model=model, **CPU, reference=reference, reference_strength=0, **extra)
        for name in ("rgb", "chroma_confidence", "hue_entropy"):
            np.testing.assert_array_equal(getattr(zero, name), getattr(without, name))
    full = nc.colorize(cam, model=model, **CPU, reference=reference).rgb
    assert _ab_delta(full, nc.colorize(cam, model=model, **CPU).rgb).mean() > 1.0


def test_a_reference_draws_colours_towards_its_own(make_model, cam):
    # A green reference moves a* down, a blue one b* down (against the unguided result).
    model = make_model()
    rng = np.random.default_rng(2)
    ramp = rng.random((64, 64, 1))
    green = np.concatenate([0.2 * ramp, 0.3 + 0.6 * ramp, 0.15 * ramp], -1)
    blue = np.concatenate([0.15 * ramp, 0.25 * ramp, 0.3 + 0.6 * ramp], -1)
    plain = _lab(nc.colorize(cam, model=model, **CPU).rgb)
    to_green = _lab(nc.colorize(cam, model=model, **CPU, reference=green).rgb)
    to_blue = _lab(nc.colorize(cam, model=model, **CPU, reference=blue).rgb)
    assert to_green[..., 1].mean() < plain[..., 1].mean() - 5
    assert to_blue[..., 2].mean() < plain[..., 2].mean() - 5


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_fit_log_prior_matches_the_target_band_by_band():
    rng = np.random.default_rng(0)
    bands = 8
    heads = {"a": 7, "b": 12}
    b, h, w = 3, 10, 9
    probs = {k: _softmax(rng.normal(0, 1, (b, n, h, w)), 1) for k, n in heads.items()}
    # Gray in the lower five bands only: bands 5-7 have no cells.
    cells = rng.uniform(0, 5 / bands - 1e-6, (b, h, w))
    target = {k: _softmax(rng.normal(0, 0.8, (bands, n)), 1) for k, n in heads.items()}
    prior = fit_log_prior({k: torch.from_numpy(p) for k, p in probs.items()}, torch.from_numpy(cells), target)
    band = np.minimum((cells * bands).astype(int), bands - 1).reshape(-1)
    for k, n in heads.items():
        phi = prior[k]
        assert phi.shape == (bands, n) and phi.dtype == np.float32
        np.testing.assert_allclose(phi.mean(1), 0, atol=1e-5)
        flat = np.log(np.moveaxis(probs[k], 1, -1).reshape(-1, n))
        for j in range(bands):
            members = flat[band == j] if j < 5 else flat  # an empty band is fitted on the whole overview
            assert len(members) > 0
            mean = _softmax(members + phi[j], 1).mean(0)
            np.testing.assert_allclose(mean, target[k][j], atol=1e-3)
        # The prior is not trivial: the overview's own mean differs from the target.
        assert np.abs(_softmax(flat, 1).mean(0) - target[k][0]).max() > 0.02


def test_band_weights_interpolate_between_band_centres():
    table = np.log(np.arange(1, 8 * 3 + 1, dtype=np.float32)).reshape(8, 3)  # weights row b = (3b+1, 3b+2, 3b+3)
    weights = np.exp(table)
    gray = torch.tensor([[0.5 / 8, 2.5 / 8, 3.0 / 8, 0.0, 1.0]])
    out = band_weights(table, gray)[:, 0].numpy()  # (K, 5), up to a factor per cell
    out = out / out.sum(0)
    for cell, expected in enumerate([weights[0], weights[2], (weights[2] + weights[3]) / 2,
                                     weights[0],  # below the first centre: the first band
                                     weights[7]]):
        np.testing.assert_allclose(out[:, cell], expected / expected.sum(), rtol=1e-5)


def test_band_weights_stay_finite_for_a_strong_reference():
    # Strength 20 on log weights clipped to +-8: up to +-160, beyond float32's exp (88.7).
    rng = np.random.default_rng(0)
    table = (20 * rng.uniform(-8, 8, (8, 5))).astype(np.float32)
    table[3] += 200  # a band peaking far above its neighbours (unused by cells at the centre below it)
    gray = torch.tensor([[0.5 / 8, 2.5 / 8, 2.7 / 8, 0.0, 1.0, 5.1 / 8]])
    out = band_weights(table, gray)[:, 0].double().numpy()
    assert np.isfinite(out).all() and (out.max(0) > 0.1).all()
    # Reference in float64: the interpolated weights, normalised per cell.
    pos = np.clip(gray[0].numpy().astype(np.float64) * 8 - 0.5, 0, 7)
    lo = np.floor(pos).astype(int)
    hi, frac = np.minimum(lo + 1, 7), pos - lo
    w = np.exp(table.astype(np.float64) - table.max())
    ref = (1 - frac) * w[lo].T + frac * w[hi].T
    np.testing.assert_allclose(out / out.sum(0), ref / ref.sum(0), rtol=1e-4, atol=1e-12)


def test_reference_histograms_follow_the_reference(make_model):
    space = make_model("compact", "lab").space
    red = np.tile(np.array([[0.8, 0.2, 0.2]], np.float32), (500, 1))  # gray 0.4: band 3
    hist = reference_histograms([red], space)
    for head, table in hist.items():
        assert table.shape == (8, space.heads[head])
        np.testing.assert_allclose(table.sum(1), 1, atol=1e-6)
        soft = space.soft_targets(torch.from_numpy(red[:1]))[head][0].numpy()
        # The band of its gray holds (nearly) only that colour's soft histogram; all bands peak there.
        np.testing.assert_allclose(table[3], 0.99 * soft + 0.01 / len(soft), atol=1e-5)
        assert (table.argmax(1) == soft.argmax()).all()


def test_hint_field_token_changes_with_the_hint(make_model, cam):
    model = make_model()
    a = _plain_guidance(cam, model, hints=_hints([[30, 30]], [ORANGE]))
    b = _plain_guidance(cam, model, hints=_hints([[30, 30]], [ORANGE]))
    c = _plain_guidance(cam, model, hints=_hints([[30, 30]], [[0.2, 0.5, 0.9]]))
    d = _plain_guidance(cam, model, hints=_hints([[31, 60]], [ORANGE]))
    assert a.token == b.token and len({a.token, c.token, d.token}) == 3
    assert isinstance(a.hints[0], HintField)


def test_the_guidance_is_one_graph_node_that_every_batch_task_shares(make_model):
    """A cluster ships the hint fields once per worker, not inside each of the many batch tasks."""
    from napari_colorize.engine.jobs import TileOptions
    from napari_colorize.engine.pipeline import colorize_stacked

    gray = np.random.default_rng(0).random((2, 200, 200), dtype=np.float32)
    stacked, _, _ = colorize_stacked(gray, make_model(), **CPU, tile_size=128, overlap=32,
                                     hints=_hints([[0, 20, 20], [1, 150, 150]], [ORANGE, ORANGE]))
    tasks = dict(stacked.dask)
    nodes = [key for key, value in tasks.items() if isinstance(value, TileOptions)]
    batches = [task for key, task in tasks.items() if isinstance(key, tuple) and str(key[0]).startswith(graph.BATCH_PREFIX)]
    assert len(nodes) == 1 and tasks[nodes[0]].guidance is not None and len(batches) >= 8
    assert all(nodes[0] in task and not any(isinstance(arg, TileOptions) for arg in task) for task in batches)


@pytest.mark.parametrize("hints, hint_planes, message", [
    (([50, 50], [[0.2, 0.4, 0.9]]), "own", r"one row per point; one point is \[\[50.0, 50.0\]\]"),
    (([[60, 60]], [[0.2, 0.4, 0.9]]), "own", "or, with hint_planes='all'"),
    (([[2.7, 60, 60]], [[0.2, 0.4, 0.9]]), "own", r"give points as \(plane, row, column\)"),
])
def test_hint_mistakes_on_a_stack_say_what_to_change(hints, hint_planes, message):
    """A single point given flat was called "no points"; a point beyond the last plane was told
    that axis-0 is the row; 2-D points on a stack were not pointed to hint_planes='all'."""
    from napari_colorize.guidance.hints import check_hints

    with pytest.raises(ValueError, match=message):
        check_hints(hints, (3, 128, 128), hint_planes)


def test_tuning_options_without_their_guidance_are_said_to_have_no_effect(make_model):
    from napari_colorize import colorize

    gray = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    with pytest.warns(UserWarning, match=r"reference_strength= without reference= and hint_range=/hint_planes= "
                                         r"without hints= have no effect") as caught:
        colorize(gray, make_model(), device="cpu", reference_strength=0.5, hint_range=10.0)
    assert caught[0].filename == __file__  # points at the caller's line


def test_a_very_strong_reference_gives_finite_colour_that_keeps_the_gray(cam):
    # Strength 20 overflowed exp to inf and the whole result to NaN (saved as black).
    gray = cam[:96, :128]
    reference = data.astronaut()[::8, ::8]
    for strength in (20, 1e4):
        rgb = np.asarray(nc.colorize(gray, reference=reference, reference_strength=strength, device="cpu").rgb)
        assert np.isfinite(rgb).all()
        np.testing.assert_allclose(rgb_to_gray(rgb), gray, atol=1e-5)
