"""Helpers for Dagster asset metadata shown in the UI."""
import dagster as dg
import polars as pl

from ml.reports.markdown import markdown_table, plain_value


def md_table(frame: pl.DataFrame) -> str:
    """A small Polars frame as a markdown table (floats to 4 significant digits, None blank, every row)."""
    return markdown_table(frame, max_rows=None, formatter=plain_value)


def fold_lookahead_result(context, report, fold_key: str, **extra) -> dg.AssetCheckResult:
    """A per-fold look-ahead check's result (``ml.lookahead.LookaheadReport``): logged summary, pass / fail, the
    report as markdown, failed columns, cutoffs, timing and ``extra`` metadata."""
    context.log.info(report.summary())
    return dg.AssetCheckResult(passed=report.passed, description=report.summary(), metadata={
        "report": dg.MetadataValue.md(report.to_markdown()), "failed_columns": report.failed_features,
        "fold": fold_key, "checked_columns": len(report.checks),
        "cutoffs": [d.isoformat() for d in report.cutoffs], "elapsed_s": round(report.elapsed_s, 2), **extra})
