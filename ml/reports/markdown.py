"""Markdown tables (GitHub flavour) for Dagster ``MetadataValue.md`` and text reports: the one renderer.

``markdown_table(frame)`` formats cells like the HTML report (:func:`ml.reports.formatting.format_value`:
percentages, ratios, ISO dates, an en dash for missing values); ``formatter=plain_value`` writes floats
with 4 significant digits and None as an empty cell instead, for tables whose columns the report rules
do not know. Pure Python (polars only): no jinja2, no dagster, no duckdb.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from ml.reports.formatting import format_value

__all__ = ["Formatter", "markdown_table", "plain_value"]

#: ``formatter(column, value) -> text`` of one cell.
Formatter = Callable[[str, Any], str]


def plain_value(column: str, value: Any, digits: int = 4) -> str:
    """Column-agnostic cell text: floats with ``digits`` significant digits, None empty, anything else
    ``str(value)`` (the rules of the former ``assets._metadata.md_table``)."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, max_rows: int | None = 50, formatter: Formatter | None = None) -> str:
    """``frame`` as a GitHub markdown table.

    Column names are kept as they are in the frame; numeric columns are right-aligned; ``|`` in names and
    cells is escaped and line breaks become spaces. ``formatter(column, value)`` writes each cell
    (default :func:`~ml.reports.formatting.format_value`; :func:`plain_value` for plain numbers). At most
    ``max_rows`` rows are written (None: all), followed by a "… N more rows" line. A frame without
    columns gives ``_(empty)_``; one without rows a header and a single blank row.
    """
    if frame.width == 0:
        return "_(empty)_"
    fmt = formatter or format_value
    cols = frame.columns
    head = "| " + " | ".join(_cell(c) for c in cols) + " |"
    align = "|" + "|".join("---:" if frame.schema[c].is_numeric() else "---" for c in cols) + "|"
    shown = frame if max_rows is None else frame.head(max_rows)
    body = ["| " + " | ".join(_cell(fmt(c, v)) for c, v in zip(cols, row)) + " |" for row in shown.iter_rows()]
    if not body:
        body.append("| " + " | ".join("" for _ in cols) + " |")
    if frame.height > shown.height:
        body.append(f"\n_… {frame.height - shown.height} more rows_")
    return "\n".join([head, align, *body])
