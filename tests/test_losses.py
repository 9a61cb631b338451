"""Losses against hand-computed values: SSIM, PiDiNet's annotator-robust edge loss, focal loss."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synth.ssim import ssim_map as reference_ssim_map
from train.losses import (
    SSIM_C1,
    edge_loss,
    edge_weights,
    focal_loss,
    ssim,
    ssim_loss,
    ssim_map,
    total_loss,
)


@pytest.mark.parametrize("padding", ["reflect", "valid"])
def test_ssim_of_identical_images_is_one(padding):
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x, padding=padding).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_loss(x, x, padding=padding).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("padding", ["reflect", "valid"])
@pytest.mark.parametrize("m1, m2", [(0.2, 0.7), (0.01, 0.05)])  # dark: C1 changes the value by 0.02
def test_ssim_of_constant_images_is_the_luminance_term(padding, m1, m2):
    a, b = torch.full((1, 1, 16, 16), m1), torch.full((1, 1, 16, 16), m2)
    expected = (2 * m1 * m2 + SSIM_C1) / (m1**2 + m2**2 + SSIM_C1)  # no variance: contrast term is C2/C2
    smap = ssim_map(a, b, padding=padding)
    assert smap.shape == ((1, 1, 16, 16) if padding == "reflect" else (1, 1, 6, 6))
    # float32 variances (E[x^2] - mean^2) carry ~1e-8 of rounding, against C2 = 9e-4: 1e-4 is the precision
    assert torch.allclose(smap, torch.full_like(smap, expected), atol=1e-4)
    assert ssim_loss(a, b, padding=padding).item() == pytest.approx(1 - expected, abs=1e-4)


def test_ssim_agrees_with_the_numpy_reference_away_from_the_border():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ref = reference_ssim_map(a, b)  # cv2, per-channel then averaged, data range 255

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255

    ours = ssim_map(t(a), t(b)).mean(dim=1)[0].numpy()
    assert np.abs(ours[6:-6, 6:-6] - ref[6:-6, 6:-6]).max() < 1e-4  # borders differ only by the padding rule
    assert 0.5 < ours.mean() < 0.99


def test_edge_loss_on_a_2x2_hand_case():
    target = torch.tensor([[[[0.0, 0.2], [0.5, 1.0]]]])  # negative, ignored, positive, positive
    logits = torch.tensor([[[[0.5, 3.0], [-1.0, 2.0]]]])
    weights, labels = edge_weights(target)
    n_pos, n_neg = 2, 1
    w_pos, w_neg = 1.0 * n_neg / (n_pos + n_neg), 1.1 * n_pos / (n_pos + n_neg)
    assert torch.allclose(weights, torch.tensor([[[[w_neg, 0.0], [w_pos, w_pos]]]]))
    assert torch.equal(labels, torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]]))

    def softplus(z: float) -> float:
        return math.log1p(math.exp(z))

    bce_neg = softplus(0.5)  # -log(1 - sigmoid(0.5))
    bce_pos = softplus(1.0) + softplus(-2.0)  # -log sigmoid(-1) - log sigmoid(2)
    expected = (w_neg * bce_neg + w_pos * bce_pos) / (w_neg + 2 * w_pos)
    assert edge_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_edge_loss_ignores_the_band_between_zero_and_eta():
    g = torch.Generator().manual_seed(2)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.8).float()
    band = torch.rand(2, 1, 16, 16, generator=g) > 0.7
    logits = torch.randn(2, 1, 16, 16, generator=g)
    t1, t2 = target.clone(), target.clone()
    t1[band], t2[band] = 0.05, 0.29  # both inside (0, eta=0.3): ignored
    l2 = logits.clone()
    l2[band] = torch.randn(int(band.sum()), generator=g) * 10
    base = edge_loss(logits, t1)
    assert edge_loss(logits, t2).item() == pytest.approx(base.item(), rel=1e-6)
    assert edge_loss(l2, t1).item() == pytest.approx(base.item(), rel=1e-6)
    t3 = t1.clone()
    t3[band] = 0.31  # now positive: it counts
    assert abs(edge_loss(logits, t3).item() - base.item()) > 1e-3


def test_edge_loss_balances_classes_per_image_and_skips_images_without_edges():
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0, 0] = 1.0  # image 0: one positive, 15 negatives; image 1: no edge at all
    weights, _ = edge_weights(target)
    assert weights[0, 0, 0, 0].item() == pytest.approx(15 / 16)
    assert weights[0, 0, 1, 1].item() == pytest.approx(1.1 * 1 / 16)
    assert weights[1].abs().sum().item() == 0
    assert edge_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item() == 0.0


def test_focal_with_gamma_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 5, 5, generator=g)
    mask = (torch.rand(2, 1, 5, 5, generator=g) > 0.5).float()
    ce = F.cross_entropy(logits, mask[:, 0].long())
    assert focal_loss(logits, mask, gamma=0.0).item() == pytest.approx(ce.item(), rel=1e-6)


def test_focal_with_gamma_two_on_a_hand_case():
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).repeat(1, 1, 1, 2)  # p(anomaly) = 3/4
    mask = torch.tensor([[[[1.0, 0.0]]]])
    expected = (-(0.25**2) * math.log(0.75) - (0.75**2) * math.log(0.25)) / 2
    assert focal_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)
    assert focal_loss(logits, mask[:, 0]).item() == pytest.approx(expected, rel=1e-6)  # (B, H, W) mask too


def test_total_is_the_sum_of_its_terms_and_zero_for_perfect_predictions():
    g = torch.Generator().manual_seed(4)
    normal = torch.rand(1, 3, 16, 16, generator=g)
    jnd = torch.rand(1, 1, 16, 16, generator=g)
    edge = (torch.rand(1, 1, 16, 16, generator=g) > 0.8).float()
    mask = torch.zeros(1, 1, 16, 16)
    batch = {"normal": normal, "jnd": jnd, "edge": edge, "mask": mask}
    perfect = {"image": normal, "jnd": jnd, "edge_logits": (edge * 2 - 1) * 40,
               "seg": torch.cat([torch.full_like(mask, 40.0), torch.full_like(mask, -40.0)], dim=1)}
    terms = total_loss(perfect, batch)
    assert terms["total"].item() == pytest.approx(0.0, abs=1e-5)
    noisy = {**perfect, "image": normal.flip(-1)}
    terms = total_loss(noisy, batch)
    assert terms["img"].item() > 0.1
    parts = terms["img"] + terms["jnd"] + terms["edge"] + terms["seg"]
    assert terms["total"].item() == pytest.approx(parts.item())


def test_losses_accept_bf16_predictions():
    x = torch.rand(1, 3, 16, 16)
    assert ssim_loss(x.bfloat16(), x).dtype == torch.float32
    logits = torch.randn(1, 2, 4, 4).bfloat16()
    assert focal_loss(logits, torch.zeros(1, 4, 4)).dtype == torch.float32
