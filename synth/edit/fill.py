"""Fill the hole a part leaves with the carrier around it (ours; issue 23): copy real carrier pixels from
elsewhere in the same image, not a generator's render.

Why: a part of a fifth of the object is far over the scale a small edge-to-image generator renders without
collapsing (synth.features.regions.ScaleRule), and a diffusion-style inpaint (cv2.inpaint) smears a large
hole into a featureless blur a localizer learns instead of "part missing". The carrier (a tray floor, a
mat, a label's background) is a texture; a patch of it of the hole's shape, taken where its surroundings
look most like the hole's surroundings, reads as the same surface. This is exemplar-based filling in its
simplest form (one patch, Criminisi et al. 2004 pick patches by the same sum of squared differences on the
known border), followed by a low-frequency correction for lighting (the border's colour difference,
spread into the hole and blurred, as `synth.edit.compose.unbias` does for the generator's tint).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import fftconvolve

from synth.edit.geometry import bbox_of, dilate


def _correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """sum_p kernel[p] * image[t + p] for every top-left t where the kernel fits (scipy 'valid')."""
    return fftconvolve(image, kernel[::-1, ::-1], mode="valid")


def best_donor(image: np.ndarray, hole: np.ndarray, donor_ok: np.ndarray, ring: int) -> tuple[int, int] | None:
    """(dx, dy) such that the hole shifted by it lies on `donor_ok` and the `ring` px band around the shifted
    hole matches the band around the hole best (least mean squared RGB difference); None when no shift fits.

    `image` uint8 (H, W, 3); `hole`, `donor_ok` bool (H, W). Deterministic (ties: the first in raster order).
    """
    grown = dilate(hole, ring)
    box = bbox_of(grown)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    hk = hole[y0:y1, x0:x1].astype(np.float64)
    rk = (grown & ~hole)[y0:y1, x0:x1].astype(np.float64)
    bad = _correlate((~donor_ok).astype(np.float64), hk)
    img = image.astype(np.float64)
    ssd = np.zeros_like(bad)
    for c in range(img.shape[2]):
        plane, target = img[..., c], img[y0:y1, x0:x1, c]
        ssd += _correlate(plane * plane, rk) - 2.0 * _correlate(plane, rk * target) + float((rk * target ** 2).sum())
    ssd[bad > 0.5] = np.inf
    if not np.isfinite(ssd).any():
        return None
    ty, tx = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
    return int(tx) - x0, int(ty) - y0


def fill_hole(image: np.ndarray, hole: np.ndarray, donor_ok: np.ndarray, ring: int = 3) -> np.ndarray:
    """float32 (H, W, 3): `image` with the `hole` (bool (H, W)) replaced by the best-matching patch of
    `donor_ok` (`best_donor`), its colour matched to the hole's border; outside the hole, `image` unchanged.
    Where no patch fits (no carrier big enough) the hole is diffused in from its border (cv2.inpaint, Telea).
    """
    out = image.astype(np.float32)
    if not hole.any():
        return out
    shift = best_donor(image, hole, donor_ok & ~hole, ring)
    if shift is None:
        painted = cv2.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8), ring + 2, cv2.INPAINT_TELEA)
        return np.where(hole[..., None], painted.astype(np.float32), out)
    dx, dy = shift
    grown = dilate(hole, ring + 1)
    x0, y0, x1, y1 = bbox_of(grown)
    h, w = hole.shape
    window = (slice(y0, y1), slice(x0, x1))
    # the shifted window (it fits for the hole; the ring may leave the image: clip and repeat the edge)
    ys = np.clip(np.arange(y0, y1) + dy, 0, h - 1)
    xs = np.clip(np.arange(x0, x1) + dx, 0, w - 1)
    donor = out[np.ix_(ys, xs)]
    err = out[window] - donor                      # the lighting difference, known on the ring only
    inside = hole[window].astype(np.uint8)
    err = np.dstack([cv2.inpaint(np.ascontiguousarray(err[..., c]), inside, ring + 2, cv2.INPAINT_TELEA)
                     for c in range(err.shape[2])])
    err = cv2.GaussianBlur(err, (0, 0), max(1.0, ring), borderType=cv2.BORDER_REFLECT)
    patch = np.clip(donor + err, 0.0, 255.0)
    out[window] = np.where(inside[..., None] > 0, patch, out[window])
    return out
