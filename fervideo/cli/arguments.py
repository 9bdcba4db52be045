"""What every command shares about its input and its output on the terminal.

- `shown(value)`: any user string (subject code, path, label, an error message that quotes one) made
  safe to print with Rich: control characters (ESC and so ANSI/OSC sequences, newlines, bidi overrides)
  are written as visible escapes, and Rich markup (`[bold]`, `[/x]`) is escaped, so the text shows
  exactly as it is and can neither style, hide, crash nor move the terminal.
- Option callbacks (`finite_non_negative`, `one_of`, `database_option`, `existing_file`, ...) that check
  arguments as Typer parses them, i.e. before any network or database is loaded, so a wrong value fails
  in milliseconds with a usage error (exit 2).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

import typer
from rich.markup import escape


def visible_controls(text: str) -> str:
    """`text` with every control or invisible format character (Unicode Cc, Cf) written as `\\xNN` /
    `\\uNNNN`, so that it is shown rather than obeyed by the terminal."""
    if all(unicodedata.category(ch) not in ("Cc", "Cf") for ch in text):
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def shown(value: object) -> str:
    """A user string as Rich-safe, terminal-safe text for console.print and table cells."""
    return escape(visible_controls(str(value)))


# ---------------------------------------------------------------------------------------- option checks
def finite_non_negative(value: float | None) -> float | None:
    """A number such as --fps: finite and >= 0 (NaN, inf and negatives are refused)."""
    if value is not None and (not math.isfinite(value) or value < 0):
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


def positive_int(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value} is not a whole number >= 1")
    return value


def one_of(*choices: str) -> Callable[[str | None], str | None]:
    """A callback accepting only `choices` (for options typed as str, e.g. --landmarks, --device)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{shown_plain(value)} is not one of {', '.join(choices)}")
        return value

    return check


def device_option(value: str | None) -> str | None:
    """auto, cpu, cuda or cuda:N."""
    if value is None or value in ("auto", "cpu", "cuda"):
        return value
    prefix, _, index = value.partition(":")
    if prefix == "cuda" and index.isdigit():
        return value
    raise typer.BadParameter(f"{shown_plain(value)} is not one of auto, cpu, cuda, cuda:N")


_IN_MEMORY = {":memory:", "sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:///:memory:"}


def database_option(value: str | None) -> str | None:
    """--db: an in-memory database would silently lose everything the command writes, so it is refused."""
    if value is not None and (value.strip() in _IN_MEMORY or "mode=memory" in value):
        raise typer.BadParameter("an in-memory database keeps nothing after the command ends; "
                                 "give a file path or a database URL")
    if value is not None and not value.strip():
        raise typer.BadParameter("the database path is empty")
    return value


def existing_file(value: Path | None) -> Path | None:
    """An input file that must exist and be a readable file (not a folder)."""
    if value is not None:
        _check_input_path(value, folder_ok=False)
    return value


def existing_path(value: Path | None) -> Path | None:
    """An input file or folder that must exist."""
    if value is not None:
        _check_input_path(value, folder_ok=True)
    return value


def existing_files(values: Iterable[Path] | None) -> list[Path] | None:
    if values is None:
        return None
    values = list(values)
    for value in values:
        _check_input_path(value, folder_ok=False)
    return values


def _check_input_path(path: Path, folder_ok: bool) -> None:
    if not path.exists():
        raise typer.BadParameter(f"{shown_plain(path)}: no such file or folder")
    if path.is_dir() and not folder_ok:
        raise typer.BadParameter(f"{shown_plain(path)} is a folder; give a file")
    try:
        if path.is_file():
            with path.open("rb"):
                pass
    except OSError as exc:
        raise typer.BadParameter(f"{shown_plain(path)}: {exc.strerror}") from None


def output_folder(value: Path | None) -> Path | None:
    """An output folder: it may be missing (it will be created) but must not be a file, and the nearest
    folder that exists must be writable."""
    if value is None:
        return value
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{shown_plain(value)} is a file, not a folder")
    existing = value
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise typer.BadParameter(f"{shown_plain(existing)} is a file, so {shown_plain(value)} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{shown_plain(existing)} is not writable")
    return value


def recorded_at(value: str | dt.datetime | None) -> dt.datetime | None:
    """--recorded-at: an ISO date or date-time (2024-03-01, 2024-03-01T14:30, with seconds or a UTC
    offset); anything else ("yesterday", "03/01/2024") is refused with the accepted forms."""
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{shown_plain(value)} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def validated_subject(value: str | None) -> str | None:
    """--subject: fervideo.subjects' rule, checked while parsing (before any file or network is opened)."""
    from fervideo.errors import InvalidArgumentError
    from fervideo.subjects import validate_subject_code

    if value is None:
        return value
    try:
        return validate_subject_code(value)
    except InvalidArgumentError as error:
        raise typer.BadParameter(str(error)) from None


def shown_plain(value: object) -> str:
    """A value quoted inside a usage message (the printer escapes markup itself): controls made visible."""
    return f"'{visible_controls(str(value))}'"
