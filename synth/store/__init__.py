"""The generated-dataset format (design.md, schema v1): names, atomic files, shard writer, manifest and
verification, reader, archives, inspect, export, and safe checkpoint loading."""
