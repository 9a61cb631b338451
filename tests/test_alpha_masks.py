"""Masks whose shape is in the alpha channel (issue 20, item 2): every PNG container that carries transparency
(RGBA, LA, palette + tRNS, grey/RGB + tRNS key; 8 and 16 bit), every colour (black included), in every reader
that reads masks and in `scan`. Files are written chunk by chunk here, so no encoder decides what they hold."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth.datasets import open_dataset
from synth.datasets.images import load_mask, read_defect_mask
from synth.datasets.part_labels import read_part_labels
from synth.datasets.scan import scan_dataset

CONTAINERS = ("rgba8", "rgba16", "la8", "la16", "palette", "grey_key8", "grey_key16", "rgb_key8", "rgb_key16")
COLOURS = {"black": (0, 0, 0), "dark": (0, 0, 40), "green": (0, 200, 0), "white": (255, 255, 255),
           "grey": (90, 90, 90)}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(arr: np.ndarray, colour_type: int, depth: int, plte: list | None = None,
              trns: bytes | None = None) -> bytes:
    """A PNG of `arr` ((H, W) or (H, W, C) samples in file order: RGB(A), grey(+A), or palette indices)."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + np.ascontiguousarray(arr[y]).astype(">u2" if depth == 16 else "u1").tobytes()
                    for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))
    if plte is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).ravel()))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def alpha_mask_png(container: str, fg: tuple, bg: tuple, alpha8: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(file bytes, expected shape, expected load_mask values) of a mask whose alpha (8-bit levels `alpha8`,
    scaled for 16-bit files; binary for tRNS-key files) is the shape, painted `fg` inside and `bg` outside."""
    wide = container.endswith("16")
    scale = 257 if wide else 1
    depth = 16 if wide else 8
    key = container.startswith(("grey_key", "rgb_key"))
    inside = alpha8 >= 128
    alpha = np.where(inside, 255, 0) if key else alpha8.astype(np.int64)
    alpha = alpha.astype(np.int64)
    colour = np.where(inside[:, :, None], np.array(fg), np.array(bg)).astype(np.int64)
    grey = colour.max(axis=2)
    if container == "palette":
        levels = np.array([0, 60, 127, 128, 200, 255])
        index = np.abs(alpha8[:, :, None].astype(int) - levels).argmin(axis=2)      # alpha quantised to 6 levels
        shape = levels[index] >= 128
        plte = [bg if a < 128 else fg for a in levels]
        data = png_bytes(index.astype(np.uint8), 3, 8, plte, bytes(levels.astype(np.uint8)))
        return data, shape, np.where(shape, max(fg), 0)
    if key:                                  # one colour marked transparent: 255 - fg differs from fg
        if container.startswith("grey_key"):
            g = np.where(inside, max(fg), 255 - max(fg))
            data = png_bytes(g * scale, 0, depth, trns=struct.pack(">H", (255 - max(fg)) * scale))
            return data, inside, np.where(inside, g * scale, 0)
        kc = tuple(255 - c for c in fg)
        colour = np.where(inside[:, :, None], np.array(fg), np.array(kc)).astype(np.int64)
        data = png_bytes(colour * scale, 2, depth, trns=struct.pack(">HHH", *(c * scale for c in kc)))
        return data, inside, np.where(inside, colour.max(axis=2) * scale, 0)
    a = alpha * scale
    if container.startswith("rgba"):
        data = png_bytes(np.dstack([colour * scale, a]), 6, depth)
    else:
        data = png_bytes(np.dstack([grey * scale, a]), 4, depth)
    shape = a >= (32768 if wide else 128)
    return data, shape, np.where(shape, grey * scale, 0)


def soft_alpha(seed: int, h: int, w: int) -> np.ndarray:
    """Anti-aliased 8-bit alpha: random levels, with a fully transparent and a fully opaque pixel."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w))
    a[0, 0], a[-1, -1] = 0, 255
    return a


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(container=st.sampled_from(CONTAINERS), fg=st.sampled_from(sorted(COLOURS)),
       bg=st.sampled_from(sorted(COLOURS)), seed=st.integers(0, 2**16), h=st.integers(2, 24), w=st.integers(2, 24))
def test_alpha_is_the_shape_in_every_container_and_colour(tmp_path, container, fg, bg, seed, h, w):
    data, shape, values = alpha_mask_png(container, COLOURS[fg], COLOURS[bg], soft_alpha(seed, h, w))
    path = tmp_path / f"{container}_{fg}_{bg}_{seed}.png"
    path.write_bytes(data)
    assert np.array_equal(read_defect_mask(path), shape)
    assert np.array_equal(load_mask(path), values)


@pytest.mark.parametrize("container", ["rgba8", "rgba16", "la8", "la16"])
def test_constant_alpha_keeps_the_colour_rule(tmp_path, container):
    wide = container.endswith("16")
    box = np.zeros((8, 10), np.int64)
    box[2:5, 3:7] = 1
    colour = np.where(box[:, :, None] > 0, np.array([0, 200, 0]), 0) * (257 if wide else 1)
    opaque = np.full((8, 10), 65535 if wide else 255)
    layers = [colour, opaque] if container.startswith("rgba") else [colour.max(axis=2), opaque]
    path = tmp_path / "m.png"
    path.write_bytes(png_bytes(np.dstack(layers), 6 if container.startswith("rgba") else 4, 16 if wide else 8))
    assert np.array_equal(read_defect_mask(path), box > 0)


# ---------------------------------------------------------------- every reader, and scan
H, W = 12, 16


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(np.random.default_rng(len(str(path))).integers(0, 256, (H, W, 3)), 2, 8))


def _black_alpha_mask(path: Path, container: str = "rgba8") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    data, shape, _ = alpha_mask_png(container, (0, 0, 0), (0, 0, 0), soft_alpha(3, H, W))
    path.write_bytes(data)
    return shape


def _mvtec_like(root: Path, mask_name: str, container: str) -> np.ndarray:
    for i in range(2):
        _image(root / "part" / "train" / "good" / f"{i}.png")
    _image(root / "part" / "test" / "crack" / "0.png")
    return _black_alpha_mask(root / "part" / "ground_truth" / "crack" / mask_name, container)


@pytest.mark.parametrize("dataset,container", [("mvtec", "rgba8"), ("folder", "la16"), ("madsim", "palette"),
                                               ("visa", "grey_key8"), ("mvtec", "rgb_key16")])
def test_every_reader_and_scan_read_the_alpha_shape(tmp_path, dataset, container):
    root = tmp_path / dataset
    if dataset == "visa":
        rows = ["object,split,label,image,mask"]
        for i in range(3):
            _image(root / "part" / "Data" / "Images" / "Normal" / f"{i}.png")
            rows.append(f"part,{'train' if i < 2 else 'test'},normal,part/Data/Images/Normal/{i}.png,")
        _image(root / "part" / "Data" / "Images" / "Anomaly" / "0.png")
        shape = _black_alpha_mask(root / "part" / "Data" / "Masks" / "Anomaly" / "0.png", container)
        rows.append("part,test,anomaly,part/Data/Images/Anomaly/0.png,part/Data/Masks/Anomaly/0.png")
        (root / "split_csv").mkdir()
        (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    else:
        shape = _mvtec_like(root, "0_mask.png", container)
    items = [it for it in open_dataset(dataset, root).test_items("part") if it.label]
    assert len(items) == 1 and shape.any() and not shape.all()
    assert np.array_equal(items[0].mask(), shape)
    report = scan_dataset(open_dataset(dataset, root))["categories"]["part"]
    assert report["problems"] == []
    assert any("masks: shape from alpha (1 files)" in n for n in report["notes"]), report["notes"]


def test_loco_regions_take_the_alpha_shape_and_the_colour_value(tmp_path):
    cat = tmp_path / "loco" / "part"
    for i in range(2):
        _image(cat / "train" / "good" / f"{i}.png")
    (cat / "validation" / "good").mkdir(parents=True)
    _image(cat / "test" / "logical_anomalies" / "000.png")
    gt = cat / "ground_truth" / "logical_anomalies" / "000" / "000.png"
    gt.parent.mkdir(parents=True)
    data, shape, _ = alpha_mask_png("la16", (200, 200, 200), (0, 0, 0), soft_alpha(5, H, W))  # value 200 * 257
    gt.write_bytes(data)
    (cat / "defects_config.json").write_text(json.dumps([{"defect_name": "extra", "pixel_value": 200 * 257,
                                                         "saturation_threshold": 1.0, "relative_saturation": True}]))
    item = [it for it in open_dataset("mvtec_loco", tmp_path / "loco").test_items("part") if it.label][0]
    assert np.array_equal(item.mask(), shape)


@pytest.mark.parametrize("container", ["la8", "la16", "palette", "grey_key16"])
def test_part_labels_are_background_where_transparent(tmp_path, container):
    a = soft_alpha(9, H, W)
    data, shape, _ = alpha_mask_png(container, (3, 3, 3), (0, 0, 0), a)       # label 3 inside, black outside
    path = tmp_path / "labels.png"
    path.write_bytes(data)
    want = np.where(shape, 3 * (257 if container.endswith("16") else 1), 0)
    assert np.array_equal(read_part_labels(path, (H, W), (W, H)), want)
