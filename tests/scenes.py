"""Random scenes for the property tests (hypothesis draws the recipe, numpy fills the pixels from its seed).

A scene is what a prepared source holds (synth.pipeline.SourceFeatures): an RGB image, an edge map in [0, 1],
a foreground and a uint16 label map, in the shapes real data brings: objects touching every border and
corner (a bottle filling the frame), one-pixel and thin-line parts, empty and full foregrounds, sizes 16..512,
non-square frames.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from hypothesis import strategies as st

SIDES = st.one_of(st.sampled_from([16, 17, 31, 64, 128, 200, 256, 512]), st.integers(16, 512))
FOREGROUNDS = ("empty", "full", "pixel", "line", "border", "corner", "frame_tall", "frame_wide", "blobs")
REGIONS = ("none", "zero", "pixel", "lines", "border", "corners", "blocks", "everywhere")
EDGES = ("zero", "one", "noise", "outline", "lines", "binary")


@dataclass
class Scene:
    """One drawn scene; `recipe` names how it was made (printed by hypothesis when a case fails)."""

    image: np.ndarray        # uint8 (H, W, 3)
    edge: np.ndarray         # float32 (H, W) in [0, 1]
    foreground: np.ndarray   # bool (H, W)
    regions: np.ndarray | None   # uint16 (H, W), 0 = no part; None: no label map at all
    recipe: tuple


def _lines(shape, rng, count, width=1) -> np.ndarray:
    h, w = shape
    canvas = np.zeros(shape, np.uint8)
    for _ in range(count):
        p, q = rng.integers(0, [w, h], 2), rng.integers(0, [w, h], 2)
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, width)
    return canvas.astype(bool)


def _rect(shape, rng, touch: str) -> np.ndarray:
    """A rectangle touching the border(s) named in `touch` (t, b, l, r; "" = anywhere)."""
    h, w = shape
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
    y0, y1 = (0 if "t" in touch else y0), (h if "b" in touch else y1)
    x0, x1 = (0 if "l" in touch else x0), (w if "r" in touch else x1)
    out = np.zeros(shape, bool)
    out[y0:y1, x0:x1] = True
    return out


def foreground_of(kind: str, shape, rng) -> np.ndarray:
    h, w = shape
    fg = np.zeros(shape, bool)
    if kind == "full":
        fg[:] = True
    elif kind == "pixel":
        fg[int(rng.integers(h)), int(rng.integers(w))] = True
    elif kind == "line":
        fg = _lines(shape, rng, 1)
    elif kind == "border":
        fg = _rect(shape, rng, str(rng.choice(["t", "b", "l", "r"])))
    elif kind == "corner":
        fg = _rect(shape, rng, str(rng.choice(["tl", "tr", "bl", "br"])))
    elif kind == "frame_tall":  # the bottle: top to bottom, a band of columns
        x0 = int(rng.integers(0, w // 2 + 1))
        fg[:, x0:x0 + int(rng.integers(1, w - x0 + 1))] = True
    elif kind == "frame_wide":
        y0 = int(rng.integers(0, h // 2 + 1))
        fg[y0:y0 + int(rng.integers(1, h - y0 + 1)), :] = True
    elif kind == "blobs":
        for _ in range(int(rng.integers(1, 4))):
            c = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(1, w // 2 + 2)), int(rng.integers(1, h // 2 + 2)))
            canvas = fg.astype(np.uint8)
            cv2.ellipse(canvas, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            fg = canvas.astype(bool)
    return fg


def regions_of(kind: str, shape, foreground: np.ndarray, rng) -> np.ndarray | None:
    h, w = shape
    if kind == "none":
        return None
    labels = np.zeros(shape, np.uint16)
    if kind == "pixel":
        for k in range(1, int(rng.integers(1, 4)) + 1):
            labels[int(rng.integers(h)), int(rng.integers(w))] = k
    elif kind == "lines":
        for k in range(1, int(rng.integers(1, 4)) + 1):
            labels[_lines(shape, rng, 1)] = k
    elif kind == "border":
        for k, touch in enumerate(("t", "b", "l", "r"), 1):
            labels[_rect(shape, rng, touch)] = k
    elif kind == "corners":
        for k, touch in enumerate(("tl", "tr", "bl", "br"), 1):
            labels[_rect(shape, rng, touch)] = k
    elif kind == "blocks":
        for k in range(1, int(rng.integers(1, 6)) + 1):
            labels[_rect(shape, rng, "")] = k
    elif kind == "everywhere":  # one object cut into cells, touching the whole frame
        cell = int(rng.integers(2, max(3, min(h, w) // 2)))
        yy, xx = np.mgrid[:h, :w]
        labels = ((yy // cell) * (w // cell + 1) + xx // cell + 1).astype(np.uint16)
    if rng.random() < 0.5 and kind != "zero":   # as build makes them: parts inside the foreground
        labels[~foreground] = 0
    return labels


def edge_of(kind: str, shape, foreground: np.ndarray, regions: np.ndarray | None, rng) -> np.ndarray:
    if kind == "zero":
        return np.zeros(shape, np.float32)
    if kind == "one":
        return np.ones(shape, np.float32)
    if kind == "noise":
        return rng.random(shape, dtype=np.float32)
    if kind == "lines":
        return _lines(shape, rng, int(rng.integers(1, 12))).astype(np.float32) * np.float32(rng.uniform(0.2, 1))
    outline = foreground ^ cv2.erode(foreground.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if regions is not None:
        r = regions.astype(np.int32)
        outline |= (r != np.roll(r, 1, 0)) | (r != np.roll(r, 1, 1))
    if kind == "binary":
        return outline.astype(np.float32)
    soft = cv2.GaussianBlur(outline.astype(np.float32), (0, 0), 1.0) * 2.5
    return np.clip(soft + 0.1 * rng.random(shape, dtype=np.float32), 0, 1).astype(np.float32)


def image_of(shape, foreground: np.ndarray, regions: np.ndarray | None, rng) -> np.ndarray:
    """A textured photo-like image: smooth shading, the object and its parts in their own colours, grain."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = rng.uniform(20, 235, 3).astype(np.float32) + 20 * np.sin(xx / max(w, 1) * rng.uniform(1, 6))[..., None]
    img = np.broadcast_to(base, (h, w, 3)).copy()
    img[foreground] = rng.uniform(0, 255, 3)
    if regions is not None:
        for k in np.unique(regions)[1:8]:
            img[regions == k] = rng.uniform(0, 255, 3)
    img += rng.normal(0, rng.uniform(0, 12), (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@st.composite
def scenes(draw, foregrounds=FOREGROUNDS, shape: tuple[int, int] | None = None) -> Scene:
    """A random scene (see the module docstring); `foregrounds` limits the foreground kinds drawn, `shape`
    fixes (H, W)."""
    if shape is None:
        h, w = draw(SIDES), draw(st.one_of(st.none(), SIDES))
        w = h if w is None else w                  # square half of the time, any aspect otherwise
    else:
        h, w = shape
    fg_kind = draw(st.sampled_from(foregrounds))
    reg_kind, edge_kind = draw(st.sampled_from(REGIONS)), draw(st.sampled_from(EDGES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    fg = foreground_of(fg_kind, (h, w), rng)
    regions = regions_of(reg_kind, (h, w), fg, rng)
    edge = edge_of(edge_kind, (h, w), fg, regions, rng)
    image = image_of((h, w), fg, regions, rng)
    return Scene(image, edge, fg, regions, (h, w, fg_kind, reg_kind, edge_kind, seed))


@st.composite
def scene_sets(draw, max_size: int = 3) -> list[Scene]:
    """2..max_size scenes of one shape: the normal images of one category."""
    first = draw(scenes())
    more = draw(st.lists(scenes(shape=first.edge.shape), min_size=1, max_size=max_size - 1))
    return [first, *more]
