"""Session features: per-frame table -> named, interpretable session measures (see docs/features.md).

The package, by responsibility: `registry` (every feature declared once, FEATURE_VERSION, the docs
table), `grid` (timestamp checks and the fixed 1 s grid the dynamics use), `dynamics` (MSSD, inertia,
dwell, transitions), `distribution` (entropies, emodiversity, balance), `reliability`, `compute`
(`compute_session_features`, pure) and `store` (`store_session_features`, the database side).
"""

from fervideo.features.compute import SessionFeatureResult, basic_summary, compute_session_features, json_float
from fervideo.features.grid import GRID_S, MIN_BIN_FACE_SHARE, resample_to_grid, sampling_period, timestamp_problem
from fervideo.features.registry import (
    AU_PREFIX,
    CIRCUMPLEX,
    FEATURE_DEFINITIONS,
    FEATURE_VERSION,
    INDICATED_FEATURES,
    MISSING_SUFFIX,
    NEGATIVE_LABELS,
    OPENFACE_INTENSITY_AUS,
    OPENFACE_PRESENCE_AUS,
    OPENFACE_VARIABILITY_COLUMNS,
    POSITIVE_LABELS,
    FeatureDefinition,
    feature_definition,
    features_markdown,
)
from fervideo.features.reliability import MIN_FACE_COVERAGE, MIN_FACE_SECONDS, reliability
from fervideo.features.store import store_session_features

__all__ = [
    "AU_PREFIX", "CIRCUMPLEX", "FEATURE_DEFINITIONS", "FEATURE_VERSION", "GRID_S", "INDICATED_FEATURES",
    "MIN_BIN_FACE_SHARE", "MIN_FACE_COVERAGE", "MIN_FACE_SECONDS", "MISSING_SUFFIX", "NEGATIVE_LABELS",
    "OPENFACE_INTENSITY_AUS", "OPENFACE_PRESENCE_AUS", "OPENFACE_VARIABILITY_COLUMNS", "POSITIVE_LABELS",
    "FeatureDefinition", "SessionFeatureResult", "basic_summary", "compute_session_features", "feature_definition",
    "features_markdown", "json_float", "reliability", "resample_to_grid", "sampling_period", "store_session_features",
    "timestamp_problem",
]
