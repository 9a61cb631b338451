"""Geometric warps shared by edits and generator augmentation: thin-plate splines (DeepSIM) and affine jitter."""

import cv2
import numpy as np


def _tps_u(r2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        u = r2 * np.log(r2)
    return np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)


def tps_maps(shape: tuple[int, int], dst: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps for cv2.remap: the thin-plate spline taking control points `dst` to `src` (pixels, (n, 2) x/y)."""
    h, w = shape
    n = len(dst)
    k = _tps_u(((dst[:, None, :] - dst[None, :, :]) ** 2).sum(-1))
    p = np.hstack([np.ones((n, 1)), dst])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n], a[:n, n:], a[n:, :n] = k, p, p.T
    b = np.zeros((n + 3, 2))
    b[:n] = src
    coef = np.linalg.solve(a + 1e-9 * np.eye(n + 3), b)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    u = _tps_u(((pts[:, None, :] - dst[None, :, :]) ** 2).sum(-1))
    out = u @ coef[:n] + coef[n] + pts @ coef[n + 1:]
    return out[:, 0].reshape(h, w).astype(np.float32), out[:, 1].reshape(h, w).astype(np.float32)


def random_tps(shape: tuple[int, int], rng: np.random.Generator, grid: int = 3,
               max_shift: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """DeepSIM-style TPS: a grid x grid control lattice (borders included), each point moved by +-max_shift * W."""
    h, w = shape
    gx, gy = np.meshgrid(np.linspace(0, w - 1, grid), np.linspace(0, h - 1, grid))
    dst = np.stack([gx.ravel(), gy.ravel()], axis=1)
    src = dst + rng.uniform(-max_shift, max_shift, size=dst.shape) * w
    return tps_maps(shape, dst, src)


def random_affine(shape: tuple[int, int], rng: np.random.Generator, max_shift: float = 0.15,
                  scale: tuple[float, float] = (0.8, 1.2), max_rotation: float = 30.0) -> np.ndarray:
    """A 2x3 matrix: rotation (degrees) and scale about the centre, then a shift of up to max_shift * size."""
    h, w = shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-max_rotation, max_rotation), rng.uniform(*scale))
    m[:, 2] += rng.uniform(-max_shift, max_shift, size=2) * np.array([w, h])
    return m


def remap(img: np.ndarray, maps: tuple[np.ndarray, np.ndarray], interpolation: int = cv2.INTER_LINEAR,
          border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """Apply backward maps from tps_maps/random_tps."""
    return cv2.remap(img, maps[0], maps[1], interpolation, borderMode=border)


def affine(img: np.ndarray, matrix: np.ndarray, interpolation: int = cv2.INTER_LINEAR,
           border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Apply a 2x3 affine matrix, keeping the image size; outside pixels are zero by default."""
    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), flags=interpolation, borderMode=border)
