"""`logical-train`: fit the localization network from shards; `eval` and `predict` with a checkpoint."""

import os
from pathlib import Path

import click

from synth import __version__
from synth.console import Group, say
from synth.lock import folder_lock


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logical-train")
@click.option("--shards", type=click.Path(path_type=Path),
              help="Generated dataset to train on: a directory with manifest.json, a .tar archive of one, or a "
                   "folder holding several (found at any depth): one model per category in <out>/<dataset>/"
                   "<category>/.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/model"), show_default=True,
              help="Run folder: model.pt (weights + config), last.pt (resume state), log.jsonl, loss.png.")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps in total (wins over --epochs).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Passes over the dataset; with neither --steps nor --epochs: 20000 steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per step and per process (DRAEM: 8).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam learning rate; x0.2 at 80% and 90% of the steps [default: 1e-4 for base as in DRAEM, "
                   "1e-3 for small].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto uses CUDA (bf16 autocast) when present.")
@click.option("--preset", type=click.Choice(["small", "base"]), default="base", show_default=True,
              help="base: DRAEM widths 128/64 at 256 px; small: ~200x cheaper, 128 px, for CPUs and demos.")
@click.option("--size", type=click.IntRange(min=16),
              help="Training resolution in pixels [default: the preset's].")
# train.model.ARCHS and DEFAULT_ARCH, spelt out so that --help does not import torch (tests/test_composition.py)
@click.option("--arch", type=click.Choice(["paper", "attention", "bottleneck", "composition"]), default="composition",
              show_default=True,
              help="paper: the paper's reconstruction + segmentation sub-networks; attention / bottleneck: plus a "
                   "trained global branch that sees the whole image (self-attention, or a whole-image bottleneck); "
                   "composition: the paper's network plus a branch fitted on the shards' normal images that counts "
                   "their parts by class and flags extra, missing and never-seen parts (logical anomalies). The "
                   "checkpoint records it.")
@click.option("--workers", type=click.IntRange(min=0), default=min(4, os.cpu_count() or 1),
              show_default="min(4, cores)",
              help="DataLoader worker processes per training process.")
@click.option("--normal-fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of items replaced by an unaltered normal image (mask empty).")
@click.option("--flips/--no-flips", default=False, show_default=True,
              help="Random flips (never for position-bound categories such as MVTec LOCO).")
@click.option("--jitter", type=click.FloatRange(0, 0.5), default=0.0, show_default=True,
              help="Brightness jitter: a factor in [1-j, 1+j], the same for input and target.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialisation, data order and mixing.")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Write model.pt and last.pt every this many steps (and at the end).")
@click.option("--resume", is_flag=True,
              help="Continue from <out>/last.pt when it exists (else start afresh).")
@click.option("--unified", is_flag=True,
              help="Data folder: one model over every category found (balanced sampling) into --out, "
                   "instead of one model per category into <out>/<dataset>/<category>/.")
@click.option("--only", multiple=True,
              help="Data folder: train only these categories (DATASET/CATEGORY or CATEGORY; repeat or comma).")
@click.option("--task-index", type=click.IntRange(min=0),
              help="Data folder: this task trains categories task-index, task-index + task-count, ... "
                   "(e.g. $SLURM_ARRAY_TASK_ID).")
@click.option("--task-count", type=click.IntRange(min=1), help="Data folder: number of tasks sharing the categories.")
@click.option("--expect", metavar="SHA256",
              help="Identity the sender published for --shards X.tar (printed by pack): refuse another archive.")
@click.option("--fpr", type=click.FloatRange(0, 1, max_open=True), default=0.01, show_default=True,
              help="After training, calibrate the decision thresholds at this false-reject rate on normals the "
                   "model never trained on (the dataset's validation normals, or those the build held out); "
                   "stored in model.pt.")
@click.pass_context
def cli(ctx: click.Context, shards: Path | None, out: Path, **options) -> None:
    """Train and evaluate the anomaly localization network.

    \b
    Train (no command):  logical-train --shards data/toybox/tray --out runs/tray --preset small --steps 1500
    A whole data folder: logical-train --shards data/ --out runs/   (one model per category, resumable)
    Evaluate / predict:  logical-train eval ...   |   logical-train predict ...   (see COMMAND --help)
    Deploy:              logical-train export --checkpoint runs/tray/model.pt --format onnx --out deploy/tray

    Training options go before a command name and apply only when no command is given. Under torchrun the
    run is distributed (DDP); --batch-size is per process.
    """
    if ctx.invoked_subcommand is not None:
        return
    if shards is None:
        raise click.UsageError("Missing option '--shards' (the generated dataset to train on).")
    from train.loop import TrainConfig  # torch loads only when training
    from train.runs import train_shards

    folder = {k: options.pop(k) for k in ("unified", "only", "task_index", "task_count")}
    if (expect := options.pop("expect")) is not None:
        from synth.store.archive import check_identity

        check_identity(shards, expect)
    fpr = options.pop("fpr")
    paths = train_shards(TrainConfig(shards=shards, out=out, **options), fpr=fpr, **folder)
    if os.environ.get("RANK", "0") == "0":
        for path in paths:
            say(f"model: {path}")


# Commands are added below, one section per command.


# --- eval (evaluation helper) ---------------------------------------------------------------------------

def _device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "auto":
        return value        # nothing to check, and no torch import (predict --model runs without torch)
    from train.evaluate import resolve_device

    try:
        resolve_device(value)
    except (RuntimeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@cli.command("eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="Trained model (model.pt of a training run), or the --out folder of a folder training run "
                   "(or a --unified model.pt): then every category is scored.")
@click.option("--dataset", type=click.Choice(["mvtec", "mvtec_loco", "visa", "madsim", "folder", "toybox"]),
              required=True, help="Layout of the real test data.")
@click.option("--root", type=click.Path(path_type=Path),
              help="Dataset root [default: data/raw/<dataset>; toybox: data/raw/toybox].")
@click.option("--category", help="Category to test [default: the only one, when the root holds one; "
                                "several: every category, one row each].")
@click.option("--out", type=click.Path(path_type=Path),
              help="Report folder: metrics.json, metrics.md, heatmaps/ "
                   "[default: runs/eval/<dataset>_<category>; every category: runs/eval/<dataset>].")
@click.option("--device", default="auto", show_default=True, callback=_device_option,
              help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Test images per forward pass.")
@click.option("--heatmaps", "n_heatmaps", type=click.IntRange(min=0), default=3, show_default=True,
              help="Figures for this many best- and worst-scored anomalies and highest-scored good images.")
@click.option("--fpr", type=click.FloatRange(0, 1, max_open=True),
              help="Calibrate the decision thresholds at this false-reject rate (on the dataset's validation "
                   "normals, else the normals the build held out) and store them in the checkpoint [default: "
                   "the thresholds stored; none stored: calibrate at 0.01].")
def eval_command(checkpoint: Path, dataset: str, root: Path | None, category: str | None, out: Path | None,
                 device: str, batch_size: int, n_heatmaps: int, fpr: float | None) -> None:
    """Score a checkpoint on a dataset's real test split and print the metrics table.

    MVTec LOCO layouts (and toybox): image AUROC and AU-sPRO (FPR 0.05) for logical and structural anomalies
    and their mean; other layouts: image AUROC, pixel AUROC, pixel AP and AUPRO (FPR 0.3). With calibrated
    thresholds also what they decide on the test split: false-reject rate on good images and miss rate per
    defect type. A folder training run (--checkpoint RUNS) or a unified model is scored on every category: one row each,
    the mean, and summary.png.
    """
    from synth.datasets import open_dataset
    from train.evaluate import evaluate, markdown_table

    if category is None and (checkpoint.is_dir() or len(open_dataset(dataset, root).categories()) != 1):
        _eval_runs(checkpoint, dataset, root, out, device, batch_size, n_heatmaps)
        return
    if checkpoint.is_dir():
        from train.evaluate_runs import category_checkpoint

        checkpoint = category_checkpoint(checkpoint, dataset, category)
    if category is None:
        categories = open_dataset(dataset, root).categories()
        if len(categories) != 1:
            raise click.UsageError(f"--category is required: this root holds {', '.join(categories)}")
        category = categories[0]
    out = out if out is not None else Path("runs/eval") / f"{dataset}_{category}"
    from train.calibrate import calibrate_for_eval
    from train.thresholds import decision_table

    with folder_lock(out):
        calibrate_for_eval(checkpoint, open_dataset(dataset, root), category, fpr, device, batch_size)
        result = evaluate(checkpoint, dataset, root, category, out, device=device, batch_size=batch_size,
                          n_heatmaps=n_heatmaps)
    click.echo(markdown_table(result))
    click.echo("\n" + decision_table(result["decisions"]))
    say(f"report: {out / 'metrics.json'}, {out / 'metrics.md'}, "
        f"{len(result['heatmaps'])} figures in {out / 'heatmaps'}")


def _eval_runs(checkpoint: Path, dataset: str, root: Path | None, out: Path | None, device: str,
               batch_size: int, n_heatmaps: int) -> None:
    """eval of a folder training run (or a unified model.pt) over every category: table + summary.png."""
    from train.evaluate_runs import evaluate_runs, runs_table

    out = out if out is not None else Path("runs/eval") / dataset
    with folder_lock(out):
        report = evaluate_runs(checkpoint, dataset, root, out, device=device, batch_size=batch_size,
                               n_heatmaps=n_heatmaps)
    click.echo(runs_table(report))
    say(f"report: {out / 'metrics.json'}, {out / 'metrics.md'}, {out / 'summary.png'}, per category in "
        f"{out}/<category>/")


# --- predict (evaluation helper) ------------------------------------------------------------------------

@cli.command("predict")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Trained model (model.pt of a training run); runs with PyTorch.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Exported model folder (`logical-train export`); runs with onnxruntime alone, no PyTorch "
                   "needed (pip install 'logical[deploy]').")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: <stem>_map.png, <stem>_overlay.png and, with calibrated thresholds, "
                   "<stem>_mask.png (defect pixels of NG images, 0/255) per image; scores.csv with "
                   "path,score,decision (OK/NG).")
@click.option("--device", default="auto", show_default=True, callback=_device_option,
              help="auto (CUDA when present), cpu, cuda or cuda:N (--checkpoint only).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per forward pass.")
@click.option("--skip-bad", is_flag=True,
              help="Skip unreadable images with a warning (listed in skipped.txt) instead of stopping.")
def predict_command(checkpoint: Path | None, model_dir: Path | None, images: tuple[Path, ...], out: Path,
                    device: str, batch_size: int, skip_bad: bool) -> None:
    """Anomaly maps, image scores and OK/NG decisions for IMAGES (files or folders of images).

    A decision (score above the image threshold = NG) and a defect mask need thresholds calibrated at
    training (or by eval); without them only maps and scores are written.
    """
    if (checkpoint is None) == (model_dir is None):
        raise click.UsageError("give either --checkpoint (PyTorch) or --model (an exported folder)")
    with folder_lock(out):
        if model_dir is not None:
            from train.deploy import predict_exported  # never imports torch

            rows, skipped = predict_exported(model_dir, images, out, batch_size=batch_size, skip_bad=skip_bad)
        else:
            from train.predict import predict

            rows, skipped = predict(checkpoint, images, out, device=device, batch_size=batch_size, skip_bad=skip_bad)
    note = f", {len(skipped)} skipped (see {out / 'skipped.txt'})" if skipped else ""
    ng = sum(bool(r[2]) for r in rows)
    decided = f", {ng} NG" if rows and rows[0][2] is not None else ""
    say(f"{len(rows)} images scored{decided}: {out / 'scores.csv'}{note}")


# --- export (deployment) --------------------------------------------------------------------------------

@cli.command("export")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="Calibrated model.pt (thresholds stored by training or by eval).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "openvino"]), default="onnx", show_default=True,
              help="onnx: model.onnx; openvino: also model.xml/model.bin (OpenVINO IR).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Export folder: the model file(s) and metadata.json.")
@click.option("--images", multiple=True, type=click.Path(path_type=Path),
              help="Real images (files or folders; repeat) for the parity check, e.g. the test split "
                   "[default: up to 16 of the calibration normals].")
def export_command(checkpoint: Path, fmt: str, out: Path, images: tuple[Path, ...]) -> None:
    """Export the whole inference (resize, normalisation, network, softmax, score pooling, thresholds) as one
    graph with dynamic batch and image size, plus metadata.json; then check it against PyTorch.

    \b
    The check runs the export with onnxruntime (and OpenVINO when installed) on real images: maps and scores
    within 1e-4 of PyTorch's and identical decisions, else it stops with an error.
    Needs pip install 'logical[deploy]'. Run it with: logical-train predict --model OUT IMAGES... --out DIR
    """
    from train.export import export

    with folder_lock(out):
        meta = export(checkpoint, fmt, out, images)
    for name in ("onnxruntime", "openvino"):
        c = meta["parity"].get(name)
        if c:
            say(f"parity {name} vs PyTorch on {c['images']} images: max |map diff| {c['max_abs_map']:.2g}, "
                f"max |score diff| {c['max_abs_score']:.2g} (tolerance {meta['parity']['tolerance']:g}), "
                f"decisions identical")
    say(f"exported: {out} ({', '.join(meta['files'])}, metadata.json)")


def main() -> None:
    cli()
