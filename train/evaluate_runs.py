"""Score every category of a dataset with the models of a folder training run (or one unified model).

`logical-train eval --checkpoint RUNS --dataset D` where RUNS is what `logical-train --shards DATA --out
RUNS` wrote (`RUNS/<dataset>/<category>/model.pt`), or a `--unified` model.pt (which records the categories
it knows). Each category is scored by train.evaluate.evaluate into `<out>/<category>/` (metrics, heatmaps);
the top of `<out>` gets one row per category and their mean in the dataset's metrics (MVTec LOCO layouts:
logical / structural / mean image AUROC and AU-sPRO; others: image AUROC, pixel AUROC, AP, AUPRO) as
metrics.md and metrics.json, and summary.png (train.summary). A category that cannot be scored (no test
split, no checkpoint, unreadable files) is a row with the reason; the others go on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from synth.console import say
from synth.datasets import open_dataset
from synth.errors import LogicalError
from train.evaluate import _finite, _pct, evaluate
from train.model import read_checkpoint
from train.summary import summary_sheet

LOCO_COLUMNS = (("logical", "image_auroc"), ("structural", "image_auroc"), ("mean", "image_auroc"),
                ("logical", "au_spro"), ("structural", "au_spro"), ("mean", "au_spro"))
PLAIN_COLUMNS = (("all", "image_auroc"), ("all", "pixel_auroc"), ("all", "pixel_ap"), ("all", "aupro"))
HEADERS = {"mvtec_loco": ["logical AUROC", "structural AUROC", "mean AUROC", "logical AU-sPRO",
                          "structural AU-sPRO", "mean AU-sPRO"],
           "mvtec": ["image AUROC", "pixel AUROC", "pixel AP", "AUPRO"]}


def _model_folder(runs: Path, dataset: str) -> Path:
    """Where `<category>/model.pt` live: RUNS/<dataset>/, RUNS itself, or RUNS' only dataset folder."""
    for base in (runs / dataset, runs):
        if any(base.glob("*/model.pt")):
            return base
    bases = sorted({p.parent.parent for p in runs.glob("*/*/model.pt")})
    if len(bases) == 1:
        return bases[0]
    if not bases:
        raise LogicalError(f"{runs}: no <category>/model.pt found (not a folder written by "
                           "`logical-train --shards DATA --out RUNS`)")
    raise LogicalError(f"{runs}: holds models of several datasets ({', '.join(b.name for b in bases)}) and "
                       f"none named {dataset!r}; pass --checkpoint {bases[0]}")


def category_checkpoint(runs: Path, dataset: str, category: str) -> Path:
    """`<category>/model.pt` of a folder training run (for `eval --checkpoint RUNS --category C`)."""
    path = _model_folder(Path(runs), dataset) / category / "model.pt"
    if not path.is_file():
        raise LogicalError(f"{path}: missing; {runs} holds no model for category {category!r}")
    return path


def plan(checkpoint: Path, dataset: str, test_categories: list[str]) -> dict[str, Path | str]:
    """category -> checkpoint to score it with, or the reason it cannot be scored (str)."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        base = _model_folder(checkpoint, dataset)
        trained = {p.parent.name: p for p in sorted(base.glob("*/model.pt"))}
        return {c: trained.get(c, f"no checkpoint ({base / c / 'model.pt'} is missing)")
                for c in sorted(set(test_categories) | set(trained))}
    known = read_checkpoint(checkpoint).get("categories") or []
    names = [str(k).split("/", 1)[-1] for k in known]
    if not names:
        raise LogicalError(f"--category is required: the test data holds {', '.join(test_categories)} and "
                           f"{checkpoint} records no categories")
    return {c: checkpoint if c in names else f"not trained on it ({checkpoint} knows {', '.join(known)})"
            for c in sorted(set(test_categories) | set(names))}


def row_of(result: dict) -> dict:
    """The table cells of one category's evaluate() result: {column: value or None}."""
    loco = result["protocol"]["layout"] == "mvtec_loco"
    m = result["metrics"]
    columns = LOCO_COLUMNS if loco else PLAIN_COLUMNS
    return {f"{split}_{key}" if loco else key: m.get(split, {}).get(key) for split, key in columns}


def decision_cells(report: dict | None) -> dict:
    """False-reject rate on good images and miss rate over all anomalous ones at the calibrated threshold
    (train.thresholds.decision_report; None each without thresholds)."""
    if not report:
        return {"false_reject_rate": None, "miss_rate": None}
    top = [row for name, row in report["defects"].items() if "/" not in name]
    images = sum(row["images"] for row in top)
    return {"false_reject_rate": report["good"]["false_reject_rate"],
            "miss_rate": sum(row["missed"] for row in top) / images if images else None}


def _mean(rows: list[dict]) -> dict:
    keys = [k for r in rows for k in r["scores"]]
    out = {}
    for key in dict.fromkeys(keys):
        values = [r["scores"][key] for r in rows
                  if r["scores"].get(key) is not None and math.isfinite(r["scores"][key])]
        out[key] = sum(values) / len(values) if values else None
    return out


def evaluate_runs(checkpoint: Path, dataset: str, root: Path | None, out_dir: Path, device: str = "auto",
                  batch_size: int = 8, n_heatmaps: int = 3) -> dict:
    """Score every category (module doc); write `<out_dir>/metrics.json`, `metrics.md`, `summary.png` and
    `<out_dir>/<category>/`; return the metrics.json content. LogicalError when the test data cannot be
    opened or the checkpoint names no category; a single category's failure is a row with its reason."""
    out_dir = Path(out_dir)
    reader = open_dataset(dataset, root)
    todo = plan(Path(checkpoint), dataset, reader.categories())
    rows, layout = [], None
    for k, (category, source) in enumerate(todo.items(), 1):
        say(f"[category {k} of {len(todo)}] {dataset}/{category}")
        if isinstance(source, str):
            rows.append({"category": category, "error": source})
            continue
        if category not in reader.categories():
            rows.append({"category": category, "error": f"no test split ({reader.root} has no {category!r})"})
            continue
        try:
            result = evaluate(source, dataset, root, category, out_dir / category, device=device,
                              batch_size=batch_size, n_heatmaps=n_heatmaps)
        except LogicalError as exc:
            say(f"{dataset}/{category}: not scored: {exc}")
            rows.append({"category": category, "checkpoint": str(source), "error": str(exc)})
            continue
        layout = result["protocol"]["layout"]
        rows.append({"category": category, "checkpoint": str(source), "scores": row_of(result),
                     "decisions": decision_cells(result.get("decisions")),
                     "heatmaps": [f"{category}/{h}" for h in result["heatmaps"]]})
    scored = [r for r in rows if "scores" in r]
    report = _finite({"dataset": dataset, "root": str(reader.root), "checkpoint": str(checkpoint),
                      "layout": layout, "categories": rows, "mean": _mean(scored) if scored else None,
                      "scored": len(scored), "total": len(rows)})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "metrics.md").write_text(runs_table(report) + "\n")
    summary_sheet(report, out_dir, out_dir / "summary.png")
    return report


def runs_table(report: dict) -> str:
    """One markdown row per category (scores in percent, then the false-reject and miss rates at its calibrated
    threshold, – when none; or the reason it was not scored) and the mean of the scores."""
    layout = report["layout"] or "mvtec"
    heads = HEADERS[layout] + ["false rejects @thr", "missed @thr"]
    lines = [f"**{report['dataset']}** ({report['checkpoint']}): {report['scored']} of {report['total']} "
             "categories scored", "", "| category | " + " | ".join(heads) + " |",
             "|---" * (len(heads) + 1) + "|"]
    for row in report["categories"]:
        if "scores" in row:
            decided = row.get("decisions") or {}
            cells = [_pct(v) for v in row["scores"].values()] + [_pct(decided.get("false_reject_rate")),
                                                                 _pct(decided.get("miss_rate"))]
        else:
            cells = [f"not scored: {row['error']}".replace("|", "/").replace("\n", " ")] + [""] * (len(heads) - 1)
        lines.append(f"| {row['category']} | " + " | ".join(cells) + " |")
    if report["mean"]:
        name = "**mean**" if report["scored"] == report["total"] else f"**mean** ({report['scored']} scored)"
        lines.append(f"| {name} | " + " | ".join(f"**{_pct(v)}**" for v in report["mean"].values()) + " | | |")
    return "\n".join(lines)
