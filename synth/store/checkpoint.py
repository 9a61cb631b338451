"""Torch checkpoint files: safe loading (weights only, every failure a CheckpointError naming the file) and
atomic saving (temporary file, fsync, rename), shared by the generator, PiDiNet and the localizer.
"""

import math
import os
from pathlib import Path

import torch

from synth.errors import CheckpointError


def load_torch(path: Path, what: str, fmt: str | None = None, version: int | None = None, *,
               hint: str = "") -> dict:
    """The dict stored at `path`, loaded with `weights_only=True` on the CPU.

    `what` names the file in messages ("logical generator checkpoint"); `fmt` and `version`, when given, must
    equal the dict's "format" and "version". `hint` (e.g. how to make a new one) ends the messages for a
    missing file or an unsupported version. A missing, truncated, corrupt or foreign file raises
    CheckpointError, and so does one whose floating-point tensors hold NaN or infinity (weights of a run that
    diverged: they would only produce NaN maps and scores).
    """
    path = Path(path)
    tail = f" ({hint})" if hint else ""
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found{tail}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint, expected a {what} "
                              f"({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a {what} (holds a {type(payload).__name__}, not a dict)")
    if fmt is not None and payload.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {what} (format is {payload.get('format')!r}, not {fmt!r})")
    if version is not None and payload.get("version") != version:
        raise CheckpointError(f"{path}: {what} version {payload.get('version')!r} is not supported "
                              f"(this tool reads version {version}){tail}")
    bad = non_finite(payload)
    if bad:
        raise CheckpointError(f"{path}: {what} holds non-finite numbers (NaN or infinity) in "
                              f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}: the run that wrote it "
                              "diverged; use an earlier checkpoint or train again (e.g. with a lower learning "
                              "rate)")
    return payload


def non_finite(obj, prefix: str = "") -> list[str]:
    """Names (dotted keys) of the floating-point tensors and numbers inside nested dicts/lists that hold NaN
    or inf (weights, and figures such as a generator's quality)."""
    if isinstance(obj, torch.Tensor):
        return [prefix or "tensor"] if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix or "value"]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return [name for k, v in items for name in non_finite(v, f"{prefix}.{k}" if prefix else str(k))]


def save_torch(path: Path, obj: dict) -> None:
    """torch.save `obj` to `path` atomically: `<name>.tmp` in the same folder, fsync, rename; never a
    half-written file, and no temporary file left behind on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
