"""Small mask geometry shared by every edit stage: bounding boxes, padding, disc dilation.
"""

import cv2
import numpy as np


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), x1/y1 exclusive, of the True pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _pad(box: tuple[int, int, int, int], pad: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return max(0, x0 - pad), max(0, y0 - pad), min(shape[1], x1 + pad), min(shape[0], y1 + pad)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool mask by an elliptical disk of `radius` px, working only on its padded bounding box."""
    box = bbox_of(mask)
    if box is None or radius <= 0:
        return mask.astype(bool).copy()
    x0, y0, x1, y1 = _pad(box, radius + 1, mask.shape)
    out = np.zeros(mask.shape, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out[y0:y1, x0:x1] = cv2.dilate(mask[y0:y1, x0:x1].astype(np.uint8), kernel).astype(bool)
    return out


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the mask's pixels, end exclusive; zeros for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
