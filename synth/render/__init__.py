"""Rendering edited edge maps into images: the edge-to-image generators, their fitting, the render server and the
stand-in renderer used for previews without a fitted generator (method.md step 5)."""
