"""The session report for the clinical record. One content model (`build_report`) is rendered twice,
to self-contained HTML (figures embedded as data URIs) and to PDF (reportlab), so both say the same."""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fervideo.export import plots
from fervideo.export.quality_notes import processing_warning_texts
from fervideo.export.summary import phq_caveats
from fervideo.labels import CANONICAL_LABELS

MAX_REPORT_FEATURES = 12
MAX_REPORT_GAPS = 10
# What a clinician reads first; the table exports and the JSON summary hold every feature.
KEY_FEATURES = (
    "expressivity", "pos_neg_balance", "valence_mean", "arousal_mean", "valence_mssd", "valence_inertia",
    "emodiversity", "transitions_per_min", "mean_happiness", "mean_sadness", "mean_neutral",
)
TITLE = "Facial-expression session report"


# --------------------------------------------------------------------------------------- content model
@dataclass
class Figure:
    png: bytes
    caption: str
    alt: str


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    key_values: list[tuple[str, str]] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown in bold, boxed: caveats a reader must see
    notes: list[str] = field(default_factory=list)  # after the table or figures


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    footer: str


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not known"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def _clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _date(iso: str | None) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M") if iso else "not recorded"


def _session_section(summary: dict[str, Any]) -> Section:
    session, provenance, quality = summary["session"], summary["provenance"], summary["data_quality"]
    return Section("Session", key_values=[
        ("Subject", session["subject"]),
        ("Session", str(session["id"])),
        ("Session date", _date(session["recorded_at"])),
        ("Duration", _duration(session["duration_s"])),
        ("Frames analysed", f"{quality['sampled_frames']} sampled at {_number(session['sample_fps'])} per second"),
        ("Emotion classifier",
         f"{provenance['classifier_name']} (weights sha256 {provenance['classifier_sha256'][:12]})"),
        ("Face detector", provenance["detector_name"]),
        ("Software", f"fervideo {provenance['package_version']}"),
    ])


def _emotion_sections(summary: dict[str, Any], frames: pd.DataFrame) -> list[Section]:
    emotions, gaps = summary["emotions"], summary["data_quality"]["gaps"]
    timeline = Section("Emotion timeline", figures=[Figure(
        plots.timeline_png(frames, gaps),
        "Probability of each emotion over the session, one panel per emotion; hatched spans: no face found.",
        "Emotion timeline",
    )])
    if emotions["dominant_emotion"] is None:
        timeline.warnings.append("No face was found in this session: there is no emotion estimate.")
        return [timeline]
    distribution = Section(
        "Emotion distribution",
        paragraphs=[f"Most probable on average: {emotions['dominant_emotion']}."],
        figures=[Figure(plots.distribution_png(emotions["mean_probability"]),
                        "Mean probability of each emotion over the frames with a face.", "Emotion distribution")],
        table=(["", *CANONICAL_LABELS], [
            ["mean probability", *(_number(emotions["mean_probability"][label], 2) for label in CANONICAL_LABELS)],
            ["most probable in", *(f"{emotions['dominant_share'][label]:.0%}" for label in CANONICAL_LABELS)],
        ]),
    )
    return [timeline, distribution]


def _features_section(summary: dict[str, Any]) -> Section:
    section = Section("Key features")
    features = summary["features"]
    if features is None:
        section.paragraphs.append("Session features have not been computed for this session yet.")
        return section
    names = [name for name in KEY_FEATURES if name in features["values"]] or list(features["values"])
    shown = names[:MAX_REPORT_FEATURES]
    section.table = (["feature", "value", "what it means"],
                     [[name, _number(features["values"][name]), features["definitions"].get(name) or "-"]
                      for name in shown])
    if len(features["values"]) > len(shown):
        section.notes.append(f"Key features only: {len(features['values'])} in all, every one in the table and JSON "
                             "exports.")
    section.notes.append(f"Feature definitions version {features['feature_version']}.")
    return section


def _phq_section(summary: dict[str, Any]) -> Section:
    section = Section("PHQ estimate")
    phq = summary["phq"]
    if phq is None:
        section.paragraphs.append("No PHQ estimate has been made for this session.")
    else:
        low_band, high_band = phq["interval_bands"]
        spans = low_band if low_band == high_band else f"{low_band} to {high_band}"
        head = phq["head"]
        section.key_values = [
            ("Estimated score", f"{phq['estimate']:.1f} ({head['instrument']} scale)"),
            (f"{phq['coverage']:.0%} interval", f"{phq['lower']:.1f} to {phq['upper']:.1f} (bands: {spans})"),
            ("Severity band of the estimate", phq["band"]),
            ("Model", f"{head['name']}, trained on {head['n_subjects']} subjects / {head['n_sessions']} sessions"),
            ("Imputed features", "not recorded" if phq.get("imputed_features") is None
             else f"{phq['imputed_features']} (filled with training medians)"),
            ("Sample", "not recorded" if phq.get("in_sample") is None else (
                "out-of-sample" if not phq["in_sample"] else "in-sample (out-of-fold estimate shown)"
                if phq.get("out_of_fold") else "in-sample")),
        ]
        section.warnings.extend(phq.get("warnings") or [])  # weak head first: it outweighs every other caveat
        section.warnings.append(" ".join(phq["caveats"]))
        if not phq["classifier_matches"]:
            section.warnings.append("The PHQ model was trained on another emotion classifier than this session's.")
    for recorded in summary["phq_recorded"]:
        when = _date(recorded["administered_at"]) if recorded["administered_at"] else "date not recorded"
        section.key_values.append((f"Recorded {recorded['instrument']}", f"{recorded['total']} ({when})"))
    return section


def _quality_section(summary: dict[str, Any]) -> Section:
    quality = summary["data_quality"]
    section = Section("Data quality", key_values=[
        ("Face coverage", f"{quality['face_coverage']:.1%} of {quality['sampled_frames']} sampled frames"),
        (f"Gaps of {quality['gap_min_s']:g} s or more without a face",
         f"{quality['gap_count']}, {_duration(quality['gap_total_s'])} in all, "
         f"longest {_duration(quality['longest_gap_s'])}"),
    ])
    if quality.get("frames_planned") and quality.get("frames_decoded") is not None:
        section.key_values.append(("Frames decoded", f"{quality['frames_decoded']} of {quality['frames_planned']} "
                                                     "planned"))
    section.warnings.extend(processing_warning_texts(quality.get("processing_warnings"), quality.get("frames_planned"),
                                                     quality.get("frames_decoded")))
    if quality["reliable"] is None:
        section.key_values.append(("Reliability", "not assessed (session features not computed)"))
    else:
        section.key_values.append(("Reliability", "reliable" if quality["reliable"] else "NOT reliable"))
        section.warnings.extend(f"Reliability flag: {note}" for note in quality["reliability_notes"])
    longest = sorted(quality["gaps"], key=lambda gap: -gap["duration_s"])[:MAX_REPORT_GAPS]
    if longest:
        listed = ", ".join(f"{_clock(gap['start_s'])}-{_clock(gap['end_s'])} ({gap['duration_s']:.1f} s)"
                           for gap in sorted(longest, key=lambda gap: gap["start_s"]))
        which = "Gaps" if quality["gap_count"] == len(longest) else f"The {len(longest)} longest gaps"
        section.notes.append(f"{which} (min:s into the session): {listed}.")
    return section


def build_report(summary: dict[str, Any], frames: pd.DataFrame) -> Report:
    """The report's content, independent of the output format."""
    session = summary["session"]
    return Report(
        title=TITLE,
        subtitle=f"Subject {session['subject']} - session {session['id']} - {_date(session['recorded_at'])}",
        sections=[_session_section(summary), *_emotion_sections(summary, frames), _features_section(summary),
                  _phq_section(summary), _quality_section(summary)],
        footer=f"Generated by fervideo {summary['generator']['version']} on {summary['generated_at']} "
               f"(summary schema v{summary['schema_version']}). {' '.join(phq_caveats())}",
    )


# ------------------------------------------------------------------------------------------------ HTML
CSS = """
body { font-family: Helvetica, Arial, sans-serif; color: #000; max-width: 48em; margin: 2em auto; line-height: 1.35; }
h1 { font-size: 1.5em; margin-bottom: 0.1em; }
h2 { font-size: 1.15em; border-bottom: 1px solid #000; margin-top: 1.4em; }
.subtitle { margin-top: 0; } table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #555; padding: 0.2em 0.5em; text-align: left; vertical-align: top; font-size: 0.92em; }
table.kv th { background: #eee; width: 16em; }
.warning { border: 2px solid #000; padding: 0.3em 0.6em; font-weight: bold; margin: 0.4em 0; }
figure { margin: 0.6em 0; } figure img { max-width: 100%; } figcaption, .note, footer { font-size: 0.85em; }
footer { margin-top: 2em; border-top: 1px solid #000; padding-top: 0.4em; }
@media print { body { margin: 0; max-width: none; } section { break-inside: avoid; } @page { size: A4; margin: 15mm; } }
"""


def _html_section(section: Section) -> str:
    esc = html.escape
    parts = [f"<section><h2>{esc(section.heading)}</h2>"]
    parts += [f"<p>{esc(text)}</p>" for text in section.paragraphs]
    if section.key_values:
        rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in section.key_values)
        parts.append(f'<table class="kv">{rows}</table>')
    parts += [f'<p class="warning">{esc(text)}</p>' for text in section.warnings]
    for figure in section.figures:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(figure.alt)}">'
                     f"<figcaption>{esc(figure.caption)}</figcaption></figure>")
    if section.table:
        header, rows = section.table
        head = "".join(f"<th>{esc(cell)}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts += [f'<p class="note">{esc(text)}</p>' for text in section.notes]
    parts.append("</section>")
    return "\n".join(parts)


def report_to_html(report: Report) -> str:
    esc = html.escape
    sections = "\n".join(_html_section(section) for section in report.sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(report.title)}: '
        f"{esc(report.subtitle)}</title><style>{CSS}</style></head><body>\n"
        f'<h1>{esc(report.title)}</h1><p class="subtitle">{esc(report.subtitle)}</p>\n{sections}\n'
        f"<footer>{esc(report.footer)}</footer>\n</body></html>\n"
    )


def render_report_html(summary: dict[str, Any], frames: pd.DataFrame) -> str:
    """A self-contained HTML report (no external files or network) of one session."""
    return report_to_html(build_report(summary, frames))


def render_report_pdf(summary: dict[str, Any], frames: pd.DataFrame) -> bytes:
    """The same report as an A4 PDF."""
    from fervideo.export.pdf import report_to_pdf

    return report_to_pdf(build_report(summary, frames))


__all__ = ["Report", "Section", "build_report", "render_report_html", "render_report_pdf", "report_to_html"]
