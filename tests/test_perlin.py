"""DRAEM-style Perlin synthesis: honest masks, determinism, ranges, foreground restriction."""

from pathlib import Path

import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.edit.perlin import AUGMENTERS, augment_texture, noise_mask, perlin_anomaly, rand_perlin_2d


@pytest.fixture(scope="module")
def photos(hazelnut_root: Path) -> list[np.ndarray]:
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:2]
    return [resize_rgb(load_rgb(p), 96) for p in paths]


def test_outside_the_mask_nothing_changes_and_inside_it_does(photos):
    normal, other = photos
    changed_fraction = []
    for i in range(12):
        texture = other if i % 2 else None
        anomaly, mask, params = perlin_anomaly(normal, np.random.default_rng(i), texture=texture)
        assert anomaly.shape == normal.shape and anomaly.dtype == np.uint8
        assert mask.shape == normal.shape[:2] and mask.dtype == bool
        assert mask.any() and not params["empty"]
        assert np.array_equal(anomaly[~mask], normal[~mask])
        changed = (anomaly != normal).any(-1)
        assert not (changed & ~mask).any()
        changed_fraction.append(changed[mask].mean())
        assert 0.0 <= params["beta"] < 0.8
        assert params["kind"] == "structural" and params["strategy"] == "perlin"
        assert len(params["augmenters"]) == 3 and set(params["augmenters"]) <= set(AUGMENTERS)
    assert np.mean(changed_fraction) > 0.5     # the label is mostly visible change, not noise


def test_same_rng_same_output_other_rng_other_output(photos):
    normal = photos[0]
    a1, m1, p1 = perlin_anomaly(normal, np.random.default_rng(7))
    a2, m2, p2 = perlin_anomaly(normal, np.random.default_rng(7))
    a3, m3, _ = perlin_anomaly(normal, np.random.default_rng(8))
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2) and p1 == p2
    assert not np.array_equal(m1, m3)


def test_mask_stays_inside_the_foreground(photos):
    normal = photos[0]
    fg = np.zeros(normal.shape[:2], bool)
    fg[20:70, 30:80] = True
    for i in range(8):
        anomaly, mask, _ = perlin_anomaly(normal, np.random.default_rng(i), foreground=fg)
        assert mask.any()
        assert not (mask & ~fg).any()
        assert np.array_equal(anomaly[~fg], normal[~fg])


def test_noise_scales_threshold_and_ranges():
    rng = np.random.default_rng(0)
    for res in [(1, 1), (2, 8), (32, 4)]:
        noise = rand_perlin_2d((64, 64), res, rng)
        assert noise.shape == (64, 64) and np.isfinite(noise).all()
        assert np.abs(noise).max() <= np.sqrt(2) + 1e-5
    scales = set()
    for i in range(60):
        mask, params = noise_mask((50, 70), np.random.default_rng(i))      # sizes that are not powers of two
        assert mask.shape == (50, 70)
        scales.update(params["scale"])
        assert -90 <= params["rotation"] <= 90
    assert scales == {1, 2, 4, 8, 16, 32}


def test_texture_augmenters_keep_shape_and_type(photos):
    for i in range(10):
        out, names = augment_texture(photos[1], np.random.default_rng(i))
        assert out.shape == photos[1].shape and out.dtype == np.uint8 and len(set(names)) == 3
