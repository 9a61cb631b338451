"""One writer per folder (issue 20, item 3): while a real second process holds a folder's write lock, every
command that writes there stops at once naming the folder and the holder; a dead holder's lock is taken over
with a note; two processes that first touch the toybox at the same moment both succeed."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_shards import make_random_dataset

from synth.datasets.images import save_image

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOLD = textwrap.dedent("""
    import sys
    from synth.lock import file_lock, folder_lock
    lock = folder_lock if sys.argv[1] == "folder" else file_lock
    with lock(sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()
""")


def python(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=300, **kw)


class Holder:
    """A real process that holds the lock of `target` until the `with` block ends."""

    def __init__(self, target: Path, kind: str = "folder"):
        self.args = [sys.executable, "-c", HOLD, kind, str(target)]

    def __enter__(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        assert self.proc.stdout.readline().strip() == "held"
        return self.proc

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def assert_refused(result: subprocess.CompletedProcess, folder: Path, holder: subprocess.Popen) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    assert f"{folder}: another command is writing here: pid {holder.pid} on {socket.gethostname()}" in out, out
    assert "started 20" in out and "from synth.lock import" in out       # start time and command line
    assert "wait for that one to finish" in out


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory) -> Path:
    """A tiny `folder` dataset (category `part`, 2 normal images) and a generated dataset packed from it."""
    root = tmp_path_factory.mktemp("locks")
    for i in range(2):
        save_image(root / "raw" / "part" / "train" / "good" / f"{i}.png",
                   np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    made = root / "made" / "toybox" / "tray"
    made.mkdir(parents=True)
    make_random_dataset(made, n=4, shard_size=4)
    return root


@pytest.mark.parametrize("command", ["build", "fit-generator", "export", "pack"])
def test_synth_commands_refuse_a_second_writer(folder_data, tmp_path, command):
    raw, made = folder_data / "raw", folder_data / "made" / "toybox" / "tray"
    out = tmp_path / "out"
    target, kind, args = {
        "build": (out / "folder" / "part", "folder", ["build", "--dataset", "folder", "--root", raw, "--n", "4",
                                                      "--size", "32", "--synthesizer", "perlin", "--out", out]),
        "fit-generator": (out / "g.pt", "file", ["fit-generator", "--dataset", "folder", "--root", raw,
                                                 "--category", "part", "--out", out / "g.pt"]),
        "export": (out, "folder", ["export", made, "--out", out]),
        "pack": (out / "x.tar", "file", ["pack", made, "-o", out / "x.tar"]),
    }[command]
    with Holder(target, kind) as holder:
        assert_refused(python("-m", "synth", *map(str, args)), target, holder)
    assert not (out / "x.tar").exists() and not (out / "folder" / "part" / "manifest.json").exists()


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_train_commands_refuse_a_second_writer(folder_data, tiny_checkpoint, tmp_path, command):
    out = tmp_path / "run"
    image = folder_data / "raw" / "part" / "train" / "good" / "0.png"
    args = {"train": ["--shards", folder_data / "made" / "toybox" / "tray", "--out", out, "--steps", "1",
                      "--preset", "small", "--workers", "0"],
            "eval": ["eval", "--checkpoint", tiny_checkpoint, "--dataset", "folder", "--root",
                     folder_data / "raw", "--category", "part", "--out", out],
            "predict": ["predict", "--checkpoint", tiny_checkpoint, image, "--out", out]}[command]
    with Holder(out) as holder:
        assert_refused(python("-m", "train", *map(str, args)), out, holder)
    assert not (out / "model.pt").exists() and not (out / "scores.csv").exists()


def test_a_dead_holders_lock_is_taken_over_with_a_note(folder_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "export"
    out.mkdir()
    (out / ".logical.lock").write_text("")
    (out / ".logical.lock.json").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                        "command": "logical-synth export old", "started": "x"}))
    result = python("-m", "synth", "export", str(folder_data / "made" / "toybox" / "tray"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (f"took over the write lock left by pid {dead.pid} on {socket.gethostname()}, started x, running "
            "`logical-synth export old`, which is no longer running") in result.stderr
    assert (out / "tray" / "train" / "good").is_dir() and not (out / ".logical.lock.json").exists()


def test_two_processes_materialise_the_toybox_at_once(tmp_path):
    code = ("import sys; from synth.datasets import toybox; "
            "toybox._materialise_one(__import__('pathlib').Path(sys.argv[1]), toybox.categories()['bag'], 0)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=ENV) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert (tmp_path / "bag" / ".toybox-complete.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["bag"]
