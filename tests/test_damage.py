"""Painted damage (cracks, scratches, chips): honest masks, thin dark cracks that keep the texture, chips that
show what lies behind the part, and no generator call anywhere on their path."""

import warnings
from collections import Counter

import cv2
import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.edit.compose import default_sizes, feather_support
from synth.edit.damage import DAMAGE, paint_damage
from synth.edit.edits import Edit
from synth.edit.geometry import bbox_of, dilate
from synth.edit.strategies import plan_edit
from synth.features.edges import get_extractor
from synth.features.jnd import jnd_map, luminance
from synth.features.regions import foreground_mask, semantic_regions
from synth.pipeline import SourceFeatures, SynthConfig, make_samples, needs_render, plan_sample

SIZE = 128


def _features(path):
    rgb = resize_rgb(load_rgb(path), SIZE)
    jnd = jnd_map(rgb)
    edge = get_extractor("classic")(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fg = foreground_mask(rgb, jnd)
    return SourceFeatures(rgb, jnd, edge, fg, semantic_regions(rgb, edge, fg, jnd))


@pytest.fixture(scope="module")
def scenes(toybox_root, hazelnut_root):
    tray = list_images(toybox_root / "tray" / "train" / "good")[:3]
    nut = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:3]
    return {"tray": [_features(p) for p in tray], "nut": [_features(p) for p in nut]}


def _check_honest(normal, region, result):
    feather = default_sizes(normal.shape[:2])["feather"]
    changed = (result.anomaly != normal).any(axis=2)
    assert result.anomaly.dtype == np.uint8 and result.mask.dtype == bool
    assert not (result.mask & ~region).any()                               # labelled only where planned
    outside = ~feather_support(result.mask, feather)
    assert not changed[outside].any()                                      # every change is labelled
    assert np.array_equal(result.anomaly[outside], normal[outside])        # bit for bit beyond the feather


@pytest.mark.parametrize("scene", ["tray", "nut"])
@pytest.mark.parametrize("strategy", DAMAGE)
def test_painted_damage_is_labelled_where_it_changed_pixels(scenes, scene, strategy):
    src, other = scenes[scene][0], scenes[scene][1]
    accepted, styles = 0, Counter()
    for seed in range(8):
        edit = plan_edit(strategy, src.edge, src.foreground, src.regions, other.edge,
                         np.random.default_rng(seed), other_regions=other.regions)
        assert edit is not None and edit.kind == "structural"
        assert np.array_equal(edit.edge[~edit.region], src.edge[~edit.region])
        result = paint_damage(src.image, edit)
        _check_honest(src.image, edit.region, result)
        if result.reason is None:
            accepted += 1
            changed = (result.anomaly != src.image).any(axis=2)
            assert result.mask.sum() >= 4 and changed[result.mask].mean() > 0.8  # (small holes are filled)
        styles[edit.params.get("style", "behind" if edit.params.get("behind") else "pit")] += 1
    assert accepted >= 7
    if strategy == "stroke":
        assert len(styles) >= 2                                    # cracks and scratches both get drawn
    if strategy == "chip" and scene == "tray":
        assert styles["behind"] >= 4                               # most chips bite a part and show the tray


def _texture(shape=(64, 64), seed=0):
    """A mid-grey, finely textured surface (paper-like grain)."""
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 12, shape)
    return np.clip(128 + np.dstack([grain] * 3), 0, 255).astype(np.uint8)


def test_a_crack_is_a_thin_dark_core_with_a_lit_and_a_shaded_rim_on_the_same_texture():
    normal = _texture()
    region = np.zeros((64, 64), bool)
    region[28:37, 8:56] = True
    params = {"style": "crack", "surface": "object", "lines": [[[10.0, 32.0], [54.0, 32.0]]], "light": np.pi / 2,
              "strength": 0.5, "width": 0.8, "tone": 0.5, "noise": 3}
    edit = Edit(np.zeros((64, 64), np.float32), region, "structural", "stroke", bbox_of(region), params)
    result = paint_damage(normal, edit)
    assert result.reason is None
    _check_honest(normal, region, result)
    y0, y1 = luminance(normal), luminance(result.anomaly)
    core, above, below = (y1 - y0)[32, 14:50], (y1 - y0)[30, 14:50], (y1 - y0)[34, 14:50]
    jnd = jnd_map(normal)[32, 14:50]
    assert np.median(core) < -2.5 * np.median(jnd)                     # the core is several JNDs darker
    # a groove lit from +y (below): its upper wall faces the light, the lower one is in its own shadow
    assert np.median(above) > 1.0 and np.median(below) < -1.0
    assert result.mask[32, 14:50].all() and not result.mask[[24, 40]].any()  # a thin label along it
    rows = result.mask[:, 14:50].sum(axis=0)
    assert rows.max() <= 7
    # texture kept: the darkened core still follows the normal's grain
    assert np.corrcoef(y0[32, 14:50], y1[32, 14:50])[0, 1] > 0.6


def test_a_chip_shows_the_carrier_behind_the_part_with_its_texture():
    """A flat orange disc (one part) on a textured grey carrier: the chip's pixels are the carrier's own
    pixels from just outside the part, and the edited edge map draws the new outline."""
    carrier = _texture((96, 96), seed=1)
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 <= 20 ** 2
    normal = carrier.copy()
    normal[disc] = (210, 120, 40)
    regions = disc.astype(np.uint16)
    foreground = np.ones((96, 96), bool)
    edge = (dilate(disc, 1) & ~disc).astype(np.float32)
    found = 0
    for seed in range(10):
        edit = plan_edit("chip", edge, foreground, regions, edge, np.random.default_rng(seed))
        if edit is None or edit.params["surface"] != "part" or edit.params["behind"] is None:
            continue
        result = paint_damage(normal, edit)
        assert result.reason is None
        _check_honest(normal, edit.region, result)
        dx, dy = edit.params["behind"]
        poly = np.zeros((96, 96), np.uint8)
        cv2.fillPoly(poly, [np.round(np.asarray(edit.params["polygon"])).astype(np.int32)], 1)
        ys, xs = np.nonzero(poly.astype(bool) & disc)
        assert result.mask[ys, xs].mean() > 0.9 and not disc[ys + dy, xs + dx].any()  # from outside the part
        shown, behind = result.anomaly[ys, xs].astype(float), normal[ys + dy, xs + dx].astype(float)
        assert (shown <= behind + 1).all() and (shown >= 0.55 * behind - 1).all()   # at most a cast shadow
        assert np.corrcoef(shown[:, 1], behind[:, 1])[0, 1] > 0.6                   # the carrier's own grain
        assert (edit.edge[dilate(result.mask, 1) & disc] == 1.0).any()  # the broken outline is an edge
        found += 1
    assert found >= 3


def test_painted_edits_never_call_the_generator(scenes):
    """stroke and chip samples are made with no renderer at all, deterministically."""
    sources = scenes["tray"]
    config = SynthConfig(strategies=("stroke", "chip"),
                         strategy_kinds=(("stroke", "structural"), ("chip", "structural")))
    for i in range(4):
        assert not needs_render(plan_sample(sources, i, 0, "tray", config))

    def run():
        return list(make_samples(sources, range(6), 0, "tray", config, None, Counter()))

    first, second = run(), run()
    for (plan, out), (_, again) in zip(first, second, strict=True):
        assert plan.strategy in DAMAGE and out.reason is None and out.mask.any()
        assert np.array_equal(out.anomaly, again.anomaly) and np.array_equal(out.mask, again.mask)
