"""Plain-language text for the processing warnings stored on a session, one source for the dashboard and
the reports. The codes come from the pipeline (`sessions.warnings`, a JSON list): today
"decode_incomplete", written when fewer frames decoded than the sampling plan asked for."""

from __future__ import annotations

from collections.abc import Iterable


def processing_warning_texts(codes: Iterable[str] | None, frames_planned: int | None = None,
                             frames_decoded: int | None = None) -> list[str]:
    """One sentence per warning code; an unknown code is named as it is (the caller escapes it)."""
    texts = []
    for code in codes or []:
        if code == "decode_incomplete":
            counts = (f" (only {frames_decoded} of {frames_planned} planned frames)"
                      if frames_planned and frames_decoded is not None else "")
            texts.append(f"The video could not be decoded completely{counts}: the file may be truncated or "
                         "damaged, and the stretches without decoded frames are not analysed.")
        else:
            texts.append(f"Processing warning: {code}")
    return texts
