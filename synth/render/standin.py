"""A stand-in for the edge-to-image generator, for tests and previews only — never the default of `build`.

It does not learn anything: it paints the edge map (dark lines) over a blurred copy of the normal image, so an
edited edge map shows up where it was edited. Anything made with it says so (`identity` is "stand-in").
"""

import cv2
import numpy as np


class StandInRenderer:
    """Renderer stand-in: the edge map painted on a blurred normal image (tests/preview only)."""

    identity = "stand-in"
    kind = "global"
    quality: dict = {}

    def __init__(self, blur: float = 2.0, ink: tuple[int, int, int] = (20, 20, 20)) -> None:
        self.blur = blur
        self.ink = np.array(ink, np.float32)

    def render(self, edges: np.ndarray, normals: np.ndarray, holes: np.ndarray | None = None) -> np.ndarray:
        """(B,H,W) float [0,1] edge maps + (B,H,W,3) uint8 normals -> (B,H,W,3) uint8 (holes ignored)."""
        edges = np.asarray(edges, np.float32)
        if normals is None or len(normals) != len(edges):
            raise ValueError("the stand-in renderer needs one normal image per edge map")
        out = np.empty(np.asarray(normals).shape, np.uint8)
        for i, (edge, normal) in enumerate(zip(edges, normals, strict=True)):
            base = cv2.GaussianBlur(normal.astype(np.float32), (0, 0), self.blur)
            a = np.clip(edge, 0.0, 1.0)[..., None]
            out[i] = np.clip(np.round(base * (1.0 - a) + self.ink * a), 0, 255).astype(np.uint8)
        return out
