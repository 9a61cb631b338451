"""The toybox's second category `bag` (loose parts, rule = the counts) and part_masks for both categories."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_toybox import classify

from synth.datasets import open_dataset, toybox, toybox_bag, toybox_tray
from synth.datasets.images import list_images, load_mask, load_rgb


def kinds_seen(img: np.ndarray, masks: list[np.ndarray]) -> Counter:
    """Part kinds from the mean colour of the image inside each mask."""
    return Counter(classify(img[m].mean(0)) for m in masks)


def test_bag_layout_and_ground_truth(toybox_root: Path) -> None:
    r = open_dataset("toybox", toybox_root)
    assert len(r.train_images("bag")) == 60 and len(r.validation_images("bag")) == 10
    items = r.test_items("bag")
    assert Counter((it.split, it.label) for it in items) == {("good", 0): 20, ("logical_anomalies", 1): 24,
                                                              ("structural_anomalies", 1): 24}
    seen = Counter()
    for it in items:
        if it.label == 0:
            assert not it.regions
            continue
        allowed = toybox_bag.LOGICAL if it.kind == "logical" else toybox_bag.STRUCTURAL
        assert it.regions and all(reg.defect_name in allowed for reg in it.regions), it.path
        assert all(np.unique(load_mask(reg.path)).tolist() == [0, reg.pixel_value] for reg in it.regions)
        assert it.mask().shape == (256, 320) and it.mask().sum() >= 20
        seen[it.regions[0].defect_name] += 1
    assert seen == {**{n: 8 for n in toybox_bag.LOGICAL}, **{n: 12 for n in toybox_bag.STRUCTURAL}}


def test_bag_rule_is_the_count_and_parts_lie_anywhere(toybox_root: Path) -> None:
    rule = Counter(toybox_bag.RULE)
    paths = list_images(toybox_root / "bag" / "train" / "good")[:12]
    centres = []
    for i, path in enumerate(paths):
        scene = toybox_bag.scene_for(0, "train", i)
        assert Counter(p.kind for p in scene.parts) == rule
        masks = toybox.part_masks("bag", "train", i)
        assert len(masks) == sum(rule.values()) and all(m.shape == (256, 320) and m.sum() > 100 for m in masks)
        assert np.sum(masks, axis=0).max() == 1  # parts never touch
        assert kinds_seen(load_rgb(path), masks) == rule, path  # the masks lie on the drawn parts
        centres += [np.argwhere(m).mean(0) for m in masks]
    assert np.ptp(np.array(centres), 0).min() > 120  # loose: spread over the whole mat
    for i in range(24):
        parts = Counter(p.kind for p in toybox_bag.scene_for(0, "logical_anomalies", i).parts)
        assert parts != rule
    for i in range(24):
        assert Counter(p.kind for p in toybox_bag.scene_for(0, "structural_anomalies", i).parts) == rule


def test_part_masks_for_the_tray(toybox_root: Path) -> None:
    img = load_rgb(toybox_root / "tray" / "validation" / "good" / "003.png")
    masks = toybox.part_masks("tray", "validation", 3)
    assert kinds_seen(img, masks) == Counter(k for kinds in toybox_tray.RULES.values() for k in kinds)
    missing = toybox.part_masks("tray", "logical_anomalies", 0)  # missing_part: one fewer
    assert len(missing) == len(masks) - 1
    with pytest.raises(ValueError, match="no category 'screw_bag'"):
        toybox.part_masks("screw_bag", "train", 0)
