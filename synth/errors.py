"""User-facing errors: the command line prints their message, never a traceback."""


class LogicalError(Exception):
    """A problem the user can fix (bad path, corrupt file, wrong option); the message says which and what."""


class DatasetError(LogicalError):
    """A dataset root or layout is missing or malformed."""


class ImageError(LogicalError):
    """An image file cannot be read."""


class ShardError(LogicalError):
    """A generated dataset (manifest, sources, shards) is missing, truncated or tampered with."""


class CheckpointError(LogicalError):
    """A checkpoint is missing, corrupt or made for other settings."""


class ArchiveError(LogicalError):
    """An archive is unsafe, truncated or tampered with."""


class FolderBusyError(LogicalError):
    """Another process holds the write lock of an output folder or file (synth.lock)."""


class ExportError(LogicalError):
    """An export cannot be written (output folder in the way, optional dependency missing)."""
