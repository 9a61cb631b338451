"""Deterministic randomness: every random choice derives from (seed, category, index, sub-seed)."""

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (hash, not Python's salted hash(), so it is stable across processes)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_rng(seed: int, category: str, index: int, sub: int = 0) -> np.random.Generator:
    """The generator for one sample's `sub`-th attempt; identical on any worker or machine."""
    return np.random.default_rng(derive_seed(seed, category, index, sub))
