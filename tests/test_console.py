"""Progress bars without tqdm: a bare GPU image set up with `pip install --no-deps` may lack it."""

import synth.console as console


def test_progress_without_tqdm_iterates_and_ignores_bar_calls(monkeypatch):
    monkeypatch.setattr(console, "tqdm", None)
    assert list(console.progress(range(4), "items", total=4)) == [0, 1, 2, 3]
    with console.progress(None, "bytes", total=10, unit="B", unit_scale=True) as bar:   # archive.py's use
        bar.update(5)
    bar = console.progress(None, "train", total=3, initial=1, disable=False)           # train/loop.py's use
    bar.set_postfix(loss="0.1")
    bar.update(1)
    bar.close()
    assert list(bar) == []
