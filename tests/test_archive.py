"""Sharing generated datasets: pack, verify, inspect, unpack into the cache, export, and unsafe archives."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_shards import STRATEGIES, assert_matches, make_random_dataset

from synth.cli import cli
from synth.datasets.images import load_mask, load_rgb
from synth.errors import ArchiveError, ShardError
from synth.store.archive import CARD, open_dataset_path, pack_dataset, verify_path
from synth.store.export import export_mvtec
from synth.store.inspect import inspect_path
from synth.store.reader import GeneratedDataset

PREFIX = "toybox-tray"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 10-sample dataset (2 shards of 5, 64x64) with a generator.pt, and its packed tar."""
    root = tmp_path_factory.mktemp("archive")
    directory = root / "toybox" / "tray"
    directory.mkdir(parents=True)
    (directory / "generator.pt").write_bytes(os.urandom(3000))  # never unpickled: random bytes are fine
    made = make_random_dataset(directory, n=10, shard_size=5)
    tar = pack_dataset(directory, root / "toybox-tray.tar")
    return {**made, "dir": directory, "tar": tar, "root": root}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOGICAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
                  for p in root.rglob("*"))


def test_pack_layout_card_and_verify(made: dict, tmp_path: Path) -> None:
    with tarfile.open(made["tar"]) as tar:
        assert tar.getnames() == [f"{PREFIX}/{n}" for n in
                                  ("manifest.json", CARD, "sources.h5", "shard-00000.h5", "shard-00001.h5")]
        assert all(m.isreg() for m in tar.getmembers())
        manifest = json.loads(tar.extractfile(f"{PREFIX}/manifest.json").read())
        card = tar.extractfile(f"{PREFIX}/{CARD}").read().decode()
    assert "generator.pt" not in manifest["files"] and "generator.pt" in manifest["omitted_files"]
    for text in ("`toybox` category `tray`", "CC BY-NC-SA 4.0", "| tps_warp | 3 |", "| logical | 5 |",
                 "| collapse | 2 |", "- seed: 0", "classic-v1", "logical 0.1.0"):
        assert text in card, text
    assert verify_path(made["dir"]).problems == []
    result = verify_path(made["tar"])
    assert (result.problems, result.samples, result.files) == ([], 10, 3)
    assert run("verify", made["dir"]).output.strip().endswith("OK: 10 samples, 4 files verified")
    assert run("verify", made["tar"]).output.strip().endswith("OK: 10 samples, 3 files verified")

    out = run("pack", made["dir"], "-o", tmp_path / "g" / "with.tar", "--with-generator")
    assert out.exit_code == 0 and "with.tar" in out.output
    with tarfile.open(tmp_path / "g" / "with.tar") as tar:
        assert tar.getnames()[-1] == f"{PREFIX}/generator.pt"
    assert verify_path(tmp_path / "g" / "with.tar").problems == []
    left = sorted(p.name for p in (tmp_path / "g").iterdir() if not p.name.endswith(".logical.lock"))
    assert left == ["with.tar"]  # no .tmp left behind (the empty write lock of synth.lock stays)


def test_pack_refuses_a_damaged_directory(made: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(made["dir"], bad)
    data = bytearray((bad / "shard-00000.h5").read_bytes())
    data[-100] ^= 0xFF
    (bad / "shard-00000.h5").write_bytes(bytes(data))
    result = run("pack", bad, "-o", tmp_path / "bad.tar")
    assert result.exit_code == 1 and "shard-00000.h5" in result.output and "Error:" in result.output
    assert not (tmp_path / "bad.tar").exists() and not (tmp_path / "bad.tar.tmp").exists()


def test_inspect_text_json_and_sheet(made: dict, tmp_path: Path) -> None:
    areas = sorted(float(s["mask"].mean()) for s in made["samples"])
    text = run("inspect", made["dir"]).output
    for line in ("samples:      10 in 2 shard(s) of 5", "by strategy:  add_part 4, remove_part 3, tps_warp 3",
                 "rejections:   collapse 2, invisible 1", "image size:   64 x 64",
                 "licence:      CC BY-NC-SA 4.0"):
        assert line in text, line
    from_dir = json.loads(run("inspect", made["dir"], "--json").output)
    from_tar = json.loads(run("inspect", made["tar"], "--json").output)
    assert from_dir["mask_area"] == pytest.approx(
        {"measured": 10, "min": areas[0], "median": float(np.median(areas)), "max": areas[-1]})
    differ = {"path": None, "files": None, "bytes": None, "generator": None,
              "identity": None}  # the tar omits generator.pt and has its own manifest
    assert {**from_tar, **differ} == {**from_dir, **differ}
    assert (from_dir["files"], from_dir["generator"]) == (4, True)
    assert (from_tar["files"], from_tar["generator"]) == (3, False)
    assert from_dir["by_kind"] == {"logical": 5, "structural": 5} and from_dir["config"]["size"] == 64
    result = run("inspect", made["tar"], "--sheet", tmp_path / "sheet.png", "--n", "4")
    assert result.exit_code == 0
    sheet = load_rgb(tmp_path / "sheet.png")
    assert sheet.shape[0] >= 4 * 64 and sheet.shape[1] >= 3 * 64 and sheet.std() > 10
    assert sheet.shape[1] == 3 * 64 + 2 * 2  # normal | anomaly | mask overlay, 64 px tiles


def test_open_dataset_path_unpacks_once_and_reads_back(made: dict, private_cache: Path) -> None:
    assert open_dataset_path(made["dir"]) == made["dir"]
    target = open_dataset_path(made["tar"])
    assert target.parent == private_cache and len(target.name) == 64
    assert sorted(p.name for p in private_cache.iterdir()) == [target.name]  # no tmp folder left
    with GeneratedDataset(target) as ds:
        assert_matches(ds, made)
        assert ds[3].meta["strategy"] == STRATEGIES[0]
    stamp = (target / "shard-00001.h5").stat().st_mtime_ns
    assert open_dataset_path(made["tar"]) == target
    assert (target / "shard-00001.h5").stat().st_mtime_ns == stamp  # reused, not unpacked again
    other = open_dataset_path(made["tar"], cache_dir=private_cache.parent / "elsewhere")
    assert other.parent == private_cache.parent / "elsewhere"


def _flip_in_member(src: Path, dst: Path, member: str) -> None:
    with tarfile.open(src) as tar:
        offset = tar.getmember(f"{PREFIX}/{member}").offset_data + 1000
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x55
    dst.write_bytes(bytes(data))


def test_tampered_and_truncated_archives_are_caught(made: dict, tmp_path: Path, private_cache: Path) -> None:
    bad = tmp_path / "tampered.tar"
    _flip_in_member(made["tar"], bad, "shard-00001.h5")
    assert verify_path(bad).problems == \
        ["shard-00001.h5: sha256 does not match the manifest (corrupt or tampered with)"]
    result = run("verify", bad)
    assert result.exit_code == 1 and "Error:" in result.output and "shard-00001.h5: sha256" in result.output
    with pytest.raises(ArchiveError, match="shard-00001.h5 does not match"):
        open_dataset_path(bad)
    assert not private_cache.exists() or list(private_cache.iterdir()) == []  # never half-used

    cut = tmp_path / "truncated.tar"
    cut.write_bytes(made["tar"].read_bytes()[: made["tar"].stat().st_size * 2 // 3])
    with pytest.raises(ArchiveError, match="truncated"):
        open_dataset_path(cut)
    result = run("verify", cut)
    assert result.exit_code == 1 and "truncated" in result.output
    assert not private_cache.exists() or list(private_cache.iterdir()) == []


def _evil_tar(src: Path, dst: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    """The valid archive's manifest first, then one crafted member."""
    with tarfile.open(src) as good, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tar:
        for m in good.getmembers():
            tar.addfile(m, good.extractfile(m))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(("member", "message"), [
    (_member("../evil"), r"'\.\./evil' has a '\.\.' component"),
    (_member(f"{PREFIX}/../../evil"), r"has a '\.\.' component"),
    (_member("/etc/x"), "'/etc/x' has an absolute path"),
    (_member(f"{PREFIX}/sources.h5", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link to '/etc/passwd'"),
    (_member(f"{PREFIX}/evil", tarfile.LNKTYPE, "/etc/passwd"), "is a hard link to '/etc/passwd'"),
    (_member(f"{PREFIX}/fifo", tarfile.FIFOTYPE), "is a device file or FIFO"),
    (_member(f"{PREFIX}/run.py"), "'toybox-tray/run.py' is not listed in the manifest"),
])
def test_unsafe_members_are_refused(made: dict, tmp_path: Path, member: tarfile.TarInfo,
                                    message: str) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "cache").mkdir(parents=True)
    evil = sandbox / "evil.tar"
    _evil_tar(made["tar"], evil, member, b"pwned" if member.isreg() else b"")
    before = tree(tmp_path)
    with pytest.raises(ArchiveError, match=message):
        open_dataset_path(evil, cache_dir=sandbox / "cache")
    result = run("verify", evil)
    assert result.exit_code == 1 and "Error:" in result.output
    assert tree(tmp_path) == before  # nothing written anywhere near the target
    assert not any(p.name == "evil" for p in tmp_path.parent.rglob("evil"))


def test_archive_must_start_with_its_manifest(made: dict, tmp_path: Path) -> None:
    path = tmp_path / "reordered.tar"
    with tarfile.open(made["tar"]) as good, tarfile.open(path, "w") as tar:
        for m in reversed(good.getmembers()):
            tar.addfile(m, good.extractfile(m))
    with pytest.raises(ArchiveError, match="first member must be"):
        verify_path(path)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ArchiveError, match="junk.tar"):
        open_dataset_path(tmp_path / "junk.tar")
    result = run("verify", tmp_path / "missing.tar")
    assert result.exit_code == 1 and "no such file or directory" in result.output
    with pytest.raises(ShardError, match="manifest.json: missing"):
        open_dataset_path(tmp_path)


def test_export_mvtec_layout_matches_shards(made: dict, tmp_path: Path) -> None:
    result = run("export", made["tar"], "--format", "mvtec", "--out", tmp_path / "mvtec")
    assert result.exit_code == 0, result.output
    root = tmp_path / "mvtec" / "tray"
    assert sorted(p.name for p in (tmp_path / "mvtec").iterdir() if p.name != ".logical.lock") == ["tray"]
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
    assert np.array_equal(load_rgb(root / "train" / "good" / "002.png"), made["sources"]["image"][2])
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(STRATEGIES)
    for i, s in enumerate(made["samples"]):
        strategy = STRATEGIES[s["strategy"]]
        assert np.array_equal(load_rgb(root / "test" / strategy / f"{i:03d}.png"), s["anomaly"])
        mask = load_mask(root / "ground_truth" / strategy / f"{i:03d}_mask.png")
        assert np.array_equal(mask, np.where(s["mask"], 255, 0))
    assert sum(1 for _ in (root / "test").rglob("*.png")) == 10
    mask_file = root / "ground_truth" / "tps_warp" / "002_mask.png"
    assert cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED).ndim == 2  # single-channel PNG
    again = run("export", made["dir"], "--out", tmp_path / "mvtec")
    assert again.exit_code == 1 and "already exists" in again.output
    assert export_mvtec(made["dir"], tmp_path / "second") == tmp_path / "second" / "tray"


def test_inspect_reads_archive_without_unpacking(made: dict, private_cache: Path) -> None:
    summary = inspect_path(made["tar"])
    assert summary["samples"] == 10 and summary["sources"] == 3 and not summary["generator"]
    assert not private_cache.exists()
