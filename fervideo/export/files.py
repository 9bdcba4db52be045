"""Safe output files: sanitised names, paths kept inside the output folder, and atomic writes.

Every export file goes through `atomic_write`: the content is written to a hidden temporary file in
the destination folder and moved into place only once it is complete, so a failure or an interrupt
never leaves a partial file behind, and an existing file is replaced only when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

from fervideo.errors import ExportError

SAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME_LENGTH = 200  # under every file system's 255-byte limit, with room for the temporary-name affixes
TEMP_SUFFIX = ".partial"


def sanitise_name(raw: str) -> str:
    """A file-name component made only of [A-Za-z0-9._-], not starting with '.' or '-'; others become '_'.

    Raises ExportError for a name that is empty or would mean the folder itself or its parent.
    """
    name = SAFE_NAME_CHARS.sub("_", raw.strip())[:MAX_NAME_LENGTH]
    if name in ("", ".", ".."):
        raise ExportError("an output name is empty or '.'/'..' after sanitising; rename the subject code")
    # A leading dot would hide the file, a leading dash would read as an option to shell tools.
    return "_" + name[1:] if name[0] in ".-" else name


def output_path(out_dir: Path, *parts: str) -> Path:
    """`out_dir / parts...`, each part sanitised, refused unless it resolves inside `out_dir`."""
    root = out_dir.expanduser().resolve()
    path = root.joinpath(*(sanitise_name(part) for part in parts))
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise ExportError(f"refusing to write outside the output folder {root}")
    return path


def temp_path_for(path: Path) -> Path:
    """A hidden, unique sibling of `path`: same folder, so the final rename is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _move_into_place(temp: Path, path: Path, force: bool) -> None:
    if force:
        os.replace(temp, path)
        return
    try:
        # A hard link fails if `path` appeared meanwhile, so no file is ever overwritten by a race.
        os.link(temp, path)
    except FileExistsError:
        raise ExportError(f"{path} exists; use --force to overwrite it") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise ExportError(f"{path} exists; use --force to overwrite it") from None
        os.replace(temp, path)
    else:
        temp.unlink()


def atomic_write(path: Path, write: Callable[[Path], None], force: bool = False) -> Path:
    """Call `write(temp_path)`, then move the finished file to `path`. Returns `path`.

    Raises ExportError if `path` exists and `force` is false. On any failure (an interrupt
    included) the temporary file is removed and the error propagates; `path` is left untouched.
    """
    if path.exists() and not force:
        raise ExportError(f"{path} exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    try:
        write(temp)
        _fsync(temp)
        _move_into_place(temp, path, force)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return path


def write_bytes(path: Path, data: bytes, force: bool = False) -> Path:
    return atomic_write(path, lambda temp: temp.write_bytes(data), force)


def write_text(path: Path, text: str, force: bool = False) -> Path:
    return atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"), force)
