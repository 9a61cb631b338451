"""`logical-synth`: scan, fit-generator, build, show, pack, verify, inspect, export, import."""

import click

from synth import __version__, defaults
from synth.console import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logical-synth")
def cli() -> None:
    """Generate synthetic logical and structural anomalies (LogicAL) from normal images."""


# Commands are added below, one section per command.


def dataset_options(command):
    """The --dataset/--root pair every command that reads a raw dataset takes."""
    command = click.option("--root", type=click.Path(), default=None,
                           help="Dataset root (default data/raw/<dataset>; toybox: data/raw/toybox, "
                                "written on first use).")(command)
    return click.option("--dataset", required=True,
                        help="Dataset kind: mvtec, mvtec_loco, visa, madsim, folder or toybox.")(command)


# ---- fit-generator (generator helper)
@cli.command("fit-generator")
@dataset_options
@click.option("--category", required=True, help="Category whose normal images the generator learns.")
@click.option("--preset", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="Network size: tiny (CPU demo, 128 px) or base (paper setting, 256 px).")
@click.option("--size", type=click.IntRange(min=16), default=None,
              help="Image size in pixels (default: the preset's).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (default: tiny 30, base 300; the inpaint kind tiny 100, base 300).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per step (default: tiny 4, base 16).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to write (default data/<dataset>/<category>/generator.pt).")
@click.option("--resume", is_flag=True, help="Continue from the training state saved next to --out (<stem>.train.pt).")
@click.option("--edges", type=click.Choice(["classic", "pidinet"]), default=defaults.EDGES, show_default=True,
              help="Edge extractor the generator is fitted on (build must use the same).")
@click.option("--pidinet-weights", type=click.Path(), default=None,
              help="PiDiNet checkpoint (table5_pidinet.pth) for --edges pidinet.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train: auto uses CUDA when present.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for weights, held-out split and augmentation.")
@click.option("--kind", type=click.Choice(["global", "inpaint"]), default=defaults.GENERATOR_KIND, show_default=True,
              help="global: the paper's pix2pixHD, the whole image from edges; inpaint: repaints only the edit's "
                   "hole from the image around it and the edges (EdgeConnect-style, ours).")
def fit_generator_command(dataset: str, root: str | None, category: str, preset: str, size: int | None,
                          epochs: int | None, batch_size: int | None, out: str | None, resume: bool,
                          edges: str, pidinet_weights: str | None, device: str, seed: int,
                          kind: str) -> None:
    """Fit the edge-to-image generator on a category's normal images; prints the checkpoint path.

    Quality (SSIM of G(edges) to the image) is measured on validation normals, else on 10% of the train
    images held out (1 to 32). Fewer than 10 train images: a warning (the generator will be weak), fitted on
    all of them, quality measured on those training images and labelled so.
    """
    from pathlib import Path

    from synth.render.fitting import fit_for_category  # holds the write lock of its --out (synth.lock)

    def opt_path(p: str | None) -> Path | None:
        return Path(p) if p else None

    written = fit_for_category(dataset, opt_path(root), category, size, preset, epochs, opt_path(out), edges,
                               opt_path(pidinet_weights), batch_size=batch_size, resume=resume, seed=seed,
                               device=device, kind=kind)
    click.echo(str(written))


# --- pack, verify, inspect, export: sharing generated datasets (synth.store: archive, inspect, export) ---


@cli.command("pack")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Archive to write (default ./<dataset>-<category>.tar).")
@click.option("--with-generator", is_flag=True, help="Include generator.pt (the generator used to build it).")
def pack_command(dataset_dir: str, out: str | None, with_generator: bool) -> None:
    """Pack a generated dataset into a plain tar (manifest.json first, DATASET.md, sources, shards)."""
    from pathlib import Path

    from synth.store.archive import archive_identity, pack_dataset

    written = pack_dataset(Path(dataset_dir), Path(out) if out else None, with_generator)
    click.echo(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")
    click.echo(f"identity (sha256 of its manifest.json): {archive_identity(written)}")
    click.echo(f"publish it next to the download; receivers check with: logical-synth verify {written.name} "
               f"--expect {archive_identity(written)}")


@cli.command("verify")
@click.argument("path", type=click.Path())
@click.option("--expect", default=None, metavar="SHA256",
              help="Identity the sender published (printed by pack): refuse an archive whose manifest differs.")
def verify_command(path: str, expect: str | None) -> None:
    """Check a generated dataset (directory or .tar): every file, size, sha256, schema and sample count."""
    from pathlib import Path

    from synth.store.archive import check_identity, verify_path

    if expect is not None:
        check_identity(Path(path), expect)
    result = verify_path(Path(path))
    if result.problems:
        listing = "\n  ".join(result.problems)
        raise click.ClickException(f"{path}: {len(result.problems)} problem(s):\n  {listing}")
    click.echo(f"OK: {result.samples} samples, {result.files} files verified")


@cli.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="Also write a contact sheet PNG (normal | anomaly | mask overlay per row).")
@click.option("--n", "n", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Samples on the contact sheet.")
def inspect_command(path: str, as_json: bool, sheet: str | None, n: int) -> None:
    """Summarise a generated dataset (directory or .tar): counts, mask areas, size, config, rejections."""
    import json
    from pathlib import Path

    from synth.console import say
    from synth.store.inspect import format_summary, inspect_path, write_sheet

    summary = inspect_path(Path(path))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
    if sheet:
        say(f"wrote {write_sheet(Path(path), Path(sheet), n)}")


@cli.command("export")
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["mvtec", "hf"]), default="mvtec", show_default=True,
              help="mvtec: PNG folders train/good, test/<strategy>, ground_truth/<strategy>; hf: Parquet files "
                   "and a dataset card for Hugging Face `datasets` (needs pip install 'logical[hub]').")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="mvtec: folder that receives <category>/ (like an MVTec AD root); hf: the folder to write "
                   "(new or empty).")
def export_command(path: str, fmt: str, out: str) -> None:
    """Export a generated dataset (directory or .tar) as PNG folders for anomalib's MVTec/Folder loaders, or
    as a Hugging Face dataset folder (upload it with the Hub's CLI: see the README)."""
    from pathlib import Path

    from synth.lock import file_lock, folder_lock
    from synth.store.export import export_mvtec

    if fmt == "hf":  # its --out must be new or empty (written aside, then renamed): the lock lives beside it
        from synth.console import say
        from synth.store.export_hf import export_hf

        with file_lock(Path(out)):
            written = export_hf(Path(path), Path(out))
        say(f"publish with the Hub's CLI: hf upload USER/REPO {written} . --repo-type dataset")
        click.echo(str(written))
        return

    with folder_lock(Path(out)):
        click.echo(str(export_mvtec(Path(path), Path(out))))


# ---- build (build helper)
@cli.command("build")
@dataset_options
@click.option("--category", "categories", multiple=True,
              help="Category to build (repeat for several; default: every category).")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Samples per category.")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Side of the square images, in pixels.")
@click.option("--out", type=click.Path(file_okay=False), default="data", show_default=True,
              help="Output root; each category goes to <out>/<dataset>/<category>/.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Global seed: sample i depends only on (seed, category, i).")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples per shard file (shard k holds samples [k*S, (k+1)*S)).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel processes (loky) or local dask workers; the output does not depend on it.")
@click.option("--generator", type=click.Path(dir_okay=False), default=None,
              help="Generator (default <out>/<dataset>/<category>/generator.pt; fitted if missing).")
@click.option("--edges", type=click.Choice(["classic", "pidinet"]), default=defaults.EDGES, show_default=True,
              help="Edge extractor (the generator must have been fitted on the same).")
@click.option("--pidinet-weights", type=click.Path(dir_okay=False), default=None,
              help="PiDiNet checkpoint (table5_pidinet.pth) for --edges pidinet.")
@click.option("--strategies", default=None,
              help=f"Comma-separated edit strategies (default: {','.join(defaults.STRATEGIES)}, measured "
                   "best: BENCHMARKS.md). All: remove, replace, merge (the paper's edge edits: missing, wrong, "
                   "extra part), the whole-part logical edits painted with real pixels: remove_part (a whole part "
                   "missing), move (misplaced), swap (two parts exchanged), resize (stretched or shrunk along its "
                   "axis), recolour (the colour of the same part in another normal image), replace_part (an unlike "
                   "part of another normal image); structural: stroke, chip, colour, jitter, warp.")
@click.option("--mix", default=defaults.MIX, show_default=True,
              help="Weights of the anomaly kinds for the logical synthesizer.")
@click.option("--synthesizer", type=click.Choice(["logical", "perlin", "both"]), default=defaults.SYNTHESIZER,
              show_default=True,
              help="logical (edge edits + generator), perlin (DRAEM baseline), or both (half each). The "
                   "default is the one benchmarks/compare_synthesizers.py measured best (BENCHMARKS.md).")
@click.option("--shards", default=None,
              help="Make only shards A-B (inclusive), e.g. for a Slurm array task; then run --finalize.")
@click.option("--finalize", is_flag=True, help="Check every shard and write manifest.json.")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True,
              help="Process pool: loky (this machine) or dask (a cluster; see --scheduler).")
@click.option("--scheduler", default=None,
              help="Dask scheduler address tcp://HOST:PORT (with --backend dask; default: a local cluster).")
@click.option("--skip-bad", is_flag=True,
              help="Leave unreadable images out (listed in the report) and replace a sample whose planning "
                   "or compose raises by a Perlin anomaly (counted as 'failed' in the report) instead of "
                   "stopping.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the generator renders: auto uses CUDA when present.")
@click.option("--render", type=click.Choice(["auto", "inline", "server"]), default="auto",
              show_default=True,
              help="server: one render process owns the generator and every worker sends it batches (CPU "
                   "work overlaps inference; one model per device); inline: each worker loads its own. "
                   "auto: server on CUDA with local workers. The shards are the same either way.")
@click.option("--anomaly-source", type=click.Path(file_okay=False), default=None,
              help="Texture images for the Perlin synthesizer (DTD in DRAEM); default: the image itself.")
@click.option("--regions", type=click.Path(file_okay=False), default=None,
              help="Folder of part label images, one <stem>.png per normal image (0 = background, 1..K = "
                   "parts; e.g. from SAM), used instead of the classical semantic regions.")
def build_command(dataset: str, root: str | None, categories: tuple[str, ...], n: int, size: int, out: str,
                  seed: int, shard_size: int, workers: int, generator: str | None, edges: str,
                  pidinet_weights: str | None, strategies: str | None, mix: str, synthesizer: str,
                  shards: str | None, finalize: bool, backend: str, scheduler: str | None, skip_bad: bool,
                  device: str, render: str, anomaly_source: str | None, regions: str | None) -> None:
    """Build generated datasets: prepare sources once, then make shards in parallel (resumable)."""
    from pathlib import Path

    from synth.build import build, format_report

    def opt_path(p: str | None) -> Path | None:
        return Path(p) if p else None

    reports = build(dataset, opt_path(root), list(categories) or None, n, size, Path(out), seed, shard_size,
                    workers, opt_path(generator), edges, opt_path(pidinet_weights), strategies, mix,
                    synthesizer, shards, finalize, backend, scheduler, skip_bad, device,
                    opt_path(anomaly_source), render, opt_path(regions))
    click.echo(format_report(reports))


# ---- scan (datasets helper)
@cli.command("scan")
@dataset_options
@click.option("--category", default=None, help="Scan only this category (default: every category).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object instead of a table.")
def scan_command(dataset: str, root: str | None, category: str | None, as_json: bool) -> None:
    """Check a dataset on disk: images per split, masks, image sizes and every problem found.

    Every image and mask is decoded. Exit code 0 when no problems are found, 1 when there are any (listed).
    """
    import json
    from pathlib import Path

    from synth.datasets import open_dataset
    from synth.datasets.scan import format_report, has_problems, scan_dataset

    report = scan_dataset(open_dataset(dataset, Path(root) if root else None), category)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if has_problems(report):
        raise SystemExit(1)


# ---- show (synthesis-core helper)
@cli.command("show")
@dataset_options
@click.option("--category", default=None, help="Category to preview (default: the dataset's first).")
@click.option("--n", "n", type=click.IntRange(min=1), default=16, show_default=True,
              help="Samples (rows) on the sheet.")
@click.option("--out", type=click.Path(), default="sheet.png", show_default=True,
              help="PNG contact sheet to write.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of every random choice; as in build, sample i depends only on (seed, category, i).")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Square image size in pixels.")
@click.option("--strategies", default=",".join(("remove", "replace", "merge", "stroke", "chip")),
              show_default=True,
              help="Comma-separated edit strategies, used in turn (also: jitter, colour, warp, remove_part, move, "
                   "swap, resize, recolour), or `all`: every strategy, one row each (use --n to see them all).")
@click.option("--edges", type=click.Choice(["classic", "pidinet"]), default=defaults.EDGES, show_default=True,
              help="Edge extractor (must match the generator's).")
@click.option("--pidinet-weights", type=click.Path(), default=None,
              help="PiDiNet checkpoint (table5_pidinet.pth) for --edges pidinet.")
@click.option("--generator", type=click.Path(), default=None,
              help="Fitted generator (default data/<dataset>/<category>/generator.pt; stand-in when absent).")
@click.option("--regions", type=click.Path(file_okay=False), default=None,
              help="Folder of part label images, one <stem>.png per normal image (0 = background, 1..K = "
                   "parts; e.g. from SAM), used instead of the classical semantic regions.")
def show_command(dataset: str, root: str | None, category: str | None, n: int, out: str, seed: int, size: int,
                 strategies: str, edges: str, pidinet_weights: str | None, generator: str | None,
                 regions: str | None) -> None:
    """Preview synthetic anomalies: per row normal edge | anomaly edge | target mask | anomaly | normal."""
    from pathlib import Path

    from synth.console import say
    from synth.edit.strategies import STRATEGIES
    from synth.preview import run_show

    names = list(STRATEGIES) if strategies.strip() == "all" else [s.strip() for s in strategies.split(",")
                                                                    if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if not names or unknown:
        raise click.BadParameter(f"unknown {unknown or names}; choose from {', '.join(STRATEGIES)}",
                                 param_hint="--strategies")
    def opt(p: str | None) -> Path | None:
        return Path(p) if p else None

    path, standin, notes = run_show(dataset, opt(root), category, n, Path(out), seed, size, names, edges,
                                    opt(pidinet_weights), opt(generator), opt(regions))
    if standin:
        say("note: no fitted generator found; the sheet shows the STAND-IN renderer (edges painted on a "
            "blurred normal image), not the method's generator. Fit one with `logical-synth fit-generator`.")
    retried = sum(1 for *_, tries in notes if tries > 1)
    fallback = sum(1 for _, strategy, *_ in notes if strategy == "perlin")
    click.echo(f"{path} ({len(notes)} samples, {retried} needed retries, {fallback} fell back to perlin)")


# ---- import (synth.importing)
@cli.command("import")
@click.option("--toybox-oracle", "oracle", default=None, metavar="CATEGORY",
              help="Toybox category (tray, bag, bottle): its drawing code's own test-style defects, each with the "
                   "normal twin it was drawn from (the oracle ceiling; benchmarks/oracle.py).")
@click.option("--from", "folder", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of your labelled defects: anomaly/NAME.png, mask/NAME.png (> 0 = defect, same size) and "
                   "optionally normal/NAME.png, the same scene without the defect. Without a normal image the "
                   "reconstruction targets of that sample are masked out in training.")
@click.option("--n", "n", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Samples (--toybox-oracle; --from imports every image).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the oracle's scenes.")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Side of the square images, in pixels.")
@click.option("--kind", type=click.Choice(["logical", "structural"]), default="logical", show_default=True,
              help="Kind recorded for --from samples.")
@click.option("--shard-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Samples per shard file.")
@click.option("--edges", type=click.Choice(["classic", "pidinet"]), default=defaults.EDGES, show_default=True,
              help="Edge extractor for the normals' edge maps (the edge head's target).")
@click.option("--pidinet-weights", type=click.Path(), default=None, help="PiDiNet checkpoint for --edges pidinet.")
@click.option("--out", type=click.Path(file_okay=False), default="data", show_default=True,
              help="Output root: <out>/toybox-oracle/<category>/ or <out>/import/<folder name>/.")
def import_command(oracle: str | None, folder: str | None, n: int, seed: int, size: int, kind: str,
                   shard_size: int, edges: str, pidinet_weights: str | None, out: str) -> None:
    """Turn labelled defect images into a generated dataset that `logical-train --shards` reads; prints its path."""
    from pathlib import Path

    from synth.importing import labelled_folder, toybox_oracle

    if (oracle is None) == (folder is None):
        raise click.UsageError("give exactly one of --toybox-oracle CATEGORY and --from FOLDER")
    weights = Path(pidinet_weights) if pidinet_weights else None
    if oracle is not None:
        written = toybox_oracle(Path(out), oracle, n, seed, size, shard_size, edges, weights)
    else:
        written = labelled_folder(Path(folder), Path(out), size, kind, shard_size, edges, weights, seed)
    click.echo(str(written))


def main() -> None:
    cli()
