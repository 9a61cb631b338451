"""The toybox: layout and counts, LOCO-style ground truth, the logical rule, determinism, safe writing."""

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from synth.cli import cli
from synth.datasets import open_dataset, toybox, toybox_draw, toybox_scene, toybox_tray
from synth.datasets.images import list_images, load_mask, load_rgb
from synth.errors import DatasetError

NORMAL_SPLITS = (("train", "train/good"), ("validation", "validation/good"), ("good", "test/good"))
RULE = {letter: Counter(kinds) for letter, kinds in toybox_tray.RULES.items()}


def classify(rgb: np.ndarray) -> str:
    """A part kind from a blob's mean colour: grey nut, brass screw, blue washer, red block."""
    hsv = cv2.cvtColor(rgb[None, None].astype(np.uint8), cv2.COLOR_RGB2HSV)
    hue, sat = int(hsv[0, 0, 0]), int(hsv[0, 0, 1])
    if sat < 70:
        return "nut"
    if 12 <= hue <= 35:
        return "screw"
    if 90 <= hue <= 130:
        return "washer"
    return "block" if hue <= 8 or hue >= 170 else "unknown"


def compartments(scene: toybox_scene.Scene) -> dict[str, np.ndarray]:
    return {letter: toybox_tray.compartment_mask(scene, letter) for letter in toybox_tray.RULES}


def census(img: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, Counter]:
    """Parts seen in the pixels of each compartment: bright blobs on the dark floor, classified by colour."""
    out = {}
    for letter, mask in masks.items():
        comp = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        bright = (img.max(2) > np.median(img[comp].max(1)) * 1.5 + 12) & comp
        bright = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
        out[letter] = Counter(classify(img[labels == k].mean(0)) for k in range(1, n)
                              if stats[k, cv2.CC_STAT_AREA] >= 20)
    return out


def files(root: Path) -> dict[str, bytes]:
    paths = sorted(p for p in (root / "tray").rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def test_layout_read_back(toybox_root: Path) -> None:
    for name in ("mvtec_loco", "toybox"):
        r = open_dataset(name, toybox_root)
        assert r.name == name and r.categories() == ["bag", "bottle", "tray"]
        assert len(r.train_images("tray")) == 60 and len(r.validation_images("tray")) == 10
        counts = Counter((it.split, it.kind, it.label) for it in r.test_items("tray"))
        assert counts == {("good", None, 0): 20, ("logical_anomalies", "logical", 1): 24,
                          ("structural_anomalies", "structural", 1): 24}
    assert open_dataset("toybox", toybox_root).licence.startswith("MIT")
    img = load_rgb(r.train_images("tray")[0])
    assert img.shape == (256, 320, 3) and img.dtype == np.uint8


def test_defects_config(toybox_root: Path) -> None:
    config = json.loads((toybox_root / "tray" / "defects_config.json").read_text())
    by_name = {e["defect_name"]: e for e in config}
    assert set(by_name) == set(toybox_tray.LOGICAL) | set(toybox_tray.STRUCTURAL)
    assert len({e["pixel_value"] for e in config}) == len(config)
    assert all(not by_name[n]["relative_saturation"] and by_name[n]["saturation_threshold"] > 1
               for n in toybox_tray.LOGICAL)
    assert all(by_name[n]["relative_saturation"] and by_name[n]["saturation_threshold"] == 1.0
               for n in toybox_tray.STRUCTURAL)


def test_every_anomaly_has_ground_truth(toybox_root: Path) -> None:
    items = open_dataset("toybox", toybox_root).test_items("tray")
    seen = Counter()
    for it in items:
        if it.label == 0:
            assert it.regions == () and not it.mask().any()
            continue
        assert it.regions, it.path
        allowed = toybox_tray.LOGICAL if it.kind == "logical" else toybox_tray.STRUCTURAL
        for region in it.regions:
            assert region.defect_name in allowed
            values = np.unique(load_mask(region.path))
            assert values.tolist() == [0, region.pixel_value]
            assert region.mask().sum() >= 20
        seen[it.regions[0].defect_name] += 1
        assert it.mask().shape == (256, 320)
    assert seen == {**{n: 6 for n in toybox_tray.LOGICAL}, **{n: 8 for n in toybox_tray.STRUCTURAL}}
    misplaced = [it for it in items if it.regions and it.regions[0].defect_name == "misplaced_part"]
    assert all(len(it.regions) == 2 for it in misplaced)  # where the part is and where it should be


def test_rule_holds_on_normals_and_breaks_on_logical(toybox_root: Path) -> None:
    tray = toybox_root / "tray"
    for split, where in NORMAL_SPLITS:
        for i, path in enumerate(list_images(tray / where)):
            scene = toybox_tray.scene_for(0, split, i)
            masks = compartments(scene)
            assert {c: Counter(p.kind for p in scene.parts if p.compartment == c) for c in masks} == RULE
            for part in scene.parts:
                fp = toybox_draw.footprint(toybox_scene.drawing(scene, part))
                assert not (fp & ~masks[part.compartment]).any()
                ys, xs = np.nonzero(fp)
                assert 15 <= max(np.ptp(xs), np.ptp(ys)) <= 82
            assert census(load_rgb(path), masks) == RULE, path
    for i, path in enumerate(list_images(tray / "test" / "logical_anomalies")):
        assert census(load_rgb(path), compartments(toybox_tray.scene_for(0, "logical_anomalies", i))) != RULE


def test_normals_vary(toybox_root: Path) -> None:
    scenes = [toybox_tray.scene_for(0, "train", i) for i in range(10)]
    xs = np.array([[p.pose.x for p in s.parts] for s in scenes])
    assert (xs.std(0) > 5).all()  # every part moves around between images
    paths = list_images(toybox_root / "tray" / "train" / "good")[:10]
    imgs = np.stack([load_rgb(p).astype(np.float32) for p in paths])
    assert np.abs(imgs - imgs.mean(0)).mean() > 10


@pytest.mark.parametrize("index", [0, 1, 3, 4])  # scratches and stains
def test_marks_change_pixels_only_inside_their_label(index: int) -> None:
    scene = toybox_tray.scene_for(0, "structural_anomalies", index)
    assert scene.marks and toybox_tray.STRUCTURAL[index % 3] in ("scratch", "stain")
    clean = toybox_tray.render(replace(scene, marks=[])).astype(int)
    diff = np.abs(toybox_tray.render(scene).astype(int) - clean).max(2)
    region = scene.regions[0][1]
    assert diff[region].mean() > 25  # visible
    near = cv2.dilate(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert not (diff[~near] > 2).any()  # nothing changes away from the label


def test_determinism(toybox_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    generated = tmp_path / "data" / "toybox" / "tray"  # where build and fit-generator write, e.g. fitted earlier
    generated.mkdir(parents=True)
    (generated / "generator.pt").write_bytes(b"not ours")
    reader = open_dataset("toybox")  # default root data/raw/toybox, materialised on first use
    assert reader.root == Path("data/raw/toybox") and len(reader.train_images("tray")) == 60
    assert files(tmp_path / "data" / "raw" / "toybox") == files(toybox_root)  # same seed -> identical bytes
    assert files(tmp_path / "data" / "toybox") == {"tray/generator.pt": b"not ours"}  # raw kept apart
    other = [toybox_tray.render(toybox_tray.scene_for(1, "train", i)) for i in range(3)]
    ours = [load_rgb(toybox_root / "tray" / "train" / "good" / f"{i:03d}.png") for i in range(3)]
    assert all(not np.array_equal(a, b) for a, b in zip(other, ours, strict=True))


def test_materialise_is_idempotent(toybox_root: Path) -> None:
    marker = toybox_root / "tray" / toybox.MARKER
    before = marker.stat().st_mtime_ns
    start = time.perf_counter()
    assert toybox.materialise(toybox_root, seed=0) == toybox_root
    assert time.perf_counter() - start < 1.0 and marker.stat().st_mtime_ns == before
    with pytest.raises(DatasetError, match=r"tray: holds the toybox made with seed 0, not 3"):
        toybox.materialise(toybox_root, seed=3)


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(folder: Path, seed: int, scenes) -> None:
        (folder / "train" / "good").mkdir(parents=True)
        (folder / "train" / "good" / "000.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(toybox, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        toybox.materialise(tmp_path, seed=0)
    assert [p.name for p in tmp_path.iterdir()] in ([], [".tray.logical.lock"])  # only the (empty) write lock


def test_foreign_tray_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "tray" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"tray: exists but is not a complete toybox"):
        toybox.materialise(tmp_path)
    assert list((tmp_path / "tray").iterdir()) == [tmp_path / "tray" / "train"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatasetError, match="a_file: cannot write the toybox here"):
        toybox.materialise(tmp_path / "a_file")


def test_scan_toybox(toybox_root: Path) -> None:
    res = CliRunner().invoke(cli, ["scan", "--dataset", "toybox", "--root", str(toybox_root), "--json"])
    assert res.exit_code == 0, res.output
    tray = json.loads(res.stdout)["categories"]["tray"]
    assert tray["sizes"] == {"320x256": 138} and tray["problems"] == []
    assert tray["test"] == {"good": 20, "logical_anomalies": 24, "structural_anomalies": 24}
    assert tray["masks"] == 24 + 6 + 24  # misplaced parts have two regions
