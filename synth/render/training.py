"""One training step of the edge-to-image generator: pix2pixHD losses and DeepSIM augmentation.

LSGAN + discriminator feature matching (lambda 10), Adam 2e-4 (0.5, 0.999), constant lr for the first half of
the steps then linear decay to 0. Augmentation keeps *edited* edge maps in distribution: TPS warps and crops
(same on edges and image), plus erased edge blobs and stray strokes (edges only). Both generator kinds use this
step: the inpainting kind's losses count only the hole and add an SSIM term (synth.render.inpaint).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from synth.edit.warp import random_tps, remap
from synth.render.generator import (
    GlobalGenerator,
    MultiscaleDiscriminator,
)
from synth.ssim import ssim_map_torch

# Training defaults per preset. base follows pix2pixHD and the paper (300 epochs, no pixel loss). tiny is
# tuned for a few CPU minutes (ours): an L1 pixel term (lambda 10) and a higher lr converge much faster in so
# few steps (toybox validation SSIM: 40 epochs lr 2e-4 0.51 without L1, 0.61 with; 30 epochs lr 5e-4 with L1
# 0.65, and fewer wrongly coloured parts).
FIT_DEFAULTS: dict[str, dict] = {
    "tiny": {"epochs": 30, "batch_size": 4, "lr": 5e-4, "lambda_l1": 10.0},
    "base": {"epochs": 300, "batch_size": 16, "lr": 2e-4, "lambda_l1": 0.0},
}


# The inpainting kind (ours) on top of its preset's defaults: L1 and SSIM inside the hole, as EdgeConnect's
# inpainting stage trains with a pixel term next to the adversarial ones; no edge dropout or stray strokes
# (edges it is given must be followed, not second-guessed: an edit's new strokes have no pixels yet).
KIND_DEFAULTS: dict[str, dict] = {
    "global": {"lambda_ssim": 0.0},
    "inpaint": {"lambda_l1": 10.0, "lambda_ssim": 5.0},
}


# Epochs of the inpainting kind per preset. Only hole pixels teach it, so at tiny's 30 epochs it has not yet
# learnt to follow edges where the context predicts the hole well (hazelnut_toy, 128 px: hole SSIM 0.713 and
# "erased visible" 0.00 at 30 epochs; 0.785 and 0.22 at 100, ~4 CPU minutes; benchmarks/hole_quality.py).
# Presets not listed keep their own epochs (base: 300).
INPAINT_EPOCHS: dict[str, int] = {"tiny": 100}


@dataclass(frozen=True)
class Augment:
    """Per-sample augmentation probabilities and ranges (drawn from the epoch's numpy rng)."""

    tps: float = 0.7                      # DeepSIM TPS warp, 3x3 control grid
    tps_shift: float = 0.1                # control-point shift, fraction of the width
    crop: float = 0.5                     # random crop, resized back
    crop_scale: tuple[float, float] = (0.8, 1.0)
    dropout: float = 0.3                  # erase edges in 1-3 blobs
    strokes: float = 0.3                  # add 1-3 short strokes
    flips: bool = False                   # horizontal flips (only where the category allows)


def augment(image: np.ndarray, edge: np.ndarray, rng: np.random.Generator,
            aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (image uint8 (H,W,3), edge float32 (H,W)) pair."""
    h, w = edge.shape
    if rng.random() < aug.tps:
        maps = random_tps((h, w), rng, grid=3, max_shift=aug.tps_shift)
        image, edge = remap(image, maps), remap(edge, maps)
    if rng.random() < aug.crop:
        s = rng.uniform(*aug.crop_scale)
        ch, cw = max(8, round(s * h)), max(8, round(s * w))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        image = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        edge = cv2.resize(edge[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    edge = np.array(edge, dtype=np.float32)
    if rng.random() < aug.dropout:
        ys, xs = np.nonzero(edge > 0.5)
        for _ in range(rng.integers(1, 4) if len(ys) else 0):
            k = rng.integers(len(ys))
            axes = (int(rng.uniform(0.03, 0.08) * w), int(rng.uniform(0.03, 0.08) * h))
            cv2.ellipse(edge, (int(xs[k]), int(ys[k])), axes, float(rng.uniform(0, 180)), 0, 360, 0.0, -1)
    if rng.random() < aug.strokes:
        for _ in range(rng.integers(1, 4)):
            start = rng.uniform(0, 1, 2) * (w, h)
            steps = rng.normal(0, 1, (2, 2)) * rng.uniform(0.02, 0.06) * w
            pts = np.cumsum(np.vstack([start, steps]), axis=0).round().astype(np.int32)
            cv2.polylines(edge, [pts], False, 1.0, 1)
    if aug.flips and rng.random() < 0.5:
        image, edge = image[:, ::-1], edge[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(edge)


def _gan_loss(preds: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """LSGAN: MSE of every scale's patch scores to 1 (real) or 0 (fake), summed over scales."""
    return sum(F.mse_loss(p[-1].float(), torch.full_like(p[-1].float(), float(real))) for p in preds)


def _feature_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]],
                  n_layers: int) -> torch.Tensor:
    """pix2pixHD feature matching: L1 over every intermediate feature, weighted 4/(n_layers+1) / num_d."""
    weight = 4.0 / (n_layers + 1) / len(fake)
    return sum(weight * F.l1_loss(f.float(), r.detach().float())
               for fs, rs in zip(fake, real, strict=True) for f, r in zip(fs[:-1], rs[:-1], strict=True))


def _pixel_losses(fake: torch.Tensor, real: torch.Tensor, hole: torch.Tensor | None, lambda_l1: float,
                  lambda_ssim: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, 1 - SSIM) weighted, over the whole image or, with `hole` (B,1,H,W), over its pixels only."""
    zero = torch.zeros((), device=fake.device)
    diff = (fake.float() - real.float()).abs()
    if hole is None:
        l1 = diff.mean() * lambda_l1 if lambda_l1 else zero
        s = (1.0 - ssim_map_torch((fake + 1) / 2, (real + 1) / 2).mean()) * lambda_ssim if lambda_ssim else zero
        return l1, s
    area = hole.float().sum().clamp(min=1.0)
    l1 = (diff * hole).sum() / (area * diff.shape[1]) * lambda_l1 if lambda_l1 else zero
    s = zero
    if lambda_ssim:
        per_pixel = ssim_map_torch((fake + 1) / 2, (real + 1) / 2).mean(dim=1, keepdim=True)
        s = (1.0 - (per_pixel * hole).sum() / area) * lambda_ssim
    return l1, s


def train_step(gen: GlobalGenerator, disc: MultiscaleDiscriminator, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, edges: torch.Tensor, real: torch.Tensor,
               lambda_feat: float = 10.0, lambda_l1: float = 0.0, hole: torch.Tensor | None = None,
               lambda_ssim: float = 0.0) -> dict[str, float]:
    """One generator update then one discriminator update (pix2pixHD order); returns the losses.

    `edges` is the generator's input (the edge maps, or the inpainting kind's `condition`). With `hole`
    (B,1,H,W) in {0,1} the output is pasted into `real` outside the hole before any loss, as it will be used.
    """
    n_layers = len(disc.scales[0].groups) - 2
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if edges.is_cuda else nullcontext()
    with amp:
        fake = gen(edges)
        if hole is not None:
            fake = fake * hole + real * (1.0 - hole)
        pred_real = disc(edges, real)
        disc.requires_grad_(False)
        pred_fake = disc(edges, fake)
        disc.requires_grad_(True)
        g_gan = _gan_loss(pred_fake, True)
        g_feat = _feature_loss(pred_fake, pred_real, n_layers) * lambda_feat
    g_l1, g_ssim = _pixel_losses(fake, real, hole, lambda_l1, lambda_ssim)
    opt_g.zero_grad(set_to_none=True)
    (g_gan + g_feat + g_l1 + g_ssim).backward()
    opt_g.step()
    with amp:
        d_fake = _gan_loss(disc(edges, fake.detach()), False)
        d_real = _gan_loss(pred_real, True)
    opt_d.zero_grad(set_to_none=True)
    (0.5 * (d_fake + d_real)).backward()
    opt_d.step()
    return {"g_gan": g_gan.item(), "g_feat": g_feat.item(), "g_l1": g_l1.item(), "g_ssim": g_ssim.item(),
            "d_real": d_real.item(), "d_fake": d_fake.item()}


def lr_at(step: int, total: int, base: float) -> float:
    """Constant for the first half of the steps, then linear decay towards 0."""
    return base * min(1.0, 2.0 * (1.0 - step / max(total, 1)))


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]],
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    edges = torch.from_numpy(np.stack([e for _, e in pairs]))[:, None]
    images = torch.from_numpy(np.stack([im for im, _ in pairs])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return (edges.to(device).contiguous(memory_format=memory),
            images.to(device).contiguous(memory_format=memory))
