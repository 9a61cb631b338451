"""`logical-synth show` writes a contact sheet and says when it shows the stand-in renderer."""

from collections import Counter

import numpy as np
from click.testing import CliRunner

from synth.cli import cli
from synth.datasets import open_dataset
from synth.datasets.images import load_rgb
from synth.edit.strategies import KIND_OF, STRATEGIES
from synth.features.edges import get_extractor
from synth.pipeline import SynthConfig, prepare_source, synthesize
from synth.preview import LazySources, show_samples
from synth.render.standin import StandInRenderer
from synth.sheet import contact_sheet


def _expected_height(n: int, tile: int) -> int:
    band = max(14, int(tile * 0.08))
    return (band + 6) + band + n * (tile + band + 2)


def test_show_on_toybox_writes_sheet_and_stand_in_notice(toybox_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/toybox/tray/generator.pt here: the stand-in is used
    out = tmp_path / "sheet.png"
    args = ["show", "--dataset", "toybox", "--root", str(toybox_root), "--n", "3", "--size", "128",
            "--out", str(out), "--strategies", "remove,merge,colour"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "STAND-IN" in result.output
    sheet = load_rgb(out)
    assert sheet.shape == (_expected_height(3, 128), 5 * 128 + 4 * 2, 3)
    assert (sheet[:20, :, 0] > 100).mean() > 0.5  # the red stand-in banner on top


def test_show_on_hazelnut_photos_and_bad_options(hazelnut_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "hz.png"
    runner = CliRunner()
    result = runner.invoke(cli, ["show", "--dataset", "mvtec", "--root", str(hazelnut_root), "--category",
                                 "hazelnut", "--n", "1", "--size", "96", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_rgb(out).shape[1] == 5 * 96 + 4 * 2
    base = ["show", "--dataset", "mvtec", "--root", str(hazelnut_root)]
    bad = runner.invoke(cli, [*base, "--strategies", "boom"])
    assert bad.exit_code != 0 and "boom" in bad.output
    missing = runner.invoke(cli, [*base, "--category", "nope"])
    assert missing.exit_code == 1 and "Error:" in missing.output and "nope" in missing.output


def test_contact_sheet_tiles_any_image_kind():
    rows = [[np.zeros((32, 32), bool), np.ones((32, 32), np.float32), np.full((32, 32, 3), 7, np.uint8)]]
    sheet = contact_sheet(rows, ["row"], ["a", "b", "c"], banner="hello")
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 3 * 32 + 2 * 2 and sheet.ndim == 3


def test_show_rows_are_the_samples_build_makes(toybox_root):
    """Row i of the sheet is sample i of build's pipeline (all sources prepared up front, as in sources.h5,
    then `synthesize`, as a shard task runs it) with the same seed and SynthConfig."""
    paths = open_dataset("toybox", toybox_root).train_images("tray")
    extractor, renderer = get_extractor("classic"), StandInRenderer()
    prepared = [prepare_source(p, 64, extractor, renderer) for p in paths]
    kinds = tuple((s, KIND_OF[s]) for s in STRATEGIES)
    lazy = LazySources(paths, 64, extractor, renderer)

    def build_samples(strategies: tuple[str, ...], n: int) -> list:
        config = SynthConfig(strategies=strategies, strategy_kinds=kinds)
        return list(synthesize(prepared, range(n), 7, "tray", config, renderer.render, Counter()))

    def same(record, shown) -> bool:
        plan, composed = shown
        return (record.source, record.seed) == (plan.source, plan.seed) and \
            np.array_equal(record.anomaly, composed.anomaly) and np.array_equal(record.mask, composed.mask)

    built = build_samples(("merge",), 3)
    shown = show_samples(lazy, 3, ["merge"], 7, "tray", renderer.render)
    assert [r.strategy for r in built] == [0, 0, 0] and all(c.mask.any() for _, c in shown)
    assert all(same(r, s) for r, s in zip(built, shown, strict=True))
    assert len(lazy._ready) < len(paths)  # only the sources these samples use were prepared

    # several strategies: show takes them in turn, build draws one; where they agree the sample is the same
    names = ("remove", "stroke")
    built = build_samples(names, 6)
    shown = show_samples(lazy, 6, list(names), 7, "tray", renderer.render)
    assert [p.strategy for p, _ in shown] == ["remove", "stroke"] * 3
    agree = [i for i, r in enumerate(built) if names[r.strategy] == shown[i][0].strategy]
    assert agree and all(same(built[i], shown[i]) for i in agree)


def test_show_refuses_a_generator_fitted_on_older_classic_edges(toybox_root, tmp_path):
    import torch

    from synth.render.generator import FORMAT, VERSION, GeneratorConfig, GlobalGenerator, save_checkpoint

    config = GeneratorConfig(ngf=8, n_down=1, n_blocks=1, size=64, ndf=8, n_layers_d=2, num_d=2)
    torch.manual_seed(0)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "edges": "classic-v1",
                           "size": 64, "state_dict": GlobalGenerator(config).state_dict(), "quality": {}})
    args = ["show", "--dataset", "toybox", "--root", str(toybox_root), "--n", "1", "--size", "64",
            "--generator", str(path), "--out", str(tmp_path / "s.png")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Error:" in result.output
    assert "fitted on classic-v1 edges" in result.output and "refit" in result.output
