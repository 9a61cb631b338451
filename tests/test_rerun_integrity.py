"""A rerun never seals changed data: sources.h5 is reused only when it verifies against the checksum the
build recorded when it wrote it; the manifest lists only files the run wrote or verified; an HDF5 file that
another process holds open for writing is reported as such, not as tampered with."""

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from synth.build import build
from synth.cli import cli
from synth.errors import ShardError
from synth.store.manifest import read_manifest, verify_dataset
from synth.store.reader import GeneratedDataset

CATEGORY = "tray"


def build_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--dataset", "toybox", "--root", str(root), "--category", CATEGORY, "--n", "8",
            "--shard-size", "4", "--size", "64", "--seed", "3", "--synthesizer", "perlin", "--out", str(out),
            *extra]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zero_first_image(sources: Path) -> None:
    with h5py.File(sources, "r+") as f:
        f["image"][0] = 0


@pytest.fixture()
def built(toybox_root: Path, tmp_path: Path) -> Path:
    result = CliRunner().invoke(cli, build_args(toybox_root, tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "toybox" / CATEGORY


def test_rerun_remakes_a_changed_sources_file_instead_of_sealing_it(toybox_root, tmp_path, built):
    sources = built / "sources.h5"
    good = sha(sources)
    zero_first_image(sources)
    assert any("sources.h5: sha256 does not match" in p for p in verify_dataset(built))
    result = CliRunner().invoke(cli, build_args(toybox_root, tmp_path))      # the same command again
    assert result.exit_code == 0, result.output
    assert "reusing" not in result.output
    assert f"remaking {sources}: it changed after the build wrote it" in result.output
    assert "remade, as they did not verify" in result.output                 # the report says why
    assert sha(sources) == good and verify_dataset(built) == []              # the real data, not the damage
    with h5py.File(sources, "r") as f:
        assert f["image"][0].max() > 0
    assert read_manifest(built)["files"]["sources.h5"]["sha256"] == good
    assert "keeping 2 complete shard(s)" in result.output                   # same sources, same shards


def test_finalize_does_not_seal_a_changed_sources_file(toybox_root, tmp_path, built):
    sources = built / "sources.h5"
    good = sha(sources)
    zero_first_image(sources)
    report = build("toybox", toybox_root, [CATEGORY], 8, 64, tmp_path, 3, 4, synthesizer="perlin",
                   finalize=True)[CATEGORY]
    assert report["shards"] == {"total": 2, "made": 0, "kept": 2}
    assert report["remade"] and "sources.h5" in report["remade"][0]
    assert sha(sources) == good and verify_dataset(built) == []


def test_sources_without_a_recorded_checksum_are_remade(toybox_root, tmp_path, built):
    (built / ".build" / "sources.h5.json").unlink()
    result = CliRunner().invoke(cli, build_args(toybox_root, tmp_path))
    assert result.exit_code == 0 and "no checksum recorded" in result.output, result.output
    assert verify_dataset(built) == []


def test_manifest_lists_only_files_the_build_wrote_or_verified(toybox_root, tmp_path, built):
    (built / "generator.pt").write_bytes(b"left over from something else")   # a Perlin build uses none
    (built / "manifest.json").unlink()
    result = CliRunner().invoke(cli, build_args(toybox_root, tmp_path, "--finalize"))
    assert result.exit_code == 0, result.output
    assert sorted(read_manifest(built)["files"]) == ["shard-00000.h5", "shard-00001.h5", "sources.h5"]


def test_a_changed_shard_is_remade_and_the_console_says_why(toybox_root, tmp_path, built):
    shard = built / "shard-00001.h5"
    good = sha(shard)
    with h5py.File(shard, "r+") as f:
        f["mask"][0] = 0
    result = CliRunner().invoke(cli, build_args(toybox_root, tmp_path))
    assert result.exit_code == 0, result.output
    assert f"remaking {shard}: changed after the build wrote it" in result.output
    assert sha(shard) == good and verify_dataset(built) == []


HOLD = "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); print('open', flush=True); time.sleep(60)"


@pytest.fixture()
def held_open(built: Path):
    """shard-00000.h5 held open for writing by another process (a notebook's h5py.File(shard, 'r+'))."""
    shard = built / "shard-00000.h5"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(shard)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        yield shard
    finally:
        proc.kill()
        proc.wait()


def test_verify_names_a_writer_in_another_process_not_tampering(built, held_open):
    result = CliRunner().invoke(cli, ["verify", str(built)])
    assert result.exit_code == 1
    assert "shard-00000.h5: open for writing by another process" in result.output, result.output
    assert "close it there" in result.output
    assert "corrupt or tampered" not in result.output


def test_training_reader_names_a_writer_in_another_process(built, held_open):
    with pytest.raises(ShardError, match="shard-00000.h5: open for writing by another process"):
        GeneratedDataset(built)


def test_a_writer_that_never_closed_is_named(built):
    """The flag HDF5 leaves in the superblock of a file opened for writing (here: without the lock, as over
    NFS) and not closed: the writer was killed."""
    shard = built / "shard-00000.h5"
    code = ("import os, sys; os.environ['HDF5_USE_FILE_LOCKING'] = 'FALSE'; import h5py; "
            "f = h5py.File(sys.argv[1], 'r+'); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(shard)], check=True, timeout=60)
    time.sleep(0.1)
    problems = verify_dataset(built)
    assert any("shard-00000.h5: opened for writing and not closed" in p and "flags 0x1" in p
               for p in problems), problems
