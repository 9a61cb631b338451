"""Dataset readers on tiny fixtures in each official layout and on hazelnut_toy; bad inputs; images; scan."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from synth.cli import cli
from synth.datasets import DATASETS, image_shape, open_dataset
from synth.datasets.images import load_rgb
from synth.errors import DatasetError, ImageError

H, W = 24, 32


def noise_rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write(path: Path, arr: np.ndarray) -> Path:
    """Write an array with cv2 (BGR order for colour, any depth), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def box_mask(y0: int, y1: int, x0: int, x1: int, value: int = 255, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def expected(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return box_mask(y0, y1, x0, x1) > 0


# ---------------------------------------------------------------- fixtures in the official layouts
@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    root = tmp_path / "mvtec"
    for i in range(3):
        write(root / "bottle" / "train" / "good" / f"{i:03d}.png", noise_rgb(i))
    write(root / "bottle" / "test" / "good" / "000.png", noise_rgb(10))
    write(root / "bottle" / "test" / "broken_large" / "000.png", noise_rgb(11))
    write(root / "bottle" / "test" / "broken_large" / "001.png", noise_rgb(12))
    write(root / "bottle" / "ground_truth" / "broken_large" / "000_mask.png", box_mask(2, 8, 3, 9))
    write(root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png", box_mask(10, 20, 0, 5))
    gray = noise_rgb(20)[:, :, 0]
    write(root / "grid" / "train" / "good" / "000.png", gray)
    write(root / "grid" / "test" / "bent" / "000.png", gray)
    write(root / "grid" / "ground_truth" / "bent" / "000_mask.png", box_mask(0, 4, 0, 4))
    (root / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    (root / "readme.txt").write_text("stray file\n")
    (root / ".cache").mkdir()
    (root / "empty_dir").mkdir()
    return root


@pytest.fixture
def loco_root(tmp_path: Path) -> Path:
    root = tmp_path / "loco"
    cat = root / "juice_bottle"
    for i in range(2):
        write(cat / "train" / "good" / f"{i:03d}.png", noise_rgb(i))
    write(cat / "validation" / "good" / "000.png", noise_rgb(5))
    write(cat / "test" / "good" / "000.png", noise_rgb(6))
    write(cat / "test" / "logical_anomalies" / "000.png", noise_rgb(7))
    write(cat / "test" / "structural_anomalies" / "000.png", noise_rgb(8))
    write(cat / "ground_truth" / "logical_anomalies" / "000" / "000.png", box_mask(0, 5, 0, 5, 255))
    write(cat / "ground_truth" / "logical_anomalies" / "000" / "001.png", box_mask(10, 15, 20, 30, 254))
    write(cat / "ground_truth" / "structural_anomalies" / "000" / "000.png", box_mask(3, 9, 3, 9, 253))
    config = [
        {"defect_name": "missing_banana", "pixel_value": 255, "saturation_threshold": 2000,
         "relative_saturation": False},
        {"defect_name": "wrong_label", "pixel_value": 254, "saturation_threshold": 0.5,
         "relative_saturation": True},
        {"defect_name": "contamination", "pixel_value": 253, "saturation_threshold": 1.0,
         "relative_saturation": True},
    ]
    (cat / "defects_config.json").write_text(json.dumps(config))
    (root / "license.txt").write_text("licence\n")
    return root


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    root = tmp_path / "visa"
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        base = root / obj / "Data"
        for i in range(3):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            write(root / rel, noise_rgb(i))
            rows.append(f"{obj},{'train' if i < 2 else 'test'},normal,{rel},")
        write(base / "Images" / "Anomaly" / "000.JPG", noise_rgb(9))
        write(base / "Masks" / "Anomaly" / "000.png", box_mask(4, 12, 6, 14, value=1))  # VisA masks: != 0
        rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/000.JPG,{obj}/Data/Masks/Anomaly/000.png")
    write_csv(root, rows)
    return root


def write_csv(root: Path, rows: list[str]) -> None:
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")


def rgba(seed: int) -> np.ndarray:
    img = np.concatenate([noise_rgb(seed), np.full((H, W, 1), 255, np.uint8)], axis=2)
    img[:4, :4, 3] = 0  # fully transparent corner
    return img


@pytest.fixture
def madsim_root(tmp_path: Path) -> Path:
    root = tmp_path / "MAD-Sim"
    cls = root / "01Gorilla"
    for k in range(2):
        write(cls / "train" / "good" / f"{k}.png", rgba(k))
    write(cls / "test" / "good" / "0.png", rgba(5))
    for defect in ("Burrs", "Missing", "Stains"):
        write(cls / "test" / defect / "0.png", rgba(6))
        write(cls / "ground_truth" / defect / "0_mask.png", box_mask(5, 10, 5, 10))
    write(root / "02Unicorn" / "train" / "good" / "0.png", rgba(7))
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    for i in range(2):
        write(root / "widgets" / f"w{i}.png", noise_rgb(i))
        write(root / "gadgets" / "good" / f"g{i}.jpg", noise_rgb(i + 5))
        write(root / "things" / "train" / f"t{i}.png", noise_rgb(i + 9))
    write(root / "things" / "test" / "good" / "a.png", noise_rgb(20))
    write(root / "things" / "test" / "dent" / "b.png", noise_rgb(21))
    write(root / "things" / "test" / "dent" / "c.png", noise_rgb(22))
    write(root / "things" / "ground_truth" / "dent" / "b.png", box_mask(1, 3, 1, 3))
    write(root / "things" / "ground_truth" / "dent" / "c_mask.png", box_mask(5, 9, 5, 9))
    (root / "notes.md").write_text("stray\n")
    (root / "split_csv").mkdir()
    return root


# ---------------------------------------------------------------- readers
def test_mvtec_reader(mvtec_root: Path) -> None:
    r = open_dataset("mvtec", mvtec_root)
    assert r.name == "mvtec" and r.root == mvtec_root
    assert r.categories() == ["bottle", "grid"]
    assert "license.txt" in r.licence
    assert [p.name for p in r.train_images("bottle")] == ["000.png", "001.png", "002.png"]
    assert r.validation_images("bottle") == []
    items = r.test_items("bottle")
    assert [(it.split, it.path.name, it.label, it.kind) for it in items] == [
        ("broken_large", "000.png", 1, None), ("broken_large", "001.png", 1, None),
        ("good", "000.png", 0, None)]
    assert items[0].mask_path.name == "000_mask.png" and items[2].mask_path is None and items[0].regions == ()
    assert np.array_equal(items[0].mask(), expected(2, 8, 3, 9))
    assert np.array_equal(items[1].mask(), expected(10, 20, 0, 5))
    big = items[0].mask((H * 2, W * 2))
    assert big.shape == (48, 64) and big.dtype == bool and np.array_equal(big[::2, ::2], expected(2, 8, 3, 9))
    good = items[2].mask()
    assert good.shape == (H, W) and not good.any()
    gray = load_rgb(r.train_images("grid")[0])
    assert gray.shape == (H, W, 3) and np.array_equal(gray[:, :, 0], gray[:, :, 2])


def test_mvtec_root_that_is_a_category(mvtec_root: Path) -> None:
    r = open_dataset("mvtec", mvtec_root / "bottle")
    assert r.categories() == ["bottle"] and len(r.train_images("bottle")) == 3


def test_mvtec_bad_inputs(mvtec_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere.*no such folder.*train/good"):
        open_dataset("mvtec", missing)
    (tmp_path / "flat").mkdir()
    write(tmp_path / "flat" / "a.png", noise_rgb(0))
    with pytest.raises(DatasetError, match=r"flat: not an MVTec AD root: expected <category>/train/good"):
        open_dataset("mvtec", tmp_path / "flat")
    r = open_dataset("mvtec", mvtec_root)
    with pytest.raises(DatasetError, match="no category 'cable'.*available: bottle, grid"):
        r.train_images("cable")
    (mvtec_root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"broken_large/001\.png: no ground-truth mask.*001_mask\.png"):
        r.test_items("bottle")
    bad = mvtec_root / "bottle" / "train" / "good" / "000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageError, match=r"train/good/000\.png"):
        load_rgb(bad)


def test_mvtec_on_hazelnut_toy(hazelnut_root: Path) -> None:
    r = open_dataset("mvtec", hazelnut_root)
    assert r.categories() == ["hazelnut"]
    train = r.train_images("hazelnut")
    assert len(train) == 28
    shapes = [image_shape(p) for p in train]
    assert shapes.count((522, 512)) == 1 and shapes.count((512, 512)) == 27
    items = r.test_items("hazelnut")
    colour = [it for it in items if it.split == "colour"]
    good = [it for it in items if it.split == "good"]
    assert len(colour) == 17 and len(good) == 6 and len(items) == 23
    for it in colour:
        assert it.label == 1 and it.mask_path.name == it.path.stem + ".png"
        m = it.mask()
        assert m.shape == image_shape(it.path) and 0 < m.mean() < 0.5
    assert all(it.label == 0 and not it.mask((8, 8)).any() for it in good)


def test_loco_reader(loco_root: Path) -> None:
    r = open_dataset("mvtec_loco", loco_root)
    assert r.categories() == ["juice_bottle"]
    assert len(r.train_images("juice_bottle")) == 2 and len(r.validation_images("juice_bottle")) == 1
    items = {it.split: it for it in r.test_items("juice_bottle")}
    assert set(items) == {"good", "logical_anomalies", "structural_anomalies"}
    good, logical, structural = items["good"], items["logical_anomalies"], items["structural_anomalies"]
    assert (good.label, good.kind, good.regions) == (0, None, ())
    assert (logical.label, logical.kind, logical.mask_path) == (1, "logical", None)
    assert structural.kind == "structural"
    assert [(g.path.name, g.defect_name, g.pixel_value, g.saturation_threshold, g.relative_saturation)
            for g in logical.regions] == [("000.png", "missing_banana", 255, 2000.0, False),
                                          ("001.png", "wrong_label", 254, 0.5, True)]
    assert np.array_equal(logical.mask(), expected(0, 5, 0, 5) | expected(10, 15, 20, 30))
    assert np.array_equal(logical.regions[1].mask(), expected(10, 15, 20, 30))
    assert [g.defect_name for g in structural.regions] == ["contamination"]
    assert np.array_equal(structural.mask(), expected(3, 9, 3, 9))


def test_loco_bad_inputs(loco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing_loco.*no such folder.*validation/good"):
        open_dataset("mvtec_loco", tmp_path / "missing_loco")
    cat = loco_root / "juice_bottle"
    gt = cat / "ground_truth" / "logical_anomalies" / "000" / "001.png"
    write(gt, box_mask(10, 15, 20, 30, 77))
    with pytest.raises(DatasetError, match=r"000/001\.png: pixel value 77 is not in .*defects_config\.json"):
        open_dataset("mvtec_loco", loco_root).test_items("juice_bottle")
    write(gt, box_mask(10, 15, 20, 30, 254))
    config = cat / "defects_config.json"
    for text, why in (("{not json", "not valid JSON"), ('{"a": 1}', "expected a list"),
                      ('[{"defect_name": "x", "pixel_value": 255}]', "saturation_threshold")):
        config.write_text(text)
        with pytest.raises(DatasetError, match=rf"defects_config\.json: .*{why}"):
            open_dataset("mvtec_loco", loco_root).test_items("juice_bottle")
    config.unlink()
    with pytest.raises(DatasetError, match=r"defects_config\.json: missing"):
        open_dataset("mvtec_loco", loco_root).test_items("juice_bottle")


def test_loco_ground_truth_in_colour_or_16_bit(loco_root: Path) -> None:
    """Pixel values are read as stored: red on black (max over channels) and 16-bit files holding 254."""
    gt = loco_root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "000"
    red = np.zeros((H, W, 3), np.uint8)
    red[0:5, 0:5, 2] = 255  # red in cv2's BGR
    write(gt / "000.png", red)
    write(gt / "001.png", box_mask(10, 15, 20, 30, 254).astype(np.uint16))
    items = {it.split: it for it in open_dataset("mvtec_loco", loco_root).test_items("juice_bottle")}
    logical = items["logical_anomalies"]
    assert [(g.defect_name, g.pixel_value) for g in logical.regions] == [("missing_banana", 255),
                                                                          ("wrong_label", 254)]
    assert np.array_equal(logical.mask(), expected(0, 5, 0, 5) | expected(10, 15, 20, 30))


def test_loco_missing_ground_truth(loco_root: Path) -> None:
    for f in (loco_root / "juice_bottle" / "ground_truth" / "structural_anomalies" / "000").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"structural_anomalies/000\.png: no ground truth"):
        open_dataset("mvtec_loco", loco_root).test_items("juice_bottle")


def test_visa_reader(visa_root: Path) -> None:
    r = open_dataset("visa", visa_root)
    assert r.categories() == ["candle", "pcb1"] and r.licence.startswith("CC BY 4.0")
    assert [p.name for p in r.train_images("candle")] == ["0000.JPG", "0001.JPG"]
    items = r.test_items("pcb1")
    assert [(it.split, it.label, it.path.name) for it in items] == [("good", 0, "0002.JPG"),
                                                                     ("anomaly", 1, "000.JPG")]
    assert items[1].mask_path == visa_root / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png"
    assert np.array_equal(items[1].mask(), expected(4, 12, 6, 14))
    assert load_rgb(items[1].path).dtype == np.uint8


def test_visa_bad_inputs(visa_root: Path, tmp_path: Path) -> None:
    (tmp_path / "novisa").mkdir()
    with pytest.raises(DatasetError, match=r"novisa: not a VisA root: expected split_csv/1cls\.csv"):
        open_dataset("visa", tmp_path / "novisa")
    (visa_root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png").unlink()
    r = open_dataset("visa", visa_root)
    with pytest.raises(DatasetError, match=r"1cls\.csv, line \d+: mask .*candle/Data/Masks/Anomaly/000\.png"):
        r.test_items("candle")
    assert len(r.test_items("pcb1")) == 2  # the other object is fine
    write_csv(visa_root, ["object,split,label,image", "candle,train,normal,candle/x.JPG"])
    with pytest.raises(DatasetError, match=r"1cls\.csv: missing column\(s\) mask"):
        open_dataset("visa", visa_root)
    write_csv(visa_root, ["object,split,label,image,mask",
                          "candle,test,broken,candle/Data/Images/Normal/0000.JPG,"])
    with pytest.raises(DatasetError, match=r"line 2: label 'broken'"):
        open_dataset("visa", visa_root).test_items("candle")


def test_madsim_reader(madsim_root: Path) -> None:
    r = open_dataset("madsim", madsim_root)
    assert r.categories() == ["01Gorilla", "02Unicorn"]
    items = r.test_items("01Gorilla")
    assert [it.split for it in items] == ["Burrs", "Missing", "Stains", "good"]
    assert all(np.array_equal(it.mask(), expected(5, 10, 5, 10)) for it in items[:3])
    img = load_rgb(r.train_images("01Gorilla")[0])
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert (img[:4, :4] == 255).all()  # transparent -> white
    assert np.array_equal(img[5:, 5:], noise_rgb(0)[5:, 5:, ::-1])  # opaque pixels keep their colour
    assert r.test_items("02Unicorn") == []


def test_madsim_bad_inputs(madsim_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="gone.*MAD-Sim"):
        open_dataset("madsim", tmp_path / "gone")
    (madsim_root / "01Gorilla" / "ground_truth" / "Stains" / "0_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"Stains/0\.png: no ground-truth mask"):
        open_dataset("madsim", madsim_root).test_items("01Gorilla")


def test_folder_reader(folder_root: Path) -> None:
    r = open_dataset("folder", folder_root)
    assert r.categories() == ["gadgets", "things", "widgets"]
    assert [p.name for p in r.train_images("widgets")] == ["w0.png", "w1.png"]
    assert [p.name for p in r.train_images("gadgets")] == ["g0.jpg", "g1.jpg"]
    assert [p.name for p in r.train_images("things")] == ["t0.png", "t1.png"]
    assert r.test_items("widgets") == []
    items = r.test_items("things")
    assert [(it.split, it.path.name, it.label) for it in items] == [
        ("dent", "b.png", 1), ("dent", "c.png", 1), ("good", "a.png", 0)]
    assert np.array_equal(items[0].mask(), expected(1, 3, 1, 3))
    assert np.array_equal(items[1].mask(), expected(5, 9, 5, 9))
    single = open_dataset("folder", folder_root / "widgets")
    assert single.categories() == ["widgets"] and len(single.train_images("widgets")) == 2


def test_folder_bad_inputs(folder_root: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: not an image-folder root"):
        open_dataset("folder", tmp_path / "empty")
    (folder_root / "things" / "ground_truth" / "dent" / "c_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"dent/c\.png: no ground-truth mask"):
        open_dataset("folder", folder_root).test_items("things")


def test_open_dataset_names_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DATASETS == ("mvtec", "mvtec_loco", "visa", "madsim", "folder", "toybox")
    with pytest.raises(DatasetError, match="unknown dataset 'kolektor'.*mvtec, mvtec_loco"):
        open_dataset("kolektor", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"data/raw/visa: no such folder"):
        open_dataset("visa")


# ---------------------------------------------------------------- image loading
def test_load_rgb_variants(tmp_path: Path) -> None:
    gray = noise_rgb(1)[:, :, 0]
    out = load_rgb(write(tmp_path / "g.png", gray))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and np.array_equal(out[:, :, 1], gray)
    deep = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 60).astype(np.uint16)
    deep[0, 0] = 65535
    out = load_rgb(write(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 255
    assert np.array_equal(out[..., 0], deep.astype(int) * 255 // 65535)
    out = load_rgb(write(tmp_path / "a.png", rgba(2)))
    assert out.shape == (H, W, 3) and (out[0, 0] == 255).all()
    assert np.array_equal(out[8, 8], noise_rgb(2)[8, 8, ::-1])
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[:, :, 2] = 200  # red in cv2's BGR
    out = load_rgb(write(tmp_path / "j.jpg", bgr))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert abs(int(out[10, 10, 0]) - 200) < 8 and out[10, 10, 2] < 10


# ---------------------------------------------------------------- scan
def run_scan(*args: str):
    return CliRunner().invoke(cli, ["scan", *args])


def test_scan_json_clean(mvtec_root: Path) -> None:
    res = run_scan("--dataset", "mvtec", "--root", str(mvtec_root), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == {"dataset": "mvtec", "problems": [], "categories": {
        "bottle": {"train": 3, "validation": 0, "test": {"broken_large": 2, "good": 1}, "masks": 2,
                   "sizes": {f"{W}x{H}": 6}, "bit_depth": "8-bit files", "problems": [], "notes": []},
        "grid": {"train": 1, "validation": 0, "test": {"bent": 1}, "masks": 1, "sizes": {f"{W}x{H}": 2},
                 "bit_depth": "8-bit files", "problems": [], "notes": []}}}


def test_scan_finds_planted_problems(mvtec_root: Path) -> None:
    bottle = mvtec_root / "bottle"
    (bottle / "train" / "good" / "001.png").write_bytes(b"not an image at all")
    (bottle / "ground_truth" / "broken_large" / "001_mask.png").unlink()
    write(bottle / "ground_truth" / "broken_large" / "000_mask.png", np.zeros((H + 1, W), np.uint8))
    res = run_scan("--dataset", "mvtec", "--root", str(mvtec_root), "--category", "bottle", "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert list(report["categories"]) == ["bottle"]
    problems = "\n".join(report["categories"]["bottle"]["problems"])
    assert len(report["categories"]["bottle"]["problems"]) == 3
    assert "train/good/001.png: not a readable image" in problems
    assert "broken_large/001.png: no ground-truth mask" in problems
    assert f"000_mask.png: mask is {W}x{H + 1} but its image" in problems
    human = run_scan("--dataset", "mvtec", "--root", str(mvtec_root))
    assert human.exit_code == 1 and "3 problem(s) found" in human.stdout and "bottle" in human.stdout


def test_scan_loco_unknown_value(loco_root: Path) -> None:
    write(loco_root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "000" / "001.png",
          box_mask(10, 15, 20, 30, 9))
    res = run_scan("--dataset", "mvtec_loco", "--root", str(loco_root), "--json")
    assert res.exit_code == 1
    cat = json.loads(res.stdout)["categories"]["juice_bottle"]
    assert cat["test"] == {"good": 1, "logical_anomalies": 1, "structural_anomalies": 1}
    assert cat["validation"] == 1 and cat["masks"] == 2
    assert len(cat["problems"]) == 1 and "pixel value 9 is not in" in cat["problems"][0]


def test_scan_errors(tmp_path: Path, visa_root: Path) -> None:
    res = run_scan("--dataset", "mvtec", "--root", str(tmp_path / "absent"))
    assert res.exit_code == 1 and "Error: " in res.output and "absent" in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    res = run_scan("--dataset", "visa", "--root", str(visa_root), "--category", "capsules")
    assert res.exit_code == 1 and "available: candle, pcb1" in res.output
    res = run_scan("--dataset", "visa", "--root", str(visa_root), "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["categories"]["candle"]["test"] == {"anomaly": 1, "good": 1}
    assert "exit code" in run_scan("--help").output.lower()
