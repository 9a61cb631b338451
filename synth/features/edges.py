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


def _ridge(luma: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale-normalised line (ridge or valley) strength and the angle across the line: |largest| -
    |smallest| eigenvalue of the Hessian of the smoothed luminance, times sigma^2 (a line curves across
    only, a speck of noise both ways; Lindeberg's scale normalisation).

    A thin wall 1-3 px wide is a ridge: its two step edges are too close for gradients at sigma >= 1 to
    see them apart, and they cancel, but the second derivative peaks on its centre line.
    """
    smooth = cv2.GaussianBlur(luma, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    # a 3x3 Sobel second derivative also blurs by [1, 2, 1] along the other axis (a factor of 4)
    hxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3, scale=0.25, borderType=cv2.BORDER_REFLECT)
    hyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3, scale=0.25, borderType=cv2.BORDER_REFLECT)
    hxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3, scale=0.25, borderType=cv2.BORDER_REFLECT)
    half_trace = 0.5 * (hxx + hyy)
    root = np.sqrt(0.25 * (hxx - hyy) ** 2 + hxy * hxy)
    angle = 0.5 * np.arctan2(2.0 * hxy, hxx - hyy)      # eigenvector of half_trace + root
    angle = np.where(np.abs(half_trace + root) >= np.abs(half_trace - root), angle, angle + 0.5 * np.pi)
    line = 2.0 * np.minimum(np.abs(half_trace), root) * sigma * sigma
    return line.astype(np.float32), angle.astype(np.float32)


def _local_median(values: np.ndarray, sigma: float) -> np.ndarray:
    """Median of `values` over a disk-like window of radius ~2 sigma (on a grid coarsened by ~sigma/3):
    the level of the surrounding texture, which a few lines crossing the window do not raise."""
    h, w = values.shape
    step = max(1, int(round(sigma / 3.0)))
    small = cv2.resize(values, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
    top = max(float(small.max()), 1e-6)
    codes = np.clip(small / top * 1020.0, 0, 255).astype(np.uint8)  # 8-bit median; strong lines saturate
    median = cv2.medianBlur(codes, 2 * int(round(2.0 * sigma / step)) + 1).astype(np.float32) * (top / 1020.0)
    return cv2.resize(median, (w, h), interpolation=cv2.INTER_LINEAR)


_EXPOSURE = 0.9  # luminance (0..1) the 99th percentile is brought to before the JND map is read
_LINE_CAP = 1.2  # line strength ceiling, in units of `high`
_V1 = ((1.0, 2.0, 3.0), 98.0, 12.0, 0.5, 0.15, 0.45, None)
_V2 = ((1.0, 2.0, 3.0), 98.0, 12.0, 0.5, 0.1, 0.45, (1.0, 2.25, 0.5))


class ClassicEdges:
    """Multi-scale colour gradient edges plus visible thin lines: thin, in [0, 1], unchanged by a global gain
    or brightness offset.

    Step edges: linear opponent colour channels; Di Zenzo structure tensor at three Gaussian scales, averaged
    (step edges answer alike at every scale, fine texture and noise only at the finest, so averaging favours
    object outlines); magnitude divided by a blend of a robust global level (a high percentile) and the local
    mean magnitude, so weak edges in a quiet area count as much as strong edges in a busy one.
    Lines (`ridge` = (sigma, salience, visibility); identity classic-v2, ours): thin walls and rims (a light
    tray wall 1-3 px wide) give a weak gradient that one global threshold drops (classic-v1). Their strength
    is the Hessian line response measured against what is visible: divided by the local median line
    response (`salience` times it: a lone line on a quiet carrier stands out, wood grain or crumb texture
    does not stand out from itself) and by the JND map (`visibility` JND units of curvature: no lines in
    sensor noise), the smaller of the two counting, softly capped just above `high`. Steps and lines are
    thinned apart (non-maximum suppression across each), a line crest replaces the step maxima within
    2 px that it beats, then soft hysteresis (`low`, `high`; v2 lowers `low` to 0.1 so a faint wall stays
    connected). Measured on toybox drawn lines and hazelnut_toy (benchmarks/edge_recall.py): recall of the
    drawn walls and outlines 0.57 -> 0.93 at 128 px, 0.88 -> 0.96 at 256 px.
    """

    def __init__(
        self,
        sigmas: tuple[float, ...] = (1.0, 2.0, 3.0),
        percentile: float = 98.0,
        local_sigma: float = 12.0,
        local_weight: float = 0.5,
        low: float = 0.1,
        high: float = 0.45,
        ridge: tuple[float, float, float] | None = (1.0, 2.25, 0.5),
    ) -> None:
        self.sigmas = tuple(sigmas)
        self.percentile = percentile
        self.local_sigma = local_sigma
        self.local_weight = local_weight
        self.low = low
        self.high = high
        self.ridge = None if ridge is None else tuple(float(v) for v in ridge)
        settings = (self.sigmas, percentile, local_sigma, local_weight, low, high, self.ridge)
        # "classic-v1" (no lines) and "classic-v2" are the two released settings; others make other maps,
        # so they get their own identity
        named = {_V1: "classic-v1", _V2: "classic-v2"}
        if settings in named:
            self.identity = named[settings]
        else:
            version = "classic-v1" if self.ridge is None else "classic-v2"
            self.identity = version + "-" + hashlib.sha256(repr(settings).encode()).hexdigest()[:8]

    @classmethod
    def v1(cls) -> "ClassicEdges":
        """The extractor of identity classic-v1 (the default before lines were added)."""
        sigmas, percentile, local_sigma, local_weight, low, high, ridge = _V1
        return cls(sigmas, percentile, local_sigma, local_weight, low, high, ridge)

    def strength(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised edge strength (before thinning; steps or lines, whichever is stronger) and the angle
        across each edge."""
        strength, angle = self._step_strength(rgb)
        if self.ridge is None:
            return strength, angle
        lines, across = self._line_strength(rgb, _opponent(rgb)[:, :, 0])
        lines = self._soft_cap(lines)
        stronger = lines > strength
        return np.where(stronger, lines, strength), np.where(stronger, across, angle)

    def _step_strength(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised step-edge strength and edge-normal angle (classic-v1's whole strength)."""
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

    def _line_strength(self, rgb: np.ndarray, luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Line strength on the step scale (`high` = clearly visible) and the angle across each line."""
        from synth.features.jnd import jnd_map

        sigma, salience, visibility = self.ridge
        response, across = _ridge(luma, sigma)
        surround = _local_median(response, self.local_sigma * min(rgb.shape[:2]) / 256.0)
        standout = response / np.maximum(surround, 1e-3) / salience
        # judged as if exposed to a fixed bright level, so a global gain does not change what counts
        gain = _EXPOSURE / max(float(np.percentile(luma, 99.0)), 1e-3)
        exposed = np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        visible = response * gain * 255.0 / np.maximum(jnd_map(exposed), 1.0) / visibility
        return (np.minimum(standout, visible) * self.high).astype(np.float32), across

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.ridge is None:
            strength, angle = self.strength(rgb)
            return _soft_hysteresis(_non_maximum_suppression(strength, angle), self.low, self.high)
        steps, angle = self._step_strength(rgb)
        lines, across = self._line_strength(rgb, _opponent(rgb)[:, :, 0])
        thin_steps = _non_maximum_suppression(steps, angle)
        thin_lines = _non_maximum_suppression(self._soft_cap(lines), across)
        # Thinned separately (a wide step's flank would hide a thin line beside it); a line crest counts
        # where it beats every step maximum within 2 px (a step also curves, ~1 px to each side of it), and
        # then replaces them (one line, not two).
        wins = thin_lines > cv2.dilate(thin_steps, np.ones((5, 5), np.uint8))
        replaced = cv2.dilate(wins.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        thin = np.where(wins, thin_lines, np.where(replaced, 0.0, thin_steps)).astype(np.float32)
        return _soft_hysteresis(thin, self.low, self.high)

    def _soft_cap(self, lines: np.ndarray) -> np.ndarray:
        """Lines softly capped just above `high`: a line only has to be kept, it must not outrank the step
        edges; strictly increasing, so the crest of a line stays its maximum."""
        cap = _LINE_CAP * self.high
        return (cap * np.tanh(lines / cap)).astype(np.float32)

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [self(img) for img in images]


def get_extractor(name: str = "classic", weights: Path | None = None) -> EdgeExtractor:
    """The extractor called `name` ("classic" or "pidinet"); PiDiNet needs the official checkpoint's path."""
    if name == "classic":
        return ClassicEdges()
    if name == "pidinet":
        if weights is None:
            raise CheckpointError("--pidinet-weights is required for --edges pidinet")
        from synth.features.pidinet import PiDiNetEdges

        return PiDiNetEdges(Path(weights))
    raise ValueError(f"unknown edge extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
