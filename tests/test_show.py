"""`logical-synth show` writes a contact sheet and says when it shows the stand-in renderer."""

import numpy as np
from click.testing import CliRunner

from synth.cli import cli
from synth.images import load_rgb
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
