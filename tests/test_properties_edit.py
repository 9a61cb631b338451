"""Property tests (issue 20): every planner, compose, the painted damage, the colour edit, Perlin and the
region/foreground features on random scenes (tests/scenes.py) never raise; a rejection is None or a reason;
regions lie inside the image; edge maps stay in [0, 1]; and every accepted sample keeps the honest-mask
contract: pixels change only inside the feathered mask, bit for bit the normal image beyond it.

Examples per test: the hypothesis profile (tests/conftest.py; LOGICAL_HYPOTHESIS_EXAMPLES for a long run).
"""

import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scenes import scene_sets, scenes

from synth.edit.compose import REASONS, compose, default_sizes, feather_support
from synth.edit.damage import DAMAGE, _behind_shift, paint_damage
from synth.edit.edits import Edit, apply_colour
from synth.edit.geometry import bbox_of, dilate
from synth.edit.perlin import perlin_anomaly
from synth.edit.strategies import KIND_OF, STRATEGIES, plan_edit
from synth.features.jnd import jnd_map
from synth.features.regions import foreground_with_reason, semantic_regions
from synth.pipeline import SourceFeatures, SynthConfig, make_samples
from synth.render.standin import StandInRenderer

SEEDS = st.integers(0, 2**32 - 1)


def _check_edit(edit: Edit, normal_edge: np.ndarray, strategy: str) -> None:
    h, w = normal_edge.shape
    assert edit.region.shape == (h, w) and edit.region.dtype == bool and edit.region.any()
    assert edit.edge.shape == (h, w) and edit.edge.dtype == np.float32
    assert np.isfinite(edit.edge).all() and edit.edge.min() >= 0.0 and edit.edge.max() <= 1.0
    assert np.array_equal(edit.edge[~edit.region], normal_edge[~edit.region])     # changed only inside
    assert edit.bbox == bbox_of(edit.region)
    x0, y0, x1, y1 = edit.bbox
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert edit.strategy == strategy and edit.kind == KIND_OF[strategy]


def _check_honest(normal: np.ndarray, allowed: np.ndarray, result) -> None:
    """The contract of compose and paint_damage: mask inside `allowed`, changes only within its feather."""
    assert result.anomaly.shape == normal.shape and result.anomaly.dtype == np.uint8
    assert result.mask.shape == normal.shape[:2] and result.mask.dtype == bool
    if result.reason is not None:
        assert result.reason in REASONS and not result.mask.any()
        assert np.array_equal(result.anomaly, normal)
        return
    assert result.mask.any() and not (result.mask & ~allowed).any()
    outside = ~feather_support(result.mask, default_sizes(normal.shape[:2])["feather"])
    assert np.array_equal(result.anomaly[outside], normal[outside])


def _renders(normal: np.ndarray, region: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A generator's R_N (the normal with its own error everywhere) and R_A (the same, plus a change inside
    the region and a little more error outside it): compose must label only what the edit changed."""
    rng = np.random.default_rng(seed)
    error = rng.normal(0, 4, normal.shape)
    render_n = np.clip(normal + error, 0, 255)
    render_a = render_n + rng.normal(0, 1.5, normal.shape)
    render_a[region] = rng.uniform(0, 255, 3)
    return render_n.astype(np.uint8), np.clip(render_a, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(scene=scenes(), other=st.one_of(st.none(), scenes()), seed=SEEDS)
def test_every_planner_and_its_composition_on_random_scenes(strategy, scene, other, seed):
    rng = np.random.default_rng(seed)
    other_edge = other_regions = None
    if other is not None:   # another normal image of the category: same size in a build
        other_edge = np.resize(other.edge, scene.edge.shape)
        other_regions = None if other.regions is None else np.resize(other.regions, scene.edge.shape)
    edit = plan_edit(strategy, scene.edge, scene.foreground, scene.regions, other_edge, rng,
                     other_regions=other_regions)
    if edit is None:
        return
    _check_edit(edit, scene.edge, strategy)
    normal = scene.image
    if strategy in DAMAGE:
        _check_honest(normal, edit.region, paint_damage(normal, edit))
        return
    if strategy == "colour":
        render_a, render_n = apply_colour(normal, edit.region, edit.params), normal
        assert np.array_equal(render_a[~edit.region], normal[~edit.region])
    else:
        render_n, render_a = _renders(normal, edit.region, seed)
    grown = dilate(edit.region, default_sizes(normal.shape[:2])["dilate"])
    _check_honest(normal, grown, compose(normal, render_a, render_n, edit.region,
                                         None if strategy == "colour" else edit.edge))


@given(scene=scenes(), seed=SEEDS, region_seed=SEEDS)
def test_compose_on_any_region_keeps_the_contract(scene, seed, region_seed):
    region = np.random.default_rng(region_seed).random(scene.edge.shape) < 0.02 if seed % 3 else scene.foreground
    render_n, render_a = _renders(scene.image, region, seed)
    grown = dilate(region, default_sizes(region.shape)["dilate"])
    _check_honest(scene.image, grown, compose(scene.image, render_a, render_n, region, scene.edge))


@given(scene=scenes(), seed=SEEDS, texture=st.booleans())
def test_perlin_changes_only_its_mask(scene, seed, texture):
    rng = np.random.default_rng(seed)
    source = np.random.default_rng(seed).integers(0, 256, (37, 53, 3), dtype=np.uint8) if texture else None
    anomaly, mask, params = perlin_anomaly(scene.image, rng, scene.foreground, source)
    assert anomaly.shape == scene.image.shape and anomaly.dtype == np.uint8
    assert mask.shape == scene.edge.shape and mask.dtype == bool
    assert params["empty"] == (not mask.any())
    if scene.foreground.any():
        assert not (mask & ~scene.foreground).any()
    assert np.array_equal(anomaly[~mask], scene.image[~mask])


@given(scene=scenes())
def test_foreground_and_regions_on_random_images(scene):
    h, w = scene.edge.shape
    jnd = jnd_map(scene.image)
    assert jnd.shape == (h, w) and np.isfinite(jnd).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # foreground_with_reason reports, never warns
        fg, reason = foreground_with_reason(scene.image, jnd)
    assert fg.shape == (h, w) and fg.dtype == bool and reason in (None, "empty", "fills_frame")
    assert fg.all() if reason else fg.any()
    for foreground in (fg, scene.foreground):
        labels = semantic_regions(scene.image, scene.edge, foreground, jnd)
        assert labels.shape == (h, w) and labels.dtype == np.uint16
        assert not (labels[~foreground]).any()


@given(sources=scene_sets(), seed=SEEDS, synthesizer=st.sampled_from(("logical", "both")))
def test_whole_samples_on_random_sources(sources, seed, synthesizer):
    """make_samples as a shard task runs it (stand-in renderer): every sample is made, none raises, each
    keeps the contract (a logical sample's changes lie within its mask's feather, a Perlin one's in its mask)."""
    renderer = StandInRenderer()
    prepared = [SourceFeatures(s.image, None, s.edge, s.foreground,
                               s.regions if s.regions is not None else np.zeros(s.edge.shape, np.uint16),
                               renderer.render(s.edge[None], s.image[None])[0]) for s in sources]
    config = SynthConfig(synthesizer, (("logical", 1.0), ("structural", 1.0)), STRATEGIES,
                         tuple(KIND_OF.items()), max_tries=4)
    feather = default_sizes(sources[0].edge.shape)["feather"]
    for plan, out in make_samples(prepared, range(6), seed, "scene", config, renderer.render, Counter()):
        normal = prepared[plan.source].image
        assert out.anomaly.shape == normal.shape and out.mask.shape == normal.shape[:2]
        beyond = ~(out.mask if plan.strategy == "perlin" else feather_support(out.mask, feather))
        assert np.array_equal(out.anomaly[beyond], normal[beyond])


def test_chip_path_leaving_the_image_is_no_shift():
    """Issue 20's crash: a bottle filling the frame top to bottom; the chip's shifted copy stays inside the
    image but the way there from the outline point leaves it (IndexError before the fix)."""
    h = w = 128
    obj = np.zeros((h, w), bool)
    obj[:, 40:89] = True
    chip = np.zeros((h, w), bool)
    chip[100:106, 40:45] = True                    # the jagged bite lies above its outline point
    behind = np.zeros((h, w), bool)                # nothing visible behind on the straight way out
    assert _behind_shift(chip, obj, behind, np.array([40.0, 127.0]), 5.0) is None


@pytest.mark.parametrize("strategy", DAMAGE)
def test_damage_on_an_object_filling_the_frame(strategy):
    """Real geometry of the report: a tall object from the top to the bottom border, at 128 px."""
    h = w = 128
    fg = np.zeros((h, w), bool)
    fg[:, 30:100] = True
    regions = np.zeros((h, w), np.uint16)
    regions[:20, 40:90], regions[108:, 35:95] = 1, 2       # cap and base, touching the borders
    edge = (fg ^ dilate(~fg, 1)).astype(np.float32)
    image = np.full((h, w, 3), 60, np.uint8)
    image[fg] = (30, 140, 60)
    for seed in range(40):
        edit = plan_edit(strategy, edge, fg, regions, None, np.random.default_rng(seed))
        if edit is not None:
            _check_edit(edit, edge, strategy)
            _check_honest(image, edit.region, paint_damage(image, edit))
