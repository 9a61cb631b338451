"""Synthesizers, generator kinds, edge extractors and network archs compared on the same work: same datasets,
model preset, steps and seeds.

A configuration is (synthesizer, generator kind, edge extractor, network arch); Perlin uses neither kind nor
extractor. Runs that differ only in `--arch` train on the same generated data (built once, in the `paper` run's
folder), so the archs are compared on identical samples. For each dataset, configuration and seed: fit the
generator once per (kind, extractor) with `logical-synth fit-generator --kind K --edges E` (a kind the
installed CLI does not know is skipped with a message), build a generated dataset, train the localization network,
evaluate it on the real test split.
One table row per (dataset, configuration): mean ± std over seeds of the image AUROC and the localization
score (AU-sPRO on LOCO-layout data such as toybox, with its logical / structural split; AUPRO elsewhere).
Finished runs are cached in their folder (eval/metrics.json), so a rerun only does what is missing.

The configurations are ranked by one score: per dataset the mean of image AUROC and the localization score,
then the mean over datasets (a configuration missing on a dataset is not ranked). `table.json` holds every
run, the ranking and the best configuration; `--record FILE` also writes that record where the project keeps
it (benchmarks/results/defaults.json, which synth/defaults.py must match: tests/test_defaults.py).

    python benchmarks/compare_synthesizers.py --datasets toybox:tray --seeds 0 1 2
    python benchmarks/compare_synthesizers.py --synthesizers logical,perlin,both --generator-kind global,inpaint \\
        --edges classic,pidinet --pidinet-weights ../shared/weights/table5_pidinet.pth \\
        --datasets toybox:tray,mvtec:hazelnut:../shared/data/hazelnut_toy --seeds 0 1 2
    python benchmarks/compare_synthesizers.py --tiny --synthesizers logical --out /tmp/cmp   # a quick check
    python benchmarks/compare_synthesizers.py --synthesizers both --arch paper,attention --datasets toybox:bag
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYNTHESIZERS = ("logical", "perlin", "both")
KINDS = ("global", "inpaint")
EDGES = ("classic", "pidinet")
ARCHS = ("paper", "attention", "bottleneck")   # train.model.ARCHS (not imported: torch loads only when needed)
# --tiny: one end-to-end configuration in well under a minute on a CPU (a smoke test, not a measurement)
TINY = {"n": 8, "steps": 1, "size": 32, "seeds": [0], "gen_epochs": 1, "batch_size": 4, "shard_size": 8,
        "workers": 1}
COLUMNS = ("image AUROC", "AU-sPRO / AUPRO", "logical I-AUROC", "logical AU-sPRO", "structural I-AUROC",
           "structural AU-sPRO")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to compare on: reader name, category, root (None: the reader's default)."""

    name: str
    category: str
    root: Path | None = None

    @property
    def slug(self) -> str:
        return f"{self.name}-{self.category}"


@dataclass(frozen=True)
class Config:
    """One configuration; kind and edges are None for Perlin (no generator, no edges)."""

    synthesizer: str
    kind: str | None = None
    edges: str | None = None
    vocab: str = "paper"    # the edit strategies (VOCABULARIES)
    arch: str = "paper"

    @property
    def data_slug(self) -> str:
        """What the generated data depends on (every arch trains on the same samples); `paper` vocabulary and
        arch keep the names runs had before these axes existed (their caches hold)."""
        vocab = None if self.vocab == "paper" else self.vocab
        return "-".join(x for x in (self.synthesizer, self.kind, self.edges, vocab) if x)

    @property
    def slug(self) -> str:
        """The run folder's name."""
        return self.data_slug + ("" if self.arch == "paper" else f"-{self.arch}")

    @property
    def strategies(self) -> tuple[str, ...]:
        return VOCABULARIES[self.vocab]


def parse_list(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """Comma-separated names, each one of `allowed`; ValueError naming the option otherwise."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise ValueError(f"{option} {text!r}: choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def parse_epochs(text: str | int | None) -> dict[str, int]:
    """`--gen-epochs`: "20" -> {"*": 20}; "global=20,inpaint=100" -> per kind; None -> {} (the presets')."""
    if text is None:
        return {}
    out = {}
    for item in (s.strip() for s in str(text).split(",") if s.strip()):
        kind, _, value = item.rpartition("=")
        if kind and kind not in KINDS or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--gen-epochs {text!r}: expected N or KIND=N,... with KIND in {', '.join(KINDS)}")
        out[kind or "*"] = int(value)
    return out


def parse_datasets(text: str) -> list[DatasetSpec]:
    """`NAME:CATEGORY[:ROOT]`, comma-separated, e.g. `toybox:tray,mvtec:hazelnut:../shared/data/hazelnut_toy`."""
    specs = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        parts = item.split(":", 2)
        if len(parts) < 2 or not all(parts[:2]):
            raise ValueError(f"--datasets {item!r}: expected NAME:CATEGORY[:ROOT]")
        specs.append(DatasetSpec(parts[0], parts[1], Path(parts[2]) if len(parts) == 3 else None))
    return specs


# Strategy vocabularies: the paper's edits (today's default list) and the logical taxonomy of issue 23, whose
# part-level pixel edits (synth/edit/parts.py) replace `remove` and `replace` beside the same structural ones.
VOCABULARIES = {
    "paper": ("remove", "replace", "merge", "stroke", "chip", "colour"),
    "taxonomy": ("remove_part", "move", "swap", "resize", "recolour", "replace_part", "merge", "stroke", "chip",
                 "colour"),
    "full": ("remove", "replace", "merge", "remove_part", "move", "swap", "resize", "recolour", "replace_part",
             "stroke", "chip", "colour"),
}



def configurations(synthesizers: list[str], kinds: list[str], edges: list[str],
                   archs: tuple[str, ...] | list[str] = ("paper",),
                   vocabs: tuple[str, ...] | list[str] = ("paper",)) -> list[Config]:
    """Every (synthesizer, kind, edges, vocabulary, arch); Perlin once per arch (it uses no vocabulary)."""
    out = []
    for s in synthesizers:
        if s == "perlin":
            out += [Config(s, arch=a) for a in archs]
        else:
            out += [Config(s, k, e, v, a) for k in kinds for e in edges for v in vocabs for a in archs]
    return out


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("logical-synth")
    return [str(exe)] if exe.is_file() else [shutil.which("logical-synth") or "logical-synth"]


def fit_generator(args: argparse.Namespace, spec: DatasetSpec, kind: str, edges: str
                  ) -> tuple[Path | None, str | None]:
    """(checkpoint, None), or (None, why it was skipped). Fitted once per dataset, kind and extractor."""
    path = args.out / spec.slug / f"generator-{kind}-{edges}.pt"
    if path.is_file():
        return path, None
    cmd = _cli() + ["fit-generator", "--dataset", spec.name, "--category", spec.category, "--preset", "tiny",
                    "--size", str(args.size), "--edges", edges, "--kind", kind, "--device", args.device,
                    "--out", str(path)]
    if spec.root is not None:
        cmd += ["--root", str(spec.root)]
    epochs = args.gen_epochs.get(kind, args.gen_epochs.get("*"))
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if edges == "pidinet":
        cmd += ["--pidinet-weights", str(args.pidinet_weights)]
    print(f"  fitting {kind}/{edges} generator on {spec.slug}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        return None, f"{kind}/{edges} generator on {spec.slug} skipped: fit-generator failed: {last[0]}"
    return path, None


def cached(args: argparse.Namespace, spec: DatasetSpec, config: Config, seed: int) -> dict | None:
    """The metrics of a finished run in --out, else None."""
    result_path = args.out / spec.slug / f"{config.slug}-seed{seed}" / "eval" / "metrics.json"
    return json.loads(result_path.read_text())["metrics"] if result_path.is_file() else None


def run_one(args: argparse.Namespace, spec: DatasetSpec, config: Config, generator: Path | None,
            seed: int) -> dict:
    """Build, train and evaluate once; the metrics are cached in the run folder."""
    from synth.build import build

    done = cached(args, spec, config, seed)
    if done is not None:
        return done
    run = args.out / spec.slug / f"{config.slug}-seed{seed}"
    data = args.out / spec.slug / f"{config.data_slug}-seed{seed}" / "data"   # shared by the archs
    t0 = time.perf_counter()
    build(spec.name, spec.root, [spec.category], n=args.n, size=args.size, out=data, seed=seed,
          shard_size=args.shard_size, workers=args.workers, generator=generator,
          edges=config.edges or "classic", pidinet_weights=args.pidinet_weights if config.edges == "pidinet"
          else None, synthesizer=config.synthesizer, device=args.device, strategies=config.strategies,
          regions=args.regions)
    t1 = time.perf_counter()
    metrics = train_and_evaluate(args, spec, data / spec.name / spec.category, run, seed, config.arch)
    print(f"  {spec.slug} {config.slug} seed {seed}: build {t1 - t0:.0f} s, train + eval "
          f"{time.perf_counter() - t1:.0f} s", flush=True)
    return metrics


def train_and_evaluate(args: argparse.Namespace, spec: DatasetSpec, data: Path, run: Path, seed: int,
                       arch: str = "paper") -> dict:
    """Train the compared model (`arch`) at the compared budget on the generated dataset `data` (model in
    run/model), evaluate it on spec's real test split (run/eval); its metrics. Shared with benchmarks/oracle.py."""
    from train.evaluate import evaluate
    from train.loop import TrainConfig, train

    cfg = TrainConfig(shards=data, out=run / "model", steps=args.steps, batch_size=args.batch_size,
                      preset=args.preset, size=args.size, arch=arch, workers=args.loader_workers, seed=seed,
                      device=args.device, resume=True, lr=args.lr)
    checkpoint = train(cfg)
    return evaluate(checkpoint, spec.name, spec.root, spec.category, run / "eval", device=args.device)["metrics"]


def scores(metrics: dict) -> dict[str, float | None]:
    """The table's columns from one run's metrics (LOCO layout: mean / logical / structural; else all)."""
    def get(split: str, key: str):
        value = metrics.get(split, {}).get(key)
        return None if value is None else float(value)

    if "logical" in metrics or "structural" in metrics or "mean" in metrics:
        main = ("mean", "image_auroc"), ("mean", "au_spro")
        extra = [get(s, k) for s in ("logical", "structural") for k in ("image_auroc", "au_spro")]
    else:
        main = ("all", "image_auroc"), ("all", "aupro")
        extra = [None] * 4
    return dict(zip(COLUMNS, [get(*main[0]), get(*main[1]), *extra], strict=True))


def summarise(runs: list[dict]) -> dict[str, tuple[float, float] | None]:
    """Per column: (mean, std) in percent over the runs that have it, else None."""
    out = {}
    for col in COLUMNS:
        vals = np.array([s[col] for s in map(scores, runs) if s[col] is not None], float)
        out[col] = (float(100 * vals.mean()), float(100 * vals.std())) if vals.size else None
    return out


def table(rows: list[tuple[DatasetSpec, Config, list[dict]]]) -> str:
    """Markdown, one row per (dataset, configuration): mean ± std over seeds, percent; then the ranking."""
    head = "| dataset | synthesizer | generator | edges | vocab | arch | seeds | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 7) + "|"]
    for spec, config, runs in rows:
        summary = summarise(runs)
        cells = [f"{v[0]:.1f} ± {v[1]:.1f}" if v else "–" for v in (summary[c] for c in COLUMNS)]
        lines.append(f"| {spec.name}/{spec.category} | {config.synthesizer} | {config.kind or '–'} | "
                     f"{config.edges or '–'} | {config.vocab if config.kind else '–'} | {config.arch} | "
                     f"{len(runs)} | " + " | ".join(cells) + " |")
    ranked = ranking(rows)
    if ranked:
        lines += ["", "Ranking (mean over datasets of (image AUROC + localization) / 2): " + ", ".join(
            f"{c.slug} {v:.1f}" for c, v in ranked)]
    return "\n".join(lines)


def compare(args: argparse.Namespace) -> tuple[list[tuple[DatasetSpec, Config, list[dict]]], list[str]]:
    """Run every (dataset, configuration, seed); (rows of (dataset, configuration, each seed's metrics),
    skip notes)."""
    configs = configurations(args.synthesizers, args.generator_kind, args.edges, args.arch, args.vocab)
    rows, notes = [], []
    for spec in args.datasets:
        for config in configs:
            if args.cached:
                runs = [m for m in (cached(args, spec, config, seed) for seed in args.seeds) if m is not None]
                if runs:
                    rows.append((spec, config, runs))
                continue
            generator = args.generator
            if config.kind is not None and generator is None:
                generator, why = fit_generator(args, spec, config.kind, config.edges)
                if why:
                    print(f"note: {why}", flush=True)
                    notes.append(why)
                    continue
            runs = [run_one(args, spec, config, generator, seed) for seed in args.seeds]
            rows.append((spec, config, runs))
    return rows, notes


def ranking(rows: list[tuple[DatasetSpec, Config, list[dict]]]) -> list[tuple[Config, float]]:
    """(configuration, score) best first; score = mean over datasets of (image AUROC + localization) / 2 in
    percent, from the per-dataset means over seeds. Configurations missing on a dataset are left out."""
    datasets = {spec for spec, _, _ in rows}
    per: dict[Config, dict[DatasetSpec, float]] = {}
    for spec, config, runs in rows:
        summary = summarise(runs)
        image, local = summary[COLUMNS[0]], summary[COLUMNS[1]]
        if image is not None and local is not None:
            per.setdefault(config, {})[spec] = (image[0] + local[0]) / 2
    scored = [(c, float(np.mean(list(d.values())))) for c, d in per.items() if set(d) == datasets]
    return sorted(scored, key=lambda cs: -cs[1])


def record(args: argparse.Namespace, rows: list[tuple[DatasetSpec, Config, list[dict]]], argv: list[str]
           ) -> dict:
    """Everything a reader needs to trust the choice: command, date, budget, each run's scores, the
    ranking, and the best configuration (the best one with a generator gives the generator kind and edges)."""
    ranked = ranking(rows)
    best = ranked[0][0] if ranked else None
    with_generator = next((c for c, _ in ranked if c.kind is not None), None)
    return {
        "command": "python benchmarks/compare_synthesizers.py " + " ".join(argv),
        "date": datetime.date.today().isoformat(),
        "budget": {k: getattr(args, k) for k in ("n", "size", "preset", "steps", "batch_size", "gen_epochs",
                                                  "seeds")},
        "rows": [{"dataset": spec.slug, **_axes(c), "runs": [scores(r) for r in runs],
                  "summary": summarise(runs)} for spec, c, runs in rows],
        "ranking": [{**_axes(c), "score": round(v, 2)} for c, v in ranked],
        "best": None if best is None else {
            "synthesizer": best.synthesizer,
            "kind": with_generator.kind if with_generator else None,
            "edges": with_generator.edges if with_generator else None,
            "vocab": with_generator.vocab if with_generator else None,
            "strategies": list(with_generator.strategies) if with_generator else None},
    }


def _axes(c: Config) -> dict:
    """A configuration as the record names it (vocabulary and arch only where not the paper's)."""
    return {"synthesizer": c.synthesizer, "kind": c.kind, "edges": c.edges,
            **({} if c.vocab == "paper" else {"vocab": c.vocab}), **({} if c.arch == "paper" else {"arch": c.arch})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=None,
                   help="NAME:CATEGORY[:ROOT], comma-separated (default: --dataset/--category/--root)")
    p.add_argument("--dataset", default="toybox")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--category", default="tray")
    p.add_argument("--synthesizers", default=",".join(SYNTHESIZERS), help="comma-separated: logical,perlin,both")
    p.add_argument("--generator-kind", default="global", help="comma-separated generator kinds: global,inpaint")
    p.add_argument("--edges", default="classic", help="comma-separated edge extractors: classic,pidinet")
    p.add_argument("--vocab", default="paper",
                   help="comma-separated strategy vocabularies: " + ", ".join(
                       f"{k} ({','.join(v)})" for k, v in VOCABULARIES.items()))
    p.add_argument("--arch", default="paper", help="comma-separated networks: " + ",".join(ARCHS))
    p.add_argument("--pidinet-weights", type=Path, default=None, help="table5_pidinet.pth for --edges pidinet")
    p.add_argument("--regions", type=Path, default=None,
                   help="part label folder for build --regions (one dataset; use its own --out: runs are named alike)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=2000, help="generated samples per run")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=700, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the preset's)")
    p.add_argument("--shard-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=2, help="build workers")
    p.add_argument("--loader-workers", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--gen-epochs", default=None,
                   help="generator epochs: N for every kind, or per kind, e.g. global=20,inpaint=100 (default: "
                        "the tiny preset's for that kind)")
    p.add_argument("--generator", type=Path, default=None,
                   help="one fitted generator for every configuration (default: fit one per kind and edges)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: " + ", ".join(f"{k}={v}" for k, v in TINY.items()) + " (overrides those)")
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--cached", action="store_true",
                   help="run nothing: table, ranking and record from the finished runs in --out (each row says "
                        "how many seeds it has)")
    p.add_argument("--record", type=Path, default=None,
                   help="also write the record (runs, ranking, best) here, e.g. benchmarks/results/defaults.json")
    args = p.parse_args(argv)
    try:
        args.synthesizers = parse_list(args.synthesizers, SYNTHESIZERS, "--synthesizers")
        args.generator_kind = parse_list(args.generator_kind, KINDS, "--generator-kind")
        args.edges = parse_list(args.edges, EDGES, "--edges")
        args.vocab = tuple(parse_list(args.vocab, tuple(VOCABULARIES), "--vocab"))
        args.arch = parse_list(args.arch, ARCHS, "--arch")
        args.datasets = (parse_datasets(args.datasets) if args.datasets
                         else [DatasetSpec(args.dataset, args.category, args.root)])
    except ValueError as e:
        p.error(str(e))
    if "pidinet" in args.edges and (args.pidinet_weights is None or not args.pidinet_weights.is_file()):
        p.error(f"--edges pidinet needs --pidinet-weights FILE (got {args.pidinet_weights})")
    if args.generator is not None and (len(args.generator_kind) > 1 or len(args.edges) > 1):
        p.error("--generator is one checkpoint: give one --generator-kind and one --edges with it")
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    try:
        args.gen_epochs = parse_epochs(args.gen_epochs)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    rows, notes = compare(args)
    names = ", ".join(d.slug for d in args.datasets)
    text = (f"{names}: {args.preset} @ {args.size}px, {args.n} samples, {args.steps} steps, seeds {args.seeds}"
            + ("\n\n" + table(rows) if rows else "\n\n(no configuration ran)")
            + "".join(f"\n- {note}" for note in notes))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    result = json.dumps(record(args, rows, argv), indent=1) + "\n"
    (args.out / "table.json").write_text(result)
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(result)
    print(text)
    return text


if __name__ == "__main__":
    main()
