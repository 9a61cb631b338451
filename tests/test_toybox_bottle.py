"""The toybox's third category `bottle` (the liquid goes with the label's fruit), its part masks and defect twins."""

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth.datasets import open_dataset, toybox
from synth.datasets import toybox_bottle as tb
from synth.datasets.images import load_mask, load_rgb
from synth.datasets.toybox_truth import carrier_mask, part_masks


def flavour_of(rgb: np.ndarray) -> str:
    """A flavour from a region's mean colour: its hue (OpenCV, 0..179) is cherry red, orange or lime green."""
    hue = int(cv2.cvtColor(rgb[None, None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0, 0, 0])
    if hue >= 165 or hue <= 5:
        return "cherry"
    if 8 <= hue <= 25:
        return "orange"
    return "lime" if 28 <= hue <= 60 else f"hue {hue}"


def eroded(mask: np.ndarray, px: int = 2) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def seen_flavours(img: np.ndarray, scene: tb.Bottle) -> tuple[str, str]:
    """(the liquid's, the icon's) flavour read from the pixels inside their part masks."""
    masks = tb.part_masks(scene)
    return flavour_of(img[eroded(tb.visible_liquid(scene))].mean(0)), flavour_of(img[eroded(masks["icon"], 1)].mean(0))


def dilated(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def test_bottle_layout_and_ground_truth(toybox_root: Path) -> None:
    r = open_dataset("toybox", toybox_root)
    assert r.categories() == ["bag", "bottle", "tray"]
    assert len(r.train_images("bottle")) == 60 and len(r.validation_images("bottle")) == 10
    items = r.test_items("bottle")
    assert Counter((it.split, it.label) for it in items) == {("good", 0): 20, ("logical_anomalies", 1): 24,
                                                              ("structural_anomalies", 1): 24}
    seen = Counter()
    for it in items:
        if it.label == 0:
            assert not it.regions
            continue
        allowed = tb.LOGICAL if it.kind == "logical" else tb.STRUCTURAL
        assert len(it.regions) == 1 and it.regions[0].defect_name in allowed, it.path
        assert np.unique(load_mask(it.regions[0].path)).tolist() == [0, tb.DEFECTS[it.regions[0].defect_name][0]]
        assert it.mask().shape == (256, 320) and it.mask().sum() >= 20
        seen[it.regions[0].defect_name] += 1
    assert seen == {**{n: 4 if k < 3 else 3 for k, n in enumerate(tb.LOGICAL)}, **{n: 8 for n in tb.STRUCTURAL}}
    config = json.loads((toybox_root / "bottle" / "defects_config.json").read_text())
    assert {c["defect_name"]: c["pixel_value"] for c in config} == {n: v[0] for n, v in tb.DEFECTS.items()}
    others = {c["pixel_value"]: c["defect_name"] for cat in ("tray", "bag")
              for c in json.loads((toybox_root / cat / "defects_config.json").read_text())}
    assert all(others.get(c["pixel_value"], c["defect_name"]) == c["defect_name"] for c in config)


def test_rule_holds_in_every_normal_image(toybox_root: Path) -> None:
    flavours = Counter()
    for split, folder, n in (("train", "train/good", 60), ("good", "test/good", 20)):
        for i in range(n):
            scene = tb.scene_for(0, split, i)
            assert all(tb.rules(scene).values()), (split, i)
            img = load_rgb(toybox_root / "bottle" / folder / f"{i:03d}.png")
            liquid, icon = seen_flavours(img, scene)
            assert liquid == icon == scene.flavour, (split, i, liquid, icon)
            flavours[scene.flavour] += 1
    assert set(flavours) == set(tb.bd.FLAVOURS) and min(flavours.values()) >= 15  # every flavour, often


def test_each_logical_defect_breaks_exactly_its_rule(toybox_root: Path) -> None:
    for i in range(24):
        scene = tb.scene_for(0, "logical_anomalies", i)
        defect = scene.regions[0][0]
        assert {k for k, ok in tb.rules(scene).items() if not ok} == {tb.BROKEN[defect]}, (i, defect)
        if defect == "colour_mismatch":
            img = load_rgb(toybox_root / "bottle" / "test" / "logical_anomalies" / f"{i:03d}.png")
            liquid, icon = seen_flavours(img, scene)
            assert liquid == scene.liquid != icon == scene.flavour
    for i in range(24):
        assert all(tb.rules(tb.scene_for(0, "structural_anomalies", i)).values())


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 10_000), seed=st.integers(0, 3))
def test_twin_masks_cover_what_changed(index: int, seed: int) -> None:
    for defect in tb.DEFECTS:
        normal, anomaly, masks = toybox.defect_twin("bottle", seed, index, defect, tag="test")
        assert normal.shape == anomaly.shape == (256, 320, 3) and normal.dtype == np.uint8
        union = np.any(masks, axis=0)
        changed = np.abs(normal.astype(int) - anomaly.astype(int)).max(2) > 2  # 2: rounding after the blur
        assert not (changed & ~dilated(union, 2)).any(), defect  # every change lies in the masks (+2 px AA)
        assert changed[union].mean() > 0.25, defect  # and the masks hold little that did not change
    assert toybox.defect_twin("bottle", seed, index, defect, tag="test")[1].tobytes() == anomaly.tobytes()


def test_twin_for_tray_and_bag_and_bad_names() -> None:
    for category in ("tray", "bag"):
        for defect in toybox.categories()[category].DEFECTS:
            normal, anomaly, masks = toybox.defect_twin(category, 1, 0, defect)
            changed = np.abs(normal.astype(int) - anomaly.astype(int)).max(2) > 2
            assert masks and changed.sum() > 20
            near = dilated(np.any(masks, axis=0), 2)  # the rest: soft shadows of parts that came or went
            assert (changed & near).sum() >= 0.8 * changed.sum(), (category, defect)
    with pytest.raises(ValueError, match="no defect 'dent'"):
        toybox.defect_twin("bottle", 0, 0, "dent")
    with pytest.raises(ValueError, match="no category 'jar'"):
        toybox.defect_twin("jar", 0, 0, "scratch")


def test_part_masks_shapes_and_order(toybox_root: Path) -> None:
    for i in range(3):
        named = tb.part_masks(tb.scene_for(0, "validation", i))
        masks = toybox.part_masks("bottle", "validation", i)
        assert tuple(named) == tb.PARTS and len(masks) == len(tb.PARTS)
        assert all(m.shape == (256, 320) and m.dtype == bool and m.sum() > 300 for m in masks)
        assert all(np.array_equal(a, b) for a, b in zip(masks, named.values(), strict=True))
        glass = named["glass"]
        for name in ("liquid", "front_label", "second_label"):
            assert (named[name] & ~glass).sum() == 0, name
        assert not (named["icon"] & ~named["front_label"]).any()
        assert not (named["front_label"] & named["second_label"]).any()
        assert np.argwhere(named["front_label"])[:, 0].mean() < np.argwhere(named["second_label"])[:, 0].mean()
        assert not (named["cap"] & named["liquid"]).any()
        labels = part_masks("bottle", "validation", i, size=128)
        assert labels.shape == (128, 128) and np.unique(labels).tolist() == [0, 1, 2, 3, 4, 5]
        assert not (labels.astype(bool) & ~carrier_mask("bottle", "validation", i, size=128)).any()
    missing = [k for k in range(24) if tb.scene_for(0, "logical_anomalies", k).regions[0][0] == "missing_label"]
    names = tuple(tb.part_masks(tb.scene_for(0, "logical_anomalies", missing[0])))
    assert names == ("glass", "liquid", "cap", "second_label")


def test_determinism(toybox_root: Path) -> None:
    on_disk = load_rgb(toybox_root / "bottle" / "train" / "good" / "003.png")
    assert np.array_equal(tb.render(tb.scene_for(0, "train", 3)), on_disk)  # same seed -> same bytes
    assert not np.array_equal(tb.render(tb.scene_for(1, "train", 3)), on_disk)
