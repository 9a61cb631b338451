"""Structural similarity (Wang et al. 2004) as a per-pixel map: Gaussian window 11, sigma 1.5."""

import cv2
import numpy as np

MARGIN = 6  # > the window radius (5): in a crop with this margin, SSIM values equal the full-image ones
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
    m = MARGIN
    y0, y1 = max(0, rows[0] - m), min(mask.shape[0], rows[-1] + 1 + m)
    x0, x1 = max(0, cols[0] - m), min(mask.shape[1], cols[-1] + 1 + m)
    crop = (slice(y0, y1), slice(x0, x1))
    return float(ssim_map(a[crop], b[crop])[mask[crop]].mean())


def psnr_within(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) of two uint8 images over the pixels of bool `mask`; inf where they agree."""
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff * diff)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


UNIT_C1 = 0.01**2  # the same constants for data in [0, 1] (Wang et al. 2004: (K * L)^2 with L = 1)
UNIT_C2 = 0.03**2


def gaussian_kernel(size: int = 11, sigma: float = 1.5):
    """A normalised 1-D Gaussian of `size` taps (torch float32)."""
    import torch

    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur_torch(x, kernel, padding: str):
    """Separable per-channel Gaussian blur; `reflect` keeps the size, `valid` crops size-1 pixels."""
    import torch.nn.functional as F

    c, r = x.shape[1], kernel.numel() // 2
    if padding == "reflect":
        x = F.pad(x, (r, r, r, r), mode="reflect")
    elif padding != "valid":
        raise ValueError(f"padding must be 'reflect' or 'valid', not {padding!r}")
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)


def ssim_map_torch(a, b, window: int = 11, sigma: float = 1.5, padding: str = "reflect"):
    """Differentiable per-pixel, per-channel SSIM of (B, C, H, W) tensors in [0, 1] (cast to float32, so safe
    on bf16 autocast outputs): the generator's fitting and the localizer's losses (train.losses) share it.

    Gaussian window 11, sigma 1.5, each channel on its own, as `ssim_map`. `padding="reflect"` (default)
    mirrors the border (PyTorch's reflect, without repeating the edge pixel) so the map has the input's size;
    `"valid"` gives the (H-10, W-10) interior only, as the original definition. torch is imported here so the
    numpy side of synth does not need it.
    """
    a, b = a.float(), b.float()
    k = gaussian_kernel(window, sigma).to(a.device)
    ma, mb = _blur_torch(a, k, padding), _blur_torch(b, k, padding)
    saa = _blur_torch(a * a, k, padding) - ma * ma
    sbb = _blur_torch(b * b, k, padding) - mb * mb
    sab = _blur_torch(a * b, k, padding) - ma * mb
    num = (2 * ma * mb + UNIT_C1) * (2 * sab + UNIT_C2)
    den = (ma * ma + mb * mb + UNIT_C1) * (saa + sbb + UNIT_C2)
    return num / den
