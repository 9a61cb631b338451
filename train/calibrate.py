"""Run a checkpoint on normal images it never trained on and store its decision thresholds in it.

After `logical-train` fits a model it calibrates on the normals its generated dataset's manifest names
(`report.calibration`, synth.datasets.holdout: validation normals or the share the build held out); `logical-train
eval` calibrates an existing checkpoint on the dataset's validation normals, else on the held-out normals
named by the manifest of the run's training data (found through `train.json` beside the checkpoint).
The rule is train.thresholds'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth.console import say
from synth.datasets.bitdepth import data_depth
from synth.datasets.holdout import calibration_paths
from synth.datasets.images import load_rgb
from synth.errors import ImageError, LogicalError
from synth.store.checkpoint import save_torch
from train.evaluate import batches, infer, require_finite, resolve_device
from train.model import model_from_payload, read_checkpoint
from train.thresholds import DEFAULT_FPR, calibrate_values, describe, manifest_digest


def stored_thresholds(checkpoint: Path) -> dict | None:
    """The thresholds a checkpoint holds (train.thresholds), or None for one never calibrated."""
    found = read_checkpoint(Path(checkpoint)).get("thresholds")
    return found if isinstance(found, dict) and found else None


def calibrate_checkpoint(checkpoint: Path, paths: Sequence[Path], fpr: float = DEFAULT_FPR, device: str = "auto",
                         batch_size: int = 8, provenance: dict | None = None) -> dict:
    """Score the normal images `paths` with `checkpoint`, compute its thresholds at `fpr` and write them into
    the checkpoint (atomically; weights and config unchanged). Returns the thresholds dict: fpr, image, pixel,
    images (count) and `provenance` (split, manifest sha256, ...). ImageError for an unreadable image,
    LogicalError for non-finite maps."""
    checkpoint = Path(checkpoint)
    payload = read_checkpoint(checkpoint)
    model, config = model_from_payload(checkpoint, payload)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    bits = data_depth(list(paths)).bits
    scores, maps = [], []
    for chunk in batches(list(paths), batch_size, "calibrate"):
        m, s = infer(model, [load_rgb(p, bits) for p in chunk], config.size, dev)
        require_finite(checkpoint, chunk, m, s)
        maps.append(m)
        scores.append(s)
    thresholds = {**calibrate_values(np.concatenate(scores), np.concatenate(maps), fpr), **(provenance or {}),
                  "paths": [str(Path(p).resolve()) for p in paths]}
    payload["thresholds"] = thresholds
    save_torch(checkpoint, payload)
    return thresholds


def _manifests(shards: Path | Sequence[Path]) -> list[tuple[Path, dict, str]]:
    items = [shards] if isinstance(shards, (str, Path)) else list(shards)
    return [(Path(s), *manifest_digest(Path(s))) for s in items]


def calibrate_after_training(model_path: Path, shards: Path | Sequence[Path], fpr: float = DEFAULT_FPR,
                             device: str = "auto") -> dict | None:
    """Calibrate a freshly trained model on the normals its training data's manifest(s) set aside (pooled over
    the categories of a unified model). None, with a note, when the manifests name none or their files are
    gone (the model then predicts without decisions)."""
    paths, splits, data = [], set(), []
    for path, manifest, sha in _manifests(shards):
        record = (manifest.get("report") or {}).get("calibration") or {}
        found = calibration_paths(record)
        missing = [p for p in found if not p.is_file()]
        if missing:
            say(f"note: {path}: {len(missing)} calibration image(s) are gone (e.g. {missing[0]}); not calibrating")
            return None
        paths += found
        splits.add(record.get("split", "holdout"))
        data.append({"manifest": str(path), "manifest_sha256": sha})
    if not paths:
        say(f"note: {model_path}: its training data sets aside no normal images (built before held-out normals "
            "were recorded): no decision threshold calibrated")
        return None
    try:
        thresholds = calibrate_checkpoint(model_path, paths, fpr, device,
                                          provenance={"split": "+".join(sorted(splits)), "data": data})
    except ImageError as exc:      # the model is saved: report, do not fail the finished training
        say(f"note: {model_path}: not calibrated, a calibration image is unreadable: {exc}")
        return None
    say(f"{model_path}: {describe(thresholds)}")
    return thresholds


def training_manifests(checkpoint: Path) -> list[tuple[Path, dict, str]]:
    """(path, manifest, sha256) of each training dataset of a run, from the train.json beside its model.pt;
    [] when unknown or no longer there."""
    try:
        shards = json.loads((Path(checkpoint).parent / "train.json").read_text())["train"]["shards"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    shards = [shards] if isinstance(shards, str) else shards
    if not isinstance(shards, list) or not all(isinstance(s, str) and Path(s).exists() for s in shards):
        return []
    try:
        return _manifests([Path(s) for s in shards])
    except LogicalError:
        return []


def calibrate_for_eval(checkpoint: Path, reader, category: str, fpr: float | None, device: str = "auto",
                       batch_size: int = 8) -> dict | None:
    """The thresholds eval reports with: those stored (when `fpr` is None or equals theirs), else calibrated
    now on the dataset's validation normals, else on the held-out normals of the run's training manifest
    (looked up under the reader's root), and written into the checkpoint. None when there is nothing to
    calibrate on."""
    stored = stored_thresholds(checkpoint)
    if stored and (fpr is None or abs(stored["fpr"] - fpr) < 1e-12):
        return stored
    fpr = DEFAULT_FPR if fpr is None else fpr
    paths, provenance = list(reader.validation_images(category)), {"split": "validation", "data": []}
    if not paths:
        found = (training_manifests(checkpoint) or [None])[0]
        record = ((found[1].get("report") or {}).get("calibration") or {}) if found else {}
        if record.get("split") == "holdout":
            paths = calibration_paths(record, reader.root)
            provenance = {"split": "holdout", "data": [{"manifest": str(found[0]), "manifest_sha256": found[2]}]}
    if not paths:
        return None
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ImageError(f"{missing[0]}: calibration image not found ({len(missing)} missing)")
    thresholds = calibrate_checkpoint(checkpoint, paths, fpr, device, batch_size, provenance)
    say(f"{checkpoint}: {describe(thresholds)}")
    return thresholds
