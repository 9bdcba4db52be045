"""User strings as text, never markup, and readable names for what the dashboard shows.

Streamlit renders titles, captions, alerts, metric and expander labels as Markdown with its own
extensions (`:red[...]` colours, `:icon:` shortcodes, `$...$` LaTeX) and fetches any image a
Markdown string names. A subject code, a file name or an error message goes through `md()` before it
reaches one of those; tables (st.dataframe) and chart tooltips show plain text and need no escaping.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

from fervideo.features import FEATURE_DEFINITIONS

# CommonMark lets a backslash escape any ASCII punctuation character, and Streamlit's extensions are all
# introduced by punctuation (`:`, `$`, `[`), so escaping every one of them leaves nothing live.
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
DASH = "–"  # shown for a number that is missing or undefined


def md(value: Any) -> str:
    """`value` as Markdown that renders exactly as the text it is: one line, nothing live."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))


def number(value: Any, spec: str = ".3g") -> str:
    """A number for a card or a table cell; None, NaN and infinities are a dash, never "None" or "nan"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return format(value, spec)


# ------------------------------------------------------------------------------------- feature labels
_UNIT_SUFFIXES = {"_s": "s", "_per_min": "per min"}
FEATURE_LABELS = {
    "face_found_fraction": "face coverage (share of frames)",
    "longest_gap_s": "longest stretch without a face (s)",
    "duration_s": "duration (s)",
    "sampled_frames": "frames sampled",
    "face_frames": "frames with a face",
    "valence_mean": "mean valence (-1 to 1)",
    "arousal_mean": "mean arousal (-1 to 1)",
    "expressivity": "expressivity (0 to 1)",
    "emodiversity": "emodiversity (nats)",
    "entropy_mean": "mean entropy (bits)",
    "pos_neg_balance": "positive-negative balance (-1 to 1)",
    "transitions_per_min": "transitions per minute",
    "self_transition_rate": "self-transition rate (share)",
    "phq_estimate": "PHQ estimate",
}


def feature_label(name: str) -> str:
    """A reader's name for a feature (`dwell_sadness_s` -> "dwell sadness (s)"), with its unit."""
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    definition = FEATURE_DEFINITIONS.get(name)
    unit = definition.unit if definition is not None else ""
    base = name
    for suffix, suffix_unit in _UNIT_SUFFIXES.items():
        if base.endswith(suffix):
            base, unit = base[: -len(suffix)], unit or suffix_unit
    words = base.replace("_", " ").strip()
    return f"{words} ({unit})" if unit else words
