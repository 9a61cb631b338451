"""Property tests (issue 20): every dataset reader and `scan` on odd trees drawn by hypothesis (empty splits,
masks without images, images without masks, nested folders, stray metadata, wrong-size, corrupt and empty
files, folders named like images, broken split files). Each either reads the tree, or stops with a
DatasetError / ImageError naming a path inside it, or (scan) lists the problem; never another exception.

Trees are tiny (8x8 PNGs); examples per test come from the hypothesis profile (tests/conftest.py).
"""

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.datasets import open_dataset
from synth.datasets.images import load_rgb
from synth.datasets.scan import scan_dataset
from synth.errors import DatasetError, ImageError

READERS = ("mvtec", "mvtec_loco", "visa", "madsim", "folder")
CATEGORIES = ("", "bottle", "Cable")   # "" = the root itself is the category
FOLDERS = ("train/good", "train", "good", "validation/good", "test/good", "test/crack", "test/logical_anomalies",
           "ground_truth/crack", "ground_truth/logical_anomalies/000", "ground_truth/logical_anomalies/001",
           "test/crack/nested", "nested/deeper", "Data/Images/Normal", "Data/Images/Anomaly",
           "Data/Masks/Anomaly", "test", "ground_truth", "")
STEMS = ("000", "001", "000_mask", "001_mask", "a b")
KINDS = ("rgb", "rgb", "grey", "mask", "mask_small", "mask_levels", "rgba", "rgb16", "garbage", "empty",
         "ds_store", "thumbs", "json", "dir_like_image", "jpg_truncated")


def _png(shape, rng, channels=3, dtype=np.uint8) -> bytes:
    top = 255 if dtype == np.uint8 else 65535
    img = rng.integers(0, top + 1, (*shape, channels) if channels > 1 else shape).astype(dtype)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _write(folder: Path, stem: str, kind: str, rng) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:7] = 255
    files = {
        "rgb": (f"{stem}.png", lambda: _png((8, 8), rng)),
        "grey": (f"{stem}.png", lambda: _png((8, 8), rng, 1)),
        "mask": (f"{stem}.png", lambda: cv2.imencode(".png", mask)[1].tobytes()),
        "mask_small": (f"{stem}.png", lambda: cv2.imencode(".png", mask[:4, :6])[1].tobytes()),
        "mask_levels": (f"{stem}.png", lambda: cv2.imencode(".png", (mask // 255) * rng.integers(0, 256, (8, 8))
                                                             .astype(np.uint8))[1].tobytes()),
        "rgba": (f"{stem}.png", lambda: _png((8, 8), rng, 4)),
        "rgb16": (f"{stem}.png", lambda: _png((8, 8), rng, 3, np.uint16)),
        "garbage": (f"{stem}.png", lambda: rng.bytes(40)),
        "empty": (f"{stem}.png", lambda: b""),
        "ds_store": (".DS_Store", lambda: rng.bytes(16)),
        "thumbs": ("Thumbs.db", lambda: rng.bytes(16)),
        "json": (f"{stem}.json", lambda: b'{"label": "crack"}'),
        "jpg_truncated": (f"{stem}.jpg", lambda: cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1]
                          .tobytes()[:-30]),
    }
    if kind == "dir_like_image":
        if not (folder / f"{stem}.png").exists():
            (folder / f"{stem}.png").mkdir()
        return
    name, make = files[kind]
    if (folder / name).is_dir():
        return
    (folder / name).write_bytes(make())


def _defects_config(kind: str) -> bytes | None:
    good = [{"defect_name": "crack", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True}]
    return {"none": None, "good": json.dumps(good).encode(), "broken": b"[{", "object": b'{"a": 1}',
            "bad_entry": json.dumps([{"defect_name": "x", "pixel_value": "255"}]).encode(),
            "twice": json.dumps(good * 2).encode()}[kind]


def _split_csv(kind: str, files: list[str], rng) -> bytes | None:
    if kind == "none":
        return None
    if kind == "garbage":
        return rng.bytes(30)
    if kind == "columns":
        return b"object,image\nbottle,x.png\n"
    def pick() -> str:
        return str(rng.choice(files)) if files and rng.random() < 0.8 else "missing/x.png"

    lines = ["object,split,label,image,mask"]
    for _ in range(int(rng.integers(0, 6))):
        lines.append(",".join([str(rng.choice(["bottle", "Cable", ""])), str(rng.choice(["train", "test", "val"])),
                               str(rng.choice(["normal", "anomaly", "weird"])), pick(),
                               pick() if rng.random() < 0.7 else ""]))
    return ("\n".join(lines) + "\n").encode()


TREES = st.fixed_dictionaries({
    "entries": st.lists(st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(FOLDERS), st.sampled_from(STEMS),
                                  st.sampled_from(KINDS)), max_size=25),
    "empty_dirs": st.lists(st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(FOLDERS)), max_size=4),
    "config": st.sampled_from(("none", "good", "good", "broken", "object", "bad_entry", "twice")),
    "csv": st.sampled_from(("none", "rows", "rows", "garbage", "columns")),
    "seed": st.integers(0, 2**32 - 1),
})


def _make_tree(root: Path, spec: dict) -> None:
    rng = np.random.default_rng(spec["seed"])
    for category, folder in spec["empty_dirs"]:
        (root / category / folder).mkdir(parents=True, exist_ok=True)
    for category, folder, stem, kind in spec["entries"]:
        _write(root / category / folder, stem, kind, rng)
    config = _defects_config(spec["config"])
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    for category in {c for c, *_ in spec["entries"]}:
        if config is not None and (root / category).is_dir():
            (root / category / "defects_config.json").write_bytes(config)
    csv = _split_csv(spec["csv"], files, rng)
    if csv is not None:
        (root / "split_csv").mkdir(exist_ok=True)
        (root / "split_csv" / "1cls.csv").write_bytes(csv)


def _names_a_path(message: str, root: Path) -> bool:
    return str(root) in message


def _read_everything(name: str, root: Path) -> None:
    """Open the dataset and read every list, image and mask the way build, eval and scan do."""
    try:
        reader = open_dataset(name, root)
    except DatasetError as exc:
        assert _names_a_path(str(exc), root), exc
        return
    categories = reader.categories()
    assert categories
    for category in categories:
        try:
            paths = reader.train_images(category) + reader.validation_images(category)
            items = reader.test_items(category)
        except (DatasetError, ImageError) as exc:
            assert _names_a_path(str(exc), root), exc
            continue
        for path in paths + [it.path for it in items]:
            try:
                image = load_rgb(path)
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            except ImageError as exc:
                assert _names_a_path(str(exc), root), exc
        for item in items:
            try:
                item.check_masks()
                mask = item.mask((5, 6))
                assert mask.shape == (5, 6) and mask.dtype == bool
                assert all(m.shape == (5, 6) for m in item.region_masks((5, 6)))
            except (DatasetError, ImageError) as exc:
                assert _names_a_path(str(exc), root), exc
    report = scan_dataset(reader)
    assert set(report["categories"]) == set(categories)
    for c in report["categories"].values():
        for problem in c["problems"]:
            assert isinstance(problem, str) and _names_a_path(problem, root), problem


@pytest.mark.parametrize("name", READERS)
@given(spec=TREES)
def test_readers_and_scan_on_odd_trees(name, spec):
    root = Path(tempfile.mkdtemp(prefix="odd-tree-"))
    try:
        _make_tree(root, spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # 16-bit and alpha notes are warnings by design
            _read_everything(name, root)
    finally:
        shutil.rmtree(root)


def test_missing_root_names_it(tmp_path):
    for name in READERS:
        with pytest.raises(DatasetError, match=str(tmp_path / "nope")):
            open_dataset(name, tmp_path / "nope")
