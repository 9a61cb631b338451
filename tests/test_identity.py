"""Archives that say who made them (issue 20, item 4): pack prints and inspect shows the identity (sha256 of
manifest.json); verify --expect and logical-train --shards X.tar --expect refuse a re-packed archive whose
manifest was altered (intact by itself, so plain verify passes it), naming both values."""

import hashlib
import io
import json
import tarfile

import pytest
from click.testing import CliRunner
from test_shards import make_random_dataset

from synth.cli import cli
from synth.lock import folder_lock
from train.cli import cli as train_cli


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("identity")
    directory = root / "toybox" / "tray"
    make_random_dataset(directory, n=4, shard_size=4, size=32)
    result = CliRunner().invoke(cli, ["pack", str(directory), "-o", str(root / "a.tar")])
    assert result.exit_code == 0, result.output
    with tarfile.open(root / "a.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    sha = hashlib.sha256(members[0][1]).hexdigest()
    manifest = json.loads(members[0][1])
    manifest["licence"] = "CC0 (altered by a re-packer)"             # every file still matches its checksum
    with tarfile.open(root / "altered.tar", "w") as tar:
        for i, (m, data) in enumerate(members):
            data = (json.dumps(manifest, indent=2) + "\n").encode() if i == 0 else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    altered = hashlib.sha256((json.dumps(manifest, indent=2) + "\n").encode()).hexdigest()
    return {"root": root, "tar": root / "a.tar", "altered": root / "altered.tar", "sha": sha,
            "altered_sha": altered, "pack_output": result.output}


def test_pack_prints_and_inspect_shows_the_identity(packed):
    assert f"identity (sha256 of its manifest.json): {packed['sha']}" in packed["pack_output"]
    shown = CliRunner().invoke(cli, ["inspect", str(packed["tar"])])
    assert shown.exit_code == 0 and f"identity:     {packed['sha']}" in shown.output, shown.output
    as_json = CliRunner().invoke(cli, ["inspect", str(packed["tar"]), "--json"])
    assert json.loads(as_json.output)["identity"] == packed["sha"]


def test_verify_expect_passes_the_original_and_refuses_an_altered_repack(packed, tmp_path, monkeypatch):
    monkeypatch.setenv("LOGICAL_CACHE", str(tmp_path / "cache"))
    ok = CliRunner().invoke(cli, ["verify", str(packed["tar"]), "--expect", packed["sha"].upper()])
    assert ok.exit_code == 0 and "OK:" in ok.output, ok.output
    plain = CliRunner().invoke(cli, ["verify", str(packed["altered"])])
    assert plain.exit_code == 0, plain.output                          # intact against its own manifest
    bad = CliRunner().invoke(cli, ["verify", str(packed["altered"]), "--expect", packed["sha"]])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert f"identity {packed['altered_sha']} is not the expected {packed['sha']}" in bad.output, bad.output
    short = CliRunner().invoke(cli, ["verify", str(packed["tar"]), "--expect", "abc"])
    assert short.exit_code == 1 and "not a sha256" in short.output


def test_train_expect_refuses_an_altered_repack_and_passes_the_original(packed, tmp_path, monkeypatch):
    monkeypatch.setenv("LOGICAL_CACHE", str(tmp_path / "cache"))
    base = ["--steps", "1", "--preset", "small", "--size", "32", "--workers", "0", "--batch-size", "2",
            "--device", "cpu"]
    bad = CliRunner().invoke(train_cli, ["--shards", str(packed["altered"]), "--out", str(tmp_path / "bad"),
                                         "--expect", packed["sha"], *base])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert f"identity {packed['altered_sha']} is not the expected {packed['sha']}" in bad.output, bad.output
    assert not (tmp_path / "bad" / "model.pt").exists() and not (tmp_path / "cache").exists()
    with folder_lock(tmp_path / "good"):    # the right identity passes on to training, which finds --out busy
        good = CliRunner().invoke(train_cli, ["--shards", str(packed["tar"]), "--out", str(tmp_path / "good"),
                                              "--expect", packed["sha"], *base])
    assert good.exit_code == 1 and "is not the expected" not in good.output, good.output
    assert f"{tmp_path / 'good'}: another command is writing here" in good.output
