"""What the toybox drawing code knows about an image, at a build size: its drawn lines and its part masks.

Benchmarks and tests measure the edge extractor (does an edge lie on every drawn wall and part outline?) and
the region machinery (does a logical edit's region lie on a part?) against this, never against a detector.
Images are resized to `size` x `size` by `build` (the toybox is 320 x 256, so x and y scale differently);
the same scaling is applied to the drawing's polygons, which are rasterised at the target size.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth.datasets import toybox_draw as draw
from synth.datasets.toybox import RULES, Scene, compartment_rect, drawing, scene_for


def _scaled(poly: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(poly, np.float64) * (size / draw.W, size / draw.H)


def _polyline(canvas: np.ndarray, poly: np.ndarray, closed: bool) -> None:
    pts = np.round(poly * (1 << draw.SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], closed, 1, 1, cv2.LINE_8, draw.SHIFT)


def _fill(canvas: np.ndarray, poly: np.ndarray, value: int) -> None:
    pts = np.round(poly * (1 << draw.SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], value, cv2.LINE_8, draw.SHIFT)


def tray_outline(scene: Scene) -> np.ndarray:
    """The tray's outer polygon in image coordinates (as `toybox.render` draws it)."""
    hx, hy = scene.half
    return scene.tray.apply(draw._rounded_rect(-hx, -hy, hx, hy, 10))


def compartment_outlines(scene: Scene) -> list[np.ndarray]:
    """The four compartment polygons (their rims are the tray's light walls) in image coordinates."""
    return [scene.tray.apply(draw._rounded_rect(*compartment_rect(scene.half, c), 4)) for c in RULES]


def structure_lines(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(structure, details): bool (size, size) 1 px rasters of the drawn lines.

    structure: the tray's outline, the compartment walls, every part's outline and holes (what an edge
    extractor must keep); details: the faint lines drawn on parts (chamfers, threads, slots, bevels).
    """
    structure = np.zeros((size, size), np.uint8)
    details = np.zeros((size, size), np.uint8)
    _polyline(structure, _scaled(tray_outline(scene), size), True)
    for poly in compartment_outlines(scene):
        _polyline(structure, _scaled(poly, size), True)
    for part in scene.parts:
        d = drawing(scene, part)
        for poly in [d.outer, *d.holes]:
            _polyline(structure, _scaled(poly, size), True)
        for line, _ in d.lines:
            _polyline(details, _scaled(line, size), len(line) > 2)
    return structure > 0, details > 0


def tray_mask(scene: Scene, size: int) -> np.ndarray:
    """bool (size, size): the tray (carrier) in the image."""
    out = np.zeros((size, size), np.uint8)
    _fill(out, _scaled(tray_outline(scene), size), 1)
    return out > 0


def tray_part_masks(scene: Scene, size: int) -> np.ndarray:
    """uint16 (size, size) label map of the parts on the tray: 0 = no part, k = scene.parts[k - 1]
    (footprint, holes included: what a missing part leaves empty)."""
    out = np.zeros((size, size), np.uint16)
    for k, part in enumerate(scene.parts, start=1):
        _fill(out, _scaled(drawing(scene, part).outer, size), k)
    return out


def part_masks(category: str, split: str, index: int, seed: int = 0, size: int = 256) -> np.ndarray:
    """Part labels of toybox image `index` of `split` at `size` px (category `tray` only here)."""
    if category != "tray":
        raise ValueError(f"toybox category {category!r} has no part masks here")
    return tray_part_masks(scene_for(seed, split, index), size)
