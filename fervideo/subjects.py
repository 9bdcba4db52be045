"""The allowed form of a subject code, checked wherever a code enters fervideo (process, label import,
manifests, OpenFace import).

A subject code is data, never markup: beyond this check every view escapes it (Rich, Markdown, HTML,
CSV formulas). The check itself rejects only what no view can show honestly or what breaks file names:

- 1 to 128 characters (the column's width), no leading or trailing whitespace;
- not `.` or `..` (they name folders, and exports write one folder per subject);
- no control characters (C0, C1: tabs, newlines, ESC and so ANSI/OSC sequences) and no invisible
  format characters (Unicode category Cf: bidirectional overrides, zero-width joiners).

See docs/architecture.md ("Subject codes").
"""

from __future__ import annotations

import unicodedata

from fervideo.errors import InvalidArgumentError

MAX_SUBJECT_CODE_LENGTH = 128


def subject_code_problem(code: str | None) -> str | None:
    """Why `code` is not an allowed subject code, or None when it is."""
    if code is None or not code.strip():
        return "the subject code is empty"
    if code != code.strip():
        return "the subject code has leading or trailing whitespace"
    if len(code) > MAX_SUBJECT_CODE_LENGTH:
        return f"the subject code is longer than {MAX_SUBJECT_CODE_LENGTH} characters"
    if code in (".", ".."):
        return f"the subject code {code!r} names a folder"
    bad = next((ch for ch in code if unicodedata.category(ch) in ("Cc", "Cf")), None)
    if bad is not None:
        return f"the subject code holds the control character U+{ord(bad):04X}"
    return None


def validate_subject_code(code: str | None) -> str:
    """`code` itself when allowed, else InvalidArgumentError with a one-line reason (the code is shown
    with repr(), so an escape sequence in it cannot reach the terminal)."""
    problem = subject_code_problem(code)
    if problem:
        shown = ascii(code)[:80] if code is not None else "None"
        raise InvalidArgumentError(f"{problem} ({shown}); use 1-{MAX_SUBJECT_CODE_LENGTH} printable characters, "
                                   "not '.' or '..'")
    return code
