"""Edits (method.md step 4): edge-map strategies (logical and structural, one table in `strategies`), painted
damage, Perlin anomalies, warps, and compose, which turns a render into an anomaly image with an honest mask."""
