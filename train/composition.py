"""The composition branch: count the parts of the whole image and compare them with the normal images' (issue 24).

A logical anomaly of a loose-parts product is a fact about the whole image: one screw too many, a part of a kind
never seen, one missing. A network that judges each place from its neighbourhood cannot count; the trained
global branches (train/global_branch.py) did not learn to at the demo budget (BENCHMARKS.md). This branch
counts explicitly, as CSAD (Hsieh & Lai, 2024: component counts and class histograms against the normal
images') and SALAD (Fučka et al., 2025: a composition map of part classes) do, with the synthesis side's own
part regions (synth.features.regions.semantic_regions) in place of their learned segmenters:

1. parts: every normal source image of the shards is cut into part regions at WORK px; each part is described
   by its mean CIELAB colour, log area (share of the image) and log elongation (principal axes' ratio);
2. part classes: k-means on the standardised descriptors, k (2..MAX_CLASSES) by the silhouette;
3. composition: per image the count of each class; the count score is the mean L1 distance to the K_NEAREST
   nearest normal count vectors (one screw too many or too few: 1), the novelty of a part its distance to the
   nearest normal part (a part of a kind never seen); both in units of their 95th percentile over the normal
   images, each measured leaving that image out; the image score is their sum (the count score plus the
   largest novelty), again in units of its normal 95th percentile v, as probability 1 - exp(-v);
4. map: a part is painted with its novelty plus, when its class has more members than in the nearest normal
   composition, the count distance in parts, not in normal units: the map must light one extra part even
   where a few normal images' counts are off too (every member: any of them may be the extra one; sPRO's
   false positives are counted on normal images' pixels, and parts are few of those). Values up to 1 are what
   normal images show and map to probability 0 (so normal parts stay dark); above it, p = 1 - exp(-(v - 1)).

It is fitted, not trained: deterministic (k-means seeded), seconds on a CPU, and stored in the checkpoint as
tensors (weights_only loading). A missing part has no pixels to point at: only the image score sees it
(painting the area where normal images hold the missing class, a tray's compartment, found missing screws but
also lit compartments on normal images where the region finder missed a part, and cost tray 16 points of
AU-sPRO: BENCHMARKS.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.spatial.distance import cdist

from synth.errors import ShardError
from synth.features.edges import ClassicEdges
from synth.features.regions import jnd_and_foreground, semantic_regions

WORK = 256            # px: parts are found at this square size (the region finder's thresholds are in pixels)
MAX_CLASSES = 8
K_NEAREST = 5         # normal count vectors a test composition is compared with
MAX_BANK = 4000       # normal parts kept for the novelty search and the silhouette (a seeded subsample above)
FEATURES = 5          # L, a, b, log area share, log elongation


def find_parts(image: np.ndarray, cells: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels (WORK, WORK) int32, 0 = no part, 1..K; descriptors (K, FEATURES) float32) of an RGB uint8
    (H, W, 3) image, resized to WORK x WORK. Parts are what stands out from a carrier; a single object with
    nothing on it (a hazelnut) has none, and the branch then scores every image alike (it abstains).
    `cells`: when nothing stands out, watershed cells instead (scoring a product whose normals have parts: a
    part recoloured until it swallows the carrier's contrast leaves no parts, and cells still point at it).
    Descriptor: mean CIELAB (OpenCV's 8-bit scale), log of the area
    as a share of the image, log of the ratio of the principal axes (0 for a disc)."""
    image = np.ascontiguousarray(image, np.uint8)
    up = image.shape[0] < WORK or image.shape[1] < WORK    # cubic keeps small parts' outlines when enlarging
    img = cv2.resize(image, (WORK, WORK), interpolation=cv2.INTER_CUBIC if up else cv2.INTER_AREA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # a foreground that fills the frame is legitimate here
        jnd, foreground = jnd_and_foreground(img)
        labels = semantic_regions(img, ClassicEdges()(img), foreground, jnd, cells=cells).astype(np.int32)
    return describe(img, labels)


def describe(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels renumbered 1..K without gaps, descriptors (K, FEATURES) float32) of the parts `labels` (int,
    0 = none) of an RGB uint8 image of the same size; descriptor i belongs to label i + 1."""
    labels = np.asarray(labels, np.int32)
    img = np.ascontiguousarray(image, np.uint8)
    k = int(labels.max())
    if k == 0:
        return labels, np.zeros((0, FEATURES), np.float32)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=k + 1)[1:].astype(np.float64)
    present = area > 0
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    ys, xs = np.indices(labels.shape)
    cols = [lab[:, 0], lab[:, 1], lab[:, 2], xs.ravel().astype(np.float64), ys.ravel().astype(np.float64)]
    sums = np.stack([np.bincount(flat, weights=c, minlength=k + 1)[1:] for c in cols], 1)
    safe = np.maximum(area, 1.0)[:, None]
    mean = sums / safe
    x, y = xs.ravel() - mean[:, 3][np.maximum(flat - 1, 0)], ys.ravel() - mean[:, 4][np.maximum(flat - 1, 0)]
    second = np.stack([np.bincount(flat, weights=w, minlength=k + 1)[1:] for w in (x * x, x * y, y * y)], 1) / safe
    trace = second[:, 0] + second[:, 2]
    det = second[:, 0] * second[:, 2] - second[:, 1] ** 2
    root = np.sqrt(np.maximum(trace ** 2 / 4 - det, 0.0))
    major, minor = trace / 2 + root, np.maximum(trace / 2 - root, 0.0)
    elong = 0.5 * np.log((major + 1e-3) / (minor + 1e-3))
    desc = np.column_stack([mean[:, :3], np.log(area / labels.size + 1e-9), elong])[present]
    if not present.all():                    # renumber so that label i + 1 is descriptor i
        remap = np.zeros(k + 1, np.int32)
        remap[1:][present] = np.arange(1, int(present.sum()) + 1)
        labels = remap[labels]
    return labels, desc.astype(np.float32)


def _silhouette(z: np.ndarray, assign: np.ndarray, k: int) -> float:
    d = cdist(z, z)
    sizes = np.bincount(assign, minlength=k).astype(np.float64)
    per = np.stack([d[:, assign == j].sum(1) for j in range(k)], 1)        # (n, k) summed distances
    own = sizes[assign]
    a = per[np.arange(len(z)), assign] / np.maximum(own - 1, 1)
    other = np.where(np.arange(k)[None] == assign[:, None], np.inf, per / np.maximum(sizes, 1)[None])
    other[:, sizes == 0] = np.inf
    b = other.min(1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def _classes(z: np.ndarray) -> np.ndarray:
    """Centroids (k, FEATURES) of the part classes: k-means, k by the best silhouette (1 class when fewer
    than 4 distinct parts)."""
    if len(np.unique(z.round(4), axis=0)) < 4:
        return z.mean(0, keepdims=True)
    best = (-np.inf, z.mean(0, keepdims=True))
    for k in range(2, min(MAX_CLASSES, len(z) - 1) + 1):
        centroids, assign = kmeans2(z, k, seed=np.random.default_rng(k), minit="++")
        used = np.unique(assign)
        if len(used) < 2:
            continue
        score = _silhouette(z, np.searchsorted(used, assign), len(used))
        if score > best[0]:
            best = (score, centroids[used])
    return best[1]


@dataclass(frozen=True)
class Composition:
    """A fitted composition model: standardisation, part classes, normal count vectors, the normal part bank
    and the two 95th-percentile scales (float32 arrays; see the module docstring)."""

    mean: np.ndarray           # (FEATURES,)
    std: np.ndarray            # (FEATURES,)
    centroids: np.ndarray      # (k, FEATURES) standardised
    counts: np.ndarray         # (n_images, k) count vector of each normal image
    bank: np.ndarray           # (m, FEATURES) standardised normal parts
    count_scale: float
    novelty_scale: float
    image_scale: float         # 95th percentile of the normal images' count + novelty score (leaving each out)

    @classmethod
    def fit(cls, images: Iterable[np.ndarray]) -> Composition:
        """Fit on normal RGB uint8 images (any size; at least 2). ValueError when fewer than 2 are given."""
        described = [find_parts(img)[1] for img in images]
        if len(described) < 2:
            raise ValueError(f"the composition branch needs at least 2 normal images, got {len(described)}")
        parts = np.concatenate(described) if any(len(d) for d in described) else np.zeros((0, FEATURES))
        if len(parts) == 0:       # nothing stands out anywhere (a texture): one empty class, every count 0
            zero = np.zeros(FEATURES, np.float32)
            return cls(zero, np.ones(FEATURES, np.float32), zero[None], np.zeros((len(described), 1), np.float32),
                       np.zeros((0, FEATURES), np.float32), 1.0, 1.0, 1.0)
        mean, std = parts.mean(0), parts.std(0) + 1e-3
        zs = [(d - mean) / std for d in described]
        bank = np.concatenate(zs)       # a seeded subsample of the normal parts: the bank and the silhouette's
        keep = np.sort(np.random.default_rng(0).choice(len(bank), min(len(bank), MAX_BANK), replace=False))
        owner = np.concatenate([np.full(len(z), i) for i, z in enumerate(zs)])[keep]
        bank = bank[keep]
        centroids = _classes(bank)
        counts = np.stack([_count(z, centroids) for z in zs]).astype(np.float32)
        novelty = [_nearest(z, bank[owner != i]) for i, z in enumerate(zs)]         # leave image i out
        count = np.array([_count_distance(c, np.delete(counts, i, 0)) for i, c in enumerate(counts)])
        found = [n for n in novelty if len(n)]
        count_scale = max(float(np.percentile(count, 95)), 0.5)
        novelty_scale = max(float(np.percentile(np.concatenate(found), 95)), 1e-3) if found else 1.0
        image = count / count_scale + np.array([n.max() if len(n) else 0.0 for n in novelty]) / novelty_scale
        return cls(mean.astype(np.float32), std.astype(np.float32), centroids.astype(np.float32), counts,
                   bank.astype(np.float32), count_scale, novelty_scale,
                   max(float(np.percentile(image, 95)), 1.0))

    def score(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """(map (WORK, WORK) float32 probability in [0, 1], image probability in [0, 1]) of an RGB uint8
        image: 0 where (and when) the parts are as the normal images' within their 95th percentile."""
        labels, desc = find_parts(image, cells=len(self.bank) > 0)
        if len(desc) == 0 or len(self.bank) == 0:
            raw = _count_distance(np.zeros(len(self.centroids)), self.counts) / self.count_scale
            return np.zeros(labels.shape, np.float32), _image_prob(raw / self.image_scale)
        z = (desc - self.mean) / self.std
        assign = _assign(z, self.centroids)
        count = np.bincount(assign, minlength=len(self.centroids)).astype(np.float32)
        parts_off = _count_distance(count, self.counts)              # in parts: 1 = one part extra or missing
        s_count = parts_off / self.count_scale
        novelty = _nearest(z, self.bank) / self.novelty_scale
        nearest = self.counts[np.abs(self.counts - count).sum(1).argmin()]
        surplus = count > nearest            # any member may be the extra one: all carry the count score
        value = novelty + surplus[assign] * parts_off
        part_prob = np.concatenate([[0.0], _prob(value)]).astype(np.float32)
        return part_prob[labels], _image_prob((s_count + float(novelty.max())) / self.image_scale)

    def classes(self, desc: np.ndarray) -> np.ndarray:
        """(K,) int: the part class of each descriptor (K, FEATURES), as `score` counts them."""
        return _assign((desc - self.mean) / self.std, self.centroids)

    def state(self) -> dict:
        """The fitted model as tensors and floats (what a checkpoint stores under "composition")."""
        arrays = {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k), np.float32))
                  for k in ("mean", "std", "centroids", "counts", "bank")}
        return arrays | {k: float(getattr(self, k)) for k in ("count_scale", "novelty_scale", "image_scale")}

    @classmethod
    def from_state(cls, state: dict) -> Composition:
        """Inverse of `state`; KeyError/TypeError/ValueError on a malformed dict."""
        arrays = {k: np.asarray(state[k].numpy() if isinstance(state[k], torch.Tensor) else state[k], np.float32)
                  for k in ("mean", "std", "centroids", "counts", "bank")}
        if arrays["mean"].shape != (FEATURES,) or arrays["centroids"].shape[1:] != (FEATURES,) \
                or arrays["counts"].shape[1:] != arrays["centroids"].shape[:1]:
            raise ValueError("composition arrays have inconsistent shapes")
        return cls(**arrays, **{k: float(state[k]) for k in ("count_scale", "novelty_scale", "image_scale")})

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """global_prob (B, H, W) and global_image (B,) float32 on x's device for a batch x (B, 3, H, W) in [0, 1]."""
        images = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        maps, scores = [], []
        for img in images:
            m, s = self.score(img)
            maps.append(cv2.resize(m, (x.shape[-1], x.shape[-2]), interpolation=cv2.INTER_NEAREST))
            scores.append(s)
        return {"global_prob": torch.from_numpy(np.stack(maps)).to(x.device),
                "global_image": torch.tensor(scores, dtype=torch.float32, device=x.device)}


def fit_on_shards(data, shards, report=None) -> Composition:
    """The branch fitted on every true normal source of a training dataset (train.balanced.training_data's
    ShardDataset or BalancedDataset, sources at the model size as the network sees them; all categories of a
    unified model together). It draws no random number from torch, so the network's weights stay those
    `--arch paper` trains with the same seed. ShardError (naming `shards`) with fewer than 2 normal sources."""
    parts = getattr(data, "parts", [data])
    count = sum(len(p.normal_sources) for p in parts)
    if report:
        report(f"fitting the composition branch on {count} normal source image(s)")
    try:
        return Composition.fit(p.source(int(i))[0] for p in parts for i in p.normal_sources)
    except ValueError as exc:
        raise ShardError(f"{shards}: {exc}") from None


def _assign(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(K,) int: the class (nearest centroid) of each standardised part descriptor."""
    return cdist(z, centroids).argmin(1)


def _count(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    if len(z) == 0:
        return np.zeros(len(centroids))
    return np.bincount(_assign(z, centroids), minlength=len(centroids))


def _count_distance(count: np.ndarray, normals: np.ndarray) -> float:
    """Mean L1 distance of a count vector to its K_NEAREST nearest normal count vectors."""
    d = np.sort(np.abs(normals - count).sum(1))
    return float(d[:K_NEAREST].mean()) if len(d) else 0.0


def _nearest(z: np.ndarray, bank: np.ndarray) -> np.ndarray:
    return cdist(z, bank).min(1) if len(z) and len(bank) else np.zeros(len(z))


def _image_prob(value: float) -> float:
    """The image score to a probability, keeping its whole ranking: 1 - exp(-v) (0.63 at the normal 95th
    percentile); the map's hinge (_prob) would tie most images at 0."""
    return float(1.0 - np.exp(-max(float(value), 0.0)))


def _prob(value):
    """Normal units to a probability: 0 up to 1 (what normal images show), then 1 - exp(-(v - 1))."""
    return 1.0 - np.exp(-np.maximum(np.asarray(value, np.float64) - 1.0, 0.0))
