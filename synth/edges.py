"""Edge maps of normal images (method.md step 1): the classical default extractor and the extractor choice.

Every extractor returns float32 (H, W) in [0, 1] with thin lines, edge = 1, background = 0, and carries an
`identity` string recorded with everything made from its maps (a generator fitted on one extractor's maps must
be fed the same extractor's maps).
"""

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from synth.errors import CheckpointError

EXTRACTORS = ("classic", "pidinet")


@runtime_checkable
class EdgeExtractor(Protocol):
    """Image -> edge map. `identity` names the extractor and its settings/weights."""

    identity: str

    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]: ...


# Linear colour-opponent basis (rows: luminance, red-green, yellow-blue). Linear, so a global gain scales
# every channel alike and the percentile normalisation below cancels it; the opponent channels find edges
# between colours of equal brightness (a whitish nut on yellow paper).
_OPPONENT = np.array(
    [[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], np.float32
)


def _opponent(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float32) / 255.0
    return cv2.transform(x, _OPPONENT)


def _structure_tensor(img: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Di Zenzo colour gradient at one scale: Jxx, Jxy, Jyy summed over channels, scale-normalised."""
    smooth = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=sigma / 8.0 * np.sqrt(2 * np.pi),
                   borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=sigma / 8.0 * np.sqrt(2 * np.pi),
                   borderType=cv2.BORDER_REFLECT)
    return (gx * gx).sum(axis=2), (gx * gy).sum(axis=2), (gy * gy).sum(axis=2)


def _magnitude_and_normal(jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest-eigenvalue gradient magnitude and the edge-normal angle of a structure tensor."""
    half_trace = 0.5 * (jxx + jyy)
    root = np.sqrt(0.25 * (jxx - jyy) ** 2 + jxy * jxy)
    magnitude = np.sqrt(np.maximum(half_trace + root, 0.0))
    angle = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)
    return magnitude.astype(np.float32), angle.astype(np.float32)


def _non_maximum_suppression(magnitude: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Keep pixels not smaller than both neighbours 1 px away along the edge normal (bilinear samples)."""
    h, w = magnitude.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.cos(angle), np.sin(angle)
    ahead = cv2.remap(magnitude, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    behind = cv2.remap(magnitude, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.where((magnitude >= ahead) & (magnitude >= behind), magnitude, 0.0).astype(np.float32)


def _soft_hysteresis(strength: np.ndarray, low: float, high: float) -> np.ndarray:
    """Ramp from `low` to `high`, keeping only 8-connected pieces above `low` that reach `high` somewhere."""
    candidate = (strength > low).astype(np.uint8)
    count, labels = cv2.connectedComponents(candidate, connectivity=8)
    if count <= 1:
        return np.zeros_like(strength)
    strong = np.zeros(count, bool)
    strong[np.unique(labels[strength >= high])] = True
    strong[0] = False
    ramp = np.clip((strength - low) / (high - low), 0.0, 1.0)
    return np.where(strong[labels], ramp, 0.0).astype(np.float32)


class ClassicEdges:
    """Multi-scale colour gradient edges: thin, in [0, 1], unchanged by a global gain or brightness offset.

    Steps: linear opponent colour channels; Di Zenzo structure tensor at three Gaussian scales, averaged (step
    edges answer alike at every scale, fine texture and noise only at the finest, so averaging favours object
    outlines); magnitude divided by a blend of a robust global level (a high percentile) and the local mean
    magnitude, so weak edges in a quiet area count as much as strong edges in a busy one; non-maximum
    suppression along the edge normal; soft hysteresis.
    """

    def __init__(
        self,
        sigmas: tuple[float, ...] = (1.0, 2.0, 3.0),
        percentile: float = 98.0,
        local_sigma: float = 12.0,
        local_weight: float = 0.5,
        low: float = 0.15,
        high: float = 0.45,
    ) -> None:
        self.sigmas = tuple(sigmas)
        self.percentile = percentile
        self.local_sigma = local_sigma
        self.local_weight = local_weight
        self.low = low
        self.high = high
        settings = (self.sigmas, percentile, local_sigma, local_weight, low, high)
        # the defaults are "classic-v1"; other settings make other maps, so they get their own identity
        if settings == ((1.0, 2.0, 3.0), 98.0, 12.0, 0.5, 0.15, 0.45):
            self.identity = "classic-v1"
        else:
            self.identity = "classic-v1-" + hashlib.sha256(repr(settings).encode()).hexdigest()[:8]

    def strength(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised edge strength (before thinning) and edge-normal angle."""
        img = _opponent(rgb)
        jxx = np.zeros(img.shape[:2], np.float32)
        jxy = np.zeros_like(jxx)
        jyy = np.zeros_like(jxx)
        for sigma in self.sigmas:
            a, b, c = _structure_tensor(img, sigma)
            jxx += a
            jxy += b
            jyy += c
        n = float(len(self.sigmas))
        magnitude, angle = _magnitude_and_normal(jxx / n, jxy / n, jyy / n)
        level = float(np.percentile(magnitude, self.percentile))
        if level <= 1e-6:
            return np.zeros_like(magnitude), angle
        local = cv2.GaussianBlur(magnitude, (0, 0), self.local_sigma, borderType=cv2.BORDER_REFLECT)
        scale = (1.0 - self.local_weight) * level + self.local_weight * 4.0 * local
        return (magnitude / np.maximum(scale, 1e-6)).astype(np.float32), angle

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        strength, angle = self.strength(rgb)
        return _soft_hysteresis(_non_maximum_suppression(strength, angle), self.low, self.high)

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [self(img) for img in images]


def get_extractor(name: str = "classic", weights: Path | None = None) -> EdgeExtractor:
    """The extractor called `name` ("classic" or "pidinet"); PiDiNet needs the official checkpoint's path."""
    if name == "classic":
        return ClassicEdges()
    if name == "pidinet":
        if weights is None:
            raise CheckpointError("--pidinet-weights is required for --edges pidinet")
        from synth.pidinet import PiDiNetEdges

        return PiDiNetEdges(Path(weights))
    raise ValueError(f"unknown edge extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
