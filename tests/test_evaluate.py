"""evaluate / predict end to end with a tiny real checkpoint on real test data (hazelnut, toybox)."""

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.datasets import open_dataset
from synth.datasets.images import load_mask, load_rgb
from synth.errors import ImageError
from train import metrics
from train.cli import cli
from train.evaluate import evaluate, infer, markdown_table, pool_kernel
from train.model import load_checkpoint
from train.outputs import upsample_map
from train.predict import predict


def test_upsample_map_to_ground_truth_shape():
    low = np.zeros((32, 32), np.float32)
    low[8:16, 8:16] = 1.0
    full = upsample_map(low, (100, 75))
    assert full.shape == (100, 75) and full.dtype == np.float32
    assert full.min() >= 0.0 and full.max() <= 1.0
    assert full[int(12 / 32 * 100), int(12 / 32 * 75)] == pytest.approx(1.0)
    assert upsample_map(np.full((32, 32), 0.25, np.float32), (1100, 1600)).shape == (1100, 1600)
    assert np.all(upsample_map(np.full((32, 32), 0.25, np.float32), (64, 48)) == 0.25)


def test_pool_kernel_scales_with_model_size():
    assert [pool_kernel(s) for s in (256, 128, 64, 32, 512)] == [21, 11, 5, 3, 43]


def test_evaluate_hazelnut(tiny_checkpoint, hazelnut_root, tmp_path):
    result = evaluate(tiny_checkpoint, "mvtec", hazelnut_root, "hazelnut", tmp_path, device="cpu",
                      batch_size=5)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == result
    items = open_dataset("mvtec", hazelnut_root).test_items("hazelnut")
    assert result["metrics"]["all"]["images"] == len(items) == len(result["images"])
    assert set(result["metrics"]["all"]) == {"images", "image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    for key in ("image_auroc", "pixel_auroc", "pixel_ap", "aupro"):
        assert 0.0 <= result["metrics"]["all"][key] <= 1.0
    assert result["protocol"]["layout"] == "mvtec" and result["model"]["size"] == 32
    assert "| all | " in (tmp_path / "metrics.md").read_text()
    assert markdown_table(result) in (tmp_path / "metrics.md").read_text()

    # heatmaps: 3 best, 3 worst anomalies and 3 good images, three panels side by side
    assert len(result["heatmaps"]) == 9
    for rel in result["heatmaps"]:
        fig = load_rgb(tmp_path / rel)
        assert fig.shape[0] == 256 and fig.shape[1] > 3 * 256
    assert sum(r.startswith("heatmaps/fp-good") for r in result["heatmaps"]) == 3

    # the reported numbers are the metrics of the model's maps at full ground-truth resolution
    model, config = load_checkpoint(tiny_checkpoint)
    images = [load_rgb(it.path) for it in items]
    low, scores = infer(model, images, config["size"], torch.device("cpu"))
    maps = [upsample_map(m, img.shape[:2]) for m, img in zip(low, images, strict=True)]
    masks = [load_mask(it.mask_path) > 0 if it.mask_path else np.zeros(img.shape[:2], bool)
             for it, img in zip(items, images, strict=True)]
    assert maps[0].shape == masks[0].shape == images[0].shape[:2]
    np.testing.assert_allclose([r["score"] for r in result["images"]], scores, rtol=1e-5)
    reported = result["metrics"]["all"]
    assert reported["aupro"] == pytest.approx(metrics.aupro(maps, masks), abs=1e-6)
    assert reported["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(maps, masks), abs=1e-6)
    assert reported["image_auroc"] == pytest.approx(
        metrics.image_auroc(scores, [it.label for it in items]), abs=1e-9)


def test_evaluate_toybox_loco_protocol(tiny_checkpoint, toybox_root, tmp_path):
    result = evaluate(tiny_checkpoint, "mvtec_loco", toybox_root, "tray", tmp_path, device="cpu",
                      n_heatmaps=1)
    assert result["protocol"]["layout"] == "mvtec_loco" and result["protocol"]["max_fpr"] == 0.05
    table = result["metrics"]
    assert set(table) == {"logical", "structural", "mean"}
    for kind in ("logical", "structural"):
        assert set(table[kind]) == {"images", "good", "image_auroc", "au_spro"}
        assert 0.0 <= table[kind]["au_spro"] <= 1.0 and 0.0 <= table[kind]["image_auroc"] <= 1.0
        assert table[kind]["good"] == result["counts"]["good"]
    assert table["mean"]["au_spro"] == pytest.approx((table["logical"]["au_spro"]
                                                      + table["structural"]["au_spro"]) / 2)
    assert len(result["heatmaps"]) == 3
    assert "AU-sPRO" in (tmp_path / "metrics.md").read_text()


def test_predict_files_and_folders(tiny_checkpoint, hazelnut_root, tmp_path):
    good = hazelnut_root / "hazelnut" / "test" / "good"
    one = hazelnut_root / "hazelnut" / "test" / "colour" / "00.jpg"
    rows, skipped = predict(tiny_checkpoint, [good, one], tmp_path / "out", device="cpu", batch_size=4)
    n_good = len(list(good.glob("*.jpg")))
    assert len(rows) == n_good + 1 and not skipped
    with open(tmp_path / "out" / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == [str(p) for p, *_ in rows]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in table)
    raw = load_mask(tmp_path / "out" / "00_map.png")
    assert raw.shape == load_rgb(one).shape[:2]
    assert load_rgb(tmp_path / "out" / "00_overlay.png").shape == load_rgb(one).shape


def test_predict_unreadable_image(tiny_checkpoint, hazelnut_root, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    ok = hazelnut_root / "hazelnut" / "test" / "good" / "04.jpg"
    with pytest.raises(ImageError, match="broken.png"):
        predict(tiny_checkpoint, [ok, bad], tmp_path / "a", device="cpu")
    rows, skipped = predict(tiny_checkpoint, [ok, bad], tmp_path / "b", device="cpu", skip_bad=True)
    assert [p for p, *_ in rows] == [ok] and len(skipped) == 1
    assert "broken.png" in (tmp_path / "b" / "skipped.txt").read_text()


def test_cli_eval_and_predict(tiny_checkpoint, hazelnut_root, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "--checkpoint", str(tiny_checkpoint), "--dataset", "mvtec", "--root",
                              str(hazelnut_root), "--out", str(tmp_path / "ev"), "--device", "cpu",
                              "--heatmaps", "0"])
    assert res.exit_code == 0, res.output
    assert "| all | 23 |" in res.output and (tmp_path / "ev" / "metrics.json").is_file()
    res = runner.invoke(cli, ["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "missing.png"),
                              "--out", str(tmp_path / "pr")])
    assert res.exit_code == 1 and "Error:" in res.output and "missing.png" in res.output
    res = runner.invoke(cli, ["eval", "--checkpoint", str(tmp_path / "none.pt"), "--dataset", "mvtec",
                              "--root", str(hazelnut_root), "--device", "cpu"])
    assert res.exit_code == 1 and "none.pt" in res.output
