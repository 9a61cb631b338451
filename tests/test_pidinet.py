"""PiDiNet: strict loading of the official checkpoint, folded == raw, agreement with classic edges."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from synth.datasets.images import list_images, load_rgb, resize_rgb
from synth.errors import CheckpointError
from synth.features.edges import ClassicEdges, get_extractor
from synth.features.pidinet import PARAMETER_COUNT, PiDiNet, PiDiNetEdges, fold_weight, load_pidinet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def raw_net(pidinet_weights: Path) -> PiDiNet:
    return load_pidinet(pidinet_weights)


@pytest.fixture(scope="module")
def extractor(pidinet_weights: Path) -> PiDiNetEdges:
    return PiDiNetEdges(pidinet_weights, device="cpu")


def test_official_checkpoint_loads_strictly_with_every_parameter(raw_net, pidinet_weights):
    assert sum(p.numel() for p in raw_net.parameters()) == PARAMETER_COUNT == 710_149
    state = torch.load(pidinet_weights, map_location="cpu", weights_only=True)["state_dict"]
    assert sum(v.numel() for v in state.values()) == PARAMETER_COUNT
    ours = raw_net.state_dict()
    assert sorted(ours) == sorted(k.removeprefix("module.") for k in state)  # every key used, none missing
    for key, value in state.items():
        torch.testing.assert_close(ours[key.removeprefix("module.")], value, rtol=0, atol=0)


def test_folded_network_equals_pixel_difference_network(raw_net):
    x = torch.randn(2, 3, 48, 72, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw, folded = raw_net(x), raw_net.folded()(x)
    assert len(raw) == len(folded) == 5
    for a, b in zip(raw, folded, strict=True):
        assert a.shape == (2, 1, 48, 72)
        assert float((a - b).abs().max()) < 1e-5
    assert 0.0 <= float(raw[-1].min()) and float(raw[-1].max()) <= 1.0


def test_fold_weight_radial_kernel_is_a_5x5_ring_with_zero_sum():
    w = torch.randn(4, 1, 3, 3)
    ring = fold_weight("rd", w)
    assert ring.shape == (4, 1, 5, 5)
    assert torch.all(ring[:, :, 2, 2] == 0)
    # a difference operator ignores a flat image
    torch.testing.assert_close(ring.sum(dim=(2, 3)), torch.zeros(4, 1))
    torch.testing.assert_close(fold_weight("cd", w).sum(dim=(2, 3)), torch.zeros(4, 1))
    torch.testing.assert_close(fold_weight("ad", w).sum(dim=(2, 3)), torch.zeros(4, 1))


def test_missing_corrupt_and_foreign_checkpoints_raise_checkpoint_error(tmp_path, pidinet_weights):
    with pytest.raises(CheckpointError, match="absent.pth"):
        load_pidinet(tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(pidinet_weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        get_extractor("pidinet", corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pth.*missing"):
        load_pidinet(foreign)
    tiny = pidinet_weights.parent / "table5_pidinet-tiny.pth"  # the 20-channel model: every shape differs
    if tiny.is_file():
        with pytest.raises(CheckpointError, match="wrong shape"):
            load_pidinet(tiny)


def test_extractor_identity_and_batching(extractor, pidinet_weights):
    assert extractor.identity == "pidinet-80860ac26725"
    assert get_extractor("pidinet", pidinet_weights).identity == extractor.identity
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))  # a different size in the same call
    maps = extractor.batch(images)
    for img, m in zip(images, maps, strict=True):
        assert m.shape == img.shape[:2] and m.dtype == np.float32
        np.testing.assert_allclose(m, extractor(img), atol=1e-5)


def agreement(classic: np.ndarray, strength: np.ndarray, pidinet: np.ndarray) -> float:
    """Fraction of the strongest 5% classic edge pixels within 2 px of a PiDiNet edge (> 0.5)."""
    pixels = classic > 0
    top = pixels & (strength >= np.percentile(strength[pixels], 95))
    near = cv2.dilate((pidinet > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return float(near[top].mean())


def test_agrees_with_classic_edges_where_they_are_strong(extractor, hazelnut_root):
    paths = list_images(hazelnut_root / "hazelnut" / "train" / "good")[:4]
    images = [resize_rgb(load_rgb(p), 256) for p in paths]
    maps = extractor.batch(images)
    classic = ClassicEdges()
    scores, controls = [], []
    for i, img in enumerate(images):
        edge = classic(img)
        strength = edge * classic.strength(img)[0]
        scores.append(agreement(edge, strength, maps[i]))
        controls.append(agreement(edge, strength, np.roll(maps[i], (24, 24), (0, 1))))  # misplaced map
        assert maps[i].mean() < 0.2  # mostly background
    assert min(scores) > 0.85 and np.mean(scores) > 0.95, scores
    assert np.mean(controls) < 0.4, controls  # the measure does tell maps apart


def test_agrees_with_classic_edges_on_toybox(extractor, toybox_root):
    from synth.datasets import open_dataset

    reader = open_dataset("toybox", toybox_root)
    images = [resize_rgb(load_rgb(p), 256) for p in reader.train_images("tray")[:3]]
    classic = ClassicEdges()
    scores = []
    for img, m in zip(images, extractor.batch(images), strict=True):
        edge = classic(img)
        scores.append(agreement(edge, edge * classic.strength(img)[0], m))
    assert min(scores) > 0.8, scores
