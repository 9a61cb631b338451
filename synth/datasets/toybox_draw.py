"""Drawing the toybox: part shapes, the tray, the floor, lighting and sensor noise."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

W, H = 320, 256
SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
WALL, GAP = 8.0, 3.0  # outer tray wall and half the divider, in pixels

# part kind -> base colour (RGB) and size; the shapes are in `outline`
COLOURS = {"nut": (178, 182, 192), "screw": (208, 168, 70), "washer": (66, 128, 212), "block": (204, 58, 46)}
TRAY, COMPARTMENT = (74, 82, 78), (56, 62, 60)


def _circle(r: float, n: int = 40, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    pts = []
    corners = ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180))
    for cx, cy, a in corners:
        t = np.deg2rad(a + np.linspace(0, 90, 6))
        pts += list(zip(cx + r * np.cos(t), cy + r * np.sin(t), strict=True))
    return np.array(pts)


_SCREW = np.array([(-38, -8), (-36, -10), (-26, -10), (-26, -4.5), (30, -4.5), (38, 0), (30, 4.5), (-26, 4.5),
                   (-26, 10), (-36, 10), (-38, 8)], float)


def outline(kind: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """(outer polygon, holes) of a part in its own frame, centred on the origin, at scale 1."""
    if kind == "nut":
        return _circle(15.0, 6), [_circle(6.5, 28)]
    if kind == "washer":
        return _circle(10.0, 36), [_circle(4.5, 24)]
    if kind == "block":
        return _rounded_rect(-15, -15, 15, 15, 3), []
    if kind == "screw":
        return _SCREW, []
    raise ValueError(kind)


def details(kind: str) -> list[tuple[np.ndarray, float]]:
    """Lines drawn on a part (polyline in the part frame, brightness factor): chamfers, threads, slots."""
    if kind == "nut":
        return [(_circle(11.0, 36), 1.18), (_circle(7.5, 28), 0.6)]
    if kind == "washer":
        return [(_circle(7.5, 30), 1.2)]
    if kind == "block":
        bevel = np.array([(-14, 13), (-14, -14), (13, -14)], float)
        return [(_rounded_rect(-10, -10, 10, 10, 2), 0.72), (bevel, 1.3)]
    threads = [(np.array([(x, -4.5), (x + 2.5, 4.5)], float), 0.62) for x in range(-22, 28, 4)]
    return threads + [(np.array([(-32.0, -7.0), (-32.0, 7.0)]), 0.55)]


@dataclass
class Pose:
    """A rigid placement: frame points p -> R(angle) * scale * p + (x, y), angle in degrees."""

    x: float
    y: float
    angle: float = 0.0
    scale: float = 1.0

    def apply(self, pts: np.ndarray) -> np.ndarray:
        a = np.deg2rad(self.angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * self.scale
        return pts @ rot.T + (self.x, self.y)


@dataclass
class PartDrawing:
    """One part in image coordinates, ready to draw."""

    kind: str
    outer: np.ndarray
    holes: list[np.ndarray]
    lines: list[tuple[np.ndarray, float]]
    colour: tuple[float, float, float]
    chunk: np.ndarray | None = None  # polygon cut out of the part (a broken part)


def _pts(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def fill(poly: np.ndarray, shape: tuple[int, int] = (H, W), aa: bool = False) -> np.ndarray:
    """A polygon rasterised as uint8 0/255 (anti-aliased edges when `aa`)."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [_pts(poly)], 255, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)
    return out


def footprint(part: PartDrawing) -> np.ndarray:
    """bool (H, W): where the part lies, holes included (what a missing part leaves empty)."""
    return fill(part.outer) > 0


def coverage(part: PartDrawing, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """float (H, W) in [0, 1]: the part's material, anti-aliased, without holes and broken-off chunk."""
    cov = fill(part.outer, shape, aa=True)
    for hole in part.holes:
        cv2.fillPoly(cov, [_pts(hole)], 0, cv2.LINE_AA, SHIFT)
    if part.chunk is not None:
        cv2.fillPoly(cov, [_pts(part.chunk)], 0, cv2.LINE_AA, SHIFT)
    return cov.astype(np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], shape=(H, W)) -> np.ndarray:
    small = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def floor(rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W, 3) RGB: a wooden bench top with grain, knots of colour and fine speckle."""
    base = np.array([162, 128, 90], np.float32) * rng.uniform(0.8, 1.12) * rng.uniform(0.94, 1.06, 3)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    a = rng.uniform(-0.25, 0.25)
    phase = (yy * np.cos(a) + xx * np.sin(a)) / rng.uniform(5, 11) + 2.5 * _smooth_noise(rng, (4, 6))
    grain = np.sin(2 * np.pi * phase) * 0.07 + 0.1 * _smooth_noise(rng, (3, 4))
    speck = rng.normal(0, 0.03, (H, W)).astype(np.float32)
    return base * (1 + grain + speck)[:, :, None]


def draw_tray(img: np.ndarray, outer: np.ndarray, compartments: list[np.ndarray], rng: np.random.Generator,
              light: tuple[float, float]) -> None:
    """Tray with drop shadow and four recessed compartments (inner shadow near their walls), in place."""
    shadow = cv2.GaussianBlur(fill(outer + np.array(light) * 3).astype(np.float32) / 255, (0, 0), 3)
    img *= (1 - 0.5 * shadow)[:, :, None]
    cov = fill(outer, aa=True).astype(np.float32)[:, :, None] / 255
    grain = (1 + 0.03 * _smooth_noise(rng, (8, 10)))[:, :, None]
    tray = np.array(TRAY, np.float32) * rng.uniform(0.85, 1.15) * grain
    img[:] = img * (1 - cov) + tray * cov
    inside = np.zeros((H, W), np.uint8)
    cv2.fillPoly(inside, [_pts(c) for c in compartments], 255, cv2.LINE_AA, SHIFT)
    dist = cv2.distanceTransform((inside > 127).astype(np.uint8), cv2.DIST_L2, 3)
    depth = np.clip(dist / 6.0, 0, 1) * 0.3 + 0.7
    colour = np.array(COMPARTMENT, np.float32) * rng.uniform(0.9, 1.1)
    a = (inside.astype(np.float32) / 255)[:, :, None]
    img[:] = img * (1 - a) + (colour * depth[:, :, None]) * a
    cv2.polylines(img, [_pts(c) for c in compartments], True, (125, 135, 130), 1, cv2.LINE_AA, SHIFT)


def _window(poly: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(poly.min(0)).astype(int) - margin
    x1, y1 = np.ceil(poly.max(0)).astype(int) + margin + 1
    return max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)


def draw_part(img: np.ndarray, part: PartDrawing, light: tuple[float, float]) -> None:
    """A part with its drop shadow, shading and detail lines, in place (work limited to the part's window)."""
    x0, y0, x1, y1 = _window(part.outer, 8)
    off = np.array([x0, y0], float)
    shape = (y1 - y0, x1 - x0)
    local = PartDrawing(part.kind, part.outer - off, [h - off for h in part.holes], [], part.colour,
                        None if part.chunk is None else part.chunk - off)
    cov = coverage(local, shape)
    view = img[y0:y1, x0:x1]
    dx, dy = round(light[0] * 2.5), round(light[1] * 2.5)
    shifted = np.zeros_like(cov)
    shifted[dy:, dx:] = cov[:shape[0] - dy, :shape[1] - dx]
    shadow = cv2.GaussianBlur(shifted, (0, 0), 1.6)
    view *= (1 - 0.55 * shadow)[:, :, None]
    centre = part.outer.mean(0) - off
    r = max(np.ptp(part.outer, 0).max() / 2, 1.0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    proj = ((xx - centre[0]) * light[0] + (yy - centre[1]) * light[1]) / r * 0.5 + 0.5
    shade = 1.12 - 0.24 * np.clip(proj, 0, 1)
    layer = np.clip(np.array(part.colour, np.float32) * shade[:, :, None], 0, 255).astype(np.uint8)
    for line, factor in part.lines:
        colour = tuple(float(min(255, c * factor)) for c in part.colour)
        cv2.polylines(layer, [_pts(line - off)], len(line) > 2, colour, 1, cv2.LINE_AA, SHIFT)
    view[:] = view * (1 - cov[:, :, None]) + layer.astype(np.float32) * cov[:, :, None]


def draw_scratch(img: np.ndarray, pts: np.ndarray, colour: tuple[float, ...], clip: np.ndarray) -> None:
    """A thin anti-aliased stroke, limited to `clip` (bool), in place."""
    stroke = np.zeros((H, W), np.uint8)
    cv2.polylines(stroke, [_pts(pts)], False, 255, 1, cv2.LINE_AA, SHIFT)
    a = (stroke.astype(np.float32) / 255 * clip)[:, :, None]
    img[:] = img * (1 - a) + np.array(colour, np.float32) * a


def draw_stain(img: np.ndarray, alpha: np.ndarray, colour: tuple[float, ...],
               rng: np.random.Generator) -> None:
    """A blotch with mottled colour blended by `alpha` (float H x W), in place."""
    mottle = 1 + 0.25 * _smooth_noise(rng, (24, 30))[:, :, None]
    img[:] = img * (1 - alpha[:, :, None]) + np.array(colour, np.float32) * mottle * alpha[:, :, None]


def finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, vignette, colour cast, optical blur and sensor noise; returns RGB uint8."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(0.05, 0.22) * ((xx - W / 2) * np.cos(a) + (yy - H / 2) * np.sin(a)) / W
    vignette = 1 - rng.uniform(0.03, 0.12) * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 4
    cast = np.array([1 + rng.uniform(-0.04, 0.04), 1.0, 1 + rng.uniform(-0.04, 0.04)], np.float32)
    out = img * (grad * vignette * rng.uniform(0.9, 1.1))[:, :, None] * cast
    out = cv2.GaussianBlur(out, (0, 0), 0.6)
    out += rng.normal(0, rng.uniform(1.2, 3.0), out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
