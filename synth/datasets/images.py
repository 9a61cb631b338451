"""Image files in and out: every image enters the pipeline as RGB uint8, every mask as bool, whatever the
file holds (bit depth, palette, alpha, EXIF orientation); what cannot be read stops with the file named."""

from pathlib import Path

import cv2
import numpy as np

from synth.datasets.bitdepth import png_header, significant_bits
from synth.datasets.decode import _alpha, colour_channels, read_raw
from synth.errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def to_uint8(img: np.ndarray, path: Path, bits: int | None = None) -> np.ndarray:
    """uint8 of any decoded samples: 16-bit data scaled by 255 / (2**bits - 1) (bits: the data's depth,
    16 = full range); floats must lie in [0, 1]. ImageError naming the file for values it cannot place."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        full = (1 << (bits or 16)) - 1
        return np.minimum(img.astype(np.uint32) * 255 // full, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        lo, hi = (float(np.nanmin(img)), float(np.nanmax(img))) if img.size else (0.0, 0.0)
        if not (np.isfinite(img).all() and lo >= 0.0 and hi <= 1.0):
            raise ImageError(f"{path}: floating-point image with values {lo:g}..{hi:g}; only 0..1 "
                             "(or 8/16-bit integer files) can be read")
        return np.rint(img * 255.0).astype(np.uint8)
    lo, hi = int(img.min(initial=0)), int(img.max(initial=0))
    if lo < 0 or hi > 255:
        raise ImageError(f"{path}: {img.dtype} samples with values {lo}..{hi}; save the image as 8 or 16 bit")
    return img.astype(np.uint8)


def load_rgb(path: Path, bits: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3), upright: grey is replicated, alpha composited onto white, 16-bit data scaled by
    its depth: `bits` (the category's, synth.datasets.bitdepth.data_depth), else the file's PNG sBIT, else 16.
    ImageError naming the file when it cannot be read."""
    path = Path(path)
    raw = read_raw(path)
    colour, alpha = colour_channels(raw), _alpha(raw)
    alpha_bits = None
    if raw.dtype == np.uint16:
        sbit, alpha_bits = significant_bits(path)
        bits = bits or sbit
    img = to_uint8(colour, path, bits)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    else:
        img = img[:, :, ::-1]
    if alpha is not None:
        a = to_uint8(alpha, path, alpha_bits).astype(np.float32)[:, :, None] / 255.0
        img = np.clip(np.rint(img.astype(np.float32) * a + 255.0 * (1.0 - a)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def read_layers(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha) of a file: colour as `colour_channels` gives it, alpha (H, W) of the file's dtype or None.

    OpenCV turns RGBA, LA and palette-with-tRNS PNGs into BGRA, but drops the tRNS key of a grey PNG (one grey
    level marked transparent, PNG spec 11.3.2.1): that key becomes an alpha of 0 / full here, so every PNG
    container that can carry transparency yields its alpha. ImageError as `read_raw`.
    """
    raw = read_raw(path)
    alpha = _alpha(raw)
    if alpha is None and raw.ndim == 2:
        alpha = _grey_key_alpha(Path(path), raw)
    return colour_channels(raw), alpha


def _grey_key_alpha(path: Path, raw: np.ndarray) -> np.ndarray | None:
    head = png_header(path)
    if head is None or head.colour_type != 0 or not head.trns or len(head.trns) < 2:
        return None
    key = int.from_bytes(head.trns[:2], "big")
    if head.bit_depth < 8:                  # OpenCV scales 1/2/4-bit grey up to 0..255
        key = key * 255 // ((1 << head.bit_depth) - 1)
    full = np.iinfo(raw.dtype).max
    return np.where(raw == key, 0, full).astype(raw.dtype)


def load_mask(path: Path) -> np.ndarray:
    """A mask's values as stored, (H, W) uint8 or uint16 (no scaling: label and pixel values survive):
    colour files take the max over colour channels; palette and 1-bit files come out as their colours' grey
    levels. Alpha (RGBA, LA, palette or grey with tRNS, 8/16 bit): where it varies it is the shape (see
    `alpha_shape`), so values outside the shape are 0 and inside keep their colour; a constant alpha below
    full scales the values (composited onto black)."""
    return mask_layers(path)[0]


def mask_layers(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, shape): `load_mask`'s values and the bool (H, W) shape its alpha carries, or None when the
    file has no alpha or a constant one (then the values alone say which pixels are defect)."""
    path = Path(path)
    values, alpha = read_layers(path)
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.dtype not in (np.uint8, np.uint16):
        values = to_uint8(values, path)
    shape = alpha_shape(alpha)
    if shape is not None:
        values = np.where(shape, values, 0).astype(values.dtype)
    elif alpha is not None and alpha.min(initial=0) < np.iinfo(alpha.dtype).max:
        full = np.iinfo(alpha.dtype).max
        values = (values.astype(np.uint64) * alpha // full).astype(values.dtype)
    return np.ascontiguousarray(values), shape


def alpha_shape(alpha: np.ndarray | None) -> np.ndarray | None:
    """bool (H, W): alpha >= half its dtype's range (128 of 255, 32768 of 65535) where the alpha varies;
    None without alpha or with a constant one. Annotation tools export masks whose shape is the transparency
    and whose colour names the class (often black), so a varying alpha, not the colour, is the shape."""
    if alpha is None or alpha.size == 0 or int(alpha.min()) == int(alpha.max()):
        return None
    return alpha >= (int(np.iinfo(alpha.dtype).max) + 1) // 2


def mask_range(values: np.ndarray, path: Path | None = None) -> int:
    """The top of a mask file's range: 2**bits - 1 by its PNG sBIT or dtype; a 16-bit file whose values stay
    within 0..255 counts as 8-bit (8-bit masks saved in a 16-bit container)."""
    bits = significant_bits(path)[0] if path is not None and values.dtype == np.uint16 else None
    if bits is None:
        bits = 16 if values.dtype == np.uint16 and int(values.max(initial=0)) > 255 else 8
    return (1 << bits) - 1


def defect_pixels(values: np.ndarray, path: Path | None = None) -> tuple[np.ndarray, str | None]:
    """bool (H, W): which mask pixels are defect, and a note when the mask is not two-level.

    Two-level masks ({0, v}: 0/255, 0/1, 0/65535) are exact: v is defect. Soft (anti-aliased) or lossy (JPEG)
    masks are defect at >= half their range (128 for 8 bits, 32768 for 16), so the edge ringing and
    compression noise of a JPEG mask do not count; masks whose values all stay below half the range hold
    labels: every nonzero pixel is defect.
    """
    levels = np.flatnonzero(np.bincount(values.ravel()))
    nonzero = levels[levels > 0]
    if nonzero.size <= 1:
        return values > 0, None
    half = (mask_range(values, path) + 1) // 2
    if int(nonzero[-1]) < half:
        return values > 0, (f"holds {levels.size} values, all below {half}: read as labels "
                            "(every nonzero pixel is defect)")
    return values >= half, (f"holds {levels.size} values (soft edges or lossy compression), not just 0 "
                            f"and {int(nonzero[-1])}: read as defect where value >= {half}")


def read_defect_mask(path: Path) -> np.ndarray:
    """bool (H, W): the defect pixels of a ground-truth mask file: its alpha where that varies
    (`alpha_shape`), else its values by `defect_pixels`."""
    values, shape = mask_layers(path)
    return shape if shape is not None else defect_pixels(values, path)[0]


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
    return sorted(p for p in folder.iterdir() if is_image_entry(p))


def is_image_entry(path: Path) -> bool:
    """An image file by its suffix (not hidden), or a broken link with such a name: listed so that reading
    it reports the link instead of the image silently going missing."""
    if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    return path.is_file() or (path.is_symlink() and not path.exists())
