"""Shard format v1: atomic writers, manifest, verification, the reader (also across fork)."""

import json
import multiprocessing
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from synth.errors import ShardError
from synth.store.atomic import sha256_file
from synth.store.manifest import read_manifest, shard_complete, verify_dataset, write_manifest
from synth.store.reader import GeneratedDataset
from synth.store.schema import JND_SCALE, KINDS, SOURCES, shard_name
from synth.store.shards import ShardWriter, write_sources

STRATEGIES = ["add_part", "remove_part", "tps_warp"]


def make_random_dataset(directory: Path, n: int = 10, shard_size: int = 5, size: int = 64, sources: int = 3,
                        seed: int = 0) -> dict:
    """A small generated dataset of random arrays; returns everything written, for comparison."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    src = {"image": rng.integers(0, 256, (sources, size, size, 3), dtype=np.uint8),
           "jnd": rng.integers(0, 256, (sources, size, size), dtype=np.uint8),
           "edge": rng.integers(0, 256, (sources, size, size), dtype=np.uint8),
           "foreground": rng.integers(0, 2, (sources, size, size), dtype=np.uint8),
           "regions": rng.integers(0, 700, (sources, size, size), dtype=np.uint16),
           "render": rng.integers(0, 256, (sources, size, size, 3), dtype=np.uint8)}
    paths = [f"train/good/{i:03d}.png" for i in range(sources)]
    write_sources(directory / SOURCES, *(src[k] for k in ("image", "jnd", "edge", "foreground", "regions")),
                  src["render"], paths, {"size": size, "dataset": "toybox", "category": "tray"})
    samples = []
    for k in range((n + shard_size - 1) // shard_size):
        with ShardWriter(directory / shard_name(k), k * shard_size, shard_size, size, size, STRATEGIES) as w:
            for i in range(k * shard_size, min(n, (k + 1) * shard_size)):
                s = int(rng.integers(sources))
                x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
                x1, y1 = x0 + int(rng.integers(2, size // 2)), y0 + int(rng.integers(2, size // 2))
                mask = np.zeros((size, size), bool)
                mask[y0:y1, x0:x1] = True
                anomaly = src["image"][s].copy()
                anomaly[mask] = rng.integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)
                d = dict(anomaly=anomaly, mask=mask, source=s, kind=i % 2, strategy=i % 3,
                         seed=2**63 + i, bbox=(x0, y0, x1, y1))
                w.append(**d)
                samples.append(d)
    by_kind = {name: sum(d["kind"] == k for d in samples) for k, name in enumerate(KINDS)}
    by_strategy = {name: sum(d["strategy"] == k for d in samples) for k, name in enumerate(STRATEGIES)}
    write_manifest(directory, {"dataset": "toybox", "category": "tray", "licence": "CC BY-NC-SA 4.0",
                               "config": {"size": size, "edges": "classic-v1"}, "seed": seed, "n": n,
                               "shard_size": shard_size,
                               "counts": {"samples": n, "by_kind": by_kind, "by_strategy": by_strategy,
                                          "rejections": {"collapse": 2, "invisible": 1}}, "report": {}})
    return {"sources": src, "paths": paths, "samples": samples}


def assert_matches(ds: GeneratedDataset, made: dict) -> None:
    """Every field of every sample reads back bit-exact."""
    src = made["sources"]
    assert len(ds) == len(made["samples"])
    for i, d in enumerate(made["samples"]):
        s = ds[i]
        assert s.anomaly.dtype == np.uint8 and np.array_equal(s.anomaly, d["anomaly"])
        assert np.array_equal(s.mask, np.where(d["mask"], 255, 0).astype(np.uint8))
        assert np.array_equal(s.normal, src["image"][d["source"]])
        assert np.array_equal(s.jnd, src["jnd"][d["source"]])
        assert np.array_equal(s.edge, src["edge"][d["source"]])
        assert s.meta == {"index": i, "source": d["source"], "kind": KINDS[d["kind"]],
                          "strategy": STRATEGIES[d["strategy"]], "seed": 2**63 + i, "bbox": d["bbox"],
                          "has_normal": True}   # no has_normal column: every sample has its normal


def test_round_trip_is_bit_exact_and_verifies(tmp_path: Path) -> None:
    made = make_random_dataset(tmp_path / "ds", n=8, shard_size=5)  # last shard partial: 3 of 5
    assert verify_dataset(tmp_path / "ds") == []
    manifest = read_manifest(tmp_path / "ds")
    assert set(manifest["files"]) == {SOURCES, "shard-00000.h5", "shard-00001.h5"}
    assert manifest["files"]["shard-00001.h5"]["samples"] == 3
    assert manifest["files"][SOURCES]["sha256"] == sha256_file(tmp_path / "ds" / SOURCES)
    with h5py.File(tmp_path / "ds" / "shard-00001.h5") as f:
        assert f["anomaly"].shape == (3, 64, 64, 3) and f["anomaly"].chunks == (1, 64, 64, 3)
        assert f["anomaly"].compression == "gzip" and int(f.attrs["count"]) == 3
        assert int(f.attrs["first_index"]) == 5 and json.loads(f.attrs["strategies"]) == STRATEGIES
    with h5py.File(tmp_path / "ds" / SOURCES) as f:
        assert f["jnd"].attrs["jnd_scale"] == JND_SCALE and f["regions"].dtype == np.uint16
        assert list(f["path"].asstr()[:]) == made["paths"]
    with GeneratedDataset(tmp_path / "ds") as ds:
        assert_matches(ds, made)
        assert ds[-1].meta["index"] == 7
        with pytest.raises(IndexError):
            ds[8]
        assert ds.source_count() == 3
        normal = ds.normal(2)
        assert np.array_equal(normal.anomaly, made["sources"]["image"][2]) and not normal.mask.any()
        assert ds.source(1)["path"] == "train/good/001.png"


def test_crash_inside_writer_leaves_nothing_and_keeps_previous_shards(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds", n=10, shard_size=5)
    target = tmp_path / "ds" / shard_name(2)
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(target, 10, 5, 64, 64, STRATEGIES) as w:
        w.append(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), bool), 0, 0, 0, 1, (0, 0, 1, 1))
        raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == \
        ["manifest.json", "shard-00000.h5", "shard-00001.h5", "sources.h5"]
    assert verify_dataset(tmp_path / "ds") == []
    assert shard_complete(tmp_path / "ds" / shard_name(0))


def test_writer_refuses_overflow_and_bad_shapes(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / shard_name(0), 0, 1, 8, 8, STRATEGIES) as w:
        w.append(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8), 0, 1, 2, 3, (0, 0, 8, 8))
        with pytest.raises(ShardError, match="full"):
            w.append(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8), 0, 1, 2, 3, (0, 0, 8, 8))
    bad = tmp_path / shard_name(1)
    with pytest.raises(ShardError, match="expected"), ShardWriter(bad, 1, 2, 8, 8, STRATEGIES) as w:
        w.append(np.zeros((8, 9, 3), np.uint8), np.ones((8, 9), np.uint8), 0, 0, 0, 0, (0, 0, 1, 1))
    assert not (tmp_path / shard_name(1)).exists() and not (tmp_path / "shard-00001.h5.tmp").exists()
    with h5py.File(tmp_path / shard_name(0)) as f:
        assert f["mask"][0].max() == 255 and int(f["seed"][0]) == 3


def test_truncated_shard_is_named(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / "shard-00001.h5"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    problems = verify_dataset(tmp_path / "ds")
    assert len(problems) == 1 and problems[0].startswith("shard-00001.h5: size")
    with pytest.raises(ShardError, match="shard-00001.h5: size"):
        GeneratedDataset(tmp_path / "ds")
    ds = GeneratedDataset(tmp_path / "ds", verify=False)
    assert ds[0].anomaly.shape == (64, 64, 3)  # shard 0 still reads
    with pytest.raises(ShardError, match=r"shard-00001\.h5.*(unreadable|cannot read)"):
        ds[7]
    assert not shard_complete(path)


def test_flipped_byte_is_caught_by_checksum(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / "shard-00000.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert verify_dataset(tmp_path / "ds") == \
        ["shard-00000.h5: sha256 does not match the manifest (corrupt or tampered with)"]
    with pytest.raises(ShardError, match="shard-00000.h5: sha256"):
        GeneratedDataset(tmp_path / "ds")
    listed = read_manifest(tmp_path / "ds")["files"][path.name]["sha256"]
    assert shard_complete(path) and not shard_complete(path, listed)


def test_verify_lists_every_problem(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds", n=10, shard_size=5)
    d = tmp_path / "ds"
    shutil.copy(d / "shard-00001.h5", d / "shard-00007.h5")  # an extra shard not in the manifest
    (d / "shard-00001.h5").unlink()
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["counts"]["samples"] = 12  # promises a third shard
    (d / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_dataset(d)
    assert "shard-00007.h5: not listed in the manifest" in problems
    assert "shard-00001.h5: missing" in problems
    assert "shard-00002.h5: expected by the manifest's sample count but not listed" in problems
    assert "manifest.json: shards hold 10 samples, counts say 12" in problems


def test_unknown_schema_and_missing_manifest(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds")
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    manifest["schema"] = 2
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema version 2 is not supported"):
        GeneratedDataset(tmp_path / "ds")
    with pytest.raises(ShardError, match="manifest.json: missing"):
        GeneratedDataset(tmp_path)
    manifest["schema"], manifest["files"]["../evil"] = 1, {"sha256": "0", "size": 1}
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="bad files entry '../evil'"):
        read_manifest(tmp_path / "ds")


_DS: GeneratedDataset | None = None


def _digest(index: int) -> str:
    s = _DS[index]
    return sha256_bytes(s.anomaly, s.mask, s.normal)


def sha256_bytes(*arrays: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()


def test_reading_after_fork_and_pickle(tmp_path: Path) -> None:
    global _DS
    make_random_dataset(tmp_path / "ds")
    _DS = GeneratedDataset(tmp_path / "ds")
    try:
        expected = [_digest(i) for i in range(len(_DS))]  # parent has the files open before forking
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(_digest, range(len(_DS))) == expected
        clone = pickle.loads(pickle.dumps(_DS))  # what a spawn DataLoader worker receives
        assert [sha256_bytes(clone[i].anomaly, clone[i].mask, clone[i].normal) for i in range(len(clone))] \
            == expected
        assert expected == [_digest(i) for i in range(len(_DS))]  # parent handles still fine
    finally:
        _DS.close()
        _DS = None


def test_write_manifest_reuses_known_checksums_only_when_sizes_match(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds")
    files = read_manifest(tmp_path / "ds")["files"]
    fake = {"shard-00000.h5": {"sha256": "0" * 64, "size": files["shard-00000.h5"]["size"]},
            "shard-00001.h5": {"sha256": "1" * 64, "size": 1}}
    manifest = read_manifest(tmp_path / "ds")
    write_manifest(tmp_path / "ds", {k: v for k, v in manifest.items() if k != "files"}, known=fake)
    files2 = read_manifest(tmp_path / "ds")["files"]
    assert files2["shard-00000.h5"]["sha256"] == "0" * 64  # trusted: the caller just computed it
    assert files2["shard-00001.h5"] == files["shard-00001.h5"]  # stale size: hashed again
    assert verify_dataset(tmp_path / "ds") == \
        ["shard-00000.h5: sha256 does not match the manifest (corrupt or tampered with)"]


def test_verify_reads_h5_schema_and_counts(tmp_path: Path) -> None:
    make_random_dataset(tmp_path / "ds")
    d = tmp_path / "ds"
    with h5py.File(d / "shard-00000.h5", "r+") as f:
        f.attrs["schema"] = 2
    with h5py.File(d / "shard-00001.h5", "r+") as f:
        f.attrs["count"] = 4
    manifest = read_manifest(d)
    write_manifest(d, {k: v for k, v in manifest.items() if k != "files"})  # checksums now match the edits
    problems = verify_dataset(d)
    assert "shard-00000.h5: schema 2, expected 1" in problems
    assert "shard-00001.h5: count attribute 4 != 5 rows" in problems
    assert not shard_complete(d / "shard-00001.h5")


OUT_OF_DISK = """
import sys
from pathlib import Path
import numpy as np
from synth.store.shards import ShardWriter, write_sources
d, rng = Path(sys.argv[1]), np.random.default_rng(0)
image = rng.integers(0, 256, (120, 64, 64, 3), dtype=np.uint8)  # 1.5 MB, does not compress
zero = np.zeros((120, 64, 64), np.uint8)
try:
    write_sources(d / "sources.h5", image, zero, zero, zero, zero, image, ["x.png"] * 120, {})
except OSError as exc:
    print("sources", exc.errno)
try:
    with ShardWriter(d / "shard-00000.h5", 0, 120, 64, 64, ["a"]) as w:
        for i in range(120):
            w.append(image[i], zero[i], 0, 0, 0, i, (0, 0, 1, 1))
except OSError as exc:
    print("shard", exc.errno)
"""


def test_out_of_disk_leaves_nothing_and_the_process_survives(tmp_path: Path) -> None:
    """On a 1 MB tmpfs (needs mount rights; skipped otherwise) both writers raise ENOSPC, remove their tmp
    file and free its space, and the process exits cleanly (HDF5 used to crash it at exit)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        free = shutil.disk_usage(disk).free
        run = subprocess.run([sys.executable, "-c", OUT_OF_DISK, str(disk)], capture_output=True, text=True,
                             timeout=120, cwd=Path(__file__).resolve().parents[1])
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.split() == ["sources", "28", "shard", "28"], run.stdout + run.stderr[-3000:]
        assert list(disk.iterdir()) == [] and shutil.disk_usage(disk).free == free
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
