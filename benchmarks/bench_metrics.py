"""Speed of the exact metric sweeps on one core (goals: each under 10 s; AUPRO on 50 maps of 256x256 < 0.4 s).

Cases: 100 maps of 256x256, 100 at MVTec LOCO size (1600x1100) and 110 of 1024x1024 (a large MVTec AD
category); random elliptic blobs as ground truth on half of the images, maps = blobs + noise. Also times an
anomalib-equivalent AUPRO (its current algorithm: torch argsort of every pixel, cumulative sums, clip at the
FPR limit) and checks that both agree.

    .venv/bin/python benchmarks/bench_metrics.py [--maps 100] [--loco-maps 100] [--mvtec-maps 110]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from train import metrics  # noqa: E402


def make_case(n: int, shape: tuple[int, int], seed: int = 0):
    """(maps (n,H,W) float32, masks (n,H,W) bool, channels per image for AU-sPRO)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    maps = rng.random((n, h, w), dtype=np.float32)
    masks = np.zeros((n, h, w), dtype=bool)
    channels = []
    for i in range(n):
        chans = []
        if i % 2:
            for _ in range(int(rng.integers(1, 4))):
                blob = np.zeros((h, w), np.uint8)
                center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                axes = (int(rng.integers(w // 40, w // 8)), int(rng.integers(h // 40, h // 8)))
                cv2.ellipse(blob, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
                blob = blob.astype(bool)
                masks[i] |= blob
                relative = bool(rng.integers(0, 2))
                threshold = 1.0 if relative else int(rng.integers(100, 5000))
                chans.append((blob, metrics.saturation_area(int(blob.sum()), threshold, relative)))
            maps[i][masks[i]] += np.float32(0.6)
        channels.append(chans)
    return maps, masks, channels


def anomalib_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """anomalib's AUPRO algorithm (global torch sort of all pixels), one process, CPU."""
    labels = np.zeros(masks.shape, np.int64)
    offset = 0
    for i, m in enumerate(masks):
        n, lab = cv2.connectedComponents(m.view(np.uint8), connectivity=8)
        labels[i] = np.where(lab > 0, lab + offset, 0)
        offset += n - 1
    labels_t = torch.from_numpy(labels).reshape(-1)
    preds = torch.from_numpy(maps).reshape(-1)
    background = (labels_t == 0).float()
    sizes = torch.bincount(labels_t).float()
    pro_change = torch.zeros_like(preds, dtype=torch.float64)
    fg = labels_t > 0
    pro_change[fg] = 1.0 / sizes[labels_t[fg]].double()
    idx = torch.argsort(preds, descending=True)
    fpr = torch.cumsum(background[idx].double(), 0) / background.sum()
    pro = torch.cumsum(pro_change[idx], 0) / offset
    sorted_preds = preds[idx]
    keep = torch.ones_like(sorted_preds, dtype=torch.bool)
    keep[:-1] = sorted_preds[:-1] != sorted_preds[1:]
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), fpr[keep]])
    pro = torch.cat([torch.zeros(1, dtype=torch.float64), pro[keep]])
    i = int((fpr <= fpr_limit).nonzero()[-1])
    if fpr[i] < fpr_limit:
        p = pro[i] + (pro[i + 1] - pro[i]) * (fpr_limit - fpr[i]) / (fpr[i + 1] - fpr[i])
        fpr = torch.cat([fpr[: i + 1], torch.tensor([fpr_limit], dtype=torch.float64)])
        pro = torch.cat([pro[: i + 1], p.reshape(1)])
    else:
        fpr, pro = fpr[: i + 1], pro[: i + 1]
    return float(torch.trapezoid(pro, fpr) / fpr[-1])


def timed(fn, *args, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=100, help="maps of 256x256")
    parser.add_argument("--loco-maps", type=int, default=100, help="maps of 1600x1100 (0 to skip)")
    parser.add_argument("--mvtec-maps", type=int, default=110,
                        help="maps of 1024x1024, a large MVTec AD category such as hazelnut (0 to skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    maps, masks, channels = make_case(args.maps, (256, 256))
    print(f"{args.maps} maps of 256x256 ({maps.size / 1e6:.1f} M pixels), one core")
    t, v = timed(metrics.aupro, maps[:50], masks[:50], repeat=3)
    print(f"  AUPRO, 50 maps                 {t:7.3f} s   (goal < 0.4 s)   = {v:.6f}")
    t, v = timed(metrics.aupro, maps, masks, repeat=3)
    print(f"  AUPRO                          {t:7.3f} s   = {v:.6f}")
    t_ref, v_ref = timed(anomalib_aupro, maps, masks)
    print(f"  AUPRO, anomalib algorithm      {t_ref:7.3f} s   = {v_ref:.6f}   (|diff| {abs(v - v_ref):.1e})")
    t, v = timed(metrics.au_spro, maps, channels, repeat=3)
    print(f"  AU-sPRO (FPR 0.05)             {t:7.3f} s   = {v:.6f}")
    t, (auroc, ap) = timed(metrics.pixel_auroc_ap, maps, masks)
    print(f"  pixel AUROC + AP               {t:7.3f} s   = {auroc:.6f}, {ap:.6f}")
    del maps, masks, channels

    if args.loco_maps:
        maps, masks, channels = make_case(args.loco_maps, (1100, 1600), seed=1)
        print(f"{args.loco_maps} maps of 1600x1100 ({maps.size / 1e6:.0f} M pixels), one core")
        t, v = timed(metrics.au_spro, maps, channels)
        print(f"  AU-sPRO (FPR 0.05)             {t:7.3f} s   (goal < 10 s)   = {v:.6f}")
        t, v = timed(metrics.aupro, maps, masks)
        print(f"  AUPRO (FPR 0.3)                {t:7.3f} s   (goal < 10 s)   = {v:.6f}")
        del maps, masks, channels

    if args.mvtec_maps:
        maps, masks, _ = make_case(args.mvtec_maps, (1024, 1024), seed=2)
        print(f"{args.mvtec_maps} maps of 1024x1024 ({maps.size / 1e6:.0f} M pixels), one core")
        t, v = timed(metrics.aupro, maps, masks)
        print(f"  AUPRO (FPR 0.3)                {t:7.3f} s   = {v:.6f}")
        t, (auroc, ap) = timed(metrics.pixel_auroc_ap, maps, masks)
        print(f"  pixel AUROC + AP               {t:7.3f} s   = {auroc:.6f}, {ap:.6f}")


if __name__ == "__main__":
    main()
