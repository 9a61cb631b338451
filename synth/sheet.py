"""Contact sheets: rows of image tiles with column titles, row labels and an optional banner."""

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any tile as uint8 RGB: bool masks -> 0/255, float maps in [0,1] -> 0..255, gray -> 3 channels."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"cannot show an array of shape {np.asarray(image).shape} as a tile")
    return a


def _text_band(text: str, width: int, height: int, scale: float, colour=(255, 255, 255),
               background=(32, 32, 32)) -> np.ndarray:
    band = np.empty((height, width, 3), np.uint8)
    band[:] = background
    (_, th), _ = cv2.getTextSize(text or " ", _FONT, scale, 1)
    cv2.putText(band, text, (4, (height + th) // 2), _FONT, scale, colour, 1, cv2.LINE_AA)
    return band


def contact_sheet(rows: list[list[np.ndarray]], row_labels: list[str], col_titles: list[str],
                  banner: str | None = None, tile: int | None = None) -> np.ndarray:
    """One uint8 RGB image: a title line per column, each row's tiles with its label under them, a banner on
    top.

    Tiles are resized to `tile` px squares (default: the first tile's height, width kept per tile).
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    th = tile or to_rgb(rows[0][0]).shape[0]
    scale = max(0.35, th / 256.0 * 0.5)
    band = max(14, int(th * 0.08))
    lines = []
    for i, row in enumerate(rows):
        tiles = []
        for img in row:
            t = to_rgb(img)
            tw = th if tile else round(t.shape[1] * th / t.shape[0])
            if t.shape[:2] != (th, tw):
                interp = cv2.INTER_AREA if t.shape[0] > th else cv2.INTER_NEAREST
                t = cv2.resize(t, (tw, th), interpolation=interp)
            tiles.append(t)
            tiles.append(np.full((th, 2, 3), 255, np.uint8))
        line = np.hstack(tiles[:-1])
        label = row_labels[i] if i < len(row_labels) else ""
        lines.append(np.vstack([line, _text_band(label, line.shape[1], band, scale)]))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 2), (0, width - line.shape[1]), (0, 0)), constant_values=255)
             for line in lines]
    head = np.full((band, width, 3), 32, np.uint8)
    x, widths = 0, [to_rgb(t).shape[1] * th // to_rgb(t).shape[0] if not tile else th for t in rows[0]]
    for title, tw in zip(col_titles, widths, strict=False):
        cv2.putText(head, title, (x + 4, band - 4), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        x += tw + 2
    parts = [head] + lines
    if banner:
        parts.insert(0, _text_band(banner, width, band + 6, scale * 1.2, (255, 255, 0), (120, 0, 0)))
    return np.vstack(parts)
