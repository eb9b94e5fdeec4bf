"""User-facing errors: the CLIs print `error: <message>` and exit 1, with no traceback."""


class Seq2SeqError(Exception):
    """Base class of every error whose message is meant for the user."""


class ConfigError(Seq2SeqError, ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


class DataError(Seq2SeqError):
    """A corpus file is missing, unreadable, corrupt or inconsistent."""


class CheckpointError(Seq2SeqError):
    """A checkpoint is missing, not a checkpoint, corrupt or of an incompatible format."""


class TrainingError(Seq2SeqError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


class DeviceError(Seq2SeqError):
    """The requested device (cuda, mps) is not available on this machine."""


class OutputError(Seq2SeqError):
    """An output file or folder cannot be written where it was asked for."""


class ReportError(Seq2SeqError):
    """A sweep dir to report on is missing, empty or holds no finished run."""
