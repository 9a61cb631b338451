"""Where edits may go (method.md step 3): the object's foreground, component-like regions, arbitrary shapes,
and the scale rule that keeps edits small enough for the generator to render them.

Foreground (ours): a plain threshold on the NAMM JND map selects the background on real photos (JND is high on
dark or textured floors and paper grain). Instead we threshold the *visibility of the difference from the
background*: the Lab distance of each pixel from the median colour of the image border, in JND units, smoothed
and split by Otsu (measured on hazelnut_toy and the toybox, see README/report).

Semantic regions (ours, SAM stand-in): the same figure/ground split repeated inside the foreground finds parts
lying on a carrier (nuts, screws, washers on a tray), one region per part. A single object with nothing on it
(a nut on paper) is cut into watershed cells of its edge map instead.
"""

import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from synth.features.jnd import jnd_map


class ForegroundWarning(UserWarning):
    """The foreground fell back to the whole image (object fills the frame, or nothing stood out)."""


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every background component that does not touch the image border."""
    m = mask.astype(np.uint8)
    count, labels = cv2.connectedComponents(1 - m, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.zeros(count, bool)
    keep[border] = True
    return mask.astype(bool) | ~keep[labels]


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Remove 8-connected components smaller than `min_area` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)


def _otsu(values: np.ndarray, scale: float) -> float:
    """Otsu's threshold of float values (256 bins over the 0.5..99.5 percentile range) times `scale`."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi - lo < 1e-6:
        return float(hi) + 1.0
    q = np.clip((values - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(q.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(lo + t / 255.0 * (hi - lo)) * scale


def _otsu3(values: np.ndarray) -> tuple[float, float]:
    """Two-threshold (three-class) Otsu of float values over 128 bins of the 0.5..99.5 percentile range."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi - lo < 1e-6:
        return float(hi) + 1.0, float(hi) + 1.0
    bins = 128
    index = np.clip(((values.ravel() - lo) / (hi - lo) * (bins - 1)).astype(np.int64), 0, bins - 1)
    hist = np.bincount(index, minlength=bins).astype(np.float64)
    p = hist / hist.sum()
    centres = np.arange(bins, dtype=np.float64)
    w = np.concatenate([[0.0], np.cumsum(p)])
    m = np.concatenate([[0.0], np.cumsum(p * centres)])
    i, j = np.triu_indices(bins + 1, k=1)  # classes [0, i), [i, j), [j, bins)
    w0, w1, w2 = w[i], w[j] - w[i], 1.0 - w[j]
    m0, m1, m2 = m[i], m[j] - m[i], m[-1] - m[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.nan_to_num(m0 ** 2 / w0) + np.nan_to_num(m1 ** 2 / w1) + np.nan_to_num(m2 ** 2 / w2)
    valid = (w0 > 0) & (w1 > 0) & (w2 > 0)
    k = int(np.argmax(np.where(valid, score, -1.0)))
    to_value = (hi - lo) / (bins - 1)
    return float(lo + (i[k] - 0.5) * to_value), float(lo + (j[k] - 0.5) * to_value)


def visibility(rgb: np.ndarray, jnd: np.ndarray, reference: np.ndarray, sigma: float,
               lightness_weight: float = 1.0) -> np.ndarray:
    """Lab distance of each pixel from `reference` (a Lab colour), divided by the JND map, Gaussian-smoothed.

    `lightness_weight` < 1 discounts pure lightness differences (cast shadows keep the floor's chroma).
    """
    weights = np.array([lightness_weight, 1.0, 1.0], np.float32)
    dist = np.sqrt((((_lab(rgb) - reference) * weights) ** 2).sum(axis=2))
    vis = dist / np.maximum(jnd.astype(np.float32), 1.0)
    return cv2.GaussianBlur(vis, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def foreground_with_reason(rgb: np.ndarray, jnd: np.ndarray, scale: float = 1.5, sigma: float | None = None,
                           border: float = 0.03, min_fraction: float = 0.01, full_fraction: float = 0.9,
                           border_touch: float = 0.5, lightness_weight: float = 0.25,
                           middle_ratio: float = 1.0) -> tuple[np.ndarray, str | None]:
    """Foreground mask and, when it fell back to the whole image, why ("empty", "fills_frame").

    `scale` multiplies the Otsu threshold (larger keeps the foreground tighter); `sigma` defaults to 2 px at
    256 px; `border` is the width of the border band (fraction of the short side) whose median colour is the
    background; components under `min_fraction` of the image are dropped; the whole image is returned when the
    result covers more than `full_fraction` of it or more than `border_touch` of the border pixels.
    """
    h, w = rgb.shape[:2]
    short = min(h, w)
    sigma = 2.0 * short / 256.0 if sigma is None else sigma
    band = max(1, int(round(border * short)))
    lab = _lab(rgb)
    ring = np.concatenate([lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3),
                           lab[:, :band].reshape(-1, 3), lab[:, -band:].reshape(-1, 3)])
    vis = visibility(rgb, jnd, np.median(ring, axis=0), sigma, lightness_weight)
    # Otsu splits the most visible class off. When what lies between the background and that class (the middle
    # class of a three-class Otsu) is at least as large as it, it is the object's body under its bright
    # details (a tray under its parts) and joins the foreground; when it is smaller it is a cast shadow beside
    # the object.
    top_t = _otsu(vis, scale)
    low, _ = _otsu3(vis)
    middle, top = np.count_nonzero((vis > low) & (vis <= top_t)), np.count_nonzero(vis > top_t)
    mask = vis > (low if middle >= middle_ratio * top else top_t)
    r = max(1, int(round(3 * short / 256.0)))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _disk(r)).astype(bool)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disk(r)).astype(bool)
    mask = drop_small(fill_holes(mask), int(min_fraction * h * w))
    if not mask.any():
        return np.ones((h, w), bool), "empty"
    edge_px = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if mask.mean() > full_fraction or edge_px.mean() > border_touch:
        return np.ones((h, w), bool), "fills_frame"
    return mask, None


def foreground_mask(rgb: np.ndarray, jnd: np.ndarray, **options) -> np.ndarray:
    """Bool (H, W) mask of the object; warns (ForegroundWarning) when it falls back to the whole image."""
    mask, reason = foreground_with_reason(rgb, jnd, **options)
    if reason is not None:
        warnings.warn(f"foreground: {reason}; using the whole image", ForegroundWarning, stacklevel=2)
    return mask


_PART_WEAK = 0.5  # share of the part threshold a pixel needs to join a part touching the threshold


def _grow_labels(labels: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    """Let labels spread into unlabelled `allowed` pixels, one 3x3 step at a time (nearest-label fill)."""
    out = labels.copy()
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(steps):
        empty = (out == 0) & allowed
        if not empty.any():
            break
        grown = cv2.dilate(out, kernel)
        out = np.where(empty, grown, out)
    return out


def _parts_on_carrier(rgb: np.ndarray, jnd: np.ndarray, foreground: np.ndarray, scale: float,
                      lightness_weight: float, min_area: int, contrast: float) -> np.ndarray:
    """Bool mask of what stands out from the foreground's median colour: parts lying on a carrier."""
    short = min(rgb.shape[:2])
    lab = _lab(rgb)
    carrier = np.median(lab[foreground], axis=0)
    vis = visibility(rgb, jnd, carrier, 1.0 * short / 256.0, lightness_weight)
    inner = cv2.erode(foreground.astype(np.uint8), _disk(max(1, round(4 * short / 256.0)))).astype(bool)
    if inner.sum() < min_area:
        return np.zeros_like(foreground)
    values = vis[inner]
    t = _otsu(values, scale)
    # Otsu always splits; accept only a split whose upper class clearly stands out from the typical carrier
    # pixel (measured: parts on a tray ~20x, the shaded side of a single nut 1.6-4.4x).
    if not (values > t).any() or np.median(values[values > t]) < contrast * max(np.median(values), 1e-3):
        return np.zeros_like(foreground)
    r = max(1, round(2 * short / 256.0))
    # hysteresis: a part's fainter rim (a thin or dark part blurred by the resize) joins its brighter core
    weak = (vis > _PART_WEAK * t) & inner
    count, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    strong = np.zeros(count, bool)
    strong[np.unique(labels[(vis > t) & inner])] = True
    strong[0] = False
    parts = cv2.morphologyEx(strong[labels].astype(np.uint8), cv2.MORPH_CLOSE, _disk(r)).astype(bool)
    parts = cv2.morphologyEx(fill_holes(parts).astype(np.uint8), cv2.MORPH_OPEN, _disk(r)).astype(bool)
    parts = drop_small(parts & foreground, min_area)  # rings (washers) are filled before opening
    # A part lies on the carrier: components reaching the foreground's rim (shadows, the object's own shaded
    # side) are not parts.
    count, labels = cv2.connectedComponents(parts.astype(np.uint8), connectivity=8)
    rim = cv2.dilate((foreground & ~inner).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    touching = np.unique(labels[rim & parts])
    return parts & ~np.isin(labels, touching)


def semantic_regions(rgb: np.ndarray, edge: np.ndarray, foreground: np.ndarray, jnd: np.ndarray | None = None,
                     min_fraction: float = 0.001, max_fraction: float = 0.5, edge_threshold: float = 0.3,
                     min_thickness: float = 3.0, scale: float = 1.0, lightness_weight: float = 1.0,
                     part_contrast: float = 5.0, cell_fraction: float = 0.15, cells: bool = True) -> np.ndarray:
    """uint16 label map of component-like regions inside the foreground (0 = not a candidate).

    Parts: pixels standing out from the foreground's median colour (the carrier), holes filled, one label per
    connected part. When nothing stands out (one object, e.g. a nut on paper), cells: watershed basins of the
    edge map seeded far from edges, the seeds cut on a grid of `cell_fraction` of the short side. Regions
    under `min_fraction` of the image or above `max_fraction` of the foreground are dropped, slivers thinner
    than `min_thickness` px are merged into their neighbours. `cells=False`: parts only (none when nothing
    stands out; what counting parts needs, train.composition).
    """
    h, w = foreground.shape
    fg = foreground.astype(bool)
    if not fg.any():
        return np.zeros((h, w), np.uint16)
    if jnd is None:
        jnd = jnd_map(rgb)
    min_area = max(4, int(min_fraction * h * w))
    parts = _parts_on_carrier(rgb, jnd, fg, scale, lightness_weight, min_area, part_contrast)
    labels = np.zeros((h, w), np.int32)
    count, part_labels = cv2.connectedComponents(parts.astype(np.uint8), connectivity=8)
    labels[parts] = part_labels[parts]
    if count <= 1 and not cells:
        return np.zeros((h, w), np.uint16)
    if count <= 1:
        labels = _edge_cells(edge, fg, edge_threshold, min(h, w), int(cell_fraction * min(h, w)))
    labels = _clean_labels(labels, fg, min_area, int(max_fraction * fg.sum()), min_thickness)
    return labels.astype(np.uint16)


def _edge_cells(edge: np.ndarray, fg: np.ndarray, edge_threshold: float, short: int, cell: int) -> np.ndarray:
    """Watershed cells of the foreground: seeds far from any edge, flooded over the edge map."""
    barrier = (edge > edge_threshold) | ~fg
    dist = cv2.distanceTransform((~barrier).astype(np.uint8), cv2.DIST_L2, 3)
    seeds = (dist > max(3.0, 6.0 * short / 256.0)).astype(np.uint8)
    count, markers = cv2.connectedComponents(seeds, connectivity=8)
    if count <= 1:
        return fg.astype(np.int32)
    # Split wide open areas on a coarse grid so one smooth object still yields several cells along its edges.
    ys, xs = np.indices(fg.shape)
    tile = max(8, cell)
    grid = (ys // tile) * (fg.shape[1] // tile + 1) + xs // tile + 1
    keyed = np.where(markers > 0, markers.astype(np.int64) * (grid.max() + 1) + grid, 0)
    _, markers = np.unique(keyed, return_inverse=True)
    markers = markers.reshape(fg.shape).astype(np.int32)
    count = int(markers.max()) + 1
    markers[~fg] = count  # the background floods as its own basin, dropped below
    relief = cv2.GaussianBlur((np.clip(edge, 0, 1) * 255).astype(np.uint8), (0, 0), 1.0)
    cv2.watershed(cv2.cvtColor(relief, cv2.COLOR_GRAY2BGR), markers)
    markers[(markers == count) | (markers < 0) | ~fg] = 0
    return markers


def _clean_labels(labels: np.ndarray, fg: np.ndarray, min_area: int, max_area: int,
                  min_thickness: float) -> np.ndarray:
    """Merge small regions and slivers into neighbours, drop oversized ones, renumber 1..K."""
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = False
    labels = np.where(small[labels], 0, labels)
    # Slivers: regions whose inscribed circle is thinner than min_thickness.
    dist = cv2.distanceTransform((labels > 0).astype(np.uint8), cv2.DIST_L2, 3)
    ids = np.unique(labels[labels > 0])
    if len(ids):
        thick = np.zeros(labels.max() + 1, np.float32)
        np.maximum.at(thick, labels.ravel(), dist.ravel())
        sliver = thick < min_thickness / 2.0
        sliver[0] = False
        labels = np.where(sliver[labels], 0, labels)
    labels = _grow_labels(labels.astype(np.uint16), fg, steps=3).astype(np.int32)
    areas = np.bincount(labels.ravel())
    keep = (areas >= min_area) & (areas <= max_area)
    keep[0] = False
    remap = np.zeros(len(areas), np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1)
    return remap[labels]


def arbitrary_region(shape: tuple[int, int], foreground: np.ndarray, rng: np.random.Generator,
                     size: tuple[float, float] = (0.04, 0.14), near: np.ndarray | None = None) -> np.ndarray:
    """Union of three random shapes (ellipse, rectangle, polygon; different aspect ratios) around a
    foreground point.

    `size` bounds each shape's half-extent as a fraction of the short side; the union is clipped to the
    foreground. `near` (bool) restricts the centre to those foreground pixels (e.g. edges: an edit on
    structure, not on a blank area) when any exist.
    """
    h, w = shape
    short = min(h, w)
    ys, xs = np.nonzero(near & foreground if near is not None and (near & foreground).any() else foreground)
    if len(ys) == 0:
        return np.zeros((h, w), bool)
    k = int(rng.integers(len(ys)))
    cx, cy = float(xs[k]), float(ys[k])
    canvas = np.zeros((h, w), np.uint8)
    aspects = rng.permutation([1.0, 2.0, 3.5])
    for kind, aspect in zip(rng.permutation(3), aspects, strict=True):
        major = rng.uniform(*size) * short
        minor = max(2.0, major / aspect)
        angle = rng.uniform(0.0, 180.0)
        ox, oy = rng.uniform(-0.5, 0.5, size=2) * major
        centre = (cx + ox, cy + oy)
        if kind == 0:
            cv2.ellipse(canvas, (round(centre[0]), round(centre[1])), (round(major), round(minor)),
                        angle, 0, 360, 1, -1)
        elif kind == 1:
            box = cv2.boxPoints((centre, (2 * major, 2 * minor), angle))
            cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
        else:
            n = int(rng.integers(4, 8))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(0.5, 1.0, n)
            a = np.deg2rad(angle)
            px, py = r * major * np.cos(t), r * minor * np.sin(t)
            pts = np.stack([centre[0] + px * np.cos(a) - py * np.sin(a),
                            centre[1] + px * np.sin(a) + py * np.cos(a)], axis=1)
            cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool) & foreground.astype(bool)


@dataclass(frozen=True)
class ScaleRule:
    """Bounds on one edit (method.md step 3): region area as a fraction of the foreground, and the fraction of
    the
    image's edge pixels (edge mass) the region touches. Numerous or enormous edits collapse the generator."""

    min_area: float = 0.005
    max_area: float = 0.2
    max_edges: float = 0.15

    def measure(self, region: np.ndarray, foreground: np.ndarray, edge: np.ndarray) -> tuple[float, float]:
        """(area fraction of the foreground, fraction of the edge mass inside the region)."""
        fg = max(int(np.count_nonzero(foreground)), 1)
        total = float(edge.sum())
        touched = float(edge[region].sum()) / total if total > 0 else 0.0
        return np.count_nonzero(region) / fg, touched

    def accepts(self, region: np.ndarray, foreground: np.ndarray, edge: np.ndarray) -> bool:
        """True when the region's area and touched edges lie within the bounds."""
        area, touched = self.measure(region, foreground, edge)
        return self.min_area <= area <= self.max_area and touched <= self.max_edges


def jnd_and_foreground(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(JND map float32 (H, W) in grey levels, foreground bool (H, W)) of an RGB uint8 image (method.md
    steps 2-3): every normal image's first two maps, for build and for the inpainting generator's holes."""
    jnd = jnd_map(image).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a whole-image foreground is legitimate (textures)
        foreground = np.asarray(foreground_mask(image, jnd), bool)
    return jnd, foreground
