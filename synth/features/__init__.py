"""Per-source maps computed once per normal image (method.md steps 1-3): JND, edge map (classical or PiDiNet),
foreground and candidate regions."""
