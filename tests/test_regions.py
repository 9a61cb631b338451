"""Foreground, semantic regions, arbitrary regions and the scale rule on real photos and the toybox."""

import warnings

import cv2
import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.features.edges import get_extractor
from synth.features.jnd import jnd_map
from synth.features.regions import (
    ForegroundWarning,
    ScaleRule,
    arbitrary_region,
    fill_holes,
    foreground_mask,
    foreground_with_reason,
    semantic_regions,
)


def _nut_reference(rgb: np.ndarray) -> np.ndarray:
    """The hazelnut's obvious segmentation: pale nut vs yellow paper by chroma (a*, b*) distance, Otsu."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    paper = np.median(np.concatenate([lab[:8].reshape(-1, 3), lab[-8:].reshape(-1, 3)]), axis=0)
    d = cv2.GaussianBlur(np.sqrt(((lab[:, :, 1:] - paper[1:]) ** 2).sum(2)), (0, 0), 1.5)
    q = np.clip(d * 4, 0, 255).astype(np.uint8)
    _, ref = cv2.threshold(q, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ref = cv2.morphologyEx(ref, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ref)
    return fill_holes(labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def test_foreground_is_the_nut_not_the_paper(hazelnut_root):
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:4]
    for path in paths:
        rgb = resize_rgb(load_rgb(path), 256)
        fg, reason = foreground_with_reason(rgb, jnd_map(rgb))
        ref = _nut_reference(rgb)
        assert reason is None
        iou = (fg & ref).sum() / (fg | ref).sum()
        assert iou > 0.8, f"{path.name}: IoU {iou:.2f} with the nut"
        assert not fg[:8].any() and not fg[-8:].any()  # paper at the border stays background


def _toybox_truth(index: int):
    from synth.datasets import toybox_draw, toybox_scene, toybox_tray

    scene = toybox_tray.scene_for(0, "train", index)
    hx, hy = scene.half
    tray = toybox_draw.fill(scene.tray.apply(toybox_draw._rounded_rect(-hx, -hy, hx, hy, 10))) > 0
    parts = [toybox_draw.footprint(toybox_scene.drawing(scene, p)) for p in scene.parts]
    return tray, parts


def test_toybox_tray_is_foreground_floor_is_background(toybox_root):
    paths = list_images(toybox_root / "tray" / "train" / "good")[:3]
    edges = get_extractor("classic")
    found = []
    for i, path in enumerate(paths):
        rgb = load_rgb(path)
        jnd = jnd_map(rgb)
        fg = foreground_mask(rgb, jnd)
        tray, parts = _toybox_truth(i)
        assert (fg & tray).sum() / (fg | tray).sum() > 0.85
        assert (fg & ~tray).sum() / (~tray).sum() < 0.15
        labels = semantic_regions(rgb, edges(rgb), fg, jnd)
        assert labels.dtype == np.uint16 and not labels[~fg].any()
        for part in parts:  # each part comes out as (roughly) one region
            ids, counts = np.unique(labels[part], return_counts=True)
            best = ids[np.argmax(np.where(ids > 0, counts, -1))]
            one = best > 0 and (labels[part] == best).mean() > 0.7 and (labels == best).sum() < 4 * part.sum()
            found.append(one)
    assert np.mean(found) > 0.7, f"only {np.mean(found):.2f} of the parts came out as one region"


def test_object_filling_the_frame_falls_back_to_whole_image_with_warning():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3)).astype(np.uint8), (0, 0), 1.0)
    with pytest.warns(ForegroundWarning):
        fg = foreground_mask(texture, jnd_map(texture))
    assert fg.all()


def test_arbitrary_region_is_deterministic_and_inside_the_foreground():
    fg = np.zeros((128, 128), bool)
    fg[30:100, 20:110] = True
    a = arbitrary_region(fg.shape, fg, np.random.default_rng(3))
    b = arbitrary_region(fg.shape, fg, np.random.default_rng(3))
    c = arbitrary_region(fg.shape, fg, np.random.default_rng(4))
    assert a.any() and np.array_equal(a, b) and not np.array_equal(a, c)
    assert not (a & ~fg).any()


def test_scale_rule_bounds():
    rule = ScaleRule(min_area=0.01, max_area=0.2, max_edges=0.3)
    fg = np.ones((100, 100), bool)
    edge = np.zeros((100, 100), np.float32)
    edge[50, :] = 1.0
    small, big, edgy = (np.zeros((100, 100), bool) for _ in range(3))
    small[0:5, 0:5] = True
    big[0:60, 0:60] = True
    edgy[45:55, 0:40] = True  # 10% of the area, 40% of the edge pixels
    ok = np.zeros((100, 100), bool)
    ok[0:20, 0:20] = True
    assert not rule.accepts(small, fg, edge) and not rule.accepts(big, fg, edge)
    assert not rule.accepts(edgy, fg, edge) and rule.accepts(ok, fg, edge)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rule.measure(ok, fg, np.zeros_like(edge)) == (0.04, 0.0)


def test_logical_edits_on_the_toybox_change_parts(toybox_root):
    """Share of the logical edits build plans whose region lies on a drawn part (merge: a part landing on the
    tray), against the drawing's own part masks (benchmarks/region_share.py; 0.94-1.0 there on 30 sources)."""
    from synth.datasets import open_dataset
    from synth.pipeline import prepare_source
    from synth.preview import logical_edit_share

    paths = open_dataset("toybox", toybox_root).train_images("tray")[:6]
    edges = get_extractor("classic")
    sources = [prepare_source(p, 128, edges) for p in paths]
    result = logical_edit_share(sources, [int(p.stem) for p in paths], n=30, size=128, seed=0)
    for strategy, r in result.items():
        assert r["planned"] >= 27, (strategy, r)
        assert r["share"] >= 0.9, (strategy, r)
