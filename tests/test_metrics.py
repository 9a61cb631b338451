"""Metrics against hand-computed values and against slow, literal re-implementations of the official code."""

from bisect import bisect

import cv2
import numpy as np
import pytest
from scipy.ndimage import label

from train import metrics as M

# --- slow references --------------------------------------------------------------------------------------


def official_trapezoid(x, y, x_max):
    """MVTec's `trapezoid(x, y, x_max)` (AD `generic_util.py`; LOCO `src/util.py` `trapz` is the same)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def official_ad_aupro(maps, gts, limit=0.3):
    """The algorithm of MVTec AD's `generic_util.compute_pro`, step by step, then trapezoid / limit."""
    shape = (len(maps),) + maps[0].shape
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    num_ok = num_regions = 0
    for i, gt in enumerate(gts):
        labeled, n = label(gt, np.ones((3, 3), dtype=int))
        num_regions += n
        ok = labeled == 0
        num_ok += ok.sum()
        fp_changes[i][ok] = 1
        for k in range(n):
            region = labeled == k + 1
            pro_changes[i][region] = 1.0 / region.sum()
    scores = np.array(maps).ravel()
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    fprs = np.cumsum(fp_changes.ravel()[order]).astype(np.float32) / num_ok
    pros = np.cumsum(pro_changes.ravel()[order]) / num_regions
    keep = np.append(np.diff(scores) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    fprs = np.concatenate(([0.0], fprs, [1.0]))
    pros = np.concatenate(([0.0], pros, [1.0]))
    return official_trapezoid(fprs, pros, limit) / limit


def official_loco_au_spro(maps, channels, limit=0.05):
    """MVTec LOCO v2.0 semantics with every threshold: thresholds descending from max+1 through each distinct
    score to min-1, positive = score > t, sPRO per channel = min(TP/sat, 1), FPR = sum FP / sum (FP+TN) over
    pixels defect-free in all channels, then `get_auc_for_max_fpr` (trapz with x_max) / limit."""
    all_scores = np.concatenate([m.ravel() for m in maps])
    thresholds = [all_scores.max() + 1.0] + sorted(set(all_scores.tolist()), reverse=True)
    thresholds.append(all_scores.min() - 1.0)
    fprs, spros = [], []
    for t in thresholds:
        fp = tn = 0
        per_channel = []
        for amap, chans in zip(maps, channels, strict=True):
            binary = amap > t
            combined = np.zeros(amap.shape, dtype=bool)
            for mask, sat in chans:
                combined |= mask
                per_channel.append(min(np.logical_and(binary, mask).sum() / sat, 1.0))
            fp += np.logical_and(binary, ~combined).sum()
            tn += np.logical_and(~binary, ~combined).sum()
        fprs.append(fp / (fp + tn))
        spros.append(np.mean(per_channel))
    assert fprs[0] == 0 and fprs[-1] == 1
    return official_trapezoid(fprs, spros, limit) / limit


def reference_pixel_auroc_ap(maps, masks):
    """Per-threshold sweep: trapezoid ROC and step-wise AP over every distinct score."""
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    y = np.concatenate([g.ravel() for g in masks]).astype(bool)
    tpr, fpr, prec = [0.0], [0.0], []
    for t in sorted(set(s.tolist()), reverse=True):
        pos = s >= t
        tp, fp = np.sum(pos & y), np.sum(pos & ~y)
        tpr.append(tp / y.sum())
        fpr.append(fp / (~y).sum())
        prec.append(tp / (tp + fp))
    auroc = np.trapezoid(tpr, fpr)
    ap = np.sum(np.diff(tpr) * np.array(prec))
    return auroc, ap


def random_case(rng, n=6, shape=(32, 40), decimals=None, blobs=3):
    """Random maps correlated with random elliptic blobs (some images without any blob)."""
    maps, masks = [], []
    for i in range(n):
        gt = np.zeros(shape, dtype=np.uint8)
        for _ in range(rng.integers(0, blobs + 1) if i % 3 else 0):
            center = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
            axes = (int(rng.integers(1, 8)), int(rng.integers(1, 6)))
            cv2.ellipse(gt, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        amap = (0.5 * gt + rng.random(shape)).astype(np.float32)
        if decimals is not None:
            amap = np.round(amap, decimals).astype(np.float32)
        maps.append(amap)
        masks.append(gt.astype(bool))
    return maps, masks


# --- image AUROC ------------------------------------------------------------------------------------------

def test_image_auroc_perfect_inverted_constant():
    labels = [0, 0, 0, 1, 1]
    assert M.image_auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 1.0
    assert M.image_auroc([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 0.0
    assert M.image_auroc([0.5] * 5, labels) == 0.5


def test_image_auroc_ties_equal_trapezoid_over_distinct_thresholds():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 40).astype(float)
    labels = rng.integers(0, 2, 40)
    tpr, fpr = [0.0], [0.0]
    for t in sorted(set(scores), reverse=True):
        tpr.append(np.mean(scores[labels == 1] >= t))
        fpr.append(np.mean(scores[labels == 0] >= t))
    assert M.image_auroc(scores, labels) == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-12)
    assert M.image_auroc([0.3, 0.3, 0.3, 0.9], [0, 1, 0, 1]) == pytest.approx((0.5 + 1.0) / 2)


def test_image_auroc_one_class_is_nan():
    assert np.isnan(M.image_auroc([0.1, 0.2], [1, 1]))


# --- pixel AUROC / AP -------------------------------------------------------------------------------------

def test_pixel_metrics_perfect_inverted_constant():
    gt = np.zeros((8, 8), dtype=bool)
    gt[2:5, 3:6] = True
    assert M.pixel_auroc_ap([gt.astype(np.float32)], [gt]) == (1.0, 1.0)
    assert M.pixel_auroc([1.0 - gt], [gt]) == 0.0
    auroc, ap = M.pixel_auroc_ap([np.full((8, 8), 0.2)], [gt])
    assert auroc == 0.5 and ap == pytest.approx(9 / 64)


@pytest.mark.parametrize("decimals", [None, 1])
def test_pixel_auroc_ap_match_threshold_sweep(decimals):
    maps, masks = random_case(np.random.default_rng(2), n=3, shape=(12, 10), decimals=decimals)
    auroc, ap = M.pixel_auroc_ap(maps, masks)
    ref_auroc, ref_ap = reference_pixel_auroc_ap(maps, masks)
    assert auroc == pytest.approx(ref_auroc, abs=1e-12)
    assert ap == pytest.approx(ref_ap, abs=1e-12)


# --- AUPRO ------------------------------------------------------------------------------------------------

def test_aupro_perfect_inverted_constant():
    gt = np.zeros((16, 16), dtype=bool)
    gt[3:7, 3:7] = True
    gt[10:12, 9:15] = True
    assert M.aupro([gt.astype(np.float32), np.zeros((16, 16))], [gt, np.zeros((16, 16))]) == 1.0
    assert M.aupro([1.0 - gt], [gt]) == 0.0
    # constant map: one point (1, 1); the line from (0, 0) gives 0.5 * 0.3^2 / 0.3 = 0.15
    assert M.aupro([np.full((16, 16), 0.7)], [gt]) == pytest.approx(0.15)


def test_pro_two_regions_one_half_covered_by_hand():
    """Region A (4 px) fully detected, region B (4 px, two diagonal 2x1 pieces = one 8-connected region)
    half detected at 0.9; 46 of the 92 normal pixels score 0.5."""
    gt = np.zeros((10, 10), dtype=bool)
    gt[1:3, 1:3] = True                      # A
    gt[6:8, 6] = True                        # B, upper-left piece
    gt[8:10, 7] = True                       # B, touches the first piece only diagonally
    amap = np.zeros((10, 10), dtype=np.float32)
    amap[1:3, 1:3] = 0.9
    amap[6:8, 6] = 0.9                       # half of B
    amap[8:10, 7] = 0.1
    normal = np.flatnonzero(~gt.ravel())[:46]
    amap.ravel()[normal] = 0.5
    fpr, pro = M.pro_curve([amap], [gt])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(pro, [0, 0.75, 0.75, 1.0, 1.0])
    assert M.aupro([amap], [gt]) == pytest.approx(0.75)
    # with the limit inside the sloped part: from (0,0.75) flat to 0.5 -> still 0.75 at any limit <= 0.5
    assert M.aupro([amap], [gt], max_fpr=0.5) == pytest.approx(0.75)
    # up to 1: 0.75*0.5 + 1.0*0.5
    assert M.aupro([amap], [gt], max_fpr=1.0) == pytest.approx(0.875)


@pytest.mark.parametrize("seed,decimals", [(3, None), (4, 2), (5, 1)])
def test_aupro_matches_official_compute_pro(seed, decimals):
    maps, masks = random_case(np.random.default_rng(seed), n=8, shape=(40, 48), decimals=decimals, blobs=4)
    expected = official_ad_aupro(maps, masks)
    assert M.aupro(maps, masks) == pytest.approx(expected, abs=1e-4)
    assert abs(M.aupro(maps, masks) - expected) < 1e-5


def test_negative_scores_and_signed_zero_match_official():
    maps, masks = random_case(np.random.default_rng(10), n=6, shape=(24, 24), decimals=1)
    maps = [np.round(m - 0.75, 1).astype(np.float32) for m in maps]
    maps[0][:3] = -0.0
    maps[1][:3] = 0.0
    assert any(np.signbit(m).any() for m in maps) and any((m > 0).any() for m in maps)
    assert M.aupro(maps, masks) == pytest.approx(official_ad_aupro(maps, masks), abs=1e-6)
    channels = [[(g, 5.0)] if g.any() else [] for g in masks]
    expected = official_loco_au_spro(maps, channels, 0.3)
    assert M.au_spro(maps, channels, 0.3) == pytest.approx(expected, abs=1e-9)


def test_aupro_accepts_0_255_masks_and_checks_shapes():
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[1:3, 1:3] = 255
    assert M.aupro([gt / 255.0], [gt]) == 1.0
    with pytest.raises(ValueError, match="shape"):
        M.aupro([np.zeros((6, 7))], [gt])
    with pytest.raises(ValueError, match="NaN"):
        M.aupro([np.full((6, 6), np.nan)], [gt])


# --- AU-sPRO ----------------------------------------------------------------------------------------------

def test_saturation_area():
    assert M.saturation_area(40, 10, relative=False) == 10
    assert M.saturation_area(5, 10, relative=False) == 5
    assert M.saturation_area(19, 0.55, relative=True) == 10      # int(10.45)
    assert M.saturation_area(20, 0.5, relative=True) == 10


def test_spro_saturation_by_hand():
    """Channel 1: 40 px, absolute threshold 10 (sat 10); channel 2: 20 px, relative 0.5 (sat 10).
    At 0.9: ch1 has 5 px -> 0.5, ch2 has 15 px -> saturated 1.0; mean 0.75 at FPR 0.
    At 0.5: 74 normal px (FPR 74/740 = 0.1) and 5 more ch1 px (10 -> 1.0): mean 1.0.
    Area to 0.05: y(0.05) = 0.875, 0.05 * (0.75 + 0.875) / 2 / 0.05 = 0.8125."""
    shape = (20, 20)
    ch1 = np.zeros(shape, dtype=bool)
    ch1[0:4, 0:10] = True
    ch2 = np.zeros(shape, dtype=bool)
    ch2[10:12, 10:20] = True
    amap = np.zeros(shape, dtype=np.float32)
    amap[0, 0:5] = 0.9
    amap[1, 0:5] = 0.5
    amap[2:4, 0:10] = 0.3
    amap[1, 5:10] = 0.3
    amap[10, 10:20] = 0.9
    amap[11, 10:15] = 0.9
    amap[11, 15:20] = 0.3
    free = np.flatnonzero(~(ch1 | ch2).ravel())[-74:]
    amap.ravel()[free] = 0.5
    good = np.zeros(shape, dtype=np.float32)
    channels = [[(ch1, M.saturation_area(40, 10, False)), (ch2, M.saturation_area(20, 0.5, True))], []]
    fpr, spro = M.spro_curve([amap, good], channels)
    # (pixels past a channel's saturation add no point: the curve would repeat (0.1, 1.0) at 0.3)
    np.testing.assert_allclose(fpr, [0, 0, 0.1, 1.0])
    np.testing.assert_allclose(spro, [0, 0.75, 1.0, 1.0])
    assert M.au_spro([amap, good], channels) == pytest.approx(0.8125)
    # without saturation (sat = area) the same map scores lower
    plain = [[(ch1, 40.0), (ch2, 20.0)], []]
    assert M.au_spro([amap, good], plain) < 0.8125


@pytest.mark.parametrize("seed,decimals", [(6, 2), (7, None), (8, 1)])
def test_au_spro_matches_per_threshold_reference(seed, decimals):
    rng = np.random.default_rng(seed)
    maps, masks = random_case(rng, n=6, shape=(20, 24), decimals=decimals, blobs=2)
    channels = []
    for gt in masks:
        chans = []
        if gt.any():
            chans.append((gt, M.saturation_area(int(gt.sum()), float(rng.uniform(0.2, 1.0)), True)))
            extra = np.zeros_like(gt)
            y, x = rng.integers(0, 14), rng.integers(0, 18)
            extra[y:y + 6, x:x + 6] = True                      # may overlap the first channel
            chans.append((extra, M.saturation_area(36, int(rng.integers(5, 50)), False)))
        channels.append([(m, max(s, 1.0)) for m, s in chans])
    got = M.au_spro(maps, channels)
    assert got == pytest.approx(official_loco_au_spro(maps, channels), abs=1e-9)
    assert M.au_spro(maps, channels, max_fpr=0.3) == pytest.approx(
        official_loco_au_spro(maps, channels, limit=0.3), abs=1e-9)


def test_au_spro_perfect_and_no_channels():
    gt = np.zeros((8, 8), dtype=bool)
    gt[2:4, 2:6] = True
    maps = [gt.astype(np.float32), np.zeros((8, 8), np.float32)]
    assert M.au_spro(maps, [[(gt, 8.0)], []]) == 1.0
    assert np.isnan(M.au_spro(maps, [[], []]))


def test_lazy_sequences_are_accepted():
    maps, masks = random_case(np.random.default_rng(9), n=4, shape=(16, 16))

    class Lazy:
        def __init__(self, items):
            self.items, self.reads = items, 0

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            self.reads += 1
            return self.items[i]

    lazy_maps, lazy_masks = Lazy(maps), Lazy(masks)
    assert M.aupro(lazy_maps, lazy_masks) == M.aupro(maps, masks)
    assert lazy_maps.reads == 8 and lazy_masks.reads == 4
