"""The report as an A4 PDF with reportlab's Platypus: real text (searchable, selectable), the same
figures as the HTML, a footer on every page with the subject, session, page number and the caveat."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from fervideo.export.report import Report, Section
from fervideo.export.summary import phq_caveats

MARGIN = 15 * mm
CONTENT_WIDTH = A4[0] - 2 * MARGIN
_BASE = getSampleStyleSheet()
STYLES = {
    "title": ParagraphStyle("title", parent=_BASE["Title"], fontSize=16, alignment=0, spaceAfter=2),
    "subtitle": ParagraphStyle("subtitle", parent=_BASE["Normal"], fontSize=10, spaceAfter=6),
    "heading": ParagraphStyle("heading", parent=_BASE["Heading2"], fontSize=12, spaceBefore=8, spaceAfter=4),
    "body": ParagraphStyle("body", parent=_BASE["Normal"], fontSize=9, leading=11.5),
    "cell": ParagraphStyle("cell", parent=_BASE["Normal"], fontSize=8, leading=10),
    "cell_head": ParagraphStyle("cell_head", parent=_BASE["Normal"], fontSize=8, leading=10,
                                fontName="Helvetica-Bold"),
    "warning": ParagraphStyle("warning", parent=_BASE["Normal"], fontSize=9, leading=11.5, fontName="Helvetica-Bold",
                              borderColor=colors.black, borderWidth=1.2, borderPadding=4, spaceBefore=8, spaceAfter=8,
                              leftIndent=4, rightIndent=4),
    "note": ParagraphStyle("note", parent=_BASE["Normal"], fontSize=8, leading=10, textColor=colors.black),
}
GRID = [("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
SHADED_HEAD = [("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.9, 0.9, 0.9))]
SHADED_FIRST_COLUMN = [("BACKGROUND", (0, 0), (0, -1), colors.Color(0.9, 0.9, 0.9))]


def _p(text: str, style: str) -> Paragraph:
    return Paragraph(escape(text), STYLES[style])


def _image(png: bytes, width: float) -> Image:
    pixel_width, pixel_height = ImageReader(io.BytesIO(png)).getSize()
    return Image(io.BytesIO(png), width=width, height=width * pixel_height / pixel_width)


def _key_values(rows: list[tuple[str, str]]) -> Table:
    data = [[_p(key, "cell_head"), _p(value, "cell")] for key, value in rows]
    table = Table(data, colWidths=[0.32 * CONTENT_WIDTH, 0.68 * CONTENT_WIDTH], hAlign="LEFT")
    table.setStyle(TableStyle(GRID + SHADED_FIRST_COLUMN))
    return table


def _grid(header: list[str], rows: list[list[str]]) -> Table:
    data = [[_p(cell, "cell_head") for cell in header]] + [[_p(cell, "cell") for cell in row] for row in rows]
    widths = None
    if len(header) == 3 and header[-1] == "what it means":
        widths = [0.3 * CONTENT_WIDTH, 0.12 * CONTENT_WIDTH, 0.58 * CONTENT_WIDTH]
    table = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
    table.setStyle(TableStyle(GRID + SHADED_HEAD))
    return table


def _section_flowables(section: Section) -> list:
    heading = [_p(section.heading, "heading")]
    body: list = [_p(text, "body") for text in section.paragraphs]
    if section.key_values:
        body.append(_key_values(section.key_values))
    body += [_p(text, "warning") for text in section.warnings]
    for figure in section.figures:
        body += [_image(figure.png, CONTENT_WIDTH if "timeline" in figure.alt.lower() else 0.7 * CONTENT_WIDTH),
                 _p(figure.caption, "note")]
    if section.table:
        body += [Spacer(1, 4), _grid(*section.table)]
    body += [_p(text, "note") for text in section.notes]
    # A section moves to the next page whole rather than splitting a figure from its table;
    # KeepTogether still splits a section taller than a page.
    return [KeepTogether(heading + body)]


def report_to_pdf(report: Report) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                                 bottomMargin=MARGIN + 6 * mm, title=f"{report.title}: {report.subtitle}",
                                 author="fervideo", invariant=1)

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(MARGIN, MARGIN - 2 * mm, f"{report.subtitle}  |  page {doc.page}")
        for line, caveat in enumerate(phq_caveats(), start=1):
            canvas.drawString(MARGIN, MARGIN - (2 + 3.2 * line) * mm, caveat)
        canvas.restoreState()

    story = [_p(report.title, "title"), _p(report.subtitle, "subtitle")]
    for section in report.sections:
        story += _section_flowables(section)
    story += [Spacer(1, 8), _p(report.footer, "note")]
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
