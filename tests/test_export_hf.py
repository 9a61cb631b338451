"""`logical-synth export --format hf`: Parquet + dataset card that `datasets` loads back pixel for pixel, from a
directory or a `pack` archive, with a card whose YAML parses and whose counts match; clear errors."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_shards import STRATEGIES, make_random_dataset

from synth.cli import cli
from synth.errors import ExportError
from synth.store.archive import pack_dataset
from synth.store.atomic import sha256_file
from synth.store.export_hf import export_hf, hf_features
from synth.store.hf_card import hub_licence, size_category, to_yaml
from synth.store.manifest import total_samples
from synth.store.reader import GeneratedDataset
from synth.store.schema import KINDS

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # read before datasets is imported: never the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """12 random-pixel samples in 3 shards of 5 (last one partial), both kinds, 3 strategies, and its tar."""
    root = tmp_path_factory.mktemp("hf")
    directory = root / "toybox" / "tray"
    made = make_random_dataset(directory, n=12, shard_size=5)
    return {**made, "dir": directory, "tar": pack_dataset(directory, root / "toybox-tray.tar")}


@pytest.fixture(scope="module")
def exported(made: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export, in row groups of 3 and files of about 60 kB: several Parquet files."""
    return export_hf(made["dir"], tmp_path_factory.mktemp("out") / "hf", rows_per_group=3, max_file_bytes=60_000)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGICAL_CACHE", str(tmp_path / "cache"))


def run(*args) -> object:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def header(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def assert_same_as_shards(table, directory: Path) -> None:
    """Every pixel of anomaly/normal/mask and every per-sample field equals what GeneratedDataset reads."""
    features = table.features
    with GeneratedDataset(directory) as ds:
        assert len(table) == len(ds)
        for row in table:
            s = ds[row["index"]]
            for column, want in (("anomaly", s.anomaly), ("normal", s.normal), ("mask", s.mask)):
                got = np.asarray(row[column])
                assert got.dtype == np.uint8 and np.array_equal(got, want), (row["index"], column)
            assert features["kind"].int2str(row["kind"]) == s.meta["kind"]
            assert features["strategy"].int2str(row["strategy"]) == s.meta["strategy"]
            assert (row["seed"], tuple(row["bbox"]), row["source"]) == (s.meta["seed"], s.meta["bbox"],
                                                                         s.meta["source"])
            assert row["source_path"] == ds.source(s.meta["source"])["path"]


def test_round_trip_through_datasets_is_pixel_exact(made: dict, exported: Path, tmp_path: Path) -> None:
    parquet = sorted(p.name for p in (exported / "data").iterdir())
    assert len(parquet) >= 3 and parquet[0] == f"train-00000-of-{len(parquet):05d}.parquet", parquet
    assert pq.ParquetFile(exported / "data" / parquet[0]).metadata.row_group(0).num_rows == 3
    table = datasets.load_dataset("parquet", data_dir=str(exported), cache_dir=str(tmp_path / "c1"))["train"]
    assert [row["index"] for row in table] == list(range(12))      # files and rows in sample order
    assert_same_as_shards(table, made["dir"])
    # against what was written, not only against the reader: the seeds are 2**63 + i (needs uint64)
    assert [row["seed"] for row in table] == [2**63 + i for i in range(12)]
    assert [row["kind"] for row in table] == [d["kind"] for d in made["samples"]]
    assert table.features["strategy"].names == STRATEGIES
    assert table.features["kind"].names == list(KINDS)
    # the folder itself (README.md's configs and dataset_info) gives the same features and rows
    whole = datasets.load_dataset(str(exported), cache_dir=str(tmp_path / "c2"))
    assert list(whole) == ["train"] and whole["train"].features == table.features
    assert whole["train"]["seed"] == table["seed"]


def test_card_counts_yaml_and_features(made: dict, exported: Path) -> None:
    card = (exported / "README.md").read_text()
    meta = header(card)
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest == json.loads((made["dir"] / "manifest.json").read_text())
    by_kind, by_strategy = manifest["counts"]["by_kind"], manifest["counts"]["by_strategy"]
    assert by_kind == {"logical": 6, "structural": 6} and by_strategy == {s: 4 for s in STRATEGIES}
    for name, count in {**by_kind, **by_strategy}.items():
        assert f"| {name} | {count} |" in card, name
    assert meta["license"] == "cc-by-nc-sa-4.0" and meta["task_categories"] == ["image-segmentation"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = meta["dataset_info"]
    assert info["splits"][0]["num_examples"] == total_samples(manifest) == 12
    assert info["download_size"] == sum(p.stat().st_size for p in (exported / "data").iterdir())
    # the YAML features and the Parquet metadata describe the same columns, in the same order
    yaml_features = datasets.Features._from_yaml_list(info["features"])
    schema = pq.read_schema(next((exported / "data").iterdir()))
    stored = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert stored == hf_features(STRATEGIES)
    assert yaml_features == datasets.Features.from_dict(stored) and list(yaml_features) == schema.names
    assert "![contact sheet" in card and (exported / "sheet.png").stat().st_size > 0
    assert "logical 0.1.0" in card and '"edges": "classic-v1"' in card


def test_archive_exports_the_same_and_cli_errors_are_clear(made: dict, exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "from-tar"
    result = run("export", made["tar"], "--format", "hf", "--out", out)
    assert result.exit_code == 0 and result.output.strip().splitlines()[-1] == str(out), result.output
    from_dir = datasets.load_dataset("parquet", data_dir=str(exported), cache_dir=str(tmp_path / "c1"))["train"]
    from_tar = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "c2"))["train"]
    assert from_tar.features == from_dir.features and len(from_tar) == 12
    for a, b in zip(from_tar, from_dir, strict=True):
        assert all(np.array_equal(np.asarray(a[c]), np.asarray(b[c])) for c in ("anomaly", "normal", "mask"))
        assert {k: v for k, v in a.items() if k not in ("anomaly", "normal", "mask")} == \
               {k: v for k, v in b.items() if k not in ("anomaly", "normal", "mask")}
    # default file size: one Parquet file; the card is the same
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    # (the archive's manifest lists fewer files, so its sha256 differs; the card names the copy it ships)
    strip = re.compile(r"(download_size|num_bytes|dataset_size): \d+|\| data/.*\|\n|sha256 `[0-9a-f]+`")
    assert f"sha256 `{sha256_file(out / 'manifest.json')}`" in (out / "README.md").read_text()
    assert strip.sub("", (out / "README.md").read_text()) == strip.sub("", (exported / "README.md").read_text())

    again = run("export", made["tar"], "--format", "hf", "--out", out)
    assert again.exit_code != 0 and "folder is not empty" in again.output and str(out) in again.output
    (tmp_path / "file").write_text("x")
    onto_file = run("export", made["dir"], "--format", "hf", "--out", tmp_path / "file")
    assert onto_file.exit_code != 0 and "is a file" in onto_file.output                 # click says so
    with pytest.raises(ExportError, match="exists and is not a folder"):
        export_hf(made["dir"], tmp_path / "file")
    missing = run("export", tmp_path / "nothing.tar", "--format", "hf", "--out", tmp_path / "o")
    assert missing.exit_code != 0 and "no such file" in missing.output
    (tmp_path / "empty").mkdir()
    assert run("export", made["dir"], "--format", "hf", "--out", tmp_path / "empty").exit_code == 0
    assert (tmp_path / "empty" / "README.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]     # nothing left half-written


def test_missing_pyarrow_names_the_extra(made: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)          # `import pyarrow` raises ImportError
    with pytest.raises(ExportError, match=r"pip install 'logical\[hub\]'"):
        export_hf(made["dir"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_toybox_build_round_trips(toybox_root: Path, tmp_path: Path) -> None:
    from synth.build import build

    build("toybox", toybox_root, ["tray"], n=6, shard_size=4, size=64, seed=3, out=tmp_path, synthesizer="perlin")
    directory = tmp_path / "toybox" / "tray"
    out = export_hf(directory, tmp_path / "hf")
    table = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "c"))["train"]
    assert_same_as_shards(table, directory)
    card = (out / "README.md").read_text()
    assert header(card)["license"] == "mit"           # toybox: "MIT (generated by logical)"
    assert any(np.asarray(row["mask"]).max() == 255 for row in table)


@pytest.mark.parametrize("note, expected", [
    ("CC BY-NC-SA 4.0 (MVTec AD)", {"license": "cc-by-nc-sa-4.0"}),
    ("CC BY-NC-SA 4.0 (MVTec LOCO AD)", {"license": "cc-by-nc-sa-4.0"}),
    ("CC BY 4.0 (VisA)", {"license": "cc-by-4.0"}),
    ("MIT (generated by logical)", {"license": "mit"}),
    ("Apache 2.0", {"license": "apache-2.0"}),
    ("unknown (your own images: check their terms)", {"license": "unknown"}),
    ("", {"license": "unknown"}),
    ("see the MAD dataset's terms (PAD, Zhou et al. 2023)",
     {"license": "other", "license_name": "see-the-mad-dataset-s-terms-pad-zhou-et-al-2023"}),
])
def test_hub_licence(note: str, expected: dict) -> None:
    assert hub_licence(note) == expected


@pytest.mark.parametrize("n, bucket", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (50_000, "10K<n<100K"),
                                       (100_000, "100K<n<1M")])
def test_size_category(n: int, bucket: str) -> None:
    assert size_category(n) == bucket


def random_value(rng: np.random.Generator, depth: int = 0):
    pick = rng.integers(0, 6 if depth < 3 else 3)
    if pick == 0:
        return int(rng.integers(-10**6, 10**6))
    if pick in (1, 2):
        alphabet = list("abcXYZ019 _-./*:#'\"<>{}[]&!?%@`\\\n\té") + ["yes", "no", "null", "true", "on", "~"]
        return "".join(rng.choice(alphabet, size=int(rng.integers(0, 6))))
    if pick == 3:
        return [random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    return {str(random_value(rng, 3)) if rng.random() < 0.5 else str(rng.integers(0, 5)):
            random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))}


def test_yaml_writer_round_trips_through_a_yaml_parser() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        value = {"root": random_value(rng), "k": random_value(rng)}
        value = {str(k): v for k, v in value.items()}
        assert yaml.safe_load("\n".join(to_yaml(value))) == value, to_yaml(value)
