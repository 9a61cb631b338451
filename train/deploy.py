"""Run an exported model (`logical-train export`) with onnxruntime alone: no PyTorch on the station.

An export folder holds `model.onnx` (train.export_graph: uint8 RGB (B, H, W, 3) in; map, score, decision,
mask out), `metadata.json` (train.export) and, for `--format openvino`, `model.xml`/`model.bin`. This module
must never import torch (tests/test_deploy.py checks it in a fresh interpreter): it uses numpy, OpenCV,
Pillow and onnxruntime (`pip install 'logical[deploy]'`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth.console import say
from synth.datasets.bitdepth import data_depth
from synth.errors import CheckpointError, LogicalError
from train.outputs import expand_inputs, load_chunk, output_stems, write_image_outputs, write_scores

METADATA = "metadata.json"
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"
FORMAT = "logical-deploy"
VERSION = 1


def need(module: str):
    """Import an optional deploy dependency, or LogicalError saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LogicalError(f"this needs {module.split('.')[0]}: pip install 'logical[deploy]'") from None


def read_metadata(folder: Path) -> dict:
    """metadata.json of an export folder, checked for its format; CheckpointError otherwise."""
    path = Path(folder) / METADATA
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a folder written by `logical-train export`)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not {FORMAT} metadata version {VERSION}")
    return meta


def onnx_session(folder: Path):
    """An onnxruntime CPU session over `<folder>/model.onnx`."""
    ort = need("onnxruntime")
    path = Path(folder) / ONNX_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a folder written by `logical-train export`)")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure means a corrupt or foreign file
        raise CheckpointError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None


def run_batches(run, images: Sequence[np.ndarray], batch_size: int = 8) -> dict[str, np.ndarray]:
    """Outputs for `images` (RGB uint8, any sizes), stacked in input order; `run(batch)` maps a uint8
    (B, H, W, 3) batch to (map, score, decision, mask). Consecutive images of one size share a batch."""
    outs: list[tuple] = []
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and end - start < batch_size and images[end].shape == images[start].shape:
            end += 1
        outs.append(tuple(run(np.stack(images[start:end]))))
        start = end
    names = ("map", "score", "decision", "mask")
    return {name: np.concatenate([o[k] for o in outs]) for k, name in enumerate(names)}


def onnx_runner(session):
    """`run(batch)` for run_batches with an onnxruntime session."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.ascontiguousarray(batch, dtype=np.uint8)})


def predict_exported(folder: Path, inputs: Sequence[Path], out_dir: Path, batch_size: int = 8,
                     skip_bad: bool = False) -> tuple[list[tuple[Path, float, bool]], list[str]]:
    """`predict --model`: the outputs of train.outputs for every input image, computed by the exported
    graph under onnxruntime; returns ((path, score, NG) rows, skipped). Unreadable images as train.predict."""
    meta = read_metadata(folder)
    run = onnx_runner(onnx_session(folder))
    t = meta["thresholds"]
    say(f"{folder}: decisions at FPR {t['fpr']:g} (image threshold {t['image']:.6f}, pixel {t['pixel']:.6f})")
    paths = expand_inputs(inputs)
    bits = data_depth(paths).bits
    out_dir = Path(out_dir)
    rows: list[tuple[Path, float, bool]] = []
    skipped: list[str] = []
    jobs = list(zip(paths, output_stems(paths), strict=True))
    for start in range(0, len(jobs), batch_size):
        loaded = load_chunk(jobs[start:start + batch_size], bits, skip_bad, skipped)
        if not loaded:
            continue
        res = run_batches(run, [img for _, _, img in loaded], batch_size)
        if not (np.isfinite(res["map"]).all() and np.isfinite(res["score"]).all()):
            raise LogicalError(f"{folder}: the exported model's map is not finite for {loaded[0][0]} (or another "
                               "image of its batch)")
        for k, (path, stem, image) in enumerate(loaded):
            ng = bool(res["decision"][k])
            write_image_outputs(out_dir, stem, image, res["map"][k], ng, t)
            rows.append((path, float(res["score"][k]), ng))
    write_scores(out_dir, rows, skipped)
    return rows, skipped
