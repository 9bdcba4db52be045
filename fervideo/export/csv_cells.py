"""CSV cells a spreadsheet cannot run: text that starts like a formula is prefixed with a single quote.

Excel, LibreOffice and Google Sheets evaluate a cell that begins with `=`, `+`, `-` or `@` (and, after
their own trimming, a tab or a carriage return) as a formula, so a subject code such as
`=HYPERLINK("http://host/x","click")` would become a live link or worse. Following OWASP's CSV
injection advice, every *text* cell that starts with one of those characters gets a leading `'`, which
spreadsheets show as text and hide. Numbers are never touched: a negative valence stays a number.
See docs/export.md ("CSV and spreadsheets").
"""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise_cell(value: Any) -> Any:
    """`value` with a leading quote when it is text that starts like a formula; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return QUOTE + value
    return value


def neutralise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` whose text columns are neutralised; numeric, boolean and date columns are kept
    as they are (object columns may mix numbers and text: only their text cells change)."""
    text_columns = [name for name in table.columns
                    if pd.api.types.is_object_dtype(table[name]) or pd.api.types.is_string_dtype(table[name])]
    if not text_columns:
        return table
    safe = table.copy()
    for name in text_columns:
        safe[name] = safe[name].map(neutralise_cell, na_action="ignore")
    return safe


def table_to_csv(table: pd.DataFrame, target: Any = None, **options: Any) -> str | None:
    """`DataFrame.to_csv` after neutralising formulas: the only way fervideo writes CSV. Lines end in CRLF
    (RFC 4180), which also makes the writer quote a text cell holding a bare carriage return; with "\n"
    endings such a cell would split its row in two."""
    return neutralise_table(table).to_csv(target, index=False, lineterminator="\r\n", **options)
