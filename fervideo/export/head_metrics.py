"""A PHQ head's evaluation metrics as one table of text cells, shared by `fervideo phq evaluate` (Rich) and
the dashboard's Cohort page (st.dataframe), so both show the same rows with the same rounding.

`metrics` is what a head stores (fervideo.phq's evaluation `as_json()`): {"model": {name: {"value",
"ci_low", "ci_high", optionally "n_dropped", "n_boot"}}, "mean_baseline": {...}, "cv", counts}.
"""

from __future__ import annotations

import math
from typing import Any

METRIC_COLUMNS = ("metric", "model", "95% CI", "mean baseline", "95% CI")


def format_value(value: Any) -> str:
    """Three decimals; a missing or undefined value is "-" (never "None" or "nan")."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}"


def format_ci(entry: dict[str, Any]) -> str:
    """`low to high`, with how many bootstrap resamples left the metric undefined when any did."""
    dropped = entry.get("n_dropped")
    note = f" ({dropped} of {entry['n_boot']} resamples undefined)" if dropped else ""
    low, high = format_value(entry.get("ci_low")), format_value(entry.get("ci_high"))
    return f"{'-' if low == high == '-' else f'{low} to {high}'}{note}"


def head_metrics_table(metrics: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(column names, rows): per metric, the model's value and CI next to the mean baseline's."""
    model, baseline = metrics.get("model") or {}, metrics.get("mean_baseline") or {}
    rows = []
    for name, entry in model.items():
        base = baseline.get(name) or {}
        rows.append((name, format_value(entry.get("value")), format_ci(entry),
                     format_value(base.get("value")), format_ci(base) if base else "-"))
    return METRIC_COLUMNS, rows
