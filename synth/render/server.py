"""One generator per device, shared by every build worker on the machine (`build --render server`).

Shard workers plan, compose and write on the CPU; the generator runs in one render process that owns the
device. A worker sends a batch of edited edge maps, blocks for the images, and meanwhile the other workers
keep the CPU busy: CPU work and generator inference overlap, and the device holds one copy of the weights
and one CUDA context instead of one per worker.

Each request is rendered on its own, exactly as a worker's in-process renderer would (same batch, same
model, same device), so the shards are byte-identical whichever way they are rendered. Requests from
different workers are not concatenated: a bigger batch could pick other kernels and change the low bits.

Workers reach the server through `multiprocessing.connection` on the loopback interface, guarded by a
random authkey; the address and key travel inside the (picklable) `RemoteRenderer`.
"""

from __future__ import annotations

import multiprocessing as mp
import secrets
import threading
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

import numpy as np

from synth.errors import LogicalError

STARTUP_SECONDS = 300.0    # loading a base generator onto a cold GPU can take a while
RENDER_MODES = ("auto", "inline", "server")


def _handle(conn, renderer, lock: threading.Lock) -> None:
    """Serve one worker's connection: (edges, normals, holes) -> ("ok", images) | ("error", message), until
    it closes (normals and holes are None for a global generator)."""
    with conn:
        while True:
            try:
                edges, normals, holes = conn.recv()
            except (EOFError, OSError):
                return
            try:
                with lock:
                    images = renderer.render(edges, normals, holes)
                conn.send(("ok", images))
            except Exception as exc:  # the worker raises it with the server's words
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _serve(path: str, edges: str, size: int, device: str, authkey: bytes, ready) -> None:
    """Render-process entry point: load the generator, report (address, identity, quality, kind), serve
    forever."""
    try:
        from synth.render.loader import load_generator

        renderer = load_generator(Path(path), edges=edges, size=size, device=device)
        listener = Listener(("127.0.0.1", 0), authkey=authkey)
    except Exception as exc:
        ready.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    ready.send(("ok", listener.address, renderer.identity, renderer.quality, renderer.kind))
    lock = threading.Lock()
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, AuthenticationError):  # a client that failed the handshake: serve on
            continue
        threading.Thread(target=_handle, args=(conn, renderer, lock), daemon=True).start()


@dataclass
class RemoteRenderer:
    """A Renderer that forwards to the render process; picklable, connects lazily once per process."""

    address: tuple[str, int]
    authkey: bytes
    identity: str
    quality: dict = field(default_factory=dict)
    kind: str = "global"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_conn"}

    def render(self, edges: np.ndarray, normals: np.ndarray | None = None,
               holes: np.ndarray | None = None) -> np.ndarray:
        """(B,H,W) float32 edge maps (with (B,H,W,3) uint8 normals and (B,H,W) bool holes for an inpainting
        generator) -> (B,H,W,3) uint8 images, rendered by the server's generator."""
        conn = self.__dict__.get("_conn")
        try:
            if conn is None:
                conn = self.__dict__["_conn"] = Client(self.address, authkey=self.authkey)
            if self.kind == "inpaint":
                request = (np.ascontiguousarray(edges, np.float32), np.ascontiguousarray(normals, np.uint8),
                           np.ascontiguousarray(holes, bool))
            else:      # a global generator ignores them: not worth the transfer
                request = (np.ascontiguousarray(edges, np.float32), None, None)
            conn.send(request)
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            self.__dict__.pop("_conn", None)
            raise LogicalError(f"the render process at {self.address} is gone ({exc}); rerun the build, "
                               "or use --render inline") from None
        if status != "ok":
            raise LogicalError(f"the render process failed: {payload}")
        return payload


class RenderServer:
    """Context manager: start the render process for one generator on one device, stop it on exit."""

    def __init__(self, path: Path, edges: str, size: int, device: str) -> None:
        self.args = (str(path), edges, int(size), device)
        self.process: mp.Process | None = None

    def __enter__(self) -> RemoteRenderer:
        ctx = mp.get_context("spawn")         # never fork a process that may hold a CUDA context
        ours, theirs = ctx.Pipe(duplex=False)
        authkey = secrets.token_bytes(32)
        self.process = ctx.Process(target=_serve, args=(*self.args, authkey, theirs), daemon=True,
                                   name="logical-render")
        self.process.start()
        theirs.close()
        if not ours.poll(STARTUP_SECONDS):
            self._stop()
            raise LogicalError(f"the render process did not start within {STARTUP_SECONDS:.0f} s")
        try:
            reply = ours.recv()
        except EOFError:
            self._stop()
            raise LogicalError("the render process died while loading the generator") from None
        if reply[0] != "ok":
            self._stop()
            raise LogicalError(f"the render process could not load {self.args[0]}: {reply[1]}")
        _, address, identity, quality, kind = reply
        return RemoteRenderer(tuple(address), authkey, identity, dict(quality), kind)

    def _stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        self.process = None

    def __exit__(self, *exc) -> None:
        self._stop()


def use_server(mode: str, device: str, backend: str) -> bool:
    """Whether `--render mode` means a render process: "server" always, "auto" for CUDA with local workers."""
    if mode not in RENDER_MODES:
        raise ValueError(f"--render {mode!r}: choose {', '.join(RENDER_MODES)}")
    if mode == "server":
        return True
    if mode == "inline" or backend != "loky":
        return False
    from synth.render.generator import resolve_device

    return resolve_device(device).type == "cuda"
