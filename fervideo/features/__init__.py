"""Session features: per-frame table -> named, interpretable session measures (see docs/features.md).

The package, by responsibility: `registry` (every feature declared once, FEATURE_VERSION, the docs
table), `timebase` (timestamp checks, the pairs of frames 1 s apart that the dynamics use),
`dynamics` (MSSD, inertia, dwell, transitions), `distribution` (entropies, emodiversity, balance),
`reliability`, `compute` (`compute_session_features`, pure) and `store` (`store_session_features`).
"""

from fervideo.features.compute import SessionFeatureResult, basic_summary, compute_session_features, json_float
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
from fervideo.features.timebase import LAG_S, LaggedPairs, lagged_pairs, sampling_period, timestamp_problem

__all__ = [
    "AU_PREFIX", "CIRCUMPLEX", "FEATURE_DEFINITIONS", "FEATURE_VERSION", "INDICATED_FEATURES", "LAG_S",
    "LaggedPairs", "MIN_FACE_COVERAGE", "MIN_FACE_SECONDS", "MISSING_SUFFIX", "NEGATIVE_LABELS",
    "OPENFACE_INTENSITY_AUS", "OPENFACE_PRESENCE_AUS", "OPENFACE_VARIABILITY_COLUMNS", "POSITIVE_LABELS",
    "FeatureDefinition", "SessionFeatureResult", "basic_summary", "compute_session_features", "feature_definition",
    "features_markdown", "json_float", "lagged_pairs", "reliability", "sampling_period", "store_session_features",
    "timestamp_problem",
]
