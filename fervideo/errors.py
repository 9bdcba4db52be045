"""Errors a user can cause. Each carries a one-line message that says what is wrong and what to do;
the CLI prints it without a traceback and exits non-zero. Programming errors raise normally."""


class FervideoError(Exception):
    """Base class for every error a user can cause and fix."""

    exit_code = 1


class InputVideoError(FervideoError):
    """The video file is missing, unreadable, empty or holds no decodable frames."""

    exit_code = 2


class ModelError(FervideoError):
    """An unknown model name, a checkpoint that does not fit, or weights that cannot be had offline."""

    exit_code = 3


class DatabaseError(FervideoError):
    """The database cannot be opened, is locked, or is at an unexpected schema version."""

    exit_code = 4


class InvalidArgumentError(FervideoError):
    """A parameter is out of range (e.g. a negative --fps)."""

    exit_code = 2


class DataFileError(FervideoError):
    """A labels, features or dataset file is malformed; the message names the file and line."""

    exit_code = 2


class ExportError(FervideoError):
    """An export cannot be written: unknown or unfinished session, unsafe name, or a file that exists."""

    exit_code = 5


class NotFoundError(FervideoError):
    """A session, subject or PHQ head named on the command line does not exist."""

    exit_code = 2


class LabelFileError(DataFileError):
    """A PHQ labels file has bad rows; `problems` lists every one ("line N: what is wrong")."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class PhqRefusalError(FervideoError):
    """A PHQ head will not estimate this session (unreliable, another classifier, another source)."""

    exit_code = 6
