"""The oracle ceiling (issue 23): the compared model trained at the compared budget on the toybox drawing code's
own test-style defects (`logical-synth import --toybox-oracle`, each defect with the normal twin it was drawn
from), evaluated on the real test split like every row of benchmarks/compare_synthesizers.py.

Its scores are the most a synthesizer can give this localizer at this budget. The budget, the train and eval
functions and the table are compare_synthesizers.py's (same options, same defaults: 2,000 samples, `small` @
128 px, 700 steps); the oracle set has as many samples as a build. Runs are cached in
--out/<dataset-category>/oracle-seed<S>/ (eval/metrics.json); `oracle.md` and `oracle.json` (the table.json
form, synthesizer "oracle") go to --out, beside compare's table.json when --out is the same folder. Then
`benchmarks/defect_breakdown.py MODEL.pt --oracle ORACLE/model/model.pt` gives each defect type as a share of
the oracle.

    nice python benchmarks/oracle.py --category tray --seeds 0 --out runs/compare
    python benchmarks/oracle.py --tiny --out /tmp/oracle     # a smoke test, not a measurement
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_synthesizers import Config, DatasetSpec, cached, parse_args, record, table, train_and_evaluate  # noqa: E402

ORACLE = Config("oracle")


def run_oracle(args, spec: DatasetSpec, seed: int) -> dict:
    """Import the oracle set (seed `seed`, args.n samples at args.size), train and evaluate; cached metrics."""
    from synth.importing import toybox_oracle

    done = cached(args, spec, ORACLE, seed)
    if done is not None:
        return done
    if spec.name != "toybox":
        raise SystemExit(f"oracle: {spec.slug}: only toybox categories have an oracle (their drawing code)")
    run = args.out / spec.slug / f"{ORACLE.slug}-seed{seed}"
    t0 = time.perf_counter()
    data = toybox_oracle(run / "data", spec.category, args.n, seed, args.size, args.shard_size)
    t1 = time.perf_counter()
    metrics = train_and_evaluate(args, spec, data, run, seed)
    print(f"  {spec.slug} oracle seed {seed}: import {t1 - t0:.0f} s, train + eval "
          f"{time.perf_counter() - t1:.0f} s", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    rows = [(spec, ORACLE, [run_oracle(args, spec, seed) for seed in args.seeds]) for spec in args.datasets]
    names = ", ".join(d.slug for d in args.datasets)
    text = (f"oracle, {names}: {args.preset} @ {args.size}px, {args.n} samples, {args.steps} steps, "
            f"seeds {args.seeds}\n\n" + table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oracle.md").write_text(text + "\n")
    result = record(args, rows, argv)
    result["command"] = "python benchmarks/oracle.py " + " ".join(argv)
    (args.out / "oracle.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
