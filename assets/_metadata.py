"""Helpers for Dagster asset metadata shown in the UI."""
import polars as pl


def md_table(frame: pl.DataFrame, digits: int = 4) -> str:
    """A small Polars frame as a markdown table (floats to ``digits`` significant digits, None blank)."""
    def fmt(v) -> str:
        return f"{v:.{digits}g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in frame.iter_rows()])
