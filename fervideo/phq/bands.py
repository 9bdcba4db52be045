"""PHQ constants, severity bands and the caveat wording shared by every view."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

# The PHQ caveat wording, in one place: the CLI prints PHQ_CAVEAT; exports, reports and the dashboard
# show fervideo.export.phq_caveats(), built from these same sentences.
NOT_A_DIAGNOSIS = "PHQ estimate from facial expression only: a research estimate, not a diagnosis."
ITEM9_NOTE = "Item 9 (suicidality) is not assessed: fervideo never infers it from video; ask about it directly."
PHQ_CAVEAT = f"{NOT_A_DIAGNOSIS} {ITEM9_NOTE}"
INSTRUMENT_MAX = {"PHQ-8": 24, "PHQ-9": 27}
PHQ_ITEMS = ("interest", "depressed", "sleep", "tired", "appetite", "failure", "concentrating", "moving",
             "self_harm")
DAIC_ITEM_COLUMNS = {f"PHQ8_{name}": item for name, item in zip(
    ("NoInterest", "Depressed", "Sleep", "Tired", "Appetite", "Failure", "Concentrating", "Moving"), PHQ_ITEMS,
    strict=False)}
SEVERITY_BANDS = ((0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 19, "moderately severe"),
                  (20, 27, "severe"))
CUTOFF = 10  # PHQ-8/9 >= 10: the usual screening threshold for current depression
DEFAULT_COVERAGE = 0.9
HEAD_FORMAT = 1
MODELS = ("ridge", "svr", "gbr")
HEAD_FEATURE_GROUPS = ("emotion", "valence_arousal", "distribution", "transitions")


def interval_note(coverage: float) -> str:
    """What a prediction interval of nominal `coverage` (0.9 for 90%) does and does not promise."""
    return (f"The {coverage:.0%} interval is split-conformal: it should hold the questionnaire total in about "
            f"{coverage:.0%} of sessions like those the head was trained on; the coverage is approximate and "
            "not a guarantee for this session.")


def severity_band(score: float) -> str:
    """The PHQ severity band of a (rounded) total: minimal, mild, moderate, moderately severe, severe."""
    rounded = int(round(score))
    for low, high, name in SEVERITY_BANDS:
        if rounded <= high:
            return name if rounded >= low else SEVERITY_BANDS[0][2]
    return SEVERITY_BANDS[-1][2]


def fervideo_home() -> Path:
    return Path(os.environ.get("FERVIDEO_HOME") or Path.home() / ".cache" / "fervideo")
