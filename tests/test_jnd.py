"""NAMM JND map: published curve values, flat images, masking, edge protection, real photographs."""

import numpy as np
import pytest

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.features.jnd import edge_protection, jnd_map, luminance_adaptation


def grey(value: float, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def test_luminance_adaptation_matches_published_curve():
    curve = luminance_adaptation(np.array([0.0, 127.0, 255.0]))
    np.testing.assert_allclose(curve, [20.0, 3.0, 6.0], atol=1e-5)
    dark = luminance_adaptation(np.arange(0, 128, dtype=np.float32))
    bright = luminance_adaptation(np.arange(127, 256, dtype=np.float32))
    assert np.all(np.diff(dark) < 0) and np.all(np.diff(bright) > 0)
    assert float(luminance_adaptation(64.0)) == pytest.approx(17 * (1 - np.sqrt(64 / 127)) + 3, abs=1e-5)


@pytest.mark.parametrize("value", [0, 30, 127, 200, 255])
def test_flat_image_gives_exactly_constant_map_with_formula_value(value):
    j = jnd_map(grey(value))
    assert j.dtype == np.float32 and j.shape == (48, 64)
    assert j.min() == j.max()
    t_l = float(luminance_adaptation(float(value)))
    t_t = max(0.5 - 0.01 * value, 0.0)  # no gradient: only the offset, clamped at 0 for bright areas
    assert float(j[0, 0]) == pytest.approx(t_l + t_t - 0.3 * min(t_l, t_t), abs=1e-4)


def test_masking_grows_with_texture_amplitude():
    rng = np.random.default_rng(0)
    means = []
    for sigma in (0.0, 3.0, 8.0):
        noise = rng.normal(0.0, sigma, (96, 96, 1)) if sigma else np.zeros((96, 96, 1))
        img = np.clip(np.rint(100 + noise), 0, 255).astype(np.uint8).repeat(3, axis=2)
        means.append(float(jnd_map(img).mean()))
    assert means[0] < means[1] - 0.02 < means[2] - 0.2, means


def test_textured_half_has_higher_jnd_than_flat_half():
    rng = np.random.default_rng(1)
    img = np.full((64, 128, 3), 60, np.uint8)
    img[:, 64:] = np.clip(np.rint(60 + rng.normal(0, 8, (64, 64, 1))), 0, 255).astype(np.uint8)
    j = jnd_map(img)
    assert j[:, 72:].mean() > j[:, :56].mean() + 0.5


def test_edge_protection_lowers_weight_only_near_clean_edges():
    y = np.full((64, 64), 100, np.float32)
    y[:, 32:] = 160
    w = edge_protection(y)
    assert w[:, 31:33].max() < 0.1  # on the edge
    assert w[:, :20].min() > 0.99 and w[:, 45:].min() > 0.99  # beyond the ~6 px protection zone
    # so the step's JND right at the edge is far below what its raw gradient would give
    j = jnd_map(np.repeat(y.astype(np.uint8)[:, :, None], 3, axis=2))
    assert j[:, 32].mean() < 10.0


def test_shape_dtype_and_input_validation():
    img = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    j = jnd_map(img)
    assert j.shape == (37, 53) and j.dtype == np.float32 and np.isfinite(j).all()
    with pytest.raises(ValueError):
        jnd_map(img[:, :, 0])
    with pytest.raises(ValueError):
        jnd_map(img.astype(np.float32) / 255.0)


def test_real_photographs_fit_the_u8_storage_range(hazelnut_root):
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:6]
    values = np.concatenate([jnd_map(resize_rgb(load_rgb(p), 256)).ravel() for p in paths])
    assert values.min() >= 2.9  # T_l never drops below 3 (minus the overlap term only when T_t > 0)
    assert 3.5 < float(np.median(values)) < 8.0
    assert values.max() * 4.0 < 255.0  # sources.h5 stores round(jnd * 4) as u8
