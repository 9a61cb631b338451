"""`logical-synth build` on toybox: byte-identical across workers and backends, resumable after SIGKILL,
split into --shards runs, and clear about bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from synth.build import build
from synth.cli import cli
from synth.errors import DatasetError, ImageError
from synth.store.manifest import read_manifest, shard_complete, verify_dataset
from synth.store.reader import GeneratedDataset

REPO = Path(__file__).resolve().parents[1]
CATEGORY = "tray"
SMALL = {"n": 12, "shard_size": 4, "size": 64, "seed": 3}


def files_of(directory: Path) -> dict[str, str]:
    """sha256 of every h5 file as the manifest lists them."""
    return {k: v["sha256"] for k, v in read_manifest(directory)["files"].items() if k.endswith(".h5")}


def run_build(out: Path, root: Path, dataset: str = "toybox", **options) -> dict:
    kw = {**SMALL, "synthesizer": "perlin", **options}
    return build(dataset, root, [CATEGORY], out=out, **kw)[CATEGORY]


@pytest.fixture(scope="module")
def reference(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted Perlin build with the default settings of the tests below."""
    out = tmp_path_factory.mktemp("reference")
    run_build(out, toybox_root)
    return out / "toybox" / CATEGORY


def test_same_bytes_for_any_worker_count_and_backend(toybox_root, tiny_generator, tmp_path):
    from distributed import LocalCluster

    opts = {"synthesizer": "both", "generator": tiny_generator, "device": "cpu"}
    one = run_build(tmp_path / "one", toybox_root, workers=1, **opts)
    two = run_build(tmp_path / "two", toybox_root, workers=2, **opts)
    served = run_build(tmp_path / "served", toybox_root, workers=2, render="server", **opts)
    assert (one["render"], served["render"]) == ("inline", "server")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_build(tmp_path / "dask", toybox_root, backend="dask", scheduler=cluster.scheduler_address,
                         **opts)
    dirs = [Path(r["out"]) for r in (one, two, dask, served)]
    for d in dirs:
        assert verify_dataset(d) == []
    assert files_of(dirs[0]) == files_of(dirs[1]) == files_of(dirs[2]) == files_of(dirs[3])
    assert len(files_of(dirs[0])) == 1 + 3                      # sources.h5 + 3 shards
    counts = one["counts"]
    assert counts["samples"] == 12 and sum(counts["by_kind"].values()) == 12
    assert "perlin" in counts["by_strategy"] and len(counts["by_strategy"]) >= 2    # both synthesizers ran
    data = GeneratedDataset(dirs[0])
    masks = [data[i].mask for i in range(len(data))]
    assert all(m.any() for m in masks)
    for i in range(len(data)):          # honest masks: no change outside the label (Perlin: exactly the mask)
        s = data[i]
        changed = (s.anomaly != s.normal).any(-1)
        if s.meta["strategy"] == "perlin":
            assert not (changed & (s.mask == 0)).any()


def test_inpaint_generator_same_bytes_for_any_worker_count_and_render_mode(toybox_root, tmp_path):
    """The inpainting kind renders R_N per sample (nothing cached in sources.h5) and stays byte-identical."""
    import torch

    from synth.edit.compose import feather_support
    from synth.render.fitting import fit_for_category

    torch.set_num_threads(1)
    gen = fit_for_category("toybox", toybox_root, CATEGORY, size=64, preset="tiny", epochs=1,
                           out=tmp_path / "inpaint.pt", device="cpu", progress=False, kind="inpaint")
    opts = {"synthesizer": "logical", "generator": gen, "device": "cpu", "n": 8}
    one = run_build(tmp_path / "one", toybox_root, workers=1, **opts)
    served = run_build(tmp_path / "served", toybox_root, workers=2, render="server", **opts)
    assert served["render"] == "server"
    dirs = [Path(r["out"]) for r in (one, served)]
    assert files_of(dirs[0]) == files_of(dirs[1])
    with h5py.File(dirs[0] / "sources.h5", "r") as f:
        assert not f["render"][...].any()
    data = GeneratedDataset(dirs[0])
    assert len(data) == 8
    for i in range(len(data)):
        s = data[i]
        changed = (s.anomaly != s.normal).any(-1)
        assert s.mask.any() and not (changed & ~feather_support(s.mask > 0, 2)).any()


def test_killed_build_resumes_to_a_verified_dataset(toybox_root, tmp_path):
    out = tmp_path / "out"
    directory = out / "toybox" / CATEGORY
    cmd = [sys.executable, "-c", "from synth.cli import main; main()", "build", "--dataset", "toybox",
           "--root", str(toybox_root), "--category", CATEGORY, "--n", "200", "--shard-size", "4",
           "--size", "64", "--seed", "3", "--synthesizer", "perlin", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(directory.glob("shard-*.h5")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    made = sorted(directory.glob("shard-*.h5"))
    assert made and len(made) < 50 and not (directory / "manifest.json").exists()
    assert all(shard_complete(p) for p in made)                 # nothing incomplete under a final name
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "kept" in rerun.stdout
    assert verify_dataset(directory) == []
    data = GeneratedDataset(directory)
    assert len(data) == 200
    seeds = [data[i].meta["seed"] for i in range(200)]
    assert len(set(seeds)) == 200
    for k in range(50):
        with h5py.File(directory / f"shard-{k:05d}.h5", "r") as f:
            assert f.attrs["first_index"] == 4 * k and f.attrs["count"] == 4


def test_shard_ranges_then_finalize_equal_one_full_run(toybox_root, reference, tmp_path):
    part = run_build(tmp_path, toybox_root, shards="0-1")
    directory = Path(part["out"])
    assert not (directory / "manifest.json").exists() and "counts" not in part
    assert sorted(p.name for p in directory.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5"]
    run_build(tmp_path, toybox_root, shards="2-2")
    final = run_build(tmp_path, toybox_root, finalize=True)
    assert final["shards"] == {"total": 3, "made": 0, "kept": 3}
    assert verify_dataset(directory) == []
    assert files_of(directory) == files_of(reference)
    assert read_manifest(directory)["counts"] == read_manifest(reference)["counts"]


def test_rerun_keeps_verified_shards_and_remakes_tampered_ones(toybox_root, tmp_path):
    first = run_build(tmp_path, toybox_root)
    directory = Path(first["out"])
    before = files_of(directory)
    shard = directory / "shard-00001.h5"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    again = run_build(tmp_path, toybox_root)
    assert again["shards"] == {"total": 3, "made": 1, "kept": 2}
    assert files_of(directory) == before and verify_dataset(directory) == []


def copy_toybox(toybox_root: Path, dst: Path) -> tuple[Path, list[Path]]:
    shutil.copytree(toybox_root, dst)
    train = sorted((dst / CATEGORY / "train" / "good").iterdir())
    return dst, train


def test_unreadable_image_stops_or_is_skipped(toybox_root, tmp_path):
    root, train = copy_toybox(toybox_root, tmp_path / "toy")
    train[1].write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=train[1].name):
        run_build(tmp_path / "a", root, "mvtec_loco")
    report = run_build(tmp_path / "b", root, "mvtec_loco", skip_bad=True)
    assert report["skipped"] == [str(train[1])]
    assert report["counts"]["samples"] == 12 and verify_dataset(Path(report["out"])) == []
    with h5py.File(Path(report["out"]) / "sources.h5", "r") as f:
        assert f["image"].shape[0] == len(train) - 1


def test_fewer_than_two_images_is_a_clear_error(toybox_root, tmp_path):
    root, train = copy_toybox(toybox_root, tmp_path / "toy")
    for p in train[1:]:
        p.unlink()
    args = ["build", "--dataset", "mvtec_loco", "--root", str(root), "--category", CATEGORY, "--n", "4", "--size", "64",
            "--synthesizer", "perlin", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Error:" in result.output and "at least 2" in result.output
    with pytest.raises(DatasetError, match="at least 2"):
        run_build(tmp_path / "o", root, "mvtec_loco")


@pytest.mark.parametrize(("args", "message"), [
    (["--mix", "logical=abc"], "--mix"),
    (["--mix", "funny=1"], "unknown kind"),
    (["--strategies", "remove,teleport"], "teleport"),
    (["--shards", "3-9"], "--shards 3-9"),
    (["--shards", "x"], "--shards x"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--backend dask"),
])
def test_bad_options_give_clear_errors(toybox_root, tmp_path, args, message):
    base = ["build", "--dataset", "toybox", "--root", str(toybox_root), "--n", "12", "--shard-size", "4",
            "--size", "64", "--out", str(tmp_path)]
    synth = [] if "--strategies" in args or "--mix" in args else ["--synthesizer", "perlin"]
    result = CliRunner().invoke(cli, base + synth + args)
    assert result.exit_code != 0
    assert "Error:" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


def test_out_of_disk_stops_cleanly_with_complete_shards(toybox_root, tmp_path):
    """On a tiny tmpfs (needs mount rights; skipped otherwise) the build stops with a clear message."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = CliRunner().invoke(cli, ["build", "--dataset", "toybox", "--root", str(toybox_root), "--category",
                                          CATEGORY, "--n", "400", "--shard-size", "20", "--size", "64", "--synthesizer",
                                          "perlin", "--out", str(mnt)])
        assert result.exit_code == 1 and "out of disk space" in result.output, result.output
        directory = mnt / "toybox" / CATEGORY
        shards = sorted(directory.glob("shard-*.h5"))
        assert shards and all(shard_complete(p) for p in shards)
        assert not list(directory.glob("*.tmp"))
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_manifest_records_config_licence_and_report(reference):
    manifest = read_manifest(reference)
    assert manifest["config"]["synthesizer"] == "perlin" and manifest["seed"] == 3 and manifest["n"] == 12
    assert manifest["licence"]
    assert manifest["counts"]["by_kind"] == {"structural": 12}
    assert set(manifest["report"]["seconds"]) >= {"prepare", "generate"}
    sidecar = json.loads((reference / ".build" / "shard-00000.h5.json").read_text())
    assert sidecar["sha256"] == manifest["files"]["shard-00000.h5"]["sha256"]
    assert np.isfinite(manifest["report"]["samples_per_cpu_second"])
    assert os.path.getsize(reference / "sources.h5") == manifest["files"]["sources.h5"]["size"]
