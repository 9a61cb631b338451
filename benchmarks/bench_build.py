"""Speed and memory of `logical-synth build` on toybox at 256x256 (prints numbers; no assertions).

    .venv/bin/python benchmarks/bench_build.py        # everything (the 20,000-sample RSS run is long)
    .venv/bin/python benchmarks/bench_build.py --rss-n 2000 4000 --n 200 --skip-logical

Prints: end-to-end samples/s (logical synthesizer with a tiny generator, and Perlin), the generate stage's
speed-up from 1 to 2 workers, CPU milliseconds per sample by stage, and the peak RSS of whole builds at two
sizes of --n (each in its own process, read from ru_maxrss). Goals: 2 workers >= 1.8x one worker on the CPU
stages; peak RSS grows < 10% from n=2,000 to n=20,000; the logical synthesizer's CPU work per sample (plan +
compose, without the render) no slower than Perlin's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RSS_SCRIPT = r"""
import json, resource, sys
from pathlib import Path
from synth.build import build
root, out, n, size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = build("toybox", root, ["tray"], n, size=size, out=out, shard_size=1000, workers=1, synthesizer="perlin")
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "samples": r["tray"]["counts"]["samples"], "seconds": r["tray"]["seconds"]}))
"""


def run(root: Path, out: Path, **kw) -> dict:
    from synth.build import build

    t = time.perf_counter()
    report = build("toybox", root, ["tray"], out=out, **kw)["tray"]
    report["wall"] = time.perf_counter() - t
    return report


def per_sample_ms(report: dict) -> dict:
    n = report["counts"]["samples"]
    return {k: round(1000 * v / n, 2) for k, v in report["shard_cpu_seconds"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=400, help="samples for the speed runs")
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--rss-n", type=int, nargs=2, default=[2000, 20000], help="the two --n of the RSS runs")
    ap.add_argument("--generator", type=Path, default=None, help="reuse a generator fitted at --size")
    ap.add_argument("--skip-logical", action="store_true", help="no logical-synthesizer runs")
    ap.add_argument("--skip-perlin", action="store_true", help="no Perlin speed runs")
    ap.add_argument("--toybox", type=Path, default=None, help="reuse a materialised toybox root")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the generator renders (cuda on a GPU machine)")
    args = ap.parse_args()

    import torch

    from synth.datasets.toybox import materialise

    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    root = materialise(args.toybox or work / "toybox", seed=0)
    print(f"# toybox at {root}; size {args.size}; load average {os.getloadavg()}; cpus {os.cpu_count()}")
    common = {"n": args.n, "size": args.size, "shard_size": args.shard_size, "device": args.device}

    perlin = {}
    for w in () if args.skip_perlin else (1, 2):
        perlin[w] = run(root, work / f"perlin{w}", workers=w, synthesizer="perlin", **common)
        print(f"perlin  workers={w}: generate {perlin[w]['seconds']['generate']:.2f} s, "
              f"{perlin[w]['samples_per_second']:.1f} samples/s (end-to-end wall {perlin[w]['wall']:.1f} s)")
    if perlin:
        print(f"perlin  speed-up 1->2 workers (generate stage): "
              f"{perlin[1]['seconds']['generate'] / perlin[2]['seconds']['generate']:.2f}x")
        print(f"perlin  CPU ms/sample by stage: {per_sample_ms(perlin[1])}")

    if not args.skip_logical:
        gen = args.generator
        if gen is None:
            from synth.render.fitting import fit_for_category

            torch.set_num_threads(1)
            t = time.perf_counter()
            gen = fit_for_category("toybox", root, "tray", size=args.size, preset="tiny", epochs=1,
                                   out=work / "generator.pt", device="cpu", progress=False)
            torch.set_num_threads(os.cpu_count() or 1)
            print(f"# tiny generator fitted in {time.perf_counter() - t:.0f} s (1 epoch)")
        logical = {}
        for w in (1, 2):
            logical[w] = run(root, work / f"logical{w}", workers=w, generator=gen, **common)
            print(f"logical workers={w}: generate {logical[w]['seconds']['generate']:.2f} s, "
                  f"{logical[w]['samples_per_second']:.1f} samples/s "
                  f"(end-to-end wall {logical[w]['wall']:.1f} s)")
        print(f"logical speed-up 1->2 workers (generate stage, render included): "
              f"{logical[1]['seconds']['generate'] / logical[2]['seconds']['generate']:.2f}x")
        served = run(root, work / "logical-served", workers=2, generator=gen, render="server", **common)
        print(f"logical workers=2, one render process: generate {served['seconds']['generate']:.2f} s, "
              f"{served['samples_per_second']:.1f} samples/s (inline: {logical[2]['samples_per_second']:.1f})")
        ms = per_sample_ms(logical[1])
        print(f"logical CPU ms/sample by stage: {ms}")
        cpu = ms.get("plan", 0) + ms.get("compose", 0)
        base = per_sample_ms(perlin[1]) if perlin else {}
        print(f"CPU work per sample without render (plan + compose): logical {cpu:.2f} ms vs perlin "
              f"{base.get('plan', 0) + base.get('compose', 0):.2f} ms")
        print(f"logical rejections: {logical[1]['counts']['rejections']}")

    if not args.skip_rss:
        rss = {}
        for n in args.rss_n:
            proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(root), str(work / f"rss{n}"), str(n),
                                   str(args.size)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            rss[n] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"peak RSS n={n}: {rss[n]['maxrss_mb']:.0f} MB ({rss[n]['seconds']})")
        a, b = args.rss_n
        growth = 100 * (rss[b]["maxrss_mb"] / rss[a]["maxrss_mb"] - 1)
        print(f"peak RSS growth n={a} -> n={b}: {growth:+.1f}%")
    print(f"# outputs left in {work}")


if __name__ == "__main__":
    main()
