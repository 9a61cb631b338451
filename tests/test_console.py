"""Progress without tqdm: a bare GPU image set up with `pip install --no-deps` may lack it."""

import synth.console as console


def test_progress_without_tqdm_iterates_and_writes_plain_lines(monkeypatch, capsys):
    monkeypatch.setattr(console, "tqdm", None)
    assert list(console.progress(range(4), "items", total=4)) == [0, 1, 2, 3]
    with console.progress(None, "bytes", total=10, unit="B", unit_scale=True) as bar:   # archive.py's use
        bar.update(5)
    bar = console.progress(None, "train", total=3, initial=1, disable=False)           # train/loop.py's use
    bar.set_postfix(loss="0.1")
    bar.update(2)
    bar.close()
    err = capsys.readouterr().err
    assert "items: 4/4 (100%)" in err
    assert "train: 3/3 (100%)" in err and "loss=0.1" in err


def test_disabled_progress_without_tqdm_is_silent(monkeypatch, capsys):
    monkeypatch.setattr(console, "tqdm", None)
    bar = console.progress(range(3), "quiet", total=3, disable=True)
    bar.set_postfix(loss="0.1")
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert capsys.readouterr().err == ""
