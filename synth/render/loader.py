"""Loading a fitted generator checkpoint as the renderer of its kind (global or inpaint), once per process.
"""

from __future__ import annotations

from pathlib import Path

from synth.errors import CheckpointError
from synth.render.generator import GeneratorRenderer, GlobalGenerator, check_compatible, read_checkpoint, resolve_device
from synth.render.inpaint import InpaintRenderer
from synth.store.atomic import sha256_file

_CACHE: dict[tuple, GeneratorRenderer] = {}


def load_generator(path: Path, edges: str | None = None, size: int | None = None,
                   device: str = "auto") -> GeneratorRenderer:
    """The renderer of a fitted checkpoint, loaded once per process (cached by path, mtime and device).

    `edges` is an extractor name ("classic", "pidinet") or full identity ("classic-v2"), `size` the image
    size the caller works at; a checkpoint fitted otherwise is refused with a CheckpointError saying how to
    refit.
    """
    path = Path(path)
    dev = resolve_device(device)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    key = (str(path.resolve()), stat.st_mtime_ns if stat else None, stat.st_size if stat else None, str(dev))
    renderer = _CACHE.get(key)
    if renderer is None:
        ckpt = read_checkpoint(path)
        config = ckpt["config"]
        model = GlobalGenerator(config)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: generator weights do not match its config ({exc})") from None
        cls = InpaintRenderer if ckpt["kind"] == "inpaint" else GeneratorRenderer
        renderer = cls(model, config, str(ckpt["edges"]), f"generator-{sha256_file(path)[:12]}",
                       dict(ckpt.get("quality") or {}), dev)
        _CACHE[key] = renderer
    check_compatible(path, {"edges": renderer.edges_identity, "size": renderer.config.size}, edges, size)
    return renderer
