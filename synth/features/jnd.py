"""Pixel-domain just-noticeable difference (Yang et al. 2005, NAMM) on luminance, method.md step 2.

The map says, per pixel, how many grey levels the luminance may change before a viewer notices: high where
the background is dark or very bright (luminance adaptation) and where the image is textured (masking), low on
smooth mid-grey areas and along clean edges (edge protection). It is the localization network's reconstruction
target and the foreground cue.
"""

import cv2
import numpy as np

# Background luminance: 5x5 weighted mean without the centre pixel (Chou & Li 1995).
_BG_KERNEL = np.array(
    [[1, 1, 1, 1, 1], [1, 2, 2, 2, 1], [1, 2, 0, 2, 1], [1, 2, 2, 2, 1], [1, 1, 1, 1, 1]], np.float32
) / 32.0

# Chou & Li's four directional high-pass operators (horizontal, two diagonals, vertical); |response| / 16.
_G1 = np.array(
    [[0, 0, 0, 0, 0], [1, 3, 8, 3, 1], [0, 0, 0, 0, 0], [-1, -3, -8, -3, -1], [0, 0, 0, 0, 0]], np.float32
)
_G2 = np.array(
    [[0, 0, 1, 0, 0], [0, 8, 3, 0, 0], [1, 3, 0, -3, -1], [0, 0, -3, -8, 0], [0, 0, -1, 0, 0]], np.float32
)
_GRADIENT_OPERATORS = (_G1, _G2, np.ascontiguousarray(_G2[:, ::-1]), np.ascontiguousarray(_G1.T))

_EDGE_DILATE_RADIUS = 6  # disk radius of the edge-protection zone (pixels)
_EDGE_STEP_CONTRAST = 16.0  # a luminance step of this many grey levels is a (strong) Canny edge
_EDGE_CANNY_LOW_RATIO = 0.4  # low threshold = ratio * high (MATLAB's default)
_SOBEL_STEP_GAIN = 8.0 / (np.sqrt(2.0 * np.pi) * np.sqrt(2.0))  # peak Sobel response per grey level of step
_CANNY_SCALE = 8.0  # derivatives are scaled before the int16 cast, for sub-level threshold resolution
_OVERLAP = 0.3  # NAMM overlap-reduction factor


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B as float32 (H, W) in grey levels 0..255."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float32)
    return (0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]).astype(np.float32)


def background_luminance(y: np.ndarray) -> np.ndarray:
    """Weighted 5x5 mean luminance around each pixel."""
    return cv2.filter2D(y, cv2.CV_32F, _BG_KERNEL, borderType=cv2.BORDER_REFLECT)


def luminance_adaptation(bg: np.ndarray | float) -> np.ndarray:
    """Chou & Li's visibility threshold versus background luminance: 20 at 0, 3 at 127, 6 at 255."""
    b = np.asarray(bg, dtype=np.float32)
    dark = 17.0 * (1.0 - np.sqrt(np.clip(b, 0.0, None) / 127.0)) + 3.0
    bright = (3.0 / 128.0) * (b - 127.0) + 3.0
    return np.where(b <= 127.0, dark, bright).astype(np.float32)


def max_gradient(y: np.ndarray) -> np.ndarray:
    """Largest absolute response of the four directional operators, / 16."""
    out = np.zeros_like(y)
    for kernel in _GRADIENT_OPERATORS:
        np.maximum(out, np.abs(cv2.filter2D(y, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)), out=out)
    return out / 16.0


def _canny(y: np.ndarray) -> np.ndarray:
    """Canny edges of Y (Gaussian sigma sqrt 2, 3x3 Sobel, L2 magnitude) with absolute thresholds.

    Absolute (grey-level) thresholds rather than ones relative to the image's strongest gradient: a relative
    threshold marks texture and noise as "edges" in an image without strong edges, and the edge protection
    would then cancel the very masking it is meant to keep.
    """
    smooth = cv2.GaussianBlur(y, (0, 0), np.sqrt(2.0), borderType=cv2.BORDER_REFLECT)
    dx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REFLECT)
    dy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REFLECT)
    dx16 = np.clip(np.rint(dx * _CANNY_SCALE), -32767, 32767).astype(np.int16)
    dy16 = np.clip(np.rint(dy * _CANNY_SCALE), -32767, 32767).astype(np.int16)
    high = _EDGE_STEP_CONTRAST * _SOBEL_STEP_GAIN * _CANNY_SCALE
    return cv2.Canny(dx16, dy16, _EDGE_CANNY_LOW_RATIO * high, high, L2gradient=True)


def edge_protection(y: np.ndarray) -> np.ndarray:
    """W_e = Gaussian(1 - 0.95 * dilate(Canny(Y))): near 0.05 around clean edges, 1 elsewhere."""
    size = 2 * _EDGE_DILATE_RADIUS + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    zone = cv2.dilate(_canny(y), disk) > 0
    weight = 1.0 - 0.95 * zone.astype(np.float32)
    return cv2.GaussianBlur(weight, (7, 7), 0.8, borderType=cv2.BORDER_REFLECT)


def texture_masking(y: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """T_t = (mg * W_e) * (0.0001 bg + 0.115) + (0.5 - 0.01 bg), clamped at 0.

    The offset 0.5 - 0.01 bg is negative above bg = 50; on bright flat areas the formula would give a negative
    threshold, which has no meaning, so it is clamped to 0 (the luminance term then decides alone).
    """
    masked = max_gradient(y) * edge_protection(y)
    return np.maximum(masked * (0.0001 * bg + 0.115) + (0.5 - 0.01 * bg), 0.0).astype(np.float32)


def jnd_map(rgb: np.ndarray) -> np.ndarray:
    """NAMM JND of an RGB uint8 image, float32 (H, W) in grey levels: T_l + T_t - 0.3 min(T_l, T_t)."""
    y = luminance(rgb)
    bg = background_luminance(y)
    t_l = luminance_adaptation(bg)
    t_t = texture_masking(y, bg)
    return (t_l + t_t - _OVERLAP * np.minimum(t_l, t_t)).astype(np.float32)
