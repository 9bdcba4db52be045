"""PHQ constants, the one rounding rule for bands and the screening cutoff, and the caveat wording."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

# The PHQ caveat wording, in one place: the CLI prints PHQ_CAVEAT; exports, reports and the dashboard
# show fervideo.export.phq_caveats(), built from these same sentences.
NOT_A_DIAGNOSIS = "PHQ estimate from facial expression only: a research estimate, not a diagnosis."
ITEM9_NOTE = "Item 9 (suicidality) is not assessed: fervideo never infers it from video; ask about it directly."
PHQ_CAVEAT = f"{NOT_A_DIAGNOSIS} {ITEM9_NOTE}"
WEAK_HEAD_WARNING = ("This model does not beat guessing the cohort mean: its cross-validated error is not clearly "
                     "lower than the mean predictor's, so this estimate says little about this person.")
IN_SAMPLE_NOTE = ("This subject's questionnaire was used to train the head: the estimate shown is the out-of-fold "
                  "one, from a model fit without this subject.")
IN_SAMPLE_NO_OOF_NOTE = ("This subject's questionnaire was used to train the head and no model without this subject "
                         "exists: the estimate is in-sample and looks better than it is.")
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
DEFAULT_MAX_IMPUTED_FRACTION = 0.2  # refuse a session with more than this share of the head's features imputed
HEAD_FORMAT = 2  # 2: CV+ / split-conformal fold models, baseline standing, stored in the database
MODELS = ("ridge", "svr", "gbr")
HEAD_FEATURE_GROUPS = ("emotion", "valence_arousal", "distribution", "transitions")
CV_PLUS = "CV+ (Barber et al. 2021), subject-weighted"
SPLIT_CONFORMAL = "split-conformal on held-out subjects, subject-weighted"


def interval_note(coverage: float, method: str = CV_PLUS) -> str:
    """What a prediction interval of nominal `coverage` (0.9 for 90%) built by `method` does and does not promise."""
    return (f"The {coverage:.0%} interval ({method}) should hold the questionnaire total for about {coverage:.0%} of "
            "new subjects like those the head was trained on; the coverage is approximate and not a guarantee "
            "for this session.")


def round_score(score: float) -> int:
    """THE rounding rule for PHQ estimates: half up to a whole total (9.5 -> 10, 14.5 -> 15, 19.5 -> 20).

    Severity bands and the >= 10 screening cutoff (and F1 at that cutoff) all use it, so a band and a
    screening result can never disagree. Python's round() rounds half to even (14.5 -> 14), hence this.
    """
    return int(math.floor(float(score) + 0.5))


def severity_band(score: float) -> str:
    """The PHQ severity band of an estimate rounded by `round_score`: minimal, mild, moderate, moderately severe,
    severe."""
    rounded = round_score(score)
    for low, high, name in SEVERITY_BANDS:
        if rounded <= high:
            return name if rounded >= low else SEVERITY_BANDS[0][2]
    return SEVERITY_BANDS[-1][2]


def screens_positive(score: float, cutoff: int = CUTOFF) -> bool:
    """PHQ >= cutoff on the estimate rounded by `round_score` (the rule severity_band uses)."""
    return round_score(score) >= cutoff


def fervideo_home() -> Path:
    return Path(os.environ.get("FERVIDEO_HOME") or Path.home() / ".cache" / "fervideo")
