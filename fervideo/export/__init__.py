"""Export stage: session summaries as tables (CSV, Parquet, JSON) for statisticians and as a report
(HTML, PDF) for the clinical record. The CLI and the dashboard share these functions; they take a
SQLAlchemy Session or the sessionmaker from `fervideo.store.open_database`, never a URL.

    factory = open_database(url)
    summary = session_summary(factory, 12)               # JSON-ready dict, schema v1
    frames = frames_table(factory, 12)                   # per-frame DataFrame
    html = render_report_html(summary, frames)           # self-contained HTML
    pdf = render_report_pdf(summary, frames)             # PDF bytes
    text = summary_to_csv(summary)                       # the summary flattened to field,value CSV
    table = cohort_table(factory, subject="S001")        # one row per session
    export_sessions(factory, [12], "pdf", Path("out"))   # files, atomically, no overwrite without force
"""

from fervideo.export.cohort import cohort_table
from fervideo.export.files import atomic_write, output_path, sanitise_name, write_bytes, write_text
from fervideo.export.report import build_report, render_report_html, render_report_pdf
from fervideo.export.summary import (
    SCHEMA_VERSION,
    face_gaps,
    feature_definitions,
    frames_table,
    phq_caveats,
    session_summary,
)
from fervideo.export.writers import (
    FORMATS,
    export_sessions,
    plan_export,
    select_session_ids,
    summary_schema,
    summary_to_csv,
    summary_to_json,
    validate_summary,
    write_report,
    write_summary_json,
    write_table,
)

__all__ = [
    "FORMATS", "SCHEMA_VERSION", "atomic_write", "build_report", "cohort_table", "export_sessions", "face_gaps",
    "feature_definitions", "frames_table", "output_path", "phq_caveats", "plan_export", "render_report_html",
    "render_report_pdf", "sanitise_name", "select_session_ids", "session_summary", "summary_schema",
    "summary_to_csv", "summary_to_json", "validate_summary", "write_bytes", "write_report", "write_summary_json",
    "write_table", "write_text",
]
