"""Image files in and out: every image enters the pipeline as RGB uint8, whatever the file holds."""

from pathlib import Path

import cv2
import numpy as np

from synth.errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _read_raw(path: Path) -> np.ndarray:
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def load_rgb(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3): grayscale is replicated, 16-bit scaled, alpha composited onto white."""
    img = _to_uint8(_read_raw(path))
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = np.clip(np.rint(bgr), 0, 255).astype(np.uint8)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1])


def load_mask(path: Path) -> np.ndarray:
    """A mask or map as uint8 (H, W): colour files take the max over channels; 16-bit files keep small labels."""
    img = _read_raw(path)
    if img.ndim == 3:
        img = img[:, :, :3].max(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
    if img.dtype == np.uint16 and int(img.max(initial=0)) <= 255:
        img = img.astype(np.uint8)
    return np.ascontiguousarray(_to_uint8(img))


def save_image(path: Path, img: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or grayscale (H, W) uint8 array; the suffix picks the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img[:, :, ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(arr))
    if not ok:
        raise ImageError(f"{path}: cannot encode image")
    buf.tofile(path)


def resize_rgb(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to size x size (or (width, height)) with area averaging when shrinking."""
    w, h = (size, size) if isinstance(size, int) else size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
