"""Helpers for Dagster asset metadata shown in the UI."""
import polars as pl

from ml.reports.markdown import markdown_table, plain_value


def md_table(frame: pl.DataFrame) -> str:
    """A small Polars frame as a markdown table (floats to 4 significant digits, None blank, every row)."""
    return markdown_table(frame, max_rows=None, formatter=plain_value)
