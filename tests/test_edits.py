"""Edge-map edits on a toybox image and a hazelnut photo: locality, removal, determinism, scale rule."""

import json
import warnings

import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.edit.damage import DAMAGE
from synth.edit.edits import apply_colour
from synth.edit.geometry import bbox_of, dilate
from synth.edit.strategies import KIND_OF, STRATEGIES, plan_edit
from synth.features.edges import get_extractor
from synth.features.jnd import jnd_map
from synth.features.regions import ScaleRule, foreground_mask, semantic_regions

PAD = 3  # plan_edit's region padding at 256 px


def _features(path):
    rgb = resize_rgb(load_rgb(path), 256)
    jnd = jnd_map(rgb)
    edge = get_extractor("classic")(rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fg = foreground_mask(rgb, jnd)
    return {"rgb": rgb, "edge": edge, "fg": fg, "regions": semantic_regions(rgb, edge, fg, jnd)}


@pytest.fixture(scope="module")
def tray(toybox_root):
    paths = list_images(toybox_root / "tray" / "train" / "good")
    return _features(paths[0]), _features(paths[1])


@pytest.fixture(scope="module")
def nut(hazelnut_root):
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")
    return _features(paths[0]), _features(paths[1])


def _plan(pair, strategy, seed):
    a, b = pair
    return plan_edit(strategy, a["edge"], a["fg"], a["regions"], b["edge"], np.random.default_rng(seed),
                     other_regions=b["regions"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_edits_change_edges_only_inside_the_region_on_the_object(tray, strategy):
    src = tray[0]
    for seed in range(3):
        edit = _plan(tray, strategy, seed)
        assert edit is not None, f"{strategy} seed {seed}: no edit"
        assert edit.kind == KIND_OF[strategy] and edit.strategy == strategy
        assert edit.edge.dtype == np.float32 and 0.0 <= edit.edge.min() and edit.edge.max() <= 1.0
        assert np.array_equal(edit.edge[~edit.region], src["edge"][~edit.region])
        assert not (edit.region & ~dilate(src["fg"], PAD)).any()  # on the object (allowing the padding)
        assert edit.bbox == bbox_of(edit.region)
        json.dumps(edit.params)
        if strategy not in ("colour", "recolour"):  # (those change colours, not edges)
            assert np.abs(edit.edge - src["edge"]).sum() > 5.0  # it really changed something


def test_remove_erases_the_component(tray, nut):
    for pair in (tray, nut):
        for seed in range(4):
            edit = _plan(pair, "remove", seed)
            assert pair[0]["edge"][edit.region].sum() > 0
            assert edit.edge[edit.region].sum() == 0.0
            assert np.array_equal(edit.edge[~edit.region], pair[0]["edge"][~edit.region])


def test_replace_brings_a_whole_part_of_the_other_image(tray):
    edit = _plan(tray, "replace", 1)
    assert edit.params["region"] in ("semantic", "arbitrary")
    assert edit.edge[edit.region].sum() > 5.0


def test_same_seed_same_edit_different_seed_differs(tray):
    for strategy in STRATEGIES:
        a, b, c = _plan(tray, strategy, 7), _plan(tray, strategy, 7), _plan(tray, strategy, 8)
        assert np.array_equal(a.edge, b.edge) and np.array_equal(a.region, b.region) and a.params == b.params
        assert not (np.array_equal(a.region, c.region) and a.params == c.params)


def test_scale_rule_is_respected_over_many_draws(tray, nut):
    rule = ScaleRule()
    for pair in (tray, nut):
        src = pair[0]
        for seed in range(12):
            strategy = STRATEGIES[seed % len(STRATEGIES)]
            edit = _plan(pair, strategy, 100 + seed)
            if edit is None:
                continue
            area, touched = rule.measure(edit.region, src["fg"], src["edge"])
            low = 0.0 if strategy in DAMAGE else rule.min_area  # painted damage may be small (no generator)
            assert low <= area <= rule.max_area and touched <= rule.max_edges


def test_impossible_rule_gives_none_and_bad_strategy_raises(tray):
    src, other = tray
    rng = np.random.default_rng(0)
    never = ScaleRule(min_area=0.9, max_area=1.0, max_edges=1.0)
    assert plan_edit("remove", src["edge"], src["fg"], src["regions"], other["edge"], rng, rule=never) is None
    empty = np.zeros_like(src["fg"])
    assert plan_edit("stroke", src["edge"], empty, src["regions"], other["edge"], rng) is None
    with pytest.raises(ValueError, match="unknown strategy"):
        plan_edit("explode", src["edge"], src["fg"], src["regions"], other["edge"], rng)


def test_colour_edit_changes_pixels_only_inside_its_region(tray):
    edit = _plan(tray, "colour", 2)
    rgb = tray[0]["rgb"]
    out = apply_colour(rgb, edit.region, edit.params)
    changed = (out != rgb).any(axis=2)
    assert changed.any() and not (changed & ~edit.region).any()
