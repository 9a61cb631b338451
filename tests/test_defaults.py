"""The defaults of build and fit-generator are what benchmarks/compare_synthesizers.py measured best
(benchmarks/results/defaults.json), and every entry point uses the same ones (synth/defaults.py)."""

import inspect
import json
from pathlib import Path

from synth import defaults
from synth.build import build, parse_mix
from synth.cli import cli
from synth.render.fitting import fit_for_category

RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "defaults.json"


def _option(command: str, name: str):
    params = {p.name: p for p in cli.commands[command].params}
    return params[name].default


def test_defaults_are_the_recorded_best():
    record = json.loads(RECORD.read_text())
    best = record["best"]
    assert (defaults.SYNTHESIZER, defaults.GENERATOR_KIND, defaults.EDGES) == \
        (best["synthesizer"], best["kind"], best["edges"])
    # the record really ranks that configuration first, from runs on more than one dataset
    top = record["ranking"][0]
    assert top["synthesizer"] == best["synthesizer"]
    assert len({row["dataset"] for row in record["rows"]}) >= 2
    assert max(len(row["runs"]) for row in record["rows"]) >= 3          # the synthesizers on 3 seeds


def test_every_entry_point_uses_the_same_defaults():
    assert _option("build", "synthesizer") == defaults.SYNTHESIZER
    assert _option("build", "edges") == defaults.EDGES
    assert _option("build", "mix") == defaults.MIX
    assert _option("fit-generator", "kind") == defaults.GENERATOR_KIND
    assert _option("fit-generator", "edges") == defaults.EDGES
    assert _option("show", "edges") == defaults.EDGES
    signature = inspect.signature(build).parameters
    assert signature["synthesizer"].default == defaults.SYNTHESIZER
    assert signature["edges"].default == defaults.EDGES
    assert parse_mix(None) == parse_mix(defaults.MIX)
    fit = inspect.signature(fit_for_category).parameters
    assert fit["kind"].default == defaults.GENERATOR_KIND and fit["edges"].default == defaults.EDGES


def test_default_strategies_are_the_recorded_best_vocabulary():
    """build's strategies without --strategies are the best vocabulary of the issue-23 comparison (the paper's
    edits against the logical taxonomy, `both` on every toybox category), and every entry point uses them."""
    from synth.build import parse_strategies
    from synth.edit.strategies import DEFAULT_STRATEGIES, KIND_OF, STRATEGIES

    record = json.loads((RECORD.parent / "strategies.json").read_text())
    assert DEFAULT_STRATEGIES == defaults.STRATEGIES == tuple(record["best"]["strategies"])
    assert set(DEFAULT_STRATEGIES) <= set(STRATEGIES) and "jitter" not in DEFAULT_STRATEGIES
    compared = {row.get("vocab", "paper") for row in record["rows"] if row["synthesizer"] == "both"}
    assert {"paper", "taxonomy"} <= compared
    assert {row["dataset"] for row in record["rows"]} >= {"toybox-tray", "toybox-bag", "toybox-bottle"}
    assert record["ranking"][0].get("vocab", "paper") == record["best"]["vocab"]
    assert parse_strategies(None, KIND_OF) == DEFAULT_STRATEGIES
