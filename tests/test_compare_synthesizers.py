"""benchmarks/compare_synthesizers.py: one tiny configuration end to end, and the skip of a generator kind the
installed CLI does not know."""

import importlib.util
import json
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
    assert cells[:7] == ["toybox/tray", "perlin", "–", "–", "–", "paper", "1"]
    assert len(cells) == 7 + len(cmp.COLUMNS)
    for cell in cells[7:]:                                   # LOCO layout: every column filled, finite
        mean, std = (float(x) for x in cell.split("±"))
        assert math.isfinite(mean) and 0.0 <= mean <= 100.0 and std == 0.0
    assert (tmp_path / "table.md").read_text().strip() == text.strip()
    assert (tmp_path / "toybox-tray" / "perlin-seed0" / "eval" / "metrics.json").is_file()


def _metrics(image: float, local: float) -> dict:
    return {"mean": {"image_auroc": image, "au_spro": local}}


def test_ranking_averages_image_and_localization_over_datasets_by_hand():
    cmp = _script()
    toy, hz = cmp.DatasetSpec("toybox", "tray"), cmp.DatasetSpec("mvtec", "hazelnut")
    logical, perlin, both = cmp.Config("logical", "global", "classic"), cmp.Config("perlin"), \
        cmp.Config("both", "global", "classic")
    hz_metrics = lambda i, p: {"all": {"image_auroc": i, "aupro": p}}  # noqa: E731
    rows = [(toy, logical, [_metrics(0.8, 0.6), _metrics(0.6, 0.6)]),     # 70, 60 -> 65
            (toy, perlin, [_metrics(0.9, 0.5)]),                          # 70
            (toy, both, [_metrics(0.8, 0.7)]),                            # 75
            (hz, logical, [hz_metrics(0.5, 0.5)]),                        # 50 -> mean 57.5
            (hz, perlin, [hz_metrics(0.9, 0.9)]),                         # 90 -> mean 80
            (hz, both, [hz_metrics(0.8, 0.8)])]                           # 80 -> mean 77.5
    ranked = cmp.ranking(rows)
    assert [c for c, _ in ranked] == [perlin, both, logical]
    assert [round(v, 6) for _, v in ranked] == [80.0, 77.5, 57.5]
    # a configuration missing on one dataset is not ranked
    assert [c for c, _ in cmp.ranking(rows[:3] + rows[4:])] == [perlin, both]
    args = cmp.parse_args(["--seeds", "0"])
    rec = cmp.record(args, rows, ["--seeds", "0"])
    # the best is Perlin-only, which has no generator: kind and edges come from the best one with a generator
    assert rec["best"] == {"synthesizer": "perlin", "kind": "global", "edges": "classic", "vocab": "paper",
                           "strategies": list(cmp.VOCABULARIES["paper"])}
    assert rec["rows"][0]["runs"][1]["image AUROC"] == 0.6 and len(rec["ranking"]) == 3
    assert rec["command"].endswith("--seeds 0")


def test_cached_runs_nothing_and_records_what_is_finished(toybox_root, tmp_path):
    cmp = _script()
    run = tmp_path / "toybox-tray" / "both-global-classic-seed1" / "eval"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"metrics": _metrics(0.9, 0.7)}))
    record = tmp_path / "rec" / "defaults.json"
    text = cmp.main(["--cached", "--synthesizers", "logical,both", "--seeds", "0", "1", "--datasets",
                     f"toybox:tray:{toybox_root}", "--out", str(tmp_path), "--record", str(record)])
    rows = [ln for ln in text.splitlines() if ln.startswith("| toybox")]
    assert len(rows) == 1 and "| both | global | classic | paper | paper | 1 | 90.0 ± 0.0 | 70.0 ± 0.0 |" in rows[0]
    saved = json.loads(record.read_text())
    assert saved == json.loads((tmp_path / "table.json").read_text())
    assert saved["best"] == {"synthesizer": "both", "kind": "global", "edges": "classic", "vocab": "paper",
                           "strategies": list(cmp.VOCABULARIES["paper"])}
    assert not (tmp_path / "toybox-tray" / "generator-global-classic.pt").exists()   # nothing was fitted


def test_configurations_and_bad_options():
    cmp = _script()
    configs = cmp.configurations(["logical", "perlin", "both"], ["global", "inpaint"], ["classic", "pidinet"])
    assert len(configs) == 4 + 1 + 4 and configs[4] == cmp.Config("perlin")
    assert cmp.parse_datasets("toybox:tray,mvtec:hazelnut:/x/y")[1].root.as_posix() == "/x/y"
    # archs: every configuration once per arch; runs differing only in arch share their data's folder
    archs = cmp.configurations(["both", "perlin"], ["global"], ["classic"], ["paper", "attention"])
    assert [c.slug for c in archs] == ["both-global-classic", "both-global-classic-attention", "perlin",
                                       "perlin-attention"]
    assert archs[0].data_slug == archs[1].data_slug == "both-global-classic"
    assert cmp.parse_args(["--arch", "paper,bottleneck"]).arch == ["paper", "bottleneck"]
    with pytest.raises(SystemExit):
        cmp.parse_args(["--arch", "vit"])
    with pytest.raises(SystemExit):
        cmp.parse_args(["--edges", "sobel"])
    with pytest.raises(SystemExit):
        cmp.parse_args(["--edges", "pidinet"])               # needs --pidinet-weights


def test_generator_epochs_per_kind():
    cmp = _script()
    assert cmp.parse_args(["--gen-epochs", "20"]).gen_epochs == {"*": 20}
    assert cmp.parse_args(["--gen-epochs", "global=20,inpaint=100"]).gen_epochs == {"global": 20, "inpaint": 100}
    assert cmp.parse_args([]).gen_epochs == {}
    for bad in ("sobel=3", "global=0", "x"):
        with pytest.raises(SystemExit):
            cmp.parse_args(["--gen-epochs", bad])


def test_oracle_script_runs_from_a_checkout_and_fills_every_column(toybox_root, tmp_path):
    _script()                                                 # oracle.py imports it by name
    spec = importlib.util.spec_from_file_location("oracle", REPO / "benchmarks" / "oracle.py")
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    text = oracle.main(["--tiny", "--datasets", f"toybox:bag:{toybox_root}", "--out", str(tmp_path),
                        "--device", "cpu"])
    row = [ln for ln in text.splitlines() if ln.startswith("| toybox/bag")]
    assert len(row) == 1 and "| oracle |" in row[0]
    for cell in row[0].strip("|").split("|")[-6:]:
        mean = float(cell.split("±")[0])
        assert 0.0 <= mean <= 100.0
    record = json.loads((tmp_path / "oracle.json").read_text())
    assert record["command"].startswith("python benchmarks/oracle.py --tiny")
    data = tmp_path / "toybox-bag" / "oracle-seed0" / "data" / "toybox-oracle" / "bag"
    assert (data / "manifest.json").is_file() and (data / "sources.h5").is_file()
