"""The Q-learning thesis reproduction report (one self-contained HTML page, template ``thesis.html.j2``)."""
from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from ml.reports.charts import band_chart, log_growth_chart
from ml.reports.html import _stylesheet, template_environment

__all__ = ["HEADLINE", "THESIS_COLUMNS", "render_thesis_report"]

#: The strategies of the headline table, in order (members follow in the full table).
HEADLINE: tuple[str, ...] = ("spy", "best", "best_switch", "stack", "stack_switch", "stack_el", "stack_el_switch")
THESIS_COLUMNS: tuple[str, ...] = (
    "strategy", "total_log_return", "thesis_total_log_return", "std", "thesis_std", "max_drawdown_log",
    "thesis_max_drawdown_log", "sr_annual", "sr_full", "thesis_sr_full", "sortino", "information_ratio",
    "mann_whitney_p", "mean_exposure", "validation_sharpe",
)


def render_thesis_report(result, protocol, source: str, code_version: str, title: str | None = None) -> str:
    """HTML of a :class:`ml.research.thesis.ThesisResult` under ``protocol`` (a ``ThesisProtocol``)."""
    table = result.table
    headline = pl.DataFrame({"strategy": list(HEADLINE)}).join(table, on="strategy", how="left", maintain_order="left")
    members = table.filter(pl.col("simulation") != "").sort("simulation", "strategy")
    shown = list(dict.fromkeys(("spy", "stack", "stack_el_switch", result.book.best)))
    charts = {
        "growth": log_growth_chart(result.daily.filter(pl.col("strategy").is_in(shown)), source=source, colors=shown),
        "monte_carlo": band_chart(result.monte_carlo, source=source, colors=shown),
    }
    view = {
        "title": title or "regimeflow — Q-learning thesis reproduction (SPY, test 2015–2023, no costs)",
        "source": source, "code_version": code_version, "generated": datetime.now(UTC),
        "synthetic": str(source).lower() == "synthetic", "css": _stylesheet(), "protocol": protocol,
        "best": result.book.best, "stack": list(result.book.stack), "switch": result.book.switch,
        "headline": headline, "members": members, "columns": list(THESIS_COLUMNS),
        "switch_grid": result.switch_grid, "charts": charts,
    }
    return template_environment().get_template("thesis.html.j2").render(view)
