"""Decision thresholds: the FPR quantile rule against hand-computed cases, the held-out normals of a build,
the eval report of decisions, predict's CSV and masks, and checkpoints without thresholds."""

import csv
from pathlib import Path

import numpy as np
import pytest

from synth.datasets import open_dataset
from synth.datasets.base import TestItem
from synth.datasets.holdout import calibration_paths, holdout_count, set_aside, split_holdout
from synth.datasets.images import load_mask
from train.predict import predict
from train.thresholds import calibrate_values, decide, decision_report, defect_mask, quantile_threshold


def test_quantile_threshold_hand_computed():
    values = np.arange(1, 101, dtype=float)          # 1..100
    assert quantile_threshold(values, 0.01) == 99.0    # k = 1: only 100 is above
    assert quantile_threshold(values, 0.05) == 95.0    # k = 5: 96..100 above
    assert quantile_threshold(values, 0.0) == 100.0
    assert quantile_threshold(np.array([0.3, 0.1, 0.7, 0.2]), 0.01) == 0.7   # n < 1/fpr: the maximum
    assert quantile_threshold(np.array([[0.3, 0.1], [0.7, 0.2]]), 0.25) == 0.3   # k = 1 of 4, flattened
    with pytest.raises(ValueError):
        quantile_threshold(np.array([]), 0.01)
    with pytest.raises(ValueError):
        quantile_threshold(values, 1.0)


def test_quantile_threshold_rejects_at_most_the_allowed_share():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        values = rng.random(n) if rng.random() < 0.5 else rng.integers(0, 5, n).astype(float)   # with ties
        fpr = float(rng.uniform(0, 0.5))
        t = quantile_threshold(values, fpr)
        k = int(np.floor(fpr * n))
        assert (values > t).sum() <= k                   # never more false rejects than allowed
        assert (values >= t).sum() >= k + 1              # and the threshold is a value, the (k+1)-th largest
        assert t in values


def test_calibrate_values_image_and_pixel_thresholds():
    scores = np.array([0.1, 0.4, 0.2, 0.3])
    maps = np.zeros((4, 10, 10), np.float32)
    maps[0, 0, :5] = 0.9                               # 5 of 400 pixels high
    t = calibrate_values(scores, maps, 0.01)           # image: k = 0 -> 0.4; pixel: k = 4 -> 5th largest = 0.9
    assert t == {"fpr": 0.01, "image": 0.4, "pixel": pytest.approx(0.9), "images": 4}
    assert decide(np.array([0.4, 0.41]), t).tolist() == [False, True]
    assert decide(scores, None) is None
    amap = np.array([[0.95, 0.1], [0.2, 0.91]])
    assert defect_mask(amap, True, t).tolist() == [[True, False], [False, True]]
    assert not defect_mask(amap, False, t).any()       # an OK image has an empty mask


def test_holdout_share_is_deterministic_and_never_all():
    assert [holdout_count(n) for n in (2, 3, 4, 10, 28, 60, 400)] == [0, 0, 2, 4, 4, 6, 40]
    paths = [Path(f"{i:03d}.png") for i in range(60)]
    kept, held = split_holdout(paths, seed=3)
    assert len(held) == 6 and len(kept) == 54 and not set(kept) & set(held)
    assert split_holdout(paths, seed=3) == (kept, held)
    assert split_holdout(paths, seed=4)[1] != held
    assert kept == sorted(kept) and held == sorted(held)


def test_set_aside_uses_validation_normals_or_holds_out(toybox_root, hazelnut_root):
    toy = open_dataset("mvtec_loco", toybox_root)
    train = toy.train_images("tray")
    kept, record = set_aside(toy, "tray", train, seed=0)
    assert kept == train and record["split"] == "validation"
    assert calibration_paths(record) == [p.resolve() for p in toy.validation_images("tray")]
    nut = open_dataset("mvtec", hazelnut_root)
    train = nut.train_images("hazelnut")
    kept, record = set_aside(nut, "hazelnut", train, seed=0)
    held = calibration_paths(record, nut.root)
    assert record["split"] == "holdout" and len(held) == holdout_count(len(train)) > 0
    assert sorted(kept + held) == sorted(train) and not set(kept) & set(held)


def _item(split: str, label: int) -> TestItem:
    return TestItem(Path(f"{split}.png"), split, label, None, None)


def test_decision_report_hand_computed():
    items = [_item("good", 0)] * 4 + [_item("crack", 1)] * 2 + [_item("hole", 1)] * 3
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.4, 0.7, 0.8, 0.2])
    report = decision_report(items, scores, {"fpr": 0.01, "image": 0.5, "pixel": 0.5})
    assert report["good"] == {"images": 4, "false_rejects": 1, "false_reject_rate": 0.25}
    assert report["defects"]["crack"] == {"images": 2, "missed": 1, "miss_rate": 0.5}
    assert report["defects"]["hole"]["missed"] == 1 and report["defects"]["hole"]["miss_rate"] == pytest.approx(1 / 3)
    assert decision_report(items, scores, None) is None


def test_predict_without_thresholds_still_scores(tiny_checkpoint, toybox_root, tmp_path):
    rows, _ = predict(tiny_checkpoint, [toybox_root / "tray" / "test" / "good"], tmp_path, device="cpu")
    assert rows and all(ng is None for _, _, ng in rows)
    table = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert [r["decision"] for r in table] == [""] * len(rows)
    assert not list(tmp_path.glob("*_mask.png"))


def test_predict_writes_decisions_and_masks(calibrated, toybox_root, tmp_path):
    checkpoint, thresholds = calibrated
    folder = toybox_root / "tray" / "test" / "structural_anomalies"
    rows, _ = predict(checkpoint, [folder], tmp_path, device="cpu")
    table = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert [r["decision"] for r in table] == ["NG" if float(r["score"]) > thresholds["image"] else "OK"
                                              for r in table]
    for path, _, ng in rows:
        mask = load_mask(tmp_path / f"{path.stem}_mask.png")
        amap = load_mask(tmp_path / f"{path.stem}_map.png")
        assert mask.shape == amap.shape and set(np.unique(mask)) <= {0, 255}
        if not ng:
            assert not mask.any()
        else:   # the 8-bit map PNG rounds: compare away from the threshold only
            full = np.asarray(amap, np.float64) / 255.0
            far = np.abs(full - thresholds["pixel"]) > 1 / 255
            assert np.array_equal((mask > 0)[far], (full > thresholds["pixel"])[far])


def test_build_leaves_held_out_normals_out_of_sources(hazelnut_root, tmp_path):
    import h5py

    from synth.build import build
    from synth.store.manifest import read_manifest
    from synth.store.schema import SOURCES

    build("mvtec", hazelnut_root, ["hazelnut"], n=4, shard_size=4, size=32, seed=5, out=tmp_path,
          synthesizer="perlin")
    directory = tmp_path / "mvtec" / "hazelnut"
    record = read_manifest(directory)["report"]["calibration"]
    with h5py.File(directory / SOURCES, "r") as f:
        used = {p.decode() if isinstance(p, bytes) else str(p) for p in f["path"][:]}
    train = open_dataset("mvtec", hazelnut_root).train_images("hazelnut")
    assert record["split"] == "holdout" and len(record["images"]) == holdout_count(len(train))
    assert not used & set(record["images"]) and len(used) == len(train) - len(record["images"])
    held = calibration_paths(record)
    assert all(p.is_file() for p in held) and held == split_holdout(train, 5)[1]


def test_training_calibrates_and_eval_recalibrates(calibrated, toybox_root, tmp_path):
    import shutil

    from click.testing import CliRunner

    from train.calibrate import stored_thresholds
    from train.cli import cli

    checkpoint, thresholds = calibrated
    assert thresholds["split"] == "validation" and thresholds["images"] == 10 and thresholds["fpr"] == 0.01
    copy = tmp_path / "model.pt"
    shutil.copyfile(checkpoint, copy)
    result = CliRunner().invoke(cli, ["eval", "--checkpoint", str(copy), "--dataset", "toybox", "--root",
                                      str(toybox_root), "--category", "tray", "--out", str(tmp_path / "eval"),
                                      "--heatmaps", "0", "--device", "cpu", "--fpr", "0.2"])
    assert result.exit_code == 0, result.output
    again = stored_thresholds(copy)
    assert again["fpr"] == 0.2 and again["image"] <= thresholds["image"]     # k = 2 of 10: a lower value
    assert "good (false rejects) | 20 |" in result.output
    metrics = (tmp_path / "eval" / "metrics.md").read_text()
    assert "Decisions at the calibrated threshold (FPR 0.2" in metrics
