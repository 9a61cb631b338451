"""The anomaly image and its honest mask (method.md step 6, ours).

R_A = G(E_A) and R_N = G(E_j) come from the same generator, so its own reconstruction error cancels: the mask
is where they differ (1 - SSIM > tau, or a Lab colour distance > delta_e) inside the dilated edit region,
cleaned of specks and pinholes. R_A, corrected for the generator's colour error measured around the edit
(`unbias`), enters the normal image only through a feathered copy of that mask, so
every changed pixel lies within `feather` px of the mask and beyond it the anomaly image equals the normal
image bit for bit.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from synth.edit.geometry import bbox_of
from synth.edit.geometry import dilate as _dilate
from synth.ssim import MARGIN, ssim, ssim_map, ssim_within

REASONS = ("no_region", "empty_mask", "collapsed_render")
TAU = 0.15
DELTA_E = 10.0  # Lab units (OpenCV 8-bit scale); catches colour changes that keep the structure
SSIM_MARGIN = MARGIN  # in a crop with this margin, SSIM values equal full-image ones (synth.ssim.MARGIN)


@runtime_checkable
class Renderer(Protocol):
    """Edge-to-image: the fitted generator (synth.render.generator) or the stand-in (synth.render.standin).

    `kind` "global" renders the whole image from the edges (holes are ignored); "inpaint" repaints only the
    `holes` of the normals and returns the normals bit for bit elsewhere (synth.render.inpaint).
    """

    identity: str
    kind: str

    def render(self, edges: np.ndarray, normals: np.ndarray, holes: np.ndarray | None = None) -> np.ndarray:
        """(B,H,W) float32 edge maps in [0,1], (B,H,W,3) uint8 normals and (B,H,W) bool holes ->
        (B,H,W,3) uint8 images."""
        ...


@dataclass
class Composed:
    """The anomaly image, its mask, and why the sample was rejected (None when accepted)."""

    anomaly: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # bool (H, W)
    reason: str | None = None


def default_sizes(shape: tuple[int, int]) -> dict:
    """Pixel sizes scaled to the image: dilation, feather, smallest component, largest hole filled, and the
    scales of the colour correction (`unbias`) and of the texture smoothing (`flatten`)."""
    s = min(shape) / 256.0
    return {"dilate": max(1, round(4 * s)), "feather": max(1, round(3 * s)),
            "min_area": max(4, round(16 * s * s)), "hole_area": max(4, round(24 * s * s)), "bias": 8.0 * s,
            "flat": 2.0 * s}


def edit_hole(region: np.ndarray) -> np.ndarray:
    """The hole an inpainting generator repaints for an edit: the region dilated as `compose` dilates it
    (`default_sizes`), so every pixel the mask may take lies inside it. bool (H, W)."""
    return _dilate(np.asarray(region, bool), default_sizes(region.shape)["dilate"])


def feather_support(mask: np.ndarray, feather: int) -> np.ndarray:
    """Where the feathered mask is non-zero: the mask dilated by a disk of radius `feather`."""
    return _dilate(mask, feather)


def feather_weights(mask: np.ndarray, feather: int) -> np.ndarray:
    """float32 weights: 1 on the mask, falling linearly with distance, 0 beyond `feather` px."""
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    w = np.clip(1.0 - dist / (feather + 1.0), 0.0, 1.0).astype(np.float32)
    return np.where(feather_support(mask, feather), w, 0.0).astype(np.float32)


def paste(normal: np.ndarray, layer: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    """uint8 `normal` (H, W, 3) with `layer` (same shape, float or uint8 in 0..255) blended in through `mask`
    feathered by `feather` px: `layer` (rounded) on the mask, `normal` bit for bit beyond the feather."""
    weights = feather_weights(mask, feather)[..., None]
    blended = np.round(normal.astype(np.float32) * (1.0 - weights) + np.asarray(layer, np.float32) * weights)
    return np.where(weights > 0, np.clip(blended, 0, 255).astype(np.uint8), normal)


def lab_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel colour distance (H, W) float32 of two uint8 RGB images in OpenCV's 8-bit Lab (L in
    grey-level-like units, so a pure brightness change measures about its luminance change)."""
    la = cv2.cvtColor(a, cv2.COLOR_RGB2LAB).astype(np.float32)
    lb = cv2.cvtColor(b, cv2.COLOR_RGB2LAB).astype(np.float32)
    return np.sqrt(((la - lb) ** 2).sum(axis=2))


def _colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lab distance of two uint8 RGB images, lightly smoothed (SSIM ignores a uniform colour shift)."""
    return cv2.GaussianBlur(lab_distance(a, b), (5, 5), 1.0, borderType=cv2.BORDER_REFLECT)


def clean_mask(mask: np.ndarray, min_area: int, hole_area: int) -> np.ndarray:
    """Drop components under `min_area` px and fill holes under `hole_area` px."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    mask = keep[labels]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area < hole_area)
    inner[0] = False
    return mask | inner[labels]


def flatten(render: np.ndarray, edge: np.ndarray, sigma: float, threshold: float = 0.3) -> np.ndarray:
    """The render with its texture smoothed away from the edges it was drawn from (float32).

    An edge map marks all structure, so where it has no edge the image should be flat: a removed part
    should leave clean carrier, not the checkerboard and speckle a small generator paints there (a model
    would learn the speckle instead of the missing part). Pixels more than ~2 sigma from an edge get the
    Gaussian-smoothed render, blending in over the next sigma; near edges the render is kept as drawn.
    """
    render = render.astype(np.float32)
    if sigma <= 0:
        return render
    # capped: with no edge at all the distances are ~FLT_MAX and would overflow the division below
    far = np.minimum(cv2.distanceTransform((edge < threshold).astype(np.uint8), cv2.DIST_L2, 3), 4.0 * sigma)
    w = np.clip((far - 2.0 * sigma) / sigma, 0.0, 1.0)[..., None]
    smooth = cv2.GaussianBlur(render, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return render * (1.0 - w) + smooth * w


def unbias(render_a: np.ndarray, render_n: np.ndarray, normal: np.ndarray, changed: np.ndarray,
           sigma: float) -> np.ndarray:
    """R_A plus the generator's own colour error, measured around the edit, as float32.

    A small generator renders the right shapes in slightly wrong colours (a tint, a darker tray); pasted as
    is, every edit is a discoloured patch and a model learns "tint = anomaly". The error normal - R_N is
    taken only where the edit changed nothing (`changed` False), inpainted into the edit and low-passed
    (Gaussian `sigma` px): measured inside, it would carry the old part's own residue back in (a removed
    part would leave a ghost). sigma <= 0 returns R_A unchanged.
    """
    a = render_a.astype(np.float32)
    if sigma <= 0:
        return a
    err = normal.astype(np.float32) - render_n.astype(np.float32)
    holes = changed.astype(np.uint8)
    if holes.any():   # the edit's pixels take the error of their surroundings
        err = np.dstack([cv2.inpaint(np.ascontiguousarray(err[..., c]), holes, 3, cv2.INPAINT_TELEA)
                         for c in range(err.shape[2])])
    fill = cv2.GaussianBlur(err, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(a + fill, 0.0, 255.0)


def compose(normal: np.ndarray, render_a: np.ndarray, render_n: np.ndarray, region: np.ndarray,
            edge_a: np.ndarray | None = None, tau: float = TAU, delta_e: float = DELTA_E,
            dilate: int | None = None, feather: int | None = None, min_area: int | None = None,
            hole_area: int | None = None, bias: float | None = None, quality: dict | None = None) -> Composed:
    """Anomaly image and mask from the normal image and the renders of the edited (R_A) and normal (R_N)
    edges; `edge_a` (the edited edge map, when the render came from one) lets `flatten` clean edge-free areas.

    Pixel sizes default to `default_sizes` (at 256 px: 4 px dilation, 3 px feather, 16 px specks, colour
    error low-passed at 8 px (`unbias`), texture smoothed from 8 px off the edges (`flatten`)). Rejections
    carry a reason: "no_region" (empty edit region), "empty_mask" (the edit changed nothing visible) and, when
    the generator's `quality` record is given, "collapsed_render" (R_A far below the generator's usual SSIM to
    the normal image, see `collapsed`).
    """
    sizes = default_sizes(normal.shape[:2])
    dilate = sizes["dilate"] if dilate is None else dilate
    feather = sizes["feather"] if feather is None else feather
    min_area = sizes["min_area"] if min_area is None else min_area
    hole_area = sizes["hole_area"] if hole_area is None else hole_area
    bias = sizes["bias"] if bias is None else bias
    empty = np.zeros(normal.shape[:2], bool)
    if not region.any():
        return Composed(normal.copy(), empty, "no_region")
    if quality and collapsed(render_a, normal, quality):
        return Composed(normal.copy(), empty, "collapsed_render")
    grown = _dilate(region, dilate)
    h, w = grown.shape
    x0, y0, x1, y1 = bbox_of(grown)
    m = SSIM_MARGIN + feather + 1  # all work happens in this crop; outside it nothing can change
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    crop = (slice(cy0, cy1), slice(cx0, cx1))
    a, b, g = render_a[crop], render_n[crop], grown[crop]
    changed = ((1.0 - ssim_map(a, b)) > tau) | (_colour_distance(a, b) > delta_e)
    local = clean_mask(changed & g, min_area, hole_area) & g
    if not local.any():
        return Composed(normal.copy(), empty, "empty_mask")
    n = normal[crop]
    a = a if edge_a is None else flatten(a, edge_a[crop], sizes["flat"])
    a = unbias(a, b, n, feather_support(local, feather + 1), bias)
    anomaly = normal.copy()
    anomaly[crop] = paste(n, a, local, feather)
    mask = empty
    mask[crop] = local
    return Composed(anomaly, mask, None)


def collapsed(render_n: np.ndarray, normal: np.ndarray, gate: dict | None, margin: float = 0.05,
              within: np.ndarray | None = None) -> bool:
    """True when SSIM(R_N, normal) falls far below the generator's typical quality.

    `gate` is the generator's quality record ({"ssim_p05", "ssim_mean", "ssim_std"} or the same without the
    "ssim_" prefix); the floor is p05 - margin, else mean - 3 std - margin. An empty gate never rejects.
    `within` (bool (H, W)): compare only there, as an inpainting generator's record is measured inside its
    holes (outside them R_N is the normal image).
    """
    if not gate:
        return False
    get = {k.removeprefix("ssim_"): v for k, v in gate.items()}
    if "p05" in get:
        floor = float(get["p05"]) - margin
    elif "mean" in get:
        floor = float(get["mean"]) - 3.0 * float(get.get("std", 0.0)) - margin
    else:
        return False
    value = ssim(render_n, normal) if within is None else ssim_within(render_n, normal, within)
    return value < floor
