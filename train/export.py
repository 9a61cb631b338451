"""`logical-train export`: a calibrated checkpoint as one ONNX (and OpenVINO) graph, checked against PyTorch.

The folder gets `model.onnx` (train.export_graph, dynamic batch, height and width; opset 17), for
`--format openvino` also `model.xml`/`model.bin` (OpenVINO's own conversion of the ONNX graph), and
`metadata.json`: input layout and model size, the thresholds with the false-reject rate they were set at,
the training categories, the sha256 of the training data's manifest(s) and of the checkpoint, and the
parity check's result. Checked, not assumed: `verify_export` runs the exported graph with onnxruntime (and
OpenVINO when installed) on real images and compares it with the same graph in PyTorch; maps and scores
must agree within `TOLERANCE` (absolute, probability units) and every decision must be identical, else
ExportError. Masks must agree except at pixels whose PyTorch map lies within `TOLERANCE` of the pixel
threshold.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from synth.datasets.bitdepth import data_depth
from synth.datasets.images import load_rgb
from synth.errors import CheckpointError, LogicalError
from synth.store.atomic import sha256_file
from train.calibrate import training_manifests
from train.deploy import (
    FORMAT,
    METADATA,
    ONNX_FILE,
    OPENVINO_FILE,
    VERSION,
    need,
    onnx_runner,
    onnx_session,
    read_metadata,
    run_batches,
)
from train.export_graph import INPUT, OUTPUTS, InferenceGraph
from train.model import model_from_payload, read_checkpoint
from train.outputs import expand_inputs

TOLERANCE = 1e-4
OPSET = 17
CHECK_IMAGES = 16      # images the parity check runs when none are given (the calibration normals)


class ExportError(LogicalError):
    """An exported model disagrees with its checkpoint, or cannot be made."""


def inference_graph(checkpoint: Path) -> tuple[InferenceGraph, dict]:
    """The checkpoint's InferenceGraph (CPU, eval) and its payload; CheckpointError when it holds no
    calibrated thresholds (a decision graph needs them)."""
    payload = read_checkpoint(Path(checkpoint))
    if payload["config"].get("arch") == "composition":
        raise CheckpointError(f"{checkpoint}: the composition branch finds parts with OpenCV, outside any ONNX "
                              "graph; serve this model with `logical-train predict --checkpoint` (or export a "
                              "--arch paper model)")
    t = payload.get("thresholds")
    if not t:
        raise CheckpointError(f"{checkpoint}: no decision threshold is calibrated; export needs one (run "
                              "`logical-train eval --checkpoint ...` on a dataset with validation normals, or "
                              "train from a build that holds out normals)")
    model, config = model_from_payload(Path(checkpoint), payload)
    return InferenceGraph(model.eval(), config.size, t["image"], t["pixel"]).eval(), payload


def write_onnx(graph: InferenceGraph, path: Path) -> None:
    """Export `graph` to ONNX with dynamic batch, height and width."""
    need("onnx")
    example = torch.zeros((2, graph.size, graph.size, 3), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes={INPUT: {0: "batch", 1: "height", 2: "width"},
                                        **{o: {0: "batch"} for o in OUTPUTS}}, opset_version=OPSET, dynamo=False)


def write_openvino(onnx_path: Path, xml_path: Path) -> None:
    """OpenVINO IR (model.xml + model.bin) converted from the ONNX graph by OpenVINO itself."""
    ov = need("openvino")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def openvino_runner(xml_path: Path, threads: int | None = None):
    """`run(batch)` for train.deploy.run_batches with OpenVINO on the CPU at float32 precision (`threads`:
    its thread count; None: OpenVINO's default)."""
    ov = need("openvino")
    config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    compiled = ov.Core().compile_model(str(xml_path), "CPU", config)

    def run(batch: np.ndarray):
        result = compiled(np.ascontiguousarray(batch, dtype=np.uint8))
        return [result[compiled.output(k)] for k in range(len(OUTPUTS))]
    return run


def torch_runner(graph: InferenceGraph):
    @torch.inference_mode()
    def run(batch: np.ndarray):
        return [o.numpy() for o in graph(torch.from_numpy(batch))]
    return run


def compare(reference: dict, other: dict, pixel_threshold: float, tolerance: float = TOLERANCE) -> dict:
    """max |diff| of maps and scores, differing decisions and mask pixels (outside the tolerance band)."""
    near = np.abs(reference["map"] - pixel_threshold) <= tolerance
    mask_diff = (reference["mask"] != other["mask"]) & ~near
    return {"max_abs_map": float(np.max(np.abs(reference["map"] - other["map"]))),
            "max_abs_score": float(np.max(np.abs(reference["score"] - other["score"]))),
            "decisions_differ": int(np.sum(reference["decision"] != other["decision"])),
            "mask_pixels_differ": int(mask_diff.sum()), "images": int(len(reference["score"]))}


def _problems(name: str, c: dict, tolerance: float) -> list[str]:
    out = []
    if not c["max_abs_map"] <= tolerance or not c["max_abs_score"] <= tolerance:
        out.append(f"{name}: max |map difference| {c['max_abs_map']:.3g}, max |score difference| "
                   f"{c['max_abs_score']:.3g} (tolerance {tolerance:g})")
    if c["decisions_differ"]:
        out.append(f"{name}: {c['decisions_differ']} of {c['images']} decisions differ from PyTorch's")
    if c["mask_pixels_differ"]:
        out.append(f"{name}: {c['mask_pixels_differ']} mask pixels differ from PyTorch's")
    return out


def _graph_problems(graph: InferenceGraph, reference: dict, images: list[np.ndarray], tolerance: float) -> list[str]:
    """The graph itself, run in PyTorch, against what eval and `predict --checkpoint` compute
    (train.evaluate.infer: cv2 resize, the arch's own map and score): a wrapper that drifts from them (a resize,
    an arch's `combine`) would otherwise pass every runtime comparison."""
    from train.evaluate import infer

    maps, scores = [], []
    for start in range(0, len(images), 8):
        m, sc = infer(graph.model, images[start:start + 8], graph.size, torch.device("cpu"))
        maps.append(m)
        scores.append(sc)
    d_map = float(np.abs(np.concatenate(maps) - reference["map"]).max())
    d_score = float(np.abs(np.concatenate(scores) - reference["score"]).max())
    if d_map <= tolerance and d_score <= tolerance:
        return []
    return [f"the exported graph disagrees with evaluation's PyTorch inference: max |map difference| {d_map:.3g}, "
            f"max |score difference| {d_score:.3g} (tolerance {tolerance:g})"]


def check_images(payload: dict, images: Sequence[Path] | None) -> list[Path]:
    """The images of the parity check: those given (files or folders), else up to CHECK_IMAGES of the
    calibration normals the thresholds were set on (when their files are still there)."""
    if images:
        return expand_inputs(images)
    found = [Path(p) for p in payload["thresholds"].get("paths", []) if Path(p).is_file()][:CHECK_IMAGES]
    if not found:
        raise LogicalError("no images for the parity check: give --images (e.g. the dataset's test folder)")
    return found


def verify_export(folder: Path, checkpoint: Path, images: Sequence[Path] | None = None,
                  tolerance: float = TOLERANCE) -> dict:
    """Run the export in `folder` with onnxruntime (and OpenVINO when installed and exported, or installed and
    convertible) on `images` and compare with the checkpoint's graph in PyTorch; the comparison per runtime.
    ExportError listing every disagreement, including metadata whose thresholds or checkpoint sha256 are not
    the checkpoint's."""
    folder = Path(folder)
    meta = read_metadata(folder)
    graph, payload = inference_graph(checkpoint)
    t = payload["thresholds"]
    problems = [f"{METADATA}: {key} threshold {meta['thresholds'].get(key)!r} is not the checkpoint's {t[key]!r}"
                for key in ("image", "pixel", "fpr") if meta["thresholds"].get(key) != t[key]]
    if meta.get("checkpoint", {}).get("sha256") != sha256_file(Path(checkpoint)):
        problems.append(f"{METADATA}: checkpoint sha256 is not that of {checkpoint}")
    paths = check_images(payload, images)
    bits = data_depth(paths).bits
    loaded = [load_rgb(p, bits) for p in paths]
    batch = 8
    reference = run_batches(torch_runner(graph), loaded, batch)
    problems += _graph_problems(graph, reference, loaded, tolerance)
    runners = {"onnxruntime": onnx_runner(onnx_session(folder))}
    if (folder / OPENVINO_FILE).is_file():
        runners["openvino"] = openvino_runner(folder / OPENVINO_FILE)
    report = {"tolerance": tolerance, "images": len(paths), "batch_size": batch}
    for name, run in runners.items():
        c = compare(reference, run_batches(run, loaded, batch), t["pixel"], tolerance)
        report[name] = c
        problems += _problems(name, c, tolerance)
    if problems:
        raise ExportError(f"{folder}: the exported model disagrees with {checkpoint}:\n  " + "\n  ".join(problems))
    return report


def export(checkpoint: Path, fmt: str, out: Path, images: Sequence[Path] | None = None) -> dict:
    """Write the export folder (module doc), verify it (verify_export) and return metadata.json's content.
    `fmt`: "onnx" or "openvino". For onnx the OpenVINO check also runs when OpenVINO is installed, on an IR
    converted into a temporary folder."""
    if fmt not in ("onnx", "openvino"):
        raise LogicalError(f"--format {fmt}: choose onnx or openvino")
    checkpoint, out = Path(checkpoint), Path(out)
    graph, payload = inference_graph(checkpoint)
    write_onnx(graph, out / ONNX_FILE)
    if fmt == "openvino":
        write_openvino(out / ONNX_FILE, out / OPENVINO_FILE)
    t = payload["thresholds"]
    meta = {
        "format": FORMAT, "version": VERSION, "model_format": fmt,
        "files": [ONNX_FILE] + ([OPENVINO_FILE, "model.bin"] if fmt == "openvino" else []),
        "input": {"name": INPUT, "layout": "NHWC", "dtype": "uint8", "channels": "RGB",
                  "dynamic": ["batch", "height", "width"], "model_size": [graph.size, graph.size],
                  "resize": "inside the graph: area averaging when shrinking, bilinear when enlarging (as "
                            "OpenCV), rounded to uint8"},
        "outputs": {"map": "(B, S, S) float32 anomaly probability at model size",
                    "score": "(B,) float32, max after a k x k average pool", "decision": "(B,) bool, True = NG",
                    "mask": "(B, S, S) uint8, 1 = pixel above the pixel threshold of an NG image"},
        "pool_kernel": graph.kernel,
        "thresholds": {k: t[k] for k in ("fpr", "image", "pixel", "images", "split") if k in t},
        "categories": list(payload.get("categories", [])),
        "training_data": [{"manifest": d.get("manifest"), "sha256": d.get("manifest_sha256")}
                          for d in t.get("data", [])]
        or [{"manifest": str(path), "sha256": sha} for path, _, sha in training_manifests(checkpoint)],
        "checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint), "step": payload.get("step")},
    }
    (out / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    meta["parity"] = verify_export(out, checkpoint, images)
    if fmt == "onnx" and _has("openvino"):
        meta["parity"]["openvino"] = _openvino_check(out, checkpoint, images)
    (out / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _openvino_check(out: Path, checkpoint: Path, images: Sequence[Path] | None) -> dict:
    """OpenVINO's parity for an onnx export: the same check on an IR converted into a scratch folder."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in (ONNX_FILE, METADATA):
            shutil.copyfile(out / name, Path(tmp) / name)
        write_openvino(Path(tmp) / ONNX_FILE, Path(tmp) / OPENVINO_FILE)
        return verify_export(Path(tmp), checkpoint, images)["openvino"]
