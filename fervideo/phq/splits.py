"""Held-out subject lists for `phq train --cv split FILE`.

Ids are subject codes and are matched exactly as text: "007" is not "7" (a DAIC-WOZ id read as a number
would move a held-out subject into training). Every id the file lists must name a subject of the training
data, else the file is refused with the unmatched ids listed, unless the caller asks to ignore them.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fervideo.errors import DataFileError

__all__ = ["SplitList", "held_out_subjects", "read_split", "read_split_file"]

log = logging.getLogger(__name__)

SHOWN_IDS = 20  # unmatched ids named in the message; the rest are counted


@dataclass(frozen=True)
class SplitList:
    held_out: set[str]  # every listed id, unless its `split` column says train
    train: set[str]  # ids whose `split` column says train


def read_split(path: Path) -> SplitList:
    """Parse a split file: a Participant_ID or subject column (DAIC-WOZ dev list, or any list of codes), and
    an optional split column (train/dev/test)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    column = next((name for name in ("Participant_ID", "subject") if name in header), None)
    if column is None:
        raise DataFileError(f"{path}: needs a Participant_ID or subject column")
    held_out, train = set(), set()
    for row in reader:
        subject = (row.get(column) or "").strip()
        if not subject:
            if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                raise DataFileError(f"{path}: line {reader.line_num}: empty subject id")
            continue
        (train if (row.get("split") or "test").strip().lower() == "train" else held_out).add(subject)
    both = sorted(held_out & train)
    if both:
        raise DataFileError(f"{path}: {ascii(both[0])} is listed as both train and held out")
    return SplitList(held_out, train)


def read_split_file(path: Path) -> set[str]:
    """The held-out subject codes of a split file, as text."""
    return read_split(path).held_out


def _listed(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(ascii(code) for code in ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def held_out_subjects(path: Path, groups: Iterable[str], ignore_unmatched: bool = False) -> set[str]:
    """The held-out codes of `path`, after checking every listed id against the training data's subjects
    (`groups`); unmatched ids raise DataFileError unless `ignore_unmatched` (then they are logged)."""
    split = read_split(path)
    known = {str(code) for code in groups}
    unmatched = (split.held_out | split.train) - known
    if unmatched and not ignore_unmatched:
        raise DataFileError(f"{path}: {len(unmatched)} id(s) match no subject with a reliable labelled session: "
                            f"{_listed(unmatched)} (ids are compared exactly as text: '007' is not '7'); fix the "
                            "file, or pass --ignore-unmatched to train without them")
    if unmatched:
        log.warning("%s: ignoring %d unmatched id(s): %s", path, len(unmatched), _listed(unmatched))
    return split.held_out & known
