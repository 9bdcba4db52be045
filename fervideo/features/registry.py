"""The feature registry: every session feature declared once (name, definition, construct, group, unit).

docs/features.md's feature table is generated from it: `python -m fervideo.features docs/features.md`
rewrites the table in place, and a test fails while the doc is out of date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fervideo.labels import CANONICAL_LABELS

# Version of the feature definitions. Stored with every session's features; a PHQ head trained on one
# version refuses sessions of another. "2": dynamics over frames 1 s apart, bounded inertia, Quoidbach
# emodiversity, dwell 0 s for a never-dominant emotion, missingness indicators, reliability in seconds.
FEATURE_VERSION = "2"
MISSING_SUFFIX = "__missing"
AU_PREFIX = "au_"

# Approximate positions of the canonical labels on Russell's (1980) affect circumplex, as
# (valence, arousal) in [-1, 1]. Russell's figure gives angles, not a table for these seven labels;
# these coordinates are this project's reading of it (anger and fear: unpleasant and activated;
# sadness: unpleasant and deactivated; happiness: pleasant, moderately activated; surprise: activated,
# near-neutral valence; disgust: unpleasant, mildly activated; neutral at the origin). Proxies only.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "anger": (-0.6, 0.6),
    "disgust": (-0.7, 0.2),
    "fear": (-0.6, 0.7),
    "happiness": (0.8, 0.4),
    "neutral": (0.0, 0.0),
    "sadness": (-0.7, -0.4),
    "surprise": (0.2, 0.8),
}
POSITIVE_LABELS = ("happiness",)
NEGATIVE_LABELS = ("anger", "disgust", "fear", "sadness")

# OpenFace 2.x outputs: intensity (_r) for these AUs, presence (_c) for these plus AU28.
OPENFACE_INTENSITY_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                          "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")
OPENFACE_PRESENCE_AUS = (*OPENFACE_INTENSITY_AUS[:-1], "AU28", "AU45")
OPENFACE_VARIABILITY_COLUMNS = ("pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x", "gaze_angle_y")


@dataclass(frozen=True)
class FeatureDefinition:
    name: str
    definition: str  # one line, shown on dashboard feature cards
    construct: str  # the psychological or measurement construct it comes from
    group: str  # coverage, emotion, valence_arousal, distribution, transitions, au
    unit: str = ""
    when_undefined: str = ""  # what the value is when it cannot be computed (docs: "When undefined")


# Why each family can be undefined in a session that has face frames; these get a `<name>__missing`
# indicator. Features undefined only without any face frame (means, SDs) need none: such a session is
# unreliable and never reaches a PHQ head.
NO_PAIRS = "null when no two face frames lie 1 s apart (a gap-free second of face)"
INERTIA_UNDEFINED = "null with under 10 s of pairs 1 s apart, or when either side of the pairs is constant"
DWELL_UNDEFINED = "0 s when the emotion never dominates a face frame; null without face frames"
BALANCE_UNDEFINED = "null when P+ + P- = 0 (only neutral and surprise)"


def _emotion_definitions(label: str) -> list[FeatureDefinition]:
    return [
        FeatureDefinition(f"mean_{label}", f"Mean P({label}) over frames with a face.",
                          "emotion intensity (discrete emotions)", "emotion"),
        FeatureDefinition(f"dominant_{label}", f"Share of face frames where {label} has the highest probability.",
                          "emotion frequency", "emotion"),
        FeatureDefinition(f"sd_{label}", f"Population SD of P({label}) over face frames.",
                          "emotional variability", "emotion"),
        FeatureDefinition(f"mssd_{label}", f"Mean squared difference of P({label}) between face frames 1 s apart.",
                          "emotional instability (Jahng et al. 2008)", "emotion", when_undefined=NO_PAIRS),
        FeatureDefinition(f"inertia_{label}", f"Pearson correlation of P({label}) between face frames 1 s apart.",
                          "emotional inertia (Kuppens et al. 2010)", "emotion", when_undefined=INERTIA_UNDEFINED),
        FeatureDefinition(f"dwell_{label}_s", f"Mean duration of runs of {label} as dominant label, in steps of 1 s.",
                          "emotion duration / persistence", "emotion", "s", when_undefined=DWELL_UNDEFINED),
    ]


def _valence_arousal_definitions(axis: str) -> list[FeatureDefinition]:
    construct = f"core affect, {axis} (Russell 1980 circumplex proxy)"
    return [
        FeatureDefinition(f"{axis}_mean", f"Mean per-frame expected {axis} (circumplex table).", construct,
                          "valence_arousal"),
        FeatureDefinition(f"{axis}_sd", f"Population SD of per-frame expected {axis}.", construct,
                          "valence_arousal"),
        FeatureDefinition(f"{axis}_mssd", f"Mean squared difference of expected {axis} between face frames 1 s "
                          "apart.", construct, "valence_arousal", when_undefined=NO_PAIRS),
        FeatureDefinition(f"{axis}_inertia", f"Pearson correlation of expected {axis} between face frames 1 s apart.",
                          construct, "valence_arousal", when_undefined=INERTIA_UNDEFINED),
    ]


def _au_definitions() -> list[FeatureDefinition]:
    defs = [FeatureDefinition(f"{AU_PREFIX}{au}_intensity", f"Mean OpenFace {au} intensity (0-5) over trusted "
                              "face frames.", "facial action (FACS)", "au") for au in OPENFACE_INTENSITY_AUS]
    defs += [FeatureDefinition(f"{AU_PREFIX}{au}_presence", f"Share of trusted face frames where OpenFace marks "
                               f"{au} present.", "facial action (FACS)", "au") for au in OPENFACE_PRESENCE_AUS]
    defs += [FeatureDefinition(f"{AU_PREFIX}{column}_sd", f"SD of {column} (radians) over trusted face frames.",
                               "head-pose / gaze variability (psychomotor activity)", "au", "rad")
             for column in OPENFACE_VARIABILITY_COLUMNS]
    defs.append(FeatureDefinition(f"{AU_PREFIX}low_confidence_rate", "Share of OpenFace face frames (success = 1) "
                                  "below the import's --min-confidence, excluded from every feature.",
                                  "data quality", "au"))
    return defs


def _missing_indicator(base: FeatureDefinition) -> FeatureDefinition:
    return FeatureDefinition(f"{base.name}{MISSING_SUFFIX}", f"1 when `{base.name}` is undefined in this session, "
                             "else 0.", "missingness indicator", base.group)


def _build_definitions() -> dict[str, FeatureDefinition]:
    defs = [
        FeatureDefinition("duration_s", "Time from the first to the last sampled frame plus one sampling period.",
                          "data coverage", "coverage", "s"),
        FeatureDefinition("sampled_frames", "Number of sampled frames, face or not.", "data coverage", "coverage"),
        FeatureDefinition("face_frames", "Number of sampled frames with a face and an emotion distribution.",
                          "data coverage", "coverage"),
        FeatureDefinition("face_s", "Seconds of face: face frames x the sampling period.", "data coverage",
                          "coverage", "s"),
        FeatureDefinition("excluded_face_frames", "Frames with a face but no trusted emotion distribution "
                          "(e.g. OpenFace confidence below --min-confidence); left out of every feature.",
                          "data quality", "coverage"),
        FeatureDefinition("face_found_fraction", "Share of sampled frames with a face.", "data coverage",
                          "coverage"),
        FeatureDefinition("longest_gap_s", "Longest stretch of time without a face, session edges included.",
                          "data coverage", "coverage", "s"),
    ]
    for label in CANONICAL_LABELS:
        defs += _emotion_definitions(label)
    for axis in ("valence", "arousal"):
        defs += _valence_arousal_definitions(axis)
    defs += [
        FeatureDefinition("entropy_mean", "Mean per-frame Shannon entropy of the emotion distribution (bits).",
                          "expression ambiguity / classifier uncertainty", "distribution", "bits"),
        FeatureDefinition("emodiversity", "Shannon entropy (natural log) of how often each emotion is the "
                          "dominant label of a face frame, neutral excluded; 0 when no emotion dominates.",
                          "emodiversity (Quoidbach et al. 2014)", "distribution", "nats"),
        FeatureDefinition("emodiversity_soft", "Shannon entropy of the session-average emotion distribution "
                          "(bits), neutral included.", "expression ambiguity of the average distribution",
                          "distribution", "bits"),
        FeatureDefinition("expressivity", "1 - mean P(neutral) over face frames.", "facial expressivity",
                          "distribution"),
        FeatureDefinition("pos_neg_balance", "(P+ - P-) / (P+ + P-), P+ = mean P(happiness), "
                          "P- = mean P(anger+disgust+fear+sadness).", "positive-negative affect balance",
                          "distribution", when_undefined=BALANCE_UNDEFINED),
        FeatureDefinition("self_transition_rate", "Share of face-frame pairs 1 s apart whose dominant label "
                          "repeats.", "emotional stability (transition dynamics)", "transitions",
                          when_undefined=NO_PAIRS),
        FeatureDefinition("transitions_per_min", "Dominant-label changes between face frames 1 s apart, per minute "
                          "of continuously observed face.", "emotional lability (transition dynamics)",
                          "transitions", "1/min", when_undefined=NO_PAIRS),
    ]
    defs += _au_definitions()
    with_indicators = []
    for d in defs:
        with_indicators.append(d)
        if d.when_undefined:
            with_indicators.append(_missing_indicator(d))
    return {d.name: d for d in with_indicators}


FEATURE_DEFINITIONS: dict[str, FeatureDefinition] = _build_definitions()
# Features that can be undefined in a session with face frames; each has a `<name>__missing` indicator.
INDICATED_FEATURES: tuple[str, ...] = tuple(d.name for d in FEATURE_DEFINITIONS.values() if d.when_undefined)


def feature_definition(name: str) -> FeatureDefinition | None:
    """The definition of a feature name, or None for a name this version does not know."""
    return FEATURE_DEFINITIONS.get(name)


def features_markdown() -> str:
    """The feature table of docs/features.md, generated from the registry."""
    lines = ["| name | group | definition | when undefined | construct | unit |", "|---|---|---|---|---|---|"]
    for d in FEATURE_DEFINITIONS.values():
        lines.append(f"| `{d.name}` | {d.group} | {d.definition} | {d.when_undefined} | {d.construct} | {d.unit} |")
    return "\n".join(lines) + "\n"


TABLE_HEADING = "## Feature table\n"


def rewrite_docs_table(path: Path) -> None:
    """Replace everything after the "## Feature table" heading of `path` with the generated table."""
    text = path.read_text()
    head, found, _ = text.partition(TABLE_HEADING)
    if not found:
        raise SystemExit(f"{path}: no '{TABLE_HEADING.strip()}' heading")
    path.write_text(f"{head}{TABLE_HEADING}\n{features_markdown()}")
