"""Compose: the mask is where the render changed inside the dilated region; pixels change only near it."""

import warnings

import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.edit.compose import collapsed, compose, default_sizes, feather_support, flatten
from synth.edit.damage import DAMAGE, paint_damage
from synth.edit.edits import apply_colour
from synth.edit.geometry import dilate
from synth.edit.parts import PARTS
from synth.edit.strategies import STRATEGIES, plan_edit
from synth.features.edges import get_extractor
from synth.features.jnd import jnd_map
from synth.features.regions import foreground_mask, semantic_regions
from synth.render.standin import StandInRenderer


@pytest.fixture(scope="module")
def nut(hazelnut_root):
    out = []
    for path in list_images(hazelnut_root / "hazelnut" / "train" / "good")[:2]:
        rgb = resize_rgb(load_rgb(path), 256)
        jnd, edge = jnd_map(rgb), get_extractor("classic")(rgb)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fg = foreground_mask(rgb, jnd)
        out.append({"rgb": rgb, "edge": edge, "fg": fg, "regions": semantic_regions(rgb, edge, fg, jnd)})
    return out


def _check_honest(normal, region, result):
    sizes = default_sizes(normal.shape[:2])
    changed = (result.anomaly != normal).any(axis=2)
    assert result.anomaly.dtype == np.uint8 and result.mask.dtype == bool
    assert not (changed & ~feather_support(result.mask, sizes["feather"])).any()
    assert not (result.mask & ~dilate(region, sizes["dilate"])).any()
    outside = ~feather_support(result.mask, sizes["feather"])
    assert np.array_equal(result.anomaly[outside], normal[outside])  # bit for bit beyond the feather


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s not in PARTS])  # parts: tests/test_parts.py
def test_every_changed_pixel_is_labelled_or_in_the_feather(nut, strategy):
    renderer = StandInRenderer()
    src, other = nut
    render_n = renderer.render(src["edge"][None], src["rgb"][None])[0]
    accepted = 0
    for seed in range(3):
        edit = plan_edit(strategy, src["edge"], src["fg"], src["regions"], other["edge"],
                         np.random.default_rng(seed), other_regions=other["regions"])
        assert edit is not None
        if strategy in DAMAGE:  # painted on the normal pixels (synth.edit.damage), as the pipeline does
            result = paint_damage(src["rgb"], edit)
        else:
            if strategy == "colour":
                render_a, reference = apply_colour(src["rgb"], edit.region, edit.params), src["rgb"]
            else:
                render_a, reference = renderer.render(edit.edge[None], src["rgb"][None])[0], render_n
            result = compose(src["rgb"], render_a, reference, edit.region)
        _check_honest(src["rgb"], edit.region, result)
        if result.reason is None:
            accepted += 1
            assert result.mask.any() and (result.anomaly != src["rgb"]).any()
    assert accepted >= 2


def test_synthetic_square_is_found_and_pasted():
    rng = np.random.default_rng(0)
    normal = rng.integers(60, 200, (96, 96, 3)).astype(np.uint8)
    render_n = normal.copy()
    render_a = normal.copy()
    render_a[40:56, 40:56] = 250
    region = np.zeros((96, 96), bool)
    region[36:60, 36:60] = True
    result = compose(normal, render_a, render_n, region, feather=2)
    assert result.reason is None
    assert result.mask[42:54, 42:54].all()
    assert np.array_equal(result.anomaly[44:52, 44:52], render_a[44:52, 44:52])
    changed = (result.anomaly != normal).any(axis=2)
    assert not (changed & ~feather_support(result.mask, 2)).any()


def test_generator_tint_is_corrected_and_the_edit_kept():
    """A generator that renders everything 30 levels too bright: the pasted edit keeps its content (+100 over
    the render of the unedited edges) but not the tint, so the patch sits on the normal image's colours."""
    normal = np.full((96, 96, 3), 90, np.uint8)
    render_n = normal + 30
    render_a = render_n.copy()
    render_a[36:60, 36:60] += 100
    region = np.zeros((96, 96), bool)
    region[30:66, 30:66] = True
    tinted = compose(normal, render_a, render_n, region, feather=2, bias=0)
    fixed = compose(normal, render_a, render_n, region, feather=2)
    assert tinted.reason is None and fixed.reason is None
    assert np.array_equal(fixed.mask, tinted.mask)                       # the label does not depend on it
    assert int(tinted.anomaly[48, 48, 0]) == 220                         # as rendered: tint included
    assert int(fixed.anomaly[48, 48, 0]) == 190                          # normal 90 + the edit's 100
    assert abs(int(fixed.anomaly[37, 48, 0]) - 190) <= 2
    _check_honest(normal, region, fixed)


def test_flatten_smooths_texture_only_away_from_edges():
    """Speckle where the edge map has no edge is smoothed away; what is drawn near an edge is kept."""
    rng = np.random.default_rng(0)
    render = np.clip(100 + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    edge = np.zeros((64, 64), np.float32)
    edge[:, 10] = 1.0
    out = flatten(render, edge, sigma=2.0)
    assert out.dtype == np.float32
    assert np.array_equal(out[:, 8:13], render[:, 8:13].astype(np.float32))   # within 2 sigma: as drawn
    assert out[:, 30:].std() < 0.25 * render[:, 30:].std()                    # far from edges: smooth
    assert abs(out[:, 30:].mean() - render[:, 30:].mean()) < 2.0              # same colour
    assert np.array_equal(flatten(render, edge, sigma=0), render.astype(np.float32))


def test_identical_render_and_empty_region_are_rejected_with_their_reason(nut):
    src = nut[0]
    region = dilate(src["fg"], 0) & (np.arange(256)[:, None] < 128)
    render = StandInRenderer().render(src["edge"][None], src["rgb"][None])[0]
    result = compose(src["rgb"], render, render.copy(), region)
    assert result.reason == "empty_mask" and not result.mask.any()
    assert np.array_equal(result.anomaly, src["rgb"])
    assert compose(src["rgb"], render, render, np.zeros_like(region)).reason == "no_region"


def test_collapsed_render_detection(nut):
    src = nut[0]
    gate = {"ssim_mean": 0.8, "ssim_std": 0.03, "ssim_p05": 0.75}
    good = src["rgb"].copy()
    noise = np.random.default_rng(0).integers(0, 255, good.shape).astype(np.uint8)
    assert not collapsed(good, src["rgb"], gate)
    assert collapsed(noise, src["rgb"], gate)
    assert collapsed(noise, src["rgb"], {"mean": 0.8, "std": 0.03})
    assert not collapsed(noise, src["rgb"], {})
    region = src["fg"].copy()
    assert compose(src["rgb"], noise, good, region, quality=gate).reason == "collapsed_render"
