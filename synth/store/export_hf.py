"""Exporting a generated dataset (directory or archive) as a Hugging Face `datasets` folder: Parquet files
under data/ plus a README.md dataset card, loadable with `datasets.load_dataset("parquet", data_dir=DIR)` or
`datasets.load_dataset(DIR)`, and ready for `hf upload` (the Hub's own CLI; this code never uploads).

Streamed: samples are read one at a time through `GeneratedDataset`, PNG-encoded and written in small
Parquet row groups, and a new file is started every `max_file_bytes`, so memory stays flat in the number of
samples. Image columns follow `datasets`' `Image` feature (a struct of PNG `bytes` and `path`), the feature
types travel in the Parquet schema metadata under `huggingface` (what `datasets` writes and reads back), and
the card repeats them as YAML `dataset_info` (the Hub dataset card specification).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from synth.console import progress
from synth.errors import ExportError
from synth.store.archive import open_dataset_path
from synth.store.atomic import sha256_file as _sha256
from synth.store.reader import GeneratedDataset
from synth.store.schema import KINDS, MANIFEST, SHARD_PATTERN

EXTRA = "hub"
DATA_DIR = "data"
SPLIT = "train"
SHEET = "sheet.png"
CARD = "README.md"
ROWS_PER_GROUP = 100          # the Hub's viewer reads image Parquet in row groups of about this many rows
GROUP_BYTES = 64 << 20        # ... and a row group never buffers more than this many bytes of PNGs
MAX_FILE_BYTES = 500 << 20    # Parquet file size the Hub recommends for shards (datasets' push_to_hub default)
PNG_CACHE = 256               # encoded normal images kept (a normal is shared by many samples)
IMAGE_COLUMNS = ("anomaly", "normal", "mask")
SCALAR_COLUMNS = ("index", "kind", "strategy", "source", "seed")


def require_pyarrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet); ExportError naming the `hub` extra when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(f"--format hf needs pyarrow: pip install 'logical[{EXTRA}]'") from None
    return pa, pq


def strategy_names(ds: GeneratedDataset) -> list[str]:
    """Every strategy name the shards use, in first-seen order (each shard stores its own list)."""
    names: list[str] = []
    for name in sorted(n for n in ds.manifest["files"] if SHARD_PATTERN.match(n)):
        path = ds.directory / name
        try:
            with h5py.File(path, "r") as f:
                listed = json.loads(f.attrs["strategies"])
        except (OSError, KeyError, ValueError) as exc:
            raise ExportError(f"{path}: cannot read its strategy names ({exc})") from None
        names += [s for s in listed if s not in names]
    return names


def hf_features(strategies: list[str]) -> dict:
    """The `datasets` Features of an export, as the JSON `datasets` stores in Parquet metadata. `bbox` uses the
    legacy `Sequence` type, which datasets 2.x to 5.x all read."""
    int_value = {"dtype": "int32", "_type": "Value"}
    return {"index": {"dtype": "int64", "_type": "Value"},
            **{c: {"_type": "Image"} for c in IMAGE_COLUMNS},
            "kind": {"names": list(KINDS), "_type": "ClassLabel"},
            "strategy": {"names": list(strategies), "_type": "ClassLabel"},
            "source": int_value, "source_path": {"dtype": "string", "_type": "Value"},
            "seed": {"dtype": "uint64", "_type": "Value"},
            "bbox": {"feature": int_value, "length": 4, "_type": "Sequence"}}


def arrow_schema(strategies: list[str]):
    """The pyarrow schema of the Parquet files, with the `datasets` features in its metadata."""
    pa, _ = require_pyarrow()
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [("index", pa.int64()), *[(c, image) for c in IMAGE_COLUMNS], ("kind", pa.int64()),
              ("strategy", pa.int64()), ("source", pa.int32()), ("source_path", pa.string()),
              ("seed", pa.uint64()), ("bbox", pa.list_(pa.int32(), 4))]
    meta = {"huggingface": json.dumps({"info": {"features": hf_features(strategies)}})}
    return pa.schema(fields, metadata=meta)


def png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or grey (H, W) uint8 array (lossless: decodes to the same pixels)."""
    arr = image[:, :, ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ExportError(f"cannot PNG-encode an array of shape {image.shape}")
    return buf.tobytes()


class _NormalPngs:
    """Encoded normal images by source index, the most recently used `PNG_CACHE` of them."""

    def __init__(self) -> None:
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def get(self, source: int, image: np.ndarray) -> bytes:
        if source in self._cache:
            self._cache.move_to_end(source)
        else:
            self._cache[source] = png(image)
            if len(self._cache) > PNG_CACHE:
                self._cache.popitem(last=False)
        return self._cache[source]


def rows(ds: GeneratedDataset, strategies: list[str]) -> Iterator[dict]:
    """One row per sample in index order, with images as `{"bytes": PNG, "path": None}`; `normal` is null
    where the sample has no true normal (an import without one: its source is the anomaly image itself)."""
    normals, paths = _NormalPngs(), {}
    for i in progress(range(len(ds)), "export hf", total=len(ds)):
        if i and i % ds.shard_size == 0:
            ds.close()      # GeneratedDataset keeps every shard it read open (~2 MB each): let the last one go
        s = ds[i]
        src = s.meta["source"]
        if src not in paths:
            paths[src] = ds.source(src)["path"]
        yield {"index": i, "anomaly": {"bytes": png(s.anomaly), "path": None},
               "normal": {"bytes": normals.get(src, s.normal), "path": None} if s.meta["has_normal"] else None,
               "mask": {"bytes": png(s.mask), "path": None},
               "kind": KINDS.index(s.meta["kind"]), "strategy": strategies.index(s.meta["strategy"]),
               "source": src, "source_path": paths[src], "seed": s.meta["seed"], "bbox": list(s.meta["bbox"])}


class ParquetFiles:
    """Writes rows into `<dir>/part-<k>.parquet`, a row group every `rows_per_group` rows (or `GROUP_BYTES`),
    a new file once one passes `max_file_bytes`; `finish()` renames them `train-<k>-of-<n>.parquet`."""

    def __init__(self, directory: Path, schema, rows_per_group: int = ROWS_PER_GROUP,
                 max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.pa, self.pq = require_pyarrow()
        self.directory, self.schema = Path(directory), schema
        self.rows_per_group, self.max_file_bytes = int(rows_per_group), int(max_file_bytes)
        self.parts: list[Path] = []
        self.arrow_bytes = 0      # size of the rows in memory as Arrow tables: the card's num_bytes
        self._buffer: list[dict] = []
        self._bytes = 0
        self._file = None
        self._writer = None

    def add(self, row: dict) -> None:
        self._buffer.append(row)
        self._bytes += sum(len(row[c]["bytes"]) for c in IMAGE_COLUMNS if row[c] is not None)
        if len(self._buffer) >= self.rows_per_group or self._bytes >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.parts.append(self.directory / f"part-{len(self.parts):05d}.parquet")
            self._file = open(self.parts[-1], "wb")
            # PNG bytes are compressed already; min/max statistics only for the scalar columns (not for PNGs)
            self._writer = self.pq.ParquetWriter(self._file, self.schema, compression="none",
                                                 write_statistics=list(SCALAR_COLUMNS))
        table = self.pa.Table.from_pylist(self._buffer, schema=self.schema)
        self._writer.write_table(table, row_group_size=len(self._buffer))
        self.arrow_bytes += table.nbytes
        self._buffer, self._bytes = [], 0
        if self._file.tell() >= self.max_file_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
        self._writer = self._file = None

    def finish(self) -> list[Path]:
        """Write what is buffered, close, and rename the files to the Hub's `train-00000-of-00003` pattern."""
        self._flush()
        self._close_file()
        n, final = len(self.parts), []
        for k, part in enumerate(self.parts):
            final.append(part.with_name(f"{SPLIT}-{k:05d}-of-{n:05d}.parquet"))
            os.rename(part, final[-1])
        return final

    def abort(self) -> None:
        """Close without renaming (the caller removes the folder)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._file.close()
        self._writer = self._file = None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out}: folder is not empty; remove it or choose another --out")


def export_hf(path: Path, out: Path, cache_dir: Path | None = None, rows_per_group: int = ROWS_PER_GROUP,
              max_file_bytes: int = MAX_FILE_BYTES, sheet_samples: int = 16) -> Path:
    """Write the Hugging Face folder `out`: data/train-*.parquet, README.md (card), sheet.png, manifest.json.

    `path` is a generated dataset directory (verified first) or a `pack` archive (verified and unpacked into
    the cache, as `export_mvtec` does). Columns: index (int64), anomaly/normal (RGB PNG), mask (grey PNG,
    0/255), kind and strategy (ClassLabel), source (int32 index into the build's sources) and source_path, seed
    (uint64), bbox (int32 x0, y0, x1, y1; end exclusive). Written in a temporary sibling folder, then renamed.
    Raises ExportError when pyarrow is missing or `out` is a file or a non-empty folder; ShardError/
    ArchiveError when the input is not a valid generated dataset; ExportError when it holds no samples.
    """
    from synth.store.hf_card import dataset_card
    from synth.store.inspect import write_sheet

    path, out = Path(path), Path(out)
    require_pyarrow()
    _check_out(out)
    with GeneratedDataset(open_dataset_path(path, cache_dir), verify=path.is_dir()) as ds:
        if len(ds) == 0:
            raise ExportError(f"{path}: the dataset holds no samples; nothing to export")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent))
        try:
            strategies = strategy_names(ds)
            (tmp / DATA_DIR).mkdir()
            files = ParquetFiles(tmp / DATA_DIR, arrow_schema(strategies), rows_per_group, max_file_bytes)
            try:
                for row in rows(ds, strategies):
                    files.add(row)
                parquet = files.finish()
            except BaseException:
                files.abort()
                raise
            write_sheet(ds.directory, tmp / SHEET, sheet_samples)
            shutil.copyfile(ds.directory / MANIFEST, tmp / MANIFEST)
            sizes = {f"{DATA_DIR}/{p.name}": p.stat().st_size for p in parquet}
            card = dataset_card(ds.manifest, strategies, sizes, files.arrow_bytes, _sha256(tmp / MANIFEST), SHEET)
            (tmp / CARD).write_text(card, encoding="utf-8")
            _check_out(out)
            if out.is_dir():
                out.rmdir()
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out
