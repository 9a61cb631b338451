"""DRAEM-style Perlin-noise anomalies (official VitjanZ/DRAEM): the structural baseline for every comparison.

A Perlin noise map with random lattice scales 2^(0..5) per axis is rotated and thresholded at 0.5;
inside it an augmented texture (an anomaly-source image such as DTD, or a shifted copy of a normal
image) is blended over the normal image with opacity 1 - beta, beta ~ U[0, 0.8). The mask is the
thresholded noise (kept inside the foreground when one is given); outside it the anomaly image
equals the normal image bit for bit. All randomness comes from `rng`.
"""

from collections.abc import Callable

import cv2
import numpy as np

THRESHOLD = 0.5
MIN_SCALE, MAX_SCALE = 0, 6       # DRAEM: perlin_scale 2 ** randint(0, 6) per axis
MAX_BETA = 0.8
NOISE_ROTATION = 90.0             # DRAEM: iaa.Affine(rotate=(-90, 90)) on the noise
TEXTURE_ROTATION = 45.0           # DRAEM: iaa.Affine(rotate=(-45, 45)) among the texture augmenters
NUM_AUGMENTERS = 3                # DRAEM: three augmenters picked without replacement
MAX_TRIES = 10                    # redraws of the noise when the mask comes out empty


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)       # 6t^5 - 15t^4 + 10t^3


def rand_perlin_2d(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """DRAEM's rand_perlin_2d_np with an explicit rng; `shape` must be a multiple of `res` per axis.

    The lattice coordinates are separable, so they are kept as a column and a row and broadcast.
    """
    d = (shape[0] // res[0], shape[1] // res[1])
    gy = ((np.arange(shape[0]) * (res[0] / shape[0])) % 1).astype(np.float32)[:, None]
    gx = ((np.arange(shape[1]) * (res[1] / shape[1])) % 1).astype(np.float32)[None, :]
    angles = 2 * np.pi * rng.random((res[0] + 1, res[1] + 1))
    grads = np.stack((np.cos(angles), np.sin(angles)), axis=-1).astype(np.float32)

    def corner(dr: int, dc: int) -> np.ndarray:
        g = grads[dr:dr + res[0], dc:dc + res[1]]
        g = np.repeat(np.repeat(g, d[0], axis=0), d[1], axis=1)
        return (gy - dr) * g[..., 0] + (gx - dc) * g[..., 1]

    n00, n10, n01, n11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    ty, tx = _fade(gy), _fade(gx)
    top = n00 + (n10 - n00) * ty
    bottom = n01 + (n11 - n01) * ty
    return np.float32(np.sqrt(2)) * (top + (bottom - top) * tx)


def _rotate(img: np.ndarray, degrees: float, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def noise_mask(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The thresholded, rotated Perlin map (bool H x W) and its parameters."""
    h, w = shape
    res = (2 ** int(rng.integers(MIN_SCALE, MAX_SCALE)), 2 ** int(rng.integers(MIN_SCALE, MAX_SCALE)))
    step = 2 ** (MAX_SCALE - 1)
    padded = (-(-h // step) * step, -(-w // step) * step)
    noise = np.ascontiguousarray(rand_perlin_2d(padded, res, rng)[:h, :w])
    angle = float(rng.uniform(-NOISE_ROTATION, NOISE_ROTATION))
    noise = _rotate(noise, angle)
    return noise > THRESHOLD, {"scale": [res[0], res[1]], "rotation": round(angle, 4)}


# --- the texture augmenters (DRAEM's imgaug list, reimplemented on numpy/OpenCV) ---

def _gamma_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = rng.uniform(0.5, 2.0, size=3)
    out = 255.0 * (img.astype(np.float32) / 255.0) ** gamma.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mul, add = rng.uniform(0.8, 1.2), rng.uniform(-30, 30)
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ycc[..., 0] = ycc[..., 0] * mul + add
    return cv2.cvtColor(np.clip(np.rint(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def _sharpness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    factor = rng.uniform(0.0, 2.0)
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0  # PIL's SMOOTH filter
    smooth = cv2.filter2D(img.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return np.clip(np.rint(smooth + factor * (img - smooth)), 0, 255).astype(np.uint8)


def _hue_saturation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dh, ds = rng.integers(-50, 51, size=2)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + dh) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] + ds, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def _solarize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    apply, threshold = rng.random() < 0.5, rng.uniform(32, 128)
    return np.where(img >= threshold, 255 - img, img).astype(np.uint8) if apply else img


def _posterize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = int(rng.integers(1, 9))
    return (img & np.uint8((0xFF << (8 - bits)) & 0xFF)).astype(np.uint8)


def _invert(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (255 - img).astype(np.uint8)


def _autocontrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cutoff = rng.uniform(0, 20) / 100.0
    out = np.empty_like(img)
    for c in range(3):
        lo, hi = np.quantile(img[..., c], [cutoff, 1.0 - cutoff])
        scale = 255.0 / max(hi - lo, 1e-6)
        out[..., c] = np.clip(np.rint((img[..., c].astype(np.float32) - lo) * scale), 0, 255)
    return out


def _equalize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)], axis=-1)


def _texture_rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _rotate(img, float(rng.uniform(-TEXTURE_ROTATION, TEXTURE_ROTATION)))


AUGMENTERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "gamma_contrast": _gamma_contrast, "brightness": _brightness, "sharpness": _sharpness,
    "hue_saturation": _hue_saturation, "solarize": _solarize, "posterize": _posterize, "invert": _invert,
    "autocontrast": _autocontrast, "equalize": _equalize, "rotate": _texture_rotate,
}


def augment_texture(texture: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Three of DRAEM's ten augmenters, chosen without replacement and applied in the drawn order."""
    names = list(AUGMENTERS)
    picked = [names[i] for i in rng.choice(len(names), NUM_AUGMENTERS, replace=False)]
    out = np.ascontiguousarray(texture)
    for name in picked:
        out = np.ascontiguousarray(AUGMENTERS[name](out, rng))
    return out, picked


def _self_texture(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shifted (maybe flipped) copy of the image: the product's own texture when no source is given."""
    h, w = normal.shape[:2]
    shift = (int(rng.integers(h // 4, h - h // 4 + 1)), int(rng.integers(w // 4, w - w // 4 + 1)))
    out = np.roll(normal, shift, axis=(0, 1))
    flip = int(rng.integers(0, 3))  # 0 none, 1 vertical, 2 horizontal
    return np.ascontiguousarray(out[::-1] if flip == 1 else out[:, ::-1] if flip == 2 else out)


def perlin_anomaly(normal: np.ndarray, rng: np.random.Generator, foreground: np.ndarray | None = None,
                   texture: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """One DRAEM anomaly: (anomaly u8 HxWx3, mask bool HxW, params). Pixels outside the mask are unchanged.

    `texture`: an anomaly-source image (any size, resized); None uses a shifted copy of `normal`.
    `foreground`: bool HxW; the mask is kept inside it. The mask comes back empty only when the noise
    misses the foreground MAX_TRIES times (params["empty"] is then True); callers redraw with another seed.
    """
    h, w = normal.shape[:2]
    fg = None if foreground is None or not foreground.any() else foreground.astype(bool)
    tries = 0
    while True:
        tries += 1
        mask, params = noise_mask((h, w), rng)
        if fg is not None:
            mask &= fg
        if mask.any() or tries == MAX_TRIES:
            break
    params["tries"] = tries
    source = "self" if texture is None else "given"
    texture = _self_texture(normal, rng) if texture is None else texture
    if texture.shape[:2] != (h, w):
        texture = cv2.resize(texture, (w, h), interpolation=cv2.INTER_AREA)
    texture, names = augment_texture(texture, rng)
    beta = float(rng.uniform(0.0, MAX_BETA))
    blended = (1.0 - beta) * texture.astype(np.float32) + beta * normal.astype(np.float32)
    anomaly = normal.copy()
    anomaly[mask] = np.clip(np.rint(blended[mask]), 0, 255).astype(np.uint8)
    params.update(synthesizer="perlin", kind="structural", strategy="perlin", beta=round(beta, 6),
                  augmenters=names, texture=source, empty=not mask.any())
    return anomaly, mask, params
