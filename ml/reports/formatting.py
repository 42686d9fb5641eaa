"""How report values are written, by column name: the Jinja2 filters of the HTML report and the cells of
markdown tables use the same rules.

* returns, weights, volatilities: percentages (``12.3%``; daily quantities such as ``worst_day`` or
  ``avg_turnover`` with two decimals, ``-1.23%``);
* Sharpe-like ratios and correlations: 2 decimals; HHI and PSR: 3 decimals; VIX levels: 1 decimal;
* day counts (``*days``, ``*_count``) and other integers: ``1,234``;
* dates: ISO (``2020-02-19``); booleans: yes / no;
* missing, None, NaN, inf: an en dash.

Pure Python (no jinja2, no dagster, no duckdb), so :mod:`ml.reports.markdown` can use it anywhere.
"""
from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

__all__ = ["LABELS", "MISSING", "cell_class", "fmt_date", "format_value", "is_missing", "label"]

MISSING = "–"

_PCT_2DP = {
    "worst_day", "best_day", "var_5", "cvar_5", "risk_free", "avg_turnover", "panic_mean_return",
    "panic_worst_day", "turnover_mean", "turnover_p50", "turnover_p90", "turnover_max", "mean_return",
}  # fmt: skip
_PCT = {
    "total_return", "cagr", "ann_vol", "max_drawdown", "hit_rate", "return", "vs_benchmark", "share_days",
    "equity_exposure", "avg_equity_exposure", "cash_mean", "cash_over_50_share", "panic_ann_vol",
    "all_days_ann_vol", "excess_return", "ann_return", "win_rate", "exposure",
}  # fmt: skip
_PCT_PREFIX = ("w_", "cagr_", "max_drawdown_", "total_return_", "ann_vol_")
_RATIO_PREFIX = ("sharpe", "sortino", "calmar", "corr", "information_ratio")
_NO_NEG_COLOUR_PREFIX = ("corr",)  # a negative equity/VIX correlation is not bad news
_RATIO3 = ("hhi", "psr")
_INT_SUFFIX = ("days", "_count")
_NO_NEG_COLOUR = ("drawdown", "worst", "var_5", "cvar_5")  # always negative: colouring them says nothing

#: Column name -> table heading.
LABELS: dict[str, str] = {
    "strategy": "Strategy", "total_return": "Total return", "cagr": "CAGR", "ann_vol": "Ann. vol",
    "sharpe": "Sharpe", "sortino": "Sortino", "max_drawdown": "Max drawdown", "max_dd_peak": "DD peak",
    "max_dd_trough": "DD trough", "calmar": "Calmar", "recovery_days": "Recovery (days)",
    "avg_turnover": "Avg turnover / day", "hit_rate": "Hit rate", "worst_day": "Worst day",
    "best_day": "Best day", "var_5": "VaR 5%", "cvar_5": "CVaR 5%", "psr": "PSR", "risk_free": "Risk-free",
    "days": "Days", "bucket": "VIX bucket", "vix_range": "VIX range", "share_days": "Share of days",
    "avg_vix": "Avg VIX", "equity_exposure": "Equity (SPY+QQQ)", "avg_equity_exposure": "Avg equity weight",
    "corr_equity_vix": "Corr(equity weight, VIX)", "window": "Window", "return": "Return",
    "vs_benchmark": "vs SPY", "trough_date": "Trough", "recovery_date": "Back at pre-window peak",
    "partial": "Partial window", "panic_days": "Panic days", "panic_ann_vol": "Ann. vol on panic days",
    "panic_mean_return": "Mean daily return (panic)", "panic_worst_day": "Worst panic day",
    "all_days_ann_vol": "Ann. vol, all days", "hhi_mean": "HHI mean", "hhi_p50": "HHI p50",
    "hhi_p90": "HHI p90", "turnover_mean": "Turnover mean", "turnover_p50": "Turnover p50",
    "turnover_p90": "Turnover p90", "turnover_max": "Turnover max", "cash_mean": "Avg cash",
    "cash_over_50_share": "Days with cash > 50%", "fold": "Fold", "test_start": "Test start",
    "test_end": "Test end", "train_start": "Train start", "train_end": "Train end",
    "embargo_days": "Embargo (sessions)", "key": "Fold",
}  # fmt: skip


def label(column: str) -> str:
    """Heading of a column: :data:`LABELS`, ``w_SPY`` -> ``SPY`` (``w_cash`` -> ``Cash``),
    ``sharpe_2x`` -> ``Sharpe @ 2x``, otherwise the name with spaces, capitalised."""
    if column in LABELS:
        return LABELS[column]
    if column.startswith("w_"):
        return column[2:] if column != "w_cash" else "Cash"
    for metric in ("sharpe", "cagr", "max_drawdown"):
        if column.startswith(metric + "_") and column.endswith("x"):
            return f"{LABELS[metric]} @ {column[len(metric) + 1:]}"
    return column.replace("_", " ").capitalize()


def _kind(column: str) -> str:
    c = column.lower()
    if c in _PCT_2DP:
        return "pct2"
    if c in _PCT or c.startswith(_PCT_PREFIX):
        return "pct"
    if c.startswith(_RATIO3):
        return "ratio3"
    if c.startswith(_RATIO_PREFIX):
        return "ratio"
    if c in ("avg_vix", "vix"):
        return "level"
    if c.endswith(_INT_SUFFIX):
        return "int"
    return "auto"


def is_missing(value: Any) -> bool:
    """None, NaN or an infinite float."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


_NUMBER_FORMATS = {"pct": "{:.1%}", "pct2": "{:.2%}", "ratio": "{:.2f}", "ratio3": "{:.3f}", "level": "{:.1f}"}


def format_value(column: str, value: Any) -> str:
    """Text of one table cell, by column name: returns/weights/vols as %, Sharpe-like ratios with 2
    decimals, HHI/PSR with 3, day counts as integers, dates as ISO; missing/NaN as an en dash."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        kind = _kind(column)
        v = float(value)
        if kind in _NUMBER_FORMATS:
            return _NUMBER_FORMATS[kind].format(v)
        if kind == "int" or isinstance(value, int):
            return f"{round(v):,}"
        return f"{v:.4g}"
    return str(value)


def cell_class(column: str, value: Any) -> str:
    """CSS class of a table cell: ``num`` (right-aligned), ``num neg`` (a negative return or ratio, in
    red), ``c`` (centred: dates, booleans, missing), ``bad`` (``"not recovered"``) or ``""``."""
    if is_missing(value) or isinstance(value, bool):
        return "c"
    if isinstance(value, int | float):
        neg = (
            value < 0
            and _kind(column) in ("pct", "pct2", "ratio")
            and not any(t in column for t in _NO_NEG_COLOUR)
            and not column.startswith(_NO_NEG_COLOUR_PREFIX)
        )
        return "num neg" if neg else "num"
    if isinstance(value, date):
        return "c"
    if value == "not recovered":
        return "bad"
    return ""


def fmt_date(value: Any) -> str:
    """A date as ISO text (anything else as ``str``), None as an en dash."""
    if value is None:
        return MISSING
    return value.isoformat() if isinstance(value, date) else str(value)
