"""A sample whose planning raises (issue 20): the build stops with a SampleError naming the category, index,
strategy, source and seeds; completed shards stay and a rerun resumes; with --skip-bad the sample falls back
to Perlin, counted as "failed" in the manifest, the same bytes for any batch of samples."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import synth.edit.strategies as strategies
from synth.build import build, format_report
from synth.errors import SampleError
from synth.pipeline import SourceFeatures, SynthConfig, make_samples

CATEGORY = "tray"
OPTS = {"n": 12, "shard_size": 4, "size": 64, "seed": 10, "synthesizer": "logical", "strategies": "chip",
        "mix": "structural=1", "device": "cpu", "workers": 1}
FAIL_AT = 0.15   # share of chip attempts whose planner raises below


@pytest.fixture
def broken_chip(monkeypatch):
    """The chip planner with a bug: it raises on some attempts, chosen from the attempt's own random stream
    (peeked at, not consumed), so the same samples fail in every run."""
    real = strategies._PLANNERS["chip"]

    def chip(**kw):
        peek = np.random.Generator(type(kw["rng"].bit_generator)())
        peek.bit_generator.state = kw["rng"].bit_generator.state
        if peek.random() < FAIL_AT:
            raise IndexError("index 128 is out of bounds for axis 0 with size 128")
        return real(**kw)

    monkeypatch.setitem(strategies._PLANNERS, "chip", chip)


def _run(out: Path, root: Path, generator: Path, **kw) -> dict:
    return build("toybox", root, [CATEGORY], out=out, generator=generator, **{**OPTS, **kw})[CATEGORY]


def test_failing_sample_stops_names_it_keeps_shards_and_resumes(toybox_root, tiny_generator, tmp_path,
                                                                  broken_chip, monkeypatch):
    with pytest.raises(SampleError) as info:
        _run(tmp_path, toybox_root, tiny_generator)
    message = str(info.value)
    index = int(message.split("sample ")[1].split()[0])
    assert index >= 4                        # (seed 10: the first failure lies past shard 0)
    for part in ("tray: sample", "strategy chip", "source ", ".png", "sample seed ", "build --seed 10",
                 "IndexError: index 128", "--skip-bad", "rerun"):
        assert part in message, part
    directory = tmp_path / "toybox" / CATEGORY
    written = sorted(p.name for p in directory.glob("shard-*.h5"))
    assert written == [f"shard-{k:05d}.h5" for k in range(index // 4)]     # every shard before it, complete
    assert not list(directory.glob("*.tmp")) and not (directory / "manifest.json").exists()
    monkeypatch.setitem(strategies._PLANNERS, "chip", strategies.plan_chip)   # the bug fixed: rerun resumes
    report = _run(tmp_path, toybox_root, tiny_generator)
    assert report["shards"] == {"total": 3, "made": 3 - index // 4, "kept": index // 4}
    assert report["counts"]["samples"] == 12 and "failed" not in report["counts"]["rejections"]


def test_skip_bad_falls_back_to_perlin_and_counts_it(toybox_root, tiny_generator, tmp_path, broken_chip):
    report = _run(tmp_path, toybox_root, tiny_generator, skip_bad=True)
    counts = report["counts"]
    assert counts["samples"] == 12 and counts["rejections"]["failed"] >= 1
    assert counts["by_strategy"].get("perlin", 0) == counts["rejections"]["fallback"] >= 1
    assert "replaced by Perlin (--skip-bad)" in format_report({CATEGORY: report})


def _sources(n=3, size=48):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image = rng.integers(60, 200, (size, size, 3), dtype=np.uint8)
        fg = np.zeros((size, size), bool)
        fg[8:40, 0:48] = True
        edge = np.zeros((size, size), np.float32)
        edge[8, :], edge[39, :] = 1, 1
        out.append(SourceFeatures(image, None, edge, fg, fg.astype(np.uint16)))
    return out


def test_fallback_depends_only_on_seed_and_index(broken_chip):
    config = SynthConfig("logical", (("structural", 1.0),), ("chip",), (("chip", "structural"),), skip_bad=True)
    sources = _sources()

    def make(indices):
        rejections = Counter()
        done = {p.index: (p.strategy, out.anomaly.tobytes(), out.mask.tobytes())
                for p, out in make_samples(sources, indices, 7, CATEGORY, config, None, rejections)}
        return done, rejections

    whole, rejections = make(range(40))
    assert rejections["failed"] >= 1 and any(s == "perlin" for s, *_ in whole.values())
    parts = {**make(range(0, 13))[0], **make(range(13, 40))[0]}
    assert parts == whole
    with pytest.raises(SampleError, match="strategy chip"):
        strict = SynthConfig("logical", (("structural", 1.0),), ("chip",), (("chip", "structural"),))
        list(make_samples(sources, range(40), 7, CATEGORY, strict, None, Counter()))
