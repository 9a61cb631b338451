"""Exact, vectorised anomaly-detection metrics: image/pixel AUROC, pixel AP, AUPRO and AU-sPRO.

Every threshold sweep is exact: the curves take every distinct score as a threshold (a pixel is positive
when its score is >= that value, which yields the same points as the official `score > t` rule over all t;
points that add no area are dropped), built from sorts, cumulative sums and binary searches, never a Python
loop over thresholds. Scores are compared as float32.

AUPRO follows MVTec AD's `generic_util.compute_pro` + `trapezoid`: regions are the 8-connected components
of every ground-truth mask, PRO is the mean per-region overlap, FPR counts all normal pixels of all images,
and the curve is integrated (trapezoids, linear interpolation at the limit) up to FPR 0.3, divided by 0.3.
AU-sPRO follows MVTec LOCO AD's official evaluation (v2.0): one region per ground-truth file ("channel"),
sPRO = min(TP / saturation area, 1), its mean over all channels of all images; FPR over pixels that are
defect-free in every channel of their image; area up to FPR 0.05, divided by 0.05.

Maps and ground truths may be lazy sequences (anything with `len` and `[i]`); the curve functions read
every map twice and every ground truth once, one image at a time, so memory stays at one image plus the
pixels above the FPR limit.
"""

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from scipy.stats import rankdata

_BUCKET_SHIFT = 12                       # histogram buckets = the top 20 bits of a score's sort key
_N_BUCKETS = 1 << (32 - _BUCKET_SHIFT)

Channel = tuple[np.ndarray, float]       # (bool mask of one defect, saturation area in pixels)


def saturation_area(defect_area: int, threshold: float, relative: bool) -> float:
    """MVTec LOCO's saturation area: int(threshold x area) if relative, else min(threshold, area)."""
    return float(int(threshold * defect_area)) if relative else float(min(threshold, defect_area))


def image_auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of image scores (label 1 = anomalous); ties count one half (Mann-Whitney U).

    Equals the trapezoid rule over all distinct thresholds. NaN when either class is missing.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if np.isnan(s).any():
        raise ValueError("image scores contain NaN")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def pixel_auroc_ap(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[float, float]:
    """Pixel-level AUROC and average precision over all pixels of all images (exact, ties handled).

    AP = sum over distinct scores v of (recall(>= v) - recall(> v)) x precision(>= v), as sklearn defines it.
    """
    _check_lengths(maps, masks)
    neg_parts, pos_parts = [], []
    for i in range(len(maps)):
        values = _scores(maps[i], i)
        gt = _bool_mask(masks[i], values.shape, i)
        neg_parts.append(values[~gt])
        pos_parts.append(values[gt])
    neg = np.concatenate(neg_parts) if neg_parts else np.zeros(0, np.float32)
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.float32)
    del neg_parts, pos_parts
    if neg.size == 0 or pos.size == 0:
        return float("nan"), float("nan")
    neg.sort()
    pos.sort()
    n0, n1 = neg.size, pos.size
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    auroc = (below.sum(dtype=np.float64) + 0.5 * tied.sum(dtype=np.float64)) / (float(n0) * n1)
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    counts = np.diff(np.r_[starts, n1])
    tp = n1 - starts
    fp = n0 - np.searchsorted(neg, pos[starts], side="left")
    ap = float(np.sum(counts / n1 * (tp / (tp + fp))))
    return float(auroc), ap


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC (see pixel_auroc_ap)."""
    return pixel_auroc_ap(maps, masks)[0]


def pixel_ap(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pixel-level average precision (see pixel_auroc_ap)."""
    return pixel_auroc_ap(maps, masks)[1]


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              max_fpr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The exact (FPR, PRO) curve from (0, 0) up to its first point with FPR >= max_fpr.

    Regions are the 8-connected components of each mask; PRO = mean overlap over all regions. Points inside
    a horizontal run (scores held by normal pixels only) are left out: they add no area.
    """
    _check_lengths(maps, masks)

    def split(i: int, scores: np.ndarray):
        gt = _bool_mask(masks[i], scores.shape, i)
        n, labels = cv2.connectedComponents(gt.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        areas = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
        weights = 1.0 / areas[labels[gt]]
        return ~gt, scores[gt], weights, n - 1

    return _curve(maps, split, max_fpr)


def spro_curve(maps: Sequence[np.ndarray], channels: Sequence[Sequence[Channel]],
               max_fpr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The exact (FPR, mean sPRO) curve of MVTec LOCO from (0, 0) up to its first point with FPR >= max_fpr.

    channels[i] lists the defects of image i as (bool mask, saturation area); [] for a good image. Empty
    channels are ignored; a saturation area below one pixel counts as one pixel (the official code divides
    by zero there). Points that add no area (horizontal runs, pixels past saturation) are left out.
    """
    _check_lengths(maps, channels)

    def split(i: int, scores: np.ndarray):
        normal = np.ones(scores.shape, dtype=bool)
        pos_values, pos_weights, n_units = [], [], 0
        for mask, saturation in channels[i]:
            gt = _bool_mask(mask, scores.shape, i)
            normal &= ~gt
            values = np.sort(scores[gt])
            if values.size == 0:
                continue
            sat = max(float(saturation), 1.0)
            top = min(values.size, math.ceil(sat))
            rank = np.arange(1, top + 1, dtype=np.float64)
            pos_values.append(values[::-1][:top])
            pos_weights.append(np.minimum(rank / sat, 1.0) - np.minimum((rank - 1.0) / sat, 1.0))
            n_units += 1
        if not pos_values:
            return normal, np.zeros(0, np.float32), np.zeros(0, np.float64), 0
        return normal, np.concatenate(pos_values), np.concatenate(pos_weights), n_units

    return _curve(maps, split, max_fpr)


def area_up_to(fpr: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    """Trapezoid area under a curve with non-decreasing x up to max_fpr, interpolating y linearly there
    (the official MVTec `trapezoid(x, y, x_max)`)."""
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = int(np.searchsorted(x, max_fpr, side="right"))
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    if inside and inside < x.size and xs[-1] < max_fpr:
        x0, x1, y0, y1 = xs[-1], x[inside], ys[-1], y[inside]
        y_at = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
        area += 0.5 * (y_at + y0) * (max_fpr - x0)
    return area


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float = 0.3) -> float:
    """Area under the PRO curve up to max_fpr, divided by max_fpr (MVTec AD). NaN without any region."""
    fpr, pro = pro_curve(maps, masks, max_fpr)
    return area_up_to(fpr, pro, max_fpr) / max_fpr if pro.size else float("nan")


def au_spro(maps: Sequence[np.ndarray], channels: Sequence[Sequence[Channel]],
            max_fpr: float = 0.05) -> float:
    """Area under the sPRO curve up to max_fpr, divided by max_fpr (MVTec LOCO AD). NaN without channels."""
    fpr, spro = spro_curve(maps, channels, max_fpr)
    return area_up_to(fpr, spro, max_fpr) / max_fpr if spro.size else float("nan")


# --- internals ------------------------------------------------------------------------------------------

Split = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, int]]


def _curve(maps: Sequence[np.ndarray], split: Split, max_fpr: float) -> tuple[np.ndarray, np.ndarray]:
    """Shared exact sweep. split(i, scores) -> (normal pixels, positive scores, their weights, regions).

    Pass 1 histograms the normal scores (top 20 bits of their sort keys) to find a score at and above which
    the normal pixels already give FPR >= max_fpr; pass 2 keeps only normal pixels at or above it. The
    normal scores are sorted once; the weighted positives are sorted once and cumulated; at every distinct
    positive score v the curve gets (FP(> v), Y(> v)) and (FP(>= v), Y(>= v)), FP read by binary search,
    then one last point at the cutoff. Returns empty arrays when there is no region at all.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    hist = np.zeros(_N_BUCKETS, dtype=np.int64)
    normals, pos_values, pos_weights = [], [], []
    n_normal = n_units = 0
    for i in range(len(maps)):
        scores = _scores(maps[i], i)
        normal, pv, pw, nu = split(i, scores)
        keys = _sort_keys(scores[normal])
        hist += np.bincount(keys >> _BUCKET_SHIFT, minlength=_N_BUCKETS)
        n_normal += keys.size
        normals.append(np.packbits(normal, axis=None))
        pos_values.append(pv)
        pos_weights.append(pw)
        n_units += nu
    if n_units == 0:
        return np.zeros(0), np.zeros(0)
    if n_normal == 0:
        raise ValueError("no defect-free pixel in any image: the false positive rate is undefined")

    at_or_above = np.cumsum(hist[::-1])[::-1]
    cutoff = np.uint32(int(np.flatnonzero(at_or_above >= max_fpr * n_normal)[-1]) << _BUCKET_SHIFT)
    cutoff_score = _from_sort_key(cutoff)

    neg_parts = []
    for i in range(len(maps)):
        scores = _scores(maps[i], i, check=False)
        normal = np.unpackbits(normals[i], count=scores.size).view(bool).reshape(scores.shape)
        neg_parts.append(_sort_keys(scores[normal & (scores >= cutoff_score)]))
    neg = np.concatenate(neg_parts)
    del neg_parts
    neg.sort()
    pos = _sort_keys(np.concatenate(pos_values))
    weights = np.concatenate(pos_weights)
    keep = pos >= cutoff
    pos, weights = pos[keep], weights[keep]
    if pos.size == 0:
        return np.array([0.0, neg.size / n_normal]), np.zeros(2)

    order = pos.astype(np.uint64) << np.uint64(32)
    order |= np.arange(pos.size, dtype=np.uint64)
    order.sort()
    value = (order >> np.uint64(32)).astype(np.uint32)[::-1]
    gained = np.cumsum(weights[(order & np.uint64(0xFFFFFFFF)).astype(np.intp)][::-1])
    last = np.r_[value[1:] != value[:-1], True]
    value, y_at = value[last], gained[last]                    # descending distinct scores, Y(>= v)
    y_above = np.r_[0.0, y_at[:-1]]                            # Y(> v)
    ascending = value[::-1]
    fp_above = (neg.size - np.searchsorted(neg, ascending, side="right"))[::-1]
    fp_at = (neg.size - np.searchsorted(neg, ascending, side="left"))[::-1]
    fp = np.r_[0, np.column_stack([fp_above, fp_at]).ravel(), neg.size]
    y = np.r_[0.0, np.column_stack([y_above, y_at]).ravel(), gained[-1]]
    new = np.r_[True, (fp[1:] != fp[:-1]) | (y[1:] != y[:-1])]
    return fp[new] / n_normal, y[new] / n_units


def _scores(a: np.ndarray, index: int, check: bool = True) -> np.ndarray:
    """A map as float32 (no copy when it is one); NaN rejected when check."""
    v = np.asarray(a, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"anomaly map {index}: expected a 2-D array, got shape {v.shape}")
    if check and v.size and np.isnan(v.max()):
        raise ValueError(f"anomaly map {index} contains NaN")
    return v


def _sort_keys(v: np.ndarray) -> np.ndarray:
    """uint32 keys with the order of the float32 scores (a < b  <=>  key(a) < key(b)); -0.0 counts as +0.0."""
    v = v + np.float32(0.0)
    bits = v.view(np.uint32)
    flip = (v.view(np.int32) >> 31).view(np.uint32)
    flip |= np.uint32(0x80000000)
    flip ^= bits
    return flip


def _from_sort_key(key: np.uint32) -> np.float32:
    """The float32 score of a sort key (-inf for keys below every number)."""
    k = np.array([key], dtype=np.uint32)
    bits = k ^ np.uint32(0x80000000) if key >= 0x80000000 else ~k
    value = bits.view(np.float32)[0]
    return np.float32(-np.inf) if np.isnan(value) else value


def _bool_mask(mask: np.ndarray, shape: tuple[int, ...], index: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"ground truth {index}: shape {m.shape} does not match its anomaly map {shape}")
    return np.ascontiguousarray(m != 0)


def _check_lengths(maps: Sequence, truths: Sequence) -> None:
    if len(maps) != len(truths):
        raise ValueError(f"{len(maps)} anomaly maps but {len(truths)} ground truths")
