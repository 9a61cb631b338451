"""Whole-part logical edits (remove_part, move, swap, resize, recolour, replace_part): honest masks, both
places labelled, the other image's colour, the drawn stretch factor, the carrier fill, and no generator call."""

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth.datasets.images import resize_rgb
from synth.datasets.toybox import categories
from synth.datasets.toybox_truth import part_masks
from synth.edit.compose import default_sizes, feather_support
from synth.edit.edits import Edit
from synth.edit.fill import fill_hole
from synth.edit.geometry import bbox_of
from synth.edit.parts import PARTS, carriers, main_axis, matching_part, paint_part, stretch_matrix
from synth.edit.strategies import KIND_OF, PAINTED, STRATEGIES, plan_edit
from synth.features.edges import get_extractor
from synth.pipeline import SourceFeatures, SynthConfig, make_samples, needs_render, plan_sample

SIZE = 128


def _check_honest(normal, region, result):
    """Every changed pixel lies within the feather of the mask, the mask within the planned region, and
    beyond the feather the anomaly is the normal image bit for bit."""
    feather = default_sizes(normal.shape[:2])["feather"]
    assert result.anomaly.dtype == np.uint8 and result.mask.dtype == bool
    assert not (result.mask & ~region).any()
    outside = ~feather_support(result.mask, feather)
    assert np.array_equal(result.anomaly[outside], normal[outside])


def _scene(seed: int, colours=((200, 40, 40), (40, 60, 210)), shapes=None) -> tuple[np.ndarray, np.ndarray]:
    """A textured grey carrier on a dark background with two filled parts: (image uint8, labels uint16)."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), 20, np.uint8)
    carrier = np.clip(120 + rng.normal(0, 6, (SIZE - 16, SIZE - 16, 1)), 0, 255).astype(np.uint8)
    img[8:-8, 8:-8] = carrier
    labels = np.zeros((SIZE, SIZE), np.uint16)
    shapes = shapes or [((40, 40), (26, 8), 30.0), ((86, 84), (14, 14), 0.0)]
    for k, ((cx, cy), (w, h), angle) in enumerate(shapes, start=1):
        box = cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.int32)
        cv2.fillPoly(labels, [box], k)
        img[labels == k] = colours[k - 1]
    return img, labels


def _features(img, labels, fg=None):
    edge = get_extractor("classic")(img)
    fg = (img.mean(axis=2) > 60) if fg is None else fg
    return SourceFeatures(img, None, edge.astype(np.float32), fg, labels)


def _plan(strategy, src, other, seed):
    return plan_edit(strategy, src.edge, src.foreground, src.regions, other.edge, np.random.default_rng(seed),
                     other_regions=other.regions)


def test_registered_as_painted_logical_strategies():
    for s in PARTS:
        assert s in STRATEGIES and s in PAINTED and KIND_OF[s] == "logical"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(PARTS), seed=st.integers(0, 10_000), scene=st.integers(0, 50))
def test_synthetic_scene_masks_are_honest(strategy, seed, scene):
    img, labels = _scene(scene)
    other_img, other_labels = _scene(scene + 1, colours=((40, 200, 60), (230, 200, 40)))
    src, other = _features(img, labels), _features(other_img, other_labels)
    edit = _plan(strategy, src, other, seed)
    assert edit is not None, strategy
    json.dumps(edit.params)
    result = paint_part(img, labels, src.foreground, edit, (other_img, other_labels))
    assert result.reason is None
    _check_honest(img, edit.region, result)
    gone = [edit.params["label"]] + ([edit.params["other_label"]] if strategy == "swap" else [])
    if strategy != "recolour":
        assert result.mask[np.isin(labels, gone)].mean() > 0.95      # where the part(s) were is labelled
    if strategy in ("move", "swap", "replace_part"):                 # ... and where they are now
        for key, label in (("matrix", "label"), ("other_matrix", "other_label")):
            if key in edit.params:
                owner, pixels = (other_labels, other_img) if strategy == "replace_part" else (labels, img)
                label = edit.params["other_label" if strategy == "replace_part" else label]
                m = np.asarray(edit.params[key])
                now = cv2.warpAffine((owner == label).astype(np.float32), m, (SIZE, SIZE)) > 0.5
                assert now.any() and result.mask[now].mean() > 0.95
                colour = pixels[owner == label].mean(axis=0)
                assert np.abs(result.anomaly[now].mean(axis=0) - colour).max() < 25   # the part really is there


def test_removed_part_leaves_carrier():
    img, labels = _scene(3)
    src = _features(img, labels)
    for seed in range(4):
        edit = _plan("remove_part", src, src, seed)
        part = labels == edit.params["label"]
        result = paint_part(img, labels, src.foreground, edit)
        carrier = img[(labels == 0) & src.foreground].astype(np.float32)
        filled = result.anomaly[part].astype(np.float32)
        assert np.abs(filled.mean(axis=0) - carrier.mean(axis=0)).max() < 8   # the carrier's colour ...
        assert abs(filled.std() - carrier.std()) < 4                           # ... and its texture


def _label_on_liquid(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bottle-like scene: a green liquid part (1) carrying a small red label (2), over a grey glass carrier."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE, 3), 20, np.uint8)
    img[8:-8, 30:-30] = np.clip(150 + rng.normal(0, 4, (SIZE - 16, SIZE - 60, 1)), 0, 255).astype(np.uint8)
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[30:-12, 34:-34] = 1
    labels[50:66, 52:76] = 2
    img[labels == 1] = np.clip(np.array([40, 170, 60]) + rng.normal(0, 4, ((labels == 1).sum(), 1)), 0, 255)
    img[labels == 2] = (210, 30, 30)
    return img, labels


@pytest.mark.parametrize("strategy", ["move", "remove_part", "swap"])
def test_a_part_printed_on_another_moves_on_it_and_leaves_its_colour(strategy):
    img, labels = _label_on_liquid(0)
    if strategy == "swap":                       # a second label on the liquid, lower down
        labels[84:100, 50:74] = 3
        img[labels == 3] = (230, 230, 240)
    src = _features(img, labels)
    assert carriers(labels, (2,), 2) == (1,) and carriers(labels, (1,), 2) == ()
    edit = next(e for seed in range(40) if (e := _plan(strategy, src, src, seed)) is not None
                and e.params["label"] in (2, 3))
    result = paint_part(img, labels, src.foreground, edit)
    _check_honest(img, edit.region, result)
    assert result.reason is None
    label = edit.params["label"]
    old = labels == label
    assert result.mask[old].mean() > 0.9                                  # where it was is labelled
    if strategy == "move":                      # it lies elsewhere, on the liquid: the red pixels moved
        red = (result.anomaly[..., 0] > 180) & (result.anomaly[..., 1] < 80)
        assert red.sum() > 0.8 * old.sum() and (red & ~old).sum() > 0.3 * old.sum()
        assert (labels[red & ~old] == 1).mean() > 0.9 and result.mask[red].mean() > 0.9
    if strategy == "remove_part":               # the hole takes the liquid's green, not the glass's grey
        liquid = img[labels == 1].astype(np.float32).mean(axis=0)
        assert np.abs(result.anomaly[old].astype(np.float32).mean(axis=0) - liquid).max() < 12
    if strategy == "swap":
        other = labels == edit.params["other_label"]
        assert result.mask[other].mean() > 0.9


def test_recolour_takes_the_other_images_part_colour():
    img, labels = _scene(5)                                   # part 1 red, part 2 blue
    other_img, other_labels = _scene(6, colours=((40, 200, 60), (230, 200, 40)))   # green, yellow
    src, other = _features(img, labels), _features(other_img, other_labels)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_other = cv2.cvtColor(other_img, cv2.COLOR_RGB2LAB).astype(np.float32)
    for seed in range(6):
        edit = _plan("recolour", src, other, seed)
        k, q = edit.params["label"], edit.params["other_label"]
        assert q == k                                         # same layout: the same part is matched
        result = paint_part(img, labels, src.foreground, edit, (other_img, other_labels))
        got = cv2.cvtColor(result.anomaly, cv2.COLOR_RGB2LAB).astype(np.float32)[labels == k][:, 1:].mean(axis=0)
        want = lab_other[other_labels == q][:, 1:].mean(axis=0)
        was = lab[labels == k][:, 1:].mean(axis=0)
        assert np.linalg.norm(got - want) < 4 < np.linalg.norm(got - was) / 5
        assert result.mask[labels == k].all()


def test_matching_part_follows_shape_when_places_differ():
    _, labels = _scene(0, shapes=[((40, 40), (30, 8), 30.0), ((86, 84), (14, 14), 0.0)])
    _, other = _scene(0, shapes=[((90, 30), (12, 12), 0.0), ((30, 90), (28, 8), -60.0)])
    assert matching_part(labels, 1, other) == 2 and matching_part(labels, 2, other) == 1


@settings(max_examples=30, deadline=None)
@given(length=st.integers(20, 40), width=st.integers(5, 10), angle=st.floats(0, 180),
       factor=st.sampled_from([0.6, 0.75, 0.85, 1.2, 1.35, 1.5]), end=st.integers(0, 2))
def test_resize_changes_the_extent_along_the_main_axis_by_the_factor(length, width, angle, factor, end):
    img, labels = _scene(0, shapes=[((64, 64), (length, width), angle), ((20, 20), (4, 4), 0.0)])
    part = labels == 1
    centre, axis, proj = main_axis(part)
    anchor = centre + axis * (proj.min(), 0.0, proj.max())[end]
    m = stretch_matrix(axis, anchor, factor)
    region = np.ones_like(part)
    edit = Edit(np.zeros(part.shape, np.float32), region, "logical", "resize", bbox_of(region),
                {"label": 1, "factor": factor, "matrix": m.tolist()})
    result = paint_part(img, labels, img.mean(axis=2) > 60, edit)
    red = (result.anomaly[..., 0] > 150) & (result.anomaly[..., 1] < 100)
    ys, xs = np.nonzero(red)
    along = (np.stack([xs, ys], axis=1) - centre) @ axis
    before, after = np.ptp(proj) + 1, np.ptp(along) + 1
    assert abs(after / before - factor) < 0.08 + 2.0 / before
    if end != 1:                                               # the anchored end stays where it was
        fixed = (proj.min(), None, proj.max())[end]
        assert abs((along.min() if end == 0 else along.max()) - fixed) <= 1.5


@pytest.fixture(scope="module")
def toybox_sources():
    """Three train images of toybox tray and bag at SIZE, with the drawing's own part masks as regions."""
    out = {}
    for category in ("tray", "bag"):
        module = categories()[category]
        items = []
        for i in range(3):
            img = resize_rgb(module.render(module.scene_for(0, "train", i)), SIZE)
            labels = part_masks(category, "train", i, size=SIZE)
            items.append(_features(img, labels, fg=img.mean(axis=2) > 0))
        out[category] = items
    return out


@pytest.mark.parametrize("category", ["tray", "bag"])
@pytest.mark.parametrize("strategy", PARTS)
def test_toybox_part_edits_are_honest_and_label_both_places(toybox_sources, category, strategy):
    sources = toybox_sources[category]
    accepted = 0
    for seed in range(4):
        src, other = sources[seed % 3], sources[(seed + 1) % 3]
        edit = _plan(strategy, src, other, seed)
        assert edit is not None and edit.strategy == strategy
        result = paint_part(src.image, src.regions, src.foreground, edit, (other.image, other.regions))
        _check_honest(src.image, edit.region, result)
        if result.reason is not None:
            continue
        accepted += 1
        if strategy in ("remove_part", "move", "swap"):
            gone = np.isin(src.regions, [edit.params["label"], edit.params.get("other_label", -1)])
            assert result.mask[gone].mean() > 0.95
        if strategy == "replace_part":
            assert result.mask[src.regions == edit.params["label"]].mean() > 0.95
        if strategy in ("move", "swap", "replace_part"):
            owner = other.regions if strategy == "replace_part" else src.regions
            label = edit.params["other_label" if strategy == "replace_part" else "label"]
            m = np.asarray(edit.params["matrix"])
            now = cv2.warpAffine((owner == label).astype(np.float32), m, (SIZE, SIZE)) > 0.5
            assert result.mask[now].mean() > 0.95
    assert accepted >= (1 if strategy == "recolour" else 3)   # normal toybox colours vary little


def test_pipeline_paints_part_edits_without_a_generator(toybox_sources):
    sources = toybox_sources["bag"]
    kinds = tuple((s, KIND_OF[s]) for s in STRATEGIES)
    config = SynthConfig(strategies=PARTS, strategy_kinds=kinds, mix=(("logical", 1.0),))
    assert not any(needs_render(plan_sample(sources, i, 0, "bag", config)) for i in range(10))
    first = list(make_samples(sources, range(6), 0, "bag", config, None, Counter()))
    again = list(make_samples(sources, range(6), 0, "bag", config, None, Counter()))
    for (p, a), (q, b) in zip(first, again, strict=True):
        assert p.strategy == q.strategy and np.array_equal(a.anomaly, b.anomaly) and np.array_equal(a.mask, b.mask)
        if p.strategy != "perlin":
            _check_honest(sources[p.source].image, p.edit.region, a)
    assert len({p.strategy for p, _ in first}) >= 3


def test_fill_hole_copies_texture_and_changes_only_the_hole():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    stripes = (100 + 40 * (np.sin(xx / 3.0) > 0) + rng.normal(0, 3, (SIZE, SIZE))).astype(np.float32)
    img = np.clip(np.dstack([stripes] * 3), 0, 255).astype(np.uint8)
    hole = (xx - 60) ** 2 + (yy - 64) ** 2 < 15 ** 2
    out = fill_hole(img, hole, np.ones_like(hole))
    assert np.array_equal(out[~hole], img[~hole].astype(np.float32))
    # the stripes continue through the hole (a blur would average them to ~120 everywhere)
    assert np.abs(out[hole] - img[hole]).mean() < 8 and out[hole][:, 0].std() > 15


def test_show_all_draws_one_row_per_strategy(toybox_root, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from synth.cli import cli
    from synth.datasets.images import load_rgb

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "all.png"
    n = len(STRATEGIES)
    result = CliRunner().invoke(cli, ["show", "--dataset", "toybox", "--root", str(toybox_root), "--category",
                                      "bag", "--n", str(n), "--size", "64", "--out", str(out),
                                      "--strategies", "all"])
    assert result.exit_code == 0, result.output
    assert f"({n} samples" in result.output and "fell back to perlin" in result.output
    band = 14
    assert load_rgb(out).shape[0] == (band + 6) + band + n * (64 + band + 2)
