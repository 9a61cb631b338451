"""Drawing the toybox `bottle`: its shape and labels in the bottle's own frame, every part's polygons, painting.

The bottle frame has its origin at the bottle's centre, x to the right and y down, in pixels at scale 1; a
`draw.Pose` places it in the 320 x 256 image. Labels have their own frame (their centre), placed on the bottle by
a pose of their own, so a misplaced or swapped label is only another pose. Every part is a list of polygons,
so the painting and the part masks come from the same geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw

NECK_TOP, BOTTOM = -96.0, 116.0  # the glass, from under the cap to the base (bottle frame y)
SHOULDER = (-66.0, -30.0)  # y range where the neck widens into the body
NECK_HW, BODY_HW, WALL, CORNER = 12.0, 42.0, 3.0, 8.0
CAP = (-16.0, -117.0, 16.0, -93.0)  # x0, y0, x1, y1
FRONT_HALF, SECOND_HALF = (33.0, 28.0), (22.0, 14.0)  # label half sizes
FRONT_HOME, SECOND_HOME = (0.0, 24.0), (0.0, 84.0)  # label centres in a normal image
LEVEL_TOP = -24.0  # where the liquid starts to darken with depth
BACKDROP = (206.0, 208.0, 212.0)
CAP_COLOUR = (44.0, 48.0, 58.0)
PAPER, SECOND_PAPER, BAND = (238.0, 232.0, 214.0), (246.0, 246.0, 244.0), (32.0, 52.0, 112.0)
LEAF, STEM = (66.0, 138.0, 44.0), (92.0, 96.0, 38.0)

# flavour -> liquid colour (RGB); the icon's colours are in `icon`
FLAVOURS = {"orange": (236.0, 128.0, 18.0), "cherry": (150.0, 16.0, 36.0), "lime": (138.0, 192.0, 42.0)}

_YS = np.unique(np.concatenate([np.linspace(NECK_TOP, SHOULDER[0], 4), np.linspace(*SHOULDER, 18),
                                np.linspace(SHOULDER[1], BOTTOM - CORNER, 6), np.linspace(BOTTOM - CORNER, BOTTOM, 8)]))
_BARS = np.random.default_rng(7).integers(1, 3, 20)  # the barcode's bar widths: the same on every bottle


def half_width(y: np.ndarray | float) -> np.ndarray:
    """The glass's half width (px, bottle frame) at height `y`: neck, cosine shoulder, body, rounded base."""
    y = np.asarray(y, np.float64)
    t = np.clip((y - SHOULDER[0]) / (SHOULDER[1] - SHOULDER[0]), 0, 1)
    hw = NECK_HW + (BODY_HW - NECK_HW) * (1 - np.cos(np.pi * t)) / 2
    dy = np.clip(y - (BOTTOM - CORNER), 0, CORNER)
    return hw - CORNER + np.sqrt(CORNER ** 2 - dy ** 2)


def profile(y0: float, y1: float, inset: float) -> np.ndarray:
    """The glass's cross-section between heights y0 < y1, `inset` px inside its wall, as a closed polygon."""
    ys = np.concatenate([[y0], _YS[(_YS > y0) & (_YS < y1)], [y1]])
    hw = half_width(ys) - inset
    return np.concatenate([np.stack([hw, ys], 1), np.stack([-hw, ys], 1)[::-1]])


def liquid_outline(level: float) -> np.ndarray:
    """The liquid filled to height `level` (bottle frame y; smaller is higher)."""
    return profile(max(level, NECK_TOP), BOTTOM - WALL, WALL)


def _stroke(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    d = np.subtract(p1, p0, dtype=np.float64)
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * width / 2
    return np.array([p0 + n, p1 + n, p1 - n, p0 - n])


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> np.ndarray:
    return draw.Pose(cx, cy, angle).apply(draw._circle(1.0, n) * (rx, ry))


def icon(flavour: str) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """The fruit on the front label (polygons in the label frame, each with its RGB colour), drawn in order."""
    if flavour == "orange":
        return [(draw._circle(12.0, 40, 0, 0), (242.0, 136.0, 22.0)), (_ellipse(5, -13, 6, 2.6, -25), LEAF),
                (_ellipse(-4.5, -4, 3.2, 2.2, -30), (250.0, 186.0, 110.0))]
    if flavour == "cherry":
        return [(_stroke((-6, 4), (2, -12), 1.8), STEM), (_stroke((6, 6), (2, -12), 1.8), STEM),
                (_ellipse(7, -12, 5, 2.2, -20), LEAF), (draw._circle(7.0, 30, -6, 5), (198.0, 22.0, 44.0)),
                (draw._circle(7.0, 30, 6, 7), (186.0, 18.0, 40.0))]
    if flavour == "lime":
        spokes = [(_stroke((0, 0), (8.5 * np.cos(a), 8.5 * np.sin(a)), 1.2), (120.0, 176.0, 48.0))
                  for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
        return [(draw._circle(12.5, 40, 0, 0), (78.0, 148.0, 34.0)), (draw._circle(10.0, 36, 0, 0),
                                                                       (192.0, 222.0, 104.0))] + spokes
    raise ValueError(flavour)


def front_decor() -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """The front label's print besides the icon (label frame): a brand band and two lines of text."""
    hx, hy = FRONT_HALF
    return [(draw._rounded_rect(-hx, -hy, hx, -hy + 7, 1), BAND),
            (draw._rounded_rect(-20, 15, 20, 18, 1), (96.0, 96.0, 100.0)),
            (draw._rounded_rect(-13, 21, 13, 23.5, 1), (130.0, 130.0, 134.0))]


def second_decor() -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """The second label's print (label frame): a barcode and a line of digits."""
    x, bars = -17.0, []
    for k, w in enumerate(_BARS):
        if k % 2 == 0:
            bars.append((draw._rounded_rect(x, -10, x + w * 0.9, 5, 0.1), (24.0, 24.0, 28.0)))
        x += w * 0.9 + 0.6
    return bars + [(draw._rounded_rect(-16, 8, 16, 10, 0.5), (120.0, 120.0, 124.0))]


@dataclass
class Bottle:
    """Everything an image of the bottle shows, before rendering; defects edit it and add their regions."""

    pose: draw.Pose  # bottle frame -> image
    flavour: str  # the icon's fruit
    liquid: str  # the liquid's flavour (the icon's in a normal image)
    level: float  # fill level, bottle frame y
    front: draw.Pose | None  # front label frame -> bottle frame; None: no front label
    second: draw.Pose | None  # second label frame -> bottle frame; None: no second label
    icon: bool  # the fruit is printed on the front label
    tints: dict[str, float | tuple[float, float, float]]
    render_seed: int
    chips: list[np.ndarray] = field(default_factory=list)  # pieces broken off the glass or cap (image polygons)
    marks: list[tuple] = field(default_factory=list)  # ("scratch", pts, colour, clip) or ("stain", alpha, colour)
    regions: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (defect name, bool mask)


def to_image(scene: Bottle, pts: np.ndarray, label: draw.Pose | None = None) -> np.ndarray:
    """Points of the bottle frame (or of a label's frame when `label` is its pose) in image coordinates."""
    return scene.pose.apply(label.apply(pts) if label is not None else pts)


def part_polygons(scene: Bottle) -> dict[str, list[np.ndarray]]:
    """Part name -> its polygons in image coordinates, for the parts the scene shows, in drawing order:
    glass, liquid, cap, front_label, icon, second_label. A footprint: chips do not cut it."""
    parts = {"glass": [to_image(scene, profile(NECK_TOP, BOTTOM, 0))],
             "liquid": [to_image(scene, liquid_outline(scene.level))],
             "cap": [to_image(scene, draw._rounded_rect(*CAP, 3))]}
    if scene.front is not None:
        parts["front_label"] = [to_image(scene, draw._rounded_rect(-FRONT_HALF[0], -FRONT_HALF[1], *FRONT_HALF, 2),
                                         scene.front)]
        if scene.icon:
            parts["icon"] = [to_image(scene, p + (0, -2), scene.front) for p, _ in icon(scene.flavour)]
    if scene.second is not None:
        parts["second_label"] = [to_image(scene, draw._rounded_rect(-SECOND_HALF[0], -SECOND_HALF[1],
                                                                    *SECOND_HALF, 2), scene.second)]
    return parts


def mask(polygons: list[np.ndarray]) -> np.ndarray:
    """bool (H, W): the union of polygons (image coordinates)."""
    out = np.zeros((draw.H, draw.W), np.uint8)
    for poly in polygons:
        cv2.fillPoly(out, [draw._pts(poly)], 1, cv2.LINE_8, draw.SHIFT)
    return out > 0


def _cov(polygons: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((draw.H, width), np.uint8)
    cv2.fillPoly(out, [draw._pts(p) for p in polygons], 255, cv2.LINE_AA, draw.SHIFT)
    return out.astype(np.float32) / 255


def _blend(img: np.ndarray, colour: np.ndarray, cov: np.ndarray) -> None:
    img += (colour - img) * cov[:, :, None]


def _backdrop(rng: np.random.Generator) -> np.ndarray:
    base = np.array(BACKDROP, np.float32) * rng.uniform(0.86, 1.06) * rng.uniform(0.97, 1.03, 3)
    yy = np.linspace(-0.5, 0.5, draw.H, dtype=np.float32)[:, None]
    shade = 1 + rng.uniform(-0.1, 0.1) * yy + 0.025 * draw._smooth_noise(rng, (5, 6))
    return base * shade[:, :, None]


def _frame_coords(pose: draw.Pose, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bottle-frame (x, y) of every pixel of an (H, width) window whose pose is `pose`."""
    yy, xx = np.mgrid[0:draw.H, 0:width].astype(np.float32)
    a = np.deg2rad(pose.angle)
    dx, dy = (xx - pose.x) / pose.scale, (yy - pose.y) / pose.scale
    return dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)


def _label(img: np.ndarray, scene: Bottle, outline: np.ndarray, pose: draw.Pose, paper, decor, u: np.ndarray) -> None:
    layer = np.zeros(img.shape, np.uint8)
    layer[:] = np.clip(paper, 0, 255).astype(np.uint8)
    for poly, colour in decor:
        cv2.fillPoly(layer, [draw._pts(to_image(scene, poly, pose))], colour, cv2.LINE_AA, draw.SHIFT)
    shade = (1.04 - 0.3 * np.clip(np.abs(u), 0, 1) ** 4)[:, :, None]  # wrapped around the round body
    _blend(img, layer.astype(np.float32) * shade, _cov([to_image(scene, outline, pose)], img.shape[1]))


def render(scene: Bottle) -> np.ndarray:
    """The scene as an RGB uint8 (H, W, 3) photograph-like image: backdrop and shadow, glass, liquid, cap,
    labels, marks, chips, then the shared lighting, blur and noise (toybox_draw.finish). Only a window of full
    height around the bottle and its shadow is painted, for speed."""
    rng = np.random.default_rng(scene.render_seed)
    light = rng.uniform([-1.0, 0.3], [1.0, 1.0])
    full = _backdrop(rng)
    xs = np.concatenate([p[:, 0] for p in part_polygons(scene)["glass"] + part_polygons(scene)["cap"]])
    x0, x1 = max(int(xs.min()) - 28, 0), min(int(xs.max()) + 29, draw.W)
    bg = full[:, x0:x1].copy()
    img = _paint(replace(scene, pose=replace(scene.pose, x=scene.pose.x - x0)), bg, light, x0, x1)
    full[:, x0:x1] = img
    return draw.finish(full, rng)


def _paint(scene: Bottle, bg: np.ndarray, light: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """The bottle painted on `bg`, the (H, x1 - x0) window of the backdrop that `scene`'s pose is relative to."""
    width = x1 - x0
    polys = part_polygons(scene)
    body = _cov(polys["glass"] + polys["cap"], width)
    offset = light * (7.0, 5.0)
    shadow = cv2.GaussianBlur(_cov([p + offset for p in polys["glass"] + polys["cap"]], width), (0, 0), 4)
    plain = bg.copy()  # seen through the glass: the bottle's own shadow falls behind it
    bg *= (1 - 0.32 * shadow)[:, :, None]
    bx, by = _frame_coords(scene.pose, width)
    u = bx / np.maximum(half_width(np.clip(by, NECK_TOP, BOTTOM)), 1).astype(np.float32)
    au = np.clip(np.abs(u), 0, 1)
    img = bg.copy()
    glass_cov = _cov(polys["glass"], width)
    _blend(img, plain * np.array(scene.tints["glass"], np.float32) * (0.95 - 0.5 * au ** 6)[:, :, None], glass_cov)
    liquid = np.array(FLAVOURS[scene.liquid], np.float32) * float(scene.tints["liquid"])
    depth = np.clip((by - LEVEL_TOP) / 40, 0, 1) * 0.08  # not the level: a level change stays in its band
    # the full inside cut at the level: edges that do not depend on the level, so a level change stays local
    below = np.clip((by - scene.level) * scene.pose.scale + 0.5, 0, 1)
    inside = _cov([to_image(scene, liquid_outline(NECK_TOP))], width) * below
    _blend(img, liquid * (1.08 - 0.42 * au ** 2 - depth)[:, :, None], inside)
    surface = to_image(scene, np.array([[-half_width(scene.level) + WALL, scene.level + 0.5],
                                        [half_width(scene.level) - WALL, scene.level + 0.5]]))
    cv2.polylines(img, [draw._pts(surface)], False, tuple(float(c) for c in np.minimum(liquid * 1.3 + 20, 255)),
                  1, cv2.LINE_AA, draw.SHIFT)
    shine = np.exp(-((u + 0.55 * np.sign(light[0])) / 0.1) ** 2) * 0.5 * glass_cov
    img += (255 - img) * shine[:, :, None]
    cap = np.array(CAP_COLOUR, np.float32) * float(scene.tints["cap"])
    uc = np.clip(bx / (CAP[2] - CAP[0]) * 2, -1, 1)
    layer = np.clip(cap * (1.25 - 0.55 * uc ** 2)[:, :, None], 0, 255).astype(np.uint8)
    for x in np.arange(-13.0, 13.5, 3.25):
        ridge = to_image(scene, np.array([[x, CAP[1] + 3], [x, CAP[3] - 3]]))
        cv2.polylines(layer, [draw._pts(ridge)], False, tuple(float(c) for c in cap * 0.55), 1, cv2.LINE_AA,
                      draw.SHIFT)
    _blend(img, layer.astype(np.float32), _cov(polys["cap"], width))
    paper = np.array(PAPER, np.float32) * np.array(scene.tints["paper"], np.float32)
    if scene.front is not None:
        decor = front_decor() + ([(p + (0, -2), c) for p, c in icon(scene.flavour)] if scene.icon else [])
        _label(img, scene, draw._rounded_rect(-FRONT_HALF[0], -FRONT_HALF[1], *FRONT_HALF, 2), scene.front,
               paper, decor, u)
    if scene.second is not None:
        _label(img, scene, draw._rounded_rect(-SECOND_HALF[0], -SECOND_HALF[1], *SECOND_HALF, 2), scene.second,
               np.array(SECOND_PAPER, np.float32) * np.array(scene.tints["paper"], np.float32), second_decor(), u)
    _marks(scene, img, bg, body, x0, x1)
    return img


def _marks(scene: Bottle, img: np.ndarray, bg: np.ndarray, body: np.ndarray, x0: int, x1: int) -> None:
    """Scratches, stains and chips (in image coordinates) on the window x0:x1, in place."""
    off = np.array([x0, 0.0])
    marks_rng = np.random.default_rng([scene.render_seed, 1])  # own stream: marks leave the noise unchanged
    for mark in scene.marks:
        if mark[0] == "scratch":
            stroke = np.zeros(img.shape[:2], np.uint8)
            cv2.polylines(stroke, [draw._pts(mark[1] - off)], False, 255, 1, cv2.LINE_AA, draw.SHIFT)
            _blend(img, np.array(mark[2], np.float32), stroke.astype(np.float32) / 255 * mark[3][:, x0:x1])
        else:
            mottle = 1 + 0.25 * draw._smooth_noise(marks_rng, (24, 30))[:, x0:x1, None]
            _blend(img, np.array(mark[2], np.float32) * mottle, mark[1][:, x0:x1])
    for chip in scene.chips:  # the broken-off piece shows the backdrop, edged by a bright fracture
        _blend(img, bg, _cov([chip - off], x1 - x0) * body)
        edge = np.zeros(img.shape[:2], np.uint8)
        cv2.polylines(edge, [draw._pts(chip - off)], True, 255, 1, cv2.LINE_AA, draw.SHIFT)
        _blend(img, np.array([236.0, 240.0, 240.0], np.float32), edge.astype(np.float32) / 255 * (body > 0.99))
