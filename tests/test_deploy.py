"""Export: one ONNX graph with the whole inference, checked against PyTorch; `predict --model` without torch."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synth.datasets.images import load_rgb
from synth.errors import CheckpointError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from train.cli import cli  # noqa: E402
from train.deploy import METADATA, ONNX_FILE, onnx_runner, onnx_session, run_batches  # noqa: E402
from train.export import ExportError, export, verify_export  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(calibrated, toybox_root, tmp_path_factory) -> Path:
    checkpoint, _ = calibrated
    out = tmp_path_factory.mktemp("export") / "onnx"
    export(checkpoint, "onnx", out, [toybox_root / "tray" / "test" / "logical_anomalies"])
    return out


def test_metadata_records_thresholds_and_checksums(exported, calibrated):
    checkpoint, thresholds = calibrated
    meta = json.loads((exported / METADATA).read_text())
    assert meta["thresholds"]["fpr"] == 0.01 and meta["thresholds"]["image"] == thresholds["image"]
    assert meta["input"]["model_size"] == [32, 32] and meta["categories"] == ["toybox/tray"]
    assert len(meta["checkpoint"]["sha256"]) == 64 and len(meta["training_data"][0]["sha256"]) == 64
    parity = meta["parity"]["onnxruntime"]
    assert parity["decisions_differ"] == 0 and parity["max_abs_map"] <= meta["parity"]["tolerance"]


def test_graph_has_dynamic_batch_and_size(exported, toybox_root):
    run = onnx_runner(onnx_session(exported))
    image = load_rgb(toybox_root / "tray" / "test" / "good" / "000.png")
    one = run_batches(run, [image], 1)
    small = image[::2, ::3].copy()          # another size, in a batch of 3
    three = run_batches(run, [small, small, image], 8)
    assert one["map"].shape == (1, 32, 32) and three["map"].shape == (3, 32, 32)
    assert np.allclose(three["map"][2], one["map"][0], atol=1e-6) and three["decision"].dtype == bool
    assert three["mask"].dtype == np.uint8 and set(np.unique(three["mask"])) <= {0, 1}


def test_predict_model_matches_predict_checkpoint_without_torch(exported, calibrated, toybox_root, tmp_path):
    checkpoint, _ = calibrated
    test = toybox_root / "tray" / "test"
    folders = [str(test / s) for s in ("good", "logical_anomalies", "structural_anomalies")]
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from train.cli import cli\n"
        "try:\n"
        "    cli(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules\n"
        "print('no torch')\n")
    done = subprocess.run([sys.executable, "-c", script, "predict", "--model", str(exported), *folders, "--out",
                           str(tmp_path / "onnx")], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "no torch" in done.stdout, done.stderr[-2000:]
    result = cli.main(["predict", "--checkpoint", str(checkpoint), *folders, "--out", str(tmp_path / "torch"),
                       "--device", "cpu"], standalone_mode=False)
    assert result is None
    onnx_rows = list(csv.DictReader(open(tmp_path / "onnx" / "scores.csv")))
    torch_rows = list(csv.DictReader(open(tmp_path / "torch" / "scores.csv")))
    assert len(onnx_rows) == 68 and [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows]
    assert [r["decision"] for r in onnx_rows] == [r["decision"] for r in torch_rows]
    assert {r["decision"] for r in onnx_rows} <= {"OK", "NG"}
    diffs = [abs(float(a["score"]) - float(b["score"])) for a, b in zip(onnx_rows, torch_rows, strict=True)]
    assert max(diffs) < 1e-3     # the graph's resize vs OpenCV's when enlarging: within a uint8 rounding
    assert len(list((tmp_path / "onnx").glob("*_mask.png"))) == 68


def _tampered_copy(exported: Path, tmp_path: Path) -> Path:
    out = tmp_path / "tampered"
    out.mkdir()
    (out / METADATA).write_text((exported / METADATA).read_text())
    model = onnx.load(str(exported / ONNX_FILE))
    from onnx import numpy_helper

    for k, init in enumerate(model.graph.initializer):     # perturb the first real weight tensor
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size > 16:
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(values * 1.5 + 0.1, init.name))
            break
    onnx.save(model, str(out / ONNX_FILE))
    return out


def test_parity_check_fails_on_a_tampered_graph(exported, calibrated, toybox_root, tmp_path):
    checkpoint, _ = calibrated
    images = [toybox_root / "tray" / "test" / "structural_anomalies"]
    assert verify_export(exported, checkpoint, images)["onnxruntime"]["decisions_differ"] == 0
    with pytest.raises(ExportError, match="max \\|map difference\\|"):
        verify_export(_tampered_copy(exported, tmp_path), checkpoint, images)


def test_parity_check_fails_on_a_tampered_threshold(exported, calibrated, tmp_path):
    checkpoint, thresholds = calibrated
    out = tmp_path / "meta"
    out.mkdir()
    (out / ONNX_FILE).write_bytes((exported / ONNX_FILE).read_bytes())
    meta = json.loads((exported / METADATA).read_text())
    meta["thresholds"]["image"] = thresholds["image"] + 0.01
    (out / METADATA).write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="image threshold"):
        verify_export(out, checkpoint)


def test_export_refuses_an_uncalibrated_checkpoint(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="no decision threshold is calibrated"):
        export(tiny_checkpoint, "onnx", tmp_path / "out")


def test_openvino_export_when_installed(calibrated, toybox_root, tmp_path):
    pytest.importorskip("openvino")
    checkpoint, _ = calibrated
    meta = export(checkpoint, "openvino", tmp_path / "ov", [toybox_root / "tray" / "test" / "good"])
    assert (tmp_path / "ov" / "model.xml").is_file() and meta["parity"]["openvino"]["decisions_differ"] == 0
