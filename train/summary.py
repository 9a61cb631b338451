"""One PNG over a folder evaluation: per category its scores, best- and worst-scored anomaly heatmaps.

A row per category (train.evaluate_runs report): a text panel (name, scores in percent, or why it was not
scored) and thumbnails of the heatmap figures train.evaluate wrote (image | ground truth | map) for the
anomaly the model scored highest ("best") and lowest ("worst"), so one look shows where it works.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synth.datasets.images import load_rgb, save_image

THUMB = 112          # height of a heatmap thumbnail, px
TEXT_WIDTH = 330     # width of the text panel, px
_FONT = cv2.FONT_HERSHEY_SIMPLEX
LABELS = {"logical_image_auroc": "AUROC log", "structural_image_auroc": "AUROC str", "mean_image_auroc":
          "AUROC mean", "logical_au_spro": "sPRO log", "structural_au_spro": "sPRO str",
          "mean_au_spro": "sPRO mean", "image_auroc": "img AUROC", "pixel_auroc": "pix AUROC",
          "pixel_ap": "pix AP", "aupro": "AUPRO"}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _text_panel(lines: list[str], height: int, width: int = TEXT_WIDTH) -> np.ndarray:
    panel = np.full((height, width, 3), 250, np.uint8)
    for k, line in enumerate(lines):
        scale, thick = (0.55, 2) if k == 0 else (0.42, 1)
        cv2.putText(panel, line[:52], (6, 20 + 17 * k), _FONT, scale, (20, 20, 20), thick, cv2.LINE_AA)
    return panel


def _score_lines(scores: dict) -> list[str]:
    cells = [f"{LABELS.get(k, k)} {_pct(v)}" for k, v in scores.items()]
    return [" | ".join(cells[i:i + 3]) for i in range(0, len(cells), 3)]


def _thumb(path: Path | None, label: str) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    img = load_rgb(path)
    w = max(1, round(img.shape[1] * THUMB / img.shape[0]))
    img = cv2.resize(img, (w, THUMB), interpolation=cv2.INTER_AREA)
    band = np.full((16, w, 3), 250, np.uint8)
    cv2.putText(band, label, (4, 12), _FONT, 0.4, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([band, img])


def _pick(row: dict, out_dir: Path, tag: str) -> Path | None:
    names = [h for h in row.get("heatmaps", []) if Path(h).name.startswith(f"{tag}-1_")]
    return out_dir / names[0] if names else None


def summary_sheet(report: dict, out_dir: Path, png: Path) -> Path:
    """Write the summary PNG of a folder evaluation report (RGB, one row per category plus the mean)."""
    out_dir = Path(out_dir)
    rows = []
    height = THUMB + 16
    for row in report["categories"]:
        if "scores" in row:
            lines = [row["category"], *_score_lines(row["scores"])]
        else:
            reason = row["error"].replace("\n", " ")
            lines = [row["category"], "not scored:", *[reason[i:i + 50] for i in range(0, min(len(reason), 200), 50)]]
        tiles = [_text_panel(lines, height)]
        for tag in ("best", "worst"):
            thumb = _thumb(_pick(row, out_dir, tag), f"{tag}-scored anomaly: image | truth | map")
            if thumb is not None:
                tiles += [np.full((height, 4, 3), 255, np.uint8), thumb]
        rows.append(np.hstack(tiles))
    if report.get("mean"):
        rows.append(_text_panel([f"mean of {report['scored']} of {report['total']}",
                                 *_score_lines(report["mean"])], 80))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    save_image(png, sheet)
    return png
