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
