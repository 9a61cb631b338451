"""The README.md dataset card of a Hugging Face export (synth.store.export_hf), generated from the generated
dataset's manifest: a YAML header in the Hub's dataset card format (licence, task, size category, features,
configs pointing at the Parquet files; https://huggingface.co/docs/hub/datasets-cards) and a body with the
source, counts per kind and strategy, the build configuration, the tool version and a contact sheet.

The YAML is written by hand (strings as JSON strings, which YAML reads as double-quoted scalars), so no YAML
library is needed to export.
"""

from __future__ import annotations

import json
import re
from typing import Any

from synth.store.manifest import total_samples
from synth.store.schema import KINDS

TASKS = ["image-segmentation"]
TAGS = ["anomaly-detection", "anomaly-segmentation", "synthetic", "logical-anomalies", "visual-inspection"]
_SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                 (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
_CC = re.compile(r"\bCC[ -]?BY((?:[ -](?:NC|SA|ND))*)[ -]?v?(\d\.\d)", re.IGNORECASE)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*\*?$")     # strings YAML reads back as the same string
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
COLUMNS = [("index", "int64", "sample index in the generated dataset"),
           ("anomaly", "image (RGB PNG)", "the image with the synthetic anomaly"),
           ("normal", "image (RGB PNG)", "the normal image it was made from (null for an import without one)"),
           ("mask", "image (grey PNG, 0/255)", "pixels the anomaly changed (255)"),
           ("kind", "class label", "logical or structural"),
           ("strategy", "class label", "edit strategy that made it"),
           ("source", "int32", "index of the normal image among the build's sources"),
           ("source_path", "string", "that image's path in the source dataset"),
           ("seed", "uint64", "seed of this sample's random choices"),
           ("bbox", "int32[4]", "x0, y0, x1, y1 of the mask (end exclusive; zeros when empty)")]


def size_category(n: int) -> str:
    """The Hub's size_categories bucket of n rows (e.g. 1K<n<10K)."""
    for limit, name in _SIZE_BUCKETS:
        if n < limit:
            return name
    return "n>1B"


def hub_licence(text: str | None) -> dict[str, str]:
    """The Hub licence identifier for a licence note such as `CC BY-NC-SA 4.0 (MVTec AD)`: {"license": id},
    or {"license": "other", "license_name": slug} for terms without an identifier, or "unknown"."""
    note = (text or "").strip()
    match = _CC.search(note)
    if match:
        parts = [p.lower() for p in re.split(r"[ -]", match.group(1)) if p]
        return {"license": "-".join(["cc", "by", *parts, match.group(2)])}
    low = note.lower()
    if re.match(r"^mit\b", low):
        return {"license": "mit"}
    if re.match(r"^apache[ -]?(license )?2\.0\b", low):
        return {"license": "apache-2.0"}
    if not note or low.startswith("unknown"):
        return {"license": "unknown"}
    return {"license": "other", "license_name": re.sub(r"[^a-z0-9]+", "-", low).strip("-")[:64] or "other"}


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):     # only empty ones get here
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED else json.dumps(text)


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """YAML block lines of nested dicts, lists and scalars (keys that are not identifiers quoted)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            k = str(key) if _KEY.fullmatch(str(key)) and str(key).lower() not in _RESERVED else json.dumps(str(key))
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{k}:", *to_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{k}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 2)
                lines += [f"{pad}- {inner[0][indent + 2:]}", *inner[1:]]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [pad + _scalar(value)]


def yaml_features(strategies: list[str]) -> list[dict]:
    """`dataset_info.features` of the card (the YAML form of synth.store.export_hf.hf_features)."""
    def labels(names) -> dict:
        return {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}

    return [{"name": "index", "dtype": "int64"}, {"name": "anomaly", "dtype": "image"},
            {"name": "normal", "dtype": "image"}, {"name": "mask", "dtype": "image"},
            {"name": "kind", "dtype": labels(KINDS)}, {"name": "strategy", "dtype": labels(strategies)},
            {"name": "source", "dtype": "int32"}, {"name": "source_path", "dtype": "string"},
            {"name": "seed", "dtype": "uint64"}, {"name": "bbox", "sequence": "int32", "length": 4}]


def card_header(manifest: dict, strategies: list[str], parquet_sizes: dict[str, int], arrow_bytes: int) -> dict:
    """The YAML header as a dict (see the Hub's dataset card specification)."""
    n = total_samples(manifest)
    return {**hub_licence(manifest.get("licence")),
            "pretty_name": f"LogicAL synthetic anomalies: {manifest.get('dataset')} / {manifest.get('category')}",
            "task_categories": TASKS, "tags": TAGS, "size_categories": [size_category(n)],
            "dataset_info": {"features": yaml_features(strategies),
                             "splits": [{"name": "train", "num_bytes": arrow_bytes, "num_examples": n}],
                             "download_size": sum(parquet_sizes.values()), "dataset_size": arrow_bytes},
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]}


def _table(counts: dict, column: str) -> list[str]:
    rows = [f"| {k} | {v} |" for k, v in sorted(counts.items())] or ["| - | 0 |"]
    return [f"| {column} | count |", "|---|---|", *rows, ""]


def dataset_card(manifest: dict, strategies: list[str], parquet_sizes: dict[str, int], arrow_bytes: int,
                 manifest_sha256: str, sheet: str) -> str:
    """README.md text: the YAML header, then what the data is, how to load it, counts, config, provenance."""
    m, counts = manifest, manifest.get("counts", {})
    n, name = total_samples(m), f"{m.get('dataset')} / {m.get('category')}"
    lines = ["---", *to_yaml(card_header(m, strategies, parquet_sizes, arrow_bytes)), "---", "",
             f"# {name}: LogicAL synthetic anomalies", "",
             f"{n} synthetic anomalies made by `logical` {m.get('version', '?')} from the normal images of "
             f"`{m.get('dataset')}` category `{m.get('category')}`. Each row holds the image with the anomaly, "
             "the normal image it was made from and the mask of the pixels it changed, for training anomaly "
             "localization models.", ""]
    lines += [f"![contact sheet: normal, anomaly, mask overlay]({sheet})", "",
              "## Load", "", "```python", "from datasets import load_dataset", "",
              'ds = load_dataset("parquet", data_dir="path/to/this/folder")["train"]',
              '# or, once uploaded: load_dataset("<user>/<repo>")["train"]',
              'mask = ds[0]["mask"]  # PIL image, 0/255', "```", "",
              "## Columns", "", "| column | type | meaning |", "|---|---|---|",
              *[f"| {c} | {t} | {d} |" for c, t, d in COLUMNS], "",
              "## Source and licence", "",
              f"- built from: `{m.get('dataset')}` category `{m.get('category')}`",
              f"- licence (as given by the source dataset): {m.get('licence', 'unknown')}", "",
              "## Samples per kind", "", *_table(counts.get("by_kind", {}), "kind"),
              "## Samples per strategy", "", *_table(counts.get("by_strategy", {}), "strategy"),
              "## Rejected plans", "", *_table(counts.get("rejections", {}), "reason"),
              "## Build configuration", "", "```json", json.dumps(m.get("config", {}), indent=2, sort_keys=True),
              "```", "",
              "## Provenance", "",
              f"- tool: {m.get('tool', 'logical')} {m.get('version', '?')}, dataset schema {m.get('schema')}",
              f"- seed: {m.get('seed')}",
              f"- samples: {n} (built in shards of {m.get('shard_size')})",
              f"- manifest.json of the generated dataset (copied here): sha256 `{manifest_sha256}`", "",
              "| file | bytes |", "|---|---|", *[f"| {p} | {s} |" for p, s in parquet_sizes.items()], ""]
    return "\n".join(lines)
