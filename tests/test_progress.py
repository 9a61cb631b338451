"""Progress in logs: without a terminal, long steps write a plain line every 10% or 30 s with the count,
rate, ETA and current loss, instead of staying silent until they end."""

import io
import re
import time

import pytest
import torch
from tqdm import tqdm

from synth.console import LineProgress, progress


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.step


def run(total: int, seconds_per_step: float) -> list[str]:
    stream, clock = io.StringIO(), Clock(seconds_per_step)
    bar = LineProgress(None, "fit-generator", total=total, stream=stream, clock=clock)
    for k in range(total):
        clock.tick()
        bar.set_postfix({"g_gan": f"{0.5 - k / 1000:.3f}"})
        bar.update(1)
    bar.close()
    return stream.getvalue().splitlines()


def test_a_line_every_tenth_of_the_work():
    lines = run(200, 0.1)
    assert len(lines) == 10
    assert lines[0] == "fit-generator: 20/200 (10%), 10 it/s, elapsed 0:02, ETA 0:18, g_gan=0.481"
    assert lines[-1].startswith("fit-generator: 200/200 (100%), 10 it/s, elapsed 0:20, g_gan=0.301")


def test_a_quick_loop_writes_only_its_last_line():
    lines = run(100, 0.004)                                # 0.4 s in all: no line a second apart
    assert lines == ["fit-generator: 100/100 (100%), 250 it/s, elapsed 0:00, g_gan=0.401"]


def test_a_line_every_30_seconds_when_steps_are_slow():
    lines = run(8, 45.0)                                   # 45 s per step: 10% is less than one step
    assert len(lines) == 8
    assert lines[1] == "fit-generator: 2/8 (25%), 0.0222 it/s, elapsed 1:30, ETA 4:30, g_gan=0.499"
    lines = run(100, 7.0)                                  # 10% = 70 s: the 30 s period comes first
    assert len(lines) == 20                                # every 5 steps (35 s)
    assert lines[0] == "fit-generator: 5/100 (5%), 0.143 it/s, elapsed 0:35, ETA 11:05, g_gan=0.496"
    assert all(re.search(r"ETA \d+:\d\d", line) for line in lines[:-1])


def test_a_step_longer_than_the_period_still_writes_lines():
    """One long step (a big shard): the log shows the run is alive every period, not only when it ends."""
    stream = io.StringIO()
    bar = LineProgress(None, "shards", total=2, stream=stream, every_seconds=0.2)
    time.sleep(0.7)
    bar.update(1)
    bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and lines[0].startswith("shards: 0/2 (0%), 0 it/s, elapsed 0:00")
    assert lines[-1].startswith("shards: 2/2 (100%)")


def test_terminal_gets_a_bar_and_logs_get_lines(capsys, monkeypatch):
    assert isinstance(progress(range(3), "x"), LineProgress)        # pytest's stderr is not a terminal
    monkeypatch.setenv("LOGICAL_PROGRESS", "1")
    bar = progress(range(3), "x")
    assert isinstance(bar, tqdm)
    bar.close()
    assert "x:" in capsys.readouterr().err
    monkeypatch.setenv("LOGICAL_PROGRESS", "0")
    assert list(progress(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("LOGICAL_PROGRESS")
    assert list(progress(range(3), "quiet", disable=True)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


@pytest.fixture()
def every_tenth(monkeypatch):
    """Lines at every 10% however quick the steps (test runs are far shorter than a second per 10%)."""
    monkeypatch.setattr("synth.console.LINE_MIN_SECONDS", 0.0)


def test_fit_generator_reports_progress_into_a_redirected_stream(toybox_root, tmp_path, capsys, every_tenth):
    from synth.render.fitting import fit_for_category

    torch.set_num_threads(1)
    fit_for_category("toybox", toybox_root, "tray", size=32, preset="tiny", epochs=2, out=tmp_path / "g.pt",
                     device="cpu")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("fit-generator: ")]
    assert len(lines) >= 10                                # 30 steps: a line at every 10%, and the end
    assert re.match(r"fit-generator: 3/30 \(10%\), [\d.]+ it/s, elapsed \d+:\d\d, ETA \d+:\d\d, "
                    r"g_gan=[\d.]+ g_feat=[\d.]+ g_l1=[\d.]+ d_real=[\d.]+ d_fake=[\d.]+$", lines[0]), lines[0]
    assert lines[-1].startswith("fit-generator: 30/30 (100%)")


def test_training_reports_step_rate_and_loss(tmp_path, capsys, every_tenth):
    import test_train

    from train.loop import fit

    torch.set_num_threads(1)
    test_train.make_dataset(tmp_path / "ds")
    fit(test_train.tiny_config(tmp_path / "ds", tmp_path / "run", steps=10, log_every=5, ckpt_every=10))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train: ")]
    assert len(lines) == 10 and lines[-1].startswith("train: 10/10 (100%)")
    assert re.search(r"train: 5/10 \(50%\), .* ETA .*loss=[\d.]+ seg=[\d.]+ sps=\d+", lines[4]), lines[4]
