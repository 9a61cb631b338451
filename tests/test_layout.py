"""The tree reads like the method (issue 21): imports run one way between stages, nothing imports a CLI, no import
circles, no module over ~400 lines. Every import counts, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400

# Stage of each part of synth, lowest first: a module may import its own stage and lower ones only.
# `store` serves whoever reads or writes the format and itself sits on datasets-level helpers and plumbing.
PLUMBING = {"synth", "synth.console", "synth.errors", "synth.rng", "synth.ssim", "synth.sheet", "synth.defaults",
            "synth.lock"}
STAGES = ["plumbing", "datasets", "store", "features", "edit", "render", "job", "build", "cli"]
JOB = {"synth.pipeline", "synth.sources", "synth.preview", "synth.importing"}
BUILD = {"synth.build", "synth.jobs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in ("synth", "train") for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its body (a `from pkg import module` counts as the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def stage(module: str) -> str:
    if module in PLUMBING or module == "synth.__main__":
        return "plumbing" if module != "synth.__main__" else "cli"
    if module in JOB:
        return "job"
    if module in BUILD:
        return "build"
    if module == "synth.cli":
        return "cli"
    part = module.split(".")[1]
    if part in ("datasets", "store", "features", "edit", "render"):
        return part
    raise AssertionError(f"{module}: not placed in a stage; add it to tests/test_layout.py")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_synth_stages_import_one_way():
    rank = {s: i for i, s in enumerate(STAGES)}
    wrong = []
    for mod, deps in graph().items():
        if not mod.startswith("synth"):
            continue
        for dep in deps:
            if dep.startswith("train"):
                wrong.append(f"{mod} -> {dep} (synth never imports train)")
            elif rank[stage(dep)] > rank[stage(mod)]:
                wrong.append(f"{mod} ({stage(mod)}) -> {dep} ({stage(dep)})")
            elif stage(mod) == "store" and stage(dep) not in ("plumbing", "datasets", "store"):
                wrong.append(f"{mod} (store) -> {dep} ({stage(dep)}): store sits on datasets and plumbing only")
    assert wrong == []


def test_train_imports_only_readers_store_and_helpers():
    # synth.features: pure per-image maps (JND, edges, part regions); the composition branch (train/composition.py)
    # finds parts at test time with the same region finder that chose the synthetic edits' parts
    allowed = ("synth.datasets", "synth.store", "synth.features")
    wrong = [f"{mod} -> {dep}" for mod, deps in graph().items() if mod.startswith("train") for dep in deps
             if dep.startswith("synth") and not (dep in PLUMBING or dep.startswith(allowed))]
    assert wrong == []


def test_nothing_imports_a_cli():
    wrong = [f"{mod} -> {dep}" for mod, deps in graph().items() for dep in deps
             if dep.endswith(".cli") and not mod.endswith("__main__")]
    assert wrong == []


@pytest.mark.parametrize("pkg", ["synth", "train"])
def test_no_module_over_the_line_budget(pkg):
    long = {module_name(p): n for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
