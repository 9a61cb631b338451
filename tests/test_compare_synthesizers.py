"""benchmarks/compare_synthesizers.py: one tiny configuration end to end, and the skip of a generator kind the
installed CLI does not know."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compare_synthesizers",
                                                  REPO / "benchmarks" / "compare_synthesizers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_one_finite_row_per_configuration(toybox_root, tmp_path):
    cmp = _script()
    text = cmp.main(["--tiny", "--synthesizers", "perlin", "--datasets", f"toybox:tray:{toybox_root}",
                     "--out", str(tmp_path), "--device", "cpu"])
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) == 3                                   # header, rule, one configuration
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == ["toybox/tray", "perlin", "–", "–", "1"]
    assert len(cells) == 5 + len(cmp.COLUMNS)
    for cell in cells[5:]:                                   # LOCO layout: every column filled, finite
        mean, std = (float(x) for x in cell.split("±"))
        assert math.isfinite(mean) and 0.0 <= mean <= 100.0 and std == 0.0
    assert (tmp_path / "table.md").read_text().strip() == text.strip()
    assert (tmp_path / "toybox-tray" / "perlin-seed0" / "eval" / "metrics.json").is_file()


def test_unknown_generator_kind_is_skipped_with_a_message(toybox_root, tmp_path, monkeypatch, capsys):
    cmp = _script()
    monkeypatch.setattr(cmp, "fit_options", lambda: "Usage: logical-synth fit-generator [OPTIONS]\n --edges")
    text = cmp.main(["--tiny", "--synthesizers", "logical", "--generator-kind", "inpaint",
                     "--datasets", f"toybox:tray:{toybox_root}", "--out", str(tmp_path)])
    assert "(no configuration ran)" in text and "generator kind 'inpaint' skipped" in text
    assert "no --kind option" in capsys.readouterr().out


def test_configurations_and_bad_options():
    cmp = _script()
    configs = cmp.configurations(["logical", "perlin", "both"], ["global", "inpaint"], ["classic", "pidinet"])
    assert len(configs) == 4 + 1 + 4 and configs[4] == cmp.Config("perlin")
    assert cmp.parse_datasets("toybox:tray,mvtec:hazelnut:/x/y")[1].root.as_posix() == "/x/y"
    with pytest.raises(SystemExit):
        cmp.parse_args(["--edges", "sobel"])
    with pytest.raises(SystemExit):
        cmp.parse_args(["--edges", "pidinet"])               # needs --pidinet-weights
