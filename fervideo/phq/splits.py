"""Held-out subject lists for `phq train --cv split`: read a split file, subject ids kept as text."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fervideo.errors import DataFileError


def read_split_file(path: Path) -> set[str]:
    """Held-out subjects: every Participant_ID/subject listed (DAIC-WOZ dev list), or those with split != train."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")), skipinitialspace=True))
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror})") from None
    held_out = set()
    for row in rows:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        subject = row.get("Participant_ID") or row.get("subject")
        if not subject:
            raise DataFileError(f"{path}: needs a Participant_ID or subject column")
        if row.get("split", "test").lower() != "train":
            held_out.add(str(int(float(subject))) if subject.replace(".", "").isdigit() else subject)
    return held_out
