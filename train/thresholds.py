"""Decision thresholds: an image threshold (OK/NG) and a pixel threshold (defect mask) calibrated on normals.

Calibration uses normal images the model never trained on: a dataset's validation normals, or the share of
the training normals a build held out (synth.datasets.holdout; the manifest's `report.calibration`). Rule, for a chosen
false-reject rate `fpr`: of n calibration values allow k = floor(fpr * n) above the threshold; the threshold
is the (k+1)-th largest value, and a value is rejected when strictly above it. So at most k of the
calibration normals are rejected (exactly k without ties), and with n < 1 / fpr the threshold is their
maximum. The image threshold applies this to the calibration images' scores (DRAEM's pooled max, as
evaluation); the pixel threshold applies it to every pixel of their anomaly maps at model resolution, so
a fraction fpr of normal pixels would be marked. A defect mask marks the pixels above the pixel threshold of
an image decided NG, and is empty for an image decided OK.

Thresholds live in the checkpoint as `payload["thresholds"]` (dict below); checkpoints without them (older
runs) still predict and evaluate, with the note that no threshold is calibrated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_FPR = 0.01
NOT_CALIBRATED = "no decision threshold is calibrated for this model (train it again, or run `logical-train eval`"\
                 " on a dataset with validation normals, to calibrate one)"


def quantile_threshold(values: np.ndarray, fpr: float) -> float:
    """The threshold over `values` (any shape, flattened) that rejects at most floor(fpr * n) of them when
    rejecting strictly above it: the (floor(fpr * n) + 1)-th largest value. ValueError for no values or
    fpr outside [0, 1)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("no calibration values")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr {fpr} must be in [0, 1)")
    k = int(np.floor(fpr * flat.size))
    index = flat.size - 1 - k
    return float(np.partition(flat, index)[index])


def calibrate_values(scores: np.ndarray, maps: np.ndarray, fpr: float) -> dict:
    """Image and pixel thresholds from calibration scores (N,) and maps (N, S, S) of normal images."""
    return {"fpr": float(fpr), "image": quantile_threshold(scores, fpr), "pixel": quantile_threshold(maps, fpr),
            "images": int(len(scores))}


def decide(scores: np.ndarray, thresholds: dict | None) -> np.ndarray | None:
    """bool (N,): True = NG (score strictly above the image threshold); None without thresholds."""
    if not thresholds:
        return None
    return np.asarray(scores) > thresholds["image"]


def defect_mask(amap: np.ndarray, ng: bool, thresholds: dict) -> np.ndarray:
    """bool (H, W): pixels of a map above the pixel threshold when the image is NG; empty when it is OK."""
    if not ng:
        return np.zeros(amap.shape, bool)
    return amap > thresholds["pixel"]


def describe(thresholds: dict | None) -> str:
    """One line for the console: the thresholds and where they come from, or that there are none."""
    if not thresholds:
        return NOT_CALIBRATED
    return (f"thresholds at FPR {thresholds['fpr']:g}: image {thresholds['image']:.6f}, pixel "
            f"{thresholds['pixel']:.6f} (calibrated on {thresholds['images']} {thresholds.get('split', 'normal')}"
            f" normal images)")


def manifest_digest(shards: Path) -> tuple[dict, str]:
    """(manifest, sha256) of a generated dataset: the sha256 of manifest.json's bytes for a directory, of its
    canonical JSON (sorted keys) for a .tar archive."""
    from synth.store.archive import open_archive
    from synth.store.manifest import read_manifest
    from synth.store.schema import MANIFEST

    shards = Path(shards)
    if shards.is_dir():
        return read_manifest(shards), hashlib.sha256((shards / MANIFEST).read_bytes()).hexdigest()
    with open_archive(shards) as idx:
        manifest = idx.manifest
    return manifest, hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def decision_report(items: Sequence, scores: np.ndarray, thresholds: dict | None) -> dict | None:
    """What the image threshold gives on a labelled test split: false-reject rate on good images and miss rate
    per defect type (the test split folder, and for MVTec LOCO layouts each defect name too; an image with
    several defects counts for each). None without thresholds."""
    ng = decide(scores, thresholds)
    if ng is None:
        return None
    good = [i for i, it in enumerate(items) if it.label == 0]
    out: dict = {"fpr": thresholds["fpr"], "image_threshold": thresholds["image"],
                 "good": {"images": len(good), "false_rejects": int(sum(ng[i] for i in good)),
                          "false_reject_rate": float(np.mean([ng[i] for i in good])) if good else None}}
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it.label == 1:
            groups.setdefault(it.split, []).append(i)
            for name in sorted({r.defect_name for r in getattr(it, "regions", ())}):
                groups.setdefault(f"{it.split}/{name}", []).append(i)
    out["defects"] = {name: {"images": len(idx), "missed": int(sum(not ng[i] for i in idx)),
                             "miss_rate": float(np.mean([not ng[i] for i in idx]))}
                      for name, idx in sorted(groups.items())}
    return out


def decision_table(report: dict | None) -> str:
    """The decision report as markdown, or the note that no threshold is calibrated."""
    if report is None:
        return NOT_CALIBRATED
    g = report["good"]
    frr = "–" if g["false_reject_rate"] is None else f"{100 * g['false_reject_rate']:.1f}"
    lines = [f"Decisions at the calibrated threshold (FPR {report['fpr']:g}, image score > "
             f"{report['image_threshold']:.6f} = NG):", "", "| test images | count | wrong | rate (%) |",
             "|---|---|---|---|", f"| good (false rejects) | {g['images']} | {g['false_rejects']} | {frr} |"]
    for name, row in report["defects"].items():
        lines.append(f"| {name} (missed) | {row['images']} | {row['missed']} | {100 * row['miss_rate']:.1f} |")
    return "\n".join(lines)
