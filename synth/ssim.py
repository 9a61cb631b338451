"""Structural similarity (Wang et al. 2004) as a per-pixel map: Gaussian window 11, sigma 1.5."""

import cv2
import numpy as np

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two uint8 images (H, W) or (H, W, C), averaged over channels; float32 (H, W)."""
    x = a.astype(np.float32)
    y = b.astype(np.float32)
    mx, my = _blur(x), _blur(y)
    sxx = _blur(x * x) - mx * mx
    syy = _blur(y * y) - my * my
    sxy = _blur(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
    return s.mean(axis=2).astype(np.float32) if s.ndim == 3 else s.astype(np.float32)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images."""
    return float(ssim_map(a, b).mean())


def ssim_within(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of two uint8 images over the pixels of bool `mask` (H, W); 1.0 for an empty mask.

    Computed on the mask's bounding box grown by the window radius + 1, where every value equals the
    full-image one, so it costs the size of the mask, not of the image.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 1.0
    m = 6
    y0, y1 = max(0, rows[0] - m), min(mask.shape[0], rows[-1] + 1 + m)
    x0, x1 = max(0, cols[0] - m), min(mask.shape[1], cols[-1] + 1 + m)
    crop = (slice(y0, y1), slice(x0, x1))
    return float(ssim_map(a[crop], b[crop])[mask[crop]].mean())


def psnr_within(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) of two uint8 images over the pixels of bool `mask`; inf where they agree."""
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff * diff)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_map_torch(a, b):
    """Differentiable per-pixel SSIM of (B, C, H, W) float tensors in [0, 1], averaged over channels:
    (B, 1, H, W). Same window as `ssim_map` (Gaussian 11, sigma 1.5), reflect padding; torch is imported
    here so the numpy side of synth does not need it."""
    import torch
    import torch.nn.functional as F

    x = torch.arange(11, dtype=torch.float32, device=a.device) - 5.0
    k = torch.exp(-(x ** 2) / (2 * 1.5 ** 2))
    k = k / k.sum()
    c = a.shape[1]
    kx, ky = k.view(1, 1, 1, -1).expand(c, 1, 1, -1), k.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(F.pad(t, (5, 5, 5, 5), mode="reflect"), kx, groups=c), ky, groups=c)

    a, b = a.float(), b.float()
    ma, mb = blur(a), blur(b)
    saa, sbb, sab = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = C1 / 255.0 ** 2, C2 / 255.0 ** 2
    s = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma * ma + mb * mb + c1) * (saa + sbb + c2))
    return s.mean(dim=1, keepdim=True)
