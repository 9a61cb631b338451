"""Names and versions of the generated-dataset format (schema v1, design.md): file names, dataset names, kinds.

Everything that reads or writes the format takes its names from here, so a rename is one edit.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1


KINDS = ("logical", "structural")


JND_SCALE = 4.0


MANIFEST = "manifest.json"


SOURCES = "sources.h5"


GENERATOR = "generator.pt"


SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.h5$")


SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


SOURCE_DATASETS = ("image", "jnd", "edge", "foreground", "regions", "render", "path")


SHARD_DATASETS = ("anomaly", "mask", "source", "kind", "strategy", "seed", "bbox")


# optional per-sample u8 (1 byte a sample): 0 where the source row holds no true normal image (an imported defect
# photo without its normal, synth.importing), so training masks the reconstruction targets; absent = all 1
HAS_NORMAL = "has_normal"


def shard_name(k: int) -> str:
    """File name of shard k: `shard-00000.h5`."""
    return f"shard-{k:05d}.h5"
