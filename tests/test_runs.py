"""`logical-synth build` (every category) then `logical-train --shards DATA`: one model per category, resumed
after a kill without training anything twice, --unified, and `eval` over every category with a table."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_train import one_thread  # noqa: F401  (autouse: one torch thread)

from synth.cli import cli as synth_cli
from synth.datasets.images import load_rgb
from train.balanced import BalancedDataset
from train.cli import cli
from train.data import ShardDataset
from train.model import read_checkpoint
from train.runs import Found, find_datasets, select

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--preset", "small", "--size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(toybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The usage line's first command, for the toybox's two part categories (bottle is left out to keep this
    short): a data folder with two categories."""
    out = tmp_path_factory.mktemp("data")
    res = CliRunner().invoke(synth_cli, ["build", "--dataset", "toybox", "--root", str(toybox_root), "--category",
                                         "bag", "--category", "tray", "--n", "8",
                                         "--size", "64", "--shard-size", "4", "--synthesizer", "perlin",
                                         "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_usage_line_trains_each_category_and_eval_scores_each(data, toybox_root, tmp_path):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["--shards", str(data), "--out", str(runs), "--steps", "3", *TRAIN])
    assert res.exit_code == 0, res.output
    assert "[category 1 of 2] toybox/bag: training" in res.output
    assert "[category 2 of 2] toybox/tray: training" in res.output
    for category in ("bag", "tray"):
        payload = read_checkpoint(runs / "toybox" / category / "model.pt")
        assert payload["step"] == 3 and payload["categories"] == [f"toybox/{category}"]

    out = tmp_path / "eval"
    res = CliRunner().invoke(cli, ["eval", "--checkpoint", str(runs), "--dataset", "toybox", "--root",
                                   str(toybox_root), "--out", str(out), "--device", "cpu", "--heatmaps", "1"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "metrics.json").read_text())
    assert [r["category"] for r in report["categories"]] == ["bag", "bottle", "tray"] and report["scored"] == 2
    assert "no checkpoint" in report["categories"][1]["error"]  # bottle: in the test data, not trained
    for row in [r for r in report["categories"] if "scores" in r]:
        single = json.loads((out / row["category"] / "metrics.json").read_text())["metrics"]
        assert row["scores"]["logical_image_auroc"] == single["logical"]["image_auroc"]
        assert row["scores"]["mean_au_spro"] == single["mean"]["au_spro"]
        assert all(0.0 <= v <= 1.0 for v in row["scores"].values())
    mean = np.mean([r["scores"]["structural_au_spro"] for r in report["categories"] if "scores" in r])
    assert report["mean"]["structural_au_spro"] == pytest.approx(mean)
    table = (out / "metrics.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table if line.startswith("| ")][1:] == ["bag", "bottle",
                                                                                        "tray", "**mean** (2 scored)"]
    assert "logical AU-sPRO" in table[2] and "mean AUROC" in table[2]
    sheet = load_rgb(out / "summary.png")
    assert sheet.shape[0] > 2 * 112 and sheet.shape[1] > 330 + 2 * 112  # two rows of text + two thumbnails


def test_killed_folder_training_keeps_the_first_and_resumes_the_second(data, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-c", "from train.cli import main; main()", "--shards", str(data), "--out", str(runs),
           "--steps", "60", "--ckpt-every", "3", *TRAIN]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = runs / "toybox" / "tray" / "last.pt"
    deadline = time.time() + 300
    while not second.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    bag, tray = runs / "toybox" / "bag", runs / "toybox" / "tray"
    assert read_checkpoint(bag / "model.pt")["step"] == 60
    killed_at = read_checkpoint(second)["step"]
    assert 0 < killed_at < 60
    kept = {name: sha(bag / name) for name in ("model.pt", "last.pt", "log.jsonl")}

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "[category 1 of 2] toybox/bag: already trained" in rerun.stderr
    assert "toybox/bag: training" not in rerun.stderr
    assert f"resuming {second} at step {killed_at} of 60" in rerun.stderr
    assert {name: sha(bag / name) for name in kept} == kept  # the first category is untouched
    assert read_checkpoint(tray / "model.pt")["step"] == 60
    assert steps_logged(tray) == list(range(10, 61, 10))  # every step once: no step trained twice
    assert steps_logged(bag) == list(range(10, 61, 10))


def test_unified_model_knows_both_categories_and_is_scored_per_category(data, toybox_root, tmp_path):
    out = tmp_path / "unified"
    res = CliRunner().invoke(cli, ["--shards", str(data), "--unified", "--out", str(out), "--steps", "3", *TRAIN])
    assert res.exit_code == 0, res.output
    payload = read_checkpoint(out / "model.pt")
    assert payload["categories"] == ["toybox/bag", "toybox/tray"]
    # the default arch: one composition branch fitted on both categories' normal sources together
    sources = sum(len(ShardDataset(data / "toybox" / c, 32).normal_sources) for c in ("bag", "tray"))
    assert payload["config"]["arch"] == "composition" and payload["composition"]["counts"].shape[0] == sources
    assert json.loads((out / "train.json").read_text())["train"]["shards"] == [
        str(data / "toybox" / "bag"), str(data / "toybox" / "tray")]
    res = CliRunner().invoke(cli, ["eval", "--checkpoint", str(out / "model.pt"), "--dataset", "toybox",
                                   "--root", str(toybox_root), "--out", str(tmp_path / "eval"), "--device", "cpu",
                                   "--heatmaps", "0"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [(r["category"], r.get("checkpoint")) for r in report["categories"]] == [
        ("bag", str(out / "model.pt")), ("bottle", None), ("tray", str(out / "model.pt"))]
    assert "not trained on it" in report["categories"][1]["error"]
    assert report["scored"] == 2 and report["mean"]["mean_image_auroc"] is not None


def test_balanced_sampling_alternates_categories(data):
    parts = [ShardDataset(data / "toybox" / c, 32, normal_fraction=0.0) for c in ("bag", "tray")]
    both = BalancedDataset(parts)
    assert len(both) == 2 * 8 and both.categories == ["toybox/bag", "toybox/tray"]
    got = [both[(0, i)] for i in range(4)]
    assert [int(item["category"]) for item in got] == [0, 1, 0, 1]
    assert torch.equal(got[0]["image"], parts[0][(0, 0)]["image"])
    assert torch.equal(got[3]["image"], parts[1][(0, 1)]["image"])


def test_a_category_that_cannot_be_scored_is_a_row_with_the_reason(data, toybox_root, tmp_path):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["--shards", str(data), "--only", "tray", "--out", str(runs), "--steps", "2",
                                   *TRAIN])
    assert res.exit_code == 0, res.output
    assert not (runs / "toybox" / "bag").exists()
    res = CliRunner().invoke(cli, ["eval", "--checkpoint", str(runs), "--dataset", "toybox", "--root",
                                   str(toybox_root), "--out", str(tmp_path / "eval"), "--device", "cpu",
                                   "--heatmaps", "0"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    bag, bottle, tray = report["categories"]
    assert "scores" not in bag and "no checkpoint" in bag["error"] and "bag/model.pt" in bag["error"]
    assert "scores" not in bottle and "scores" in tray and report["scored"] == 1 and report["total"] == 3
    assert "| bag | not scored: no checkpoint" in (tmp_path / "eval" / "metrics.md").read_text()
    one = ["eval", "--checkpoint", str(runs), "--dataset", "toybox", "--root", str(toybox_root), "--device", "cpu",
           "--heatmaps", "0", "--out", str(tmp_path / "one"), "--category"]
    res = CliRunner().invoke(cli, [*one, "tray"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["checkpoint"] == str(
        runs / "toybox" / "tray" / "model.pt")
    res = CliRunner().invoke(cli, [*one, "bag"])
    assert res.exit_code != 0 and "holds no model for category 'bag'" in res.output


def test_select_splits_categories_over_tasks():
    found = [Found(Path(f"d/{c}"), "mvtec", c) for c in ("bottle", "cable", "grid", "screw", "wood")]
    tasks = [select(found, (), k, 2) for k in range(2)]
    assert [f.category for f in tasks[0]] == ["bottle", "grid", "wood"]
    assert [f.category for f in tasks[1]] == ["cable", "screw"]
    assert [f.name for f in select(found, ("mvtec/grid,wood",))] == ["mvtec/grid", "mvtec/wood"]
    with pytest.raises(Exception, match="--only tile: not found; the folder holds mvtec/bottle"):
        select(found, ("tile",))
    with pytest.raises(Exception, match="--task-index 2: must be in 0..1"):
        select(found, (), 2, 2)


def test_folder_search_finds_archives_and_refuses_an_empty_folder(data, tmp_path):
    res = CliRunner().invoke(synth_cli, ["pack", str(data / "toybox" / "bag"), "-o", str(tmp_path / "a" / "b.tar")])
    assert res.exit_code == 0, res.output
    found = find_datasets(tmp_path / "a")
    assert [(f.name, f.path.name) for f in found] == [("toybox/bag", "b.tar")]
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["--shards", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), *TRAIN])
    assert res.exit_code != 0 and "no generated dataset found" in res.output
    res = CliRunner().invoke(cli, ["--shards", str(data / "toybox" / "bag"), "--unified", *TRAIN])
    assert res.exit_code != 0 and "apply to a folder of generated datasets" in res.output
