"""Data-quality suites for canonical bars and index bars, run with Great Expectations (GX 1.x).

Every rule is declared once, in ``_bars_suite()`` / ``_index_suite()`` below: a stable snake_case name,
a severity (``error`` blocks, ``warn`` only flags), a description and the GX expectations that
implement it. Rules that GX cannot express on raw rows (OHLC consistency with a relative tolerance,
gaps against a trading calendar, per-ticker returns, calendar coverage) are computed as *derived
columns* in Polars first (``_high_excess``, ``_gap_days``, ``_abs_return``, ...) and then checked by
standard GX expectations, so GX stays the single place where pass/fail is decided.

Design notes
* OHLC tolerance: ``max(open, close) / high - 1 <= 1e-6`` (and the mirror for ``low``). The snapshot's
  adjustment noise is ~3e-16 relative; 1e-6 is ten orders above it yet far below any real data error
  (1e-6 of a $1,000 price is 0.1 cent). KLAC 2015-03-30 (1.03%) is caught and waived.
* Index bars get no OHLC-consistency rule: CBOE's early VIX opens (47 rows 1992-2006) lie outside
  [low, high] and 1990-1991 rows are close-only, a documented quirk of the source, not a load error.
* Index rows on non-NYSE dates are allowed: CBOE publishes VIX on some US holidays (extended trading
  hours); features inner-join on the ETF calendar and drop them.
* Zero volume is allowed (thin post-launch/1970s trading days are real); only negative volume fails.
* Waivers (``known_anomalies.csv``) turn a listed (ticker, date, rule) failure into "waived".

GX is imported lazily (its import takes seconds) with analytics and progress bars disabled; an
ephemeral in-memory context is created once per process and nothing touches the network.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA

Severity = Literal["error", "warn"]

#: Relative tolerance of the OHLC-consistency rules (the snapshot's float noise is 3e-16).
OHLC_REL_TOL = 1e-6
#: Longest allowed run of reference-calendar trading days missing inside a ticker's history.
MAX_GAP_TRADING_DAYS = 5
#: Daily |close-to-close return| above this is flagged (warning only).
EXTREME_RETURN = 0.5
#: Scale breaks (error, waivable): one-session |log close change| above which an ETF's bar is a scale break
#: (an unadjusted split, a vendor rescale); calibrated on the real snapshot: the largest real ETF move is
#: 0.225 (XLE 2020-03-09), so ln 1.5 = 0.405 leaves a 1.8x margin and catches every 3:2 or larger break.
ETF_SCALE_BREAK = float(np.log(1.5))
#: For an index (VIX, VIX3M): the largest real one-session change is 0.768 (VIX 2018-02-05, +115 %); 0.85
#: (x2.34) leaves a margin. Catches rescales of 2.34x or more only.
INDEX_SCALE_BREAK = 0.85
#: For a stock: a jump of |log change| > ln 1.8 (2:1 splits and larger) whose level does not revert: the median
#: log close of the SCALE_WINDOW rows from the jump on differs from that of the SCALE_WINDOW rows before it by
#: more than 0.8x the threshold, in the jump's direction. On the real snapshot (100 stocks, 1962-2025): 4
#: hits, all before 2005 (waived in known_anomalies.csv), none in the default history.
STOCK_SCALE_BREAK = float(np.log(1.8))
SCALE_WINDOW = 20
#: Plausible VIX level range (all-time intraday extremes are ~8.6 and ~89.5).
VIX_RANGE = (5.0, 150.0)
#: Index symbols the pipeline needs.
REQUIRED_INDEX_SYMBOLS = ("VIX", "VIX3M")
#: Number of offending rows kept per rule.
MAX_EXAMPLES = 20

KNOWN_ANOMALIES_PATH = Path(__file__).with_name("known_anomalies.csv")
WAIVER_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8, "date": pl.Date, "rule": pl.Utf8, "reason": pl.Utf8,
}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class RuleResult:
    """Outcome of one named rule. ``passed`` is False when any non-waived row fails (for a
    ``warn`` rule that means "flagged"); ``examples`` holds up to 20 offending rows, ``waived``
    up to 20 waived ones; ``note`` explains a rule that could not be evaluated."""

    rule: str
    severity: Severity
    passed: bool
    n_checked: int
    n_failed: int
    n_waived: int
    examples: list[dict] = field(default_factory=list)
    description: str = ""
    waived: list[dict] = field(default_factory=list)
    note: str = ""
    details: list[str] = field(default_factory=list)  # one short text per example
    unit: str = "row"  # what n_failed counts: "row", "column" or "check"

    def summary_line(self, max_items: int = 5) -> str:
        """E.g. ``rule bars_low_le_open_close failed for 1 row: KLAC 2015-03-30 (low 57.87 > open 57.27)``."""
        if self.passed:
            extra = f", {self.n_waived} waived" if self.n_waived else ""
            return f"rule {self.rule} passed ({self.n_checked:,} checked{extra})"
        verb = "failed" if self.severity == "error" else "flagged"
        if self.note:
            return f"rule {self.rule} {verb}: {self.note}"
        items = ", ".join(self.details[:max_items])
        more = ", ..." if self.n_failed > max_items else ""
        noun = self.unit if self.n_failed == 1 else f"{self.unit}s"
        return f"rule {self.rule} {verb} for {self.n_failed:,} {noun}: {items}{more}"


@dataclass
class QualityReport:
    """All rule results of one validation run (``dataset`` is "bars" or "index_bars")."""

    dataset: str
    n_rows: int
    results: list[RuleResult]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when no error-severity rule failed (warnings do not block)."""
        return not any(r.severity == "error" and not r.passed for r in self.results)

    def failures(self, include_warnings: bool = False) -> list[RuleResult]:
        """Failed error rules (and flagged warn rules when ``include_warnings``)."""
        return [r for r in self.results
                if not r.passed and (include_warnings or r.severity == "error")]

    def warnings(self) -> list[RuleResult]:
        """Flagged warn-severity rules."""
        return [r for r in self.results if not r.passed and r.severity == "warn"]

    def result(self, rule: str) -> RuleResult:
        """The result of one rule by name."""
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(rule)

    def __getitem__(self, rule: str) -> RuleResult:
        return self.result(rule)

    def summary_line(self) -> str:
        """One line: failed/flagged rules with their first offending rows, or an all-clear."""
        bad = self.failures(include_warnings=True)
        if not bad:
            return f"{self.dataset}: all {len(self.results)} rules passed ({self.n_rows:,} rows)"
        return " | ".join(r.summary_line() for r in bad)

    def to_markdown(self, max_examples: int = 3) -> str:
        """Compact Markdown table (rule, severity, status, counts, first examples)."""
        lines = [
            f"**{self.dataset}**: {'PASSED' if self.passed else 'FAILED'} "
            f"({self.n_rows:,} rows, {len(self.results)} rules, {self.seconds:.1f}s)",
            "",
            "| rule | severity | status | checked | failed | waived | examples |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for r in self.results:
            status = "pass" if r.passed else ("skipped" if r.note else
                                              ("FAIL" if r.severity == "error" else "warn"))
            ex = r.note or "; ".join(r.details[:max_examples])
            if r.n_failed > max_examples and not r.note:
                ex += "; ..."
            ex = ex.replace("|", "\\|")
            lines.append(f"| {r.rule} | {r.severity} | {status} | {r.n_checked:,} | "
                         f"{r.n_failed:,} | {r.n_waived:,} | {ex} |")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Rule declarations (the only place rules are defined)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Params:
    start: datetime | None
    end: datetime


@dataclass(frozen=True)
class _Rule:
    name: str
    severity: Severity
    description: str
    #: canonical columns the rule reads; it is skipped unless all exist with the canonical type
    needs: tuple[str, ...]
    #: (gx.expectations module, params) -> expectations; all run on the same table
    expectations: Callable[[Any, _Params], list]
    #: "rows": failures are rows; "schema": failures are expectations (columns / symbol sets)
    level: Literal["rows", "schema"] = "rows"
    #: "main" = the (derived) frame under test; "coverage" = calendar-coverage frame
    table: Literal["main", "coverage"] = "main"
    #: value columns copied into examples (derived columns start with "_")
    show: tuple[str, ...] = ()
    #: short text for one example row (dict with key, date and ``show`` columns)
    detail: Callable[[dict], str] | None = None


_OHLC = ("open", "high", "low", "close")


def _g(x: Any) -> str:
    return "null" if x is None else (f"{x:.6g}" if isinstance(x, float) else str(x))


def _which(r: dict, pick: Callable) -> tuple[str, float]:
    return pick((("open", r["open"]), ("close", r["close"])), key=lambda kv: kv[1])


def _detail_high(r: dict) -> str:
    name, val = _which(r, max)
    return f"high {_g(r['high'])} < {name} {_g(val)}"


def _detail_low(r: dict) -> str:
    name, val = _which(r, min)
    return f"low {_g(r['low'])} > {name} {_g(val)}"


def _detail_nonpositive(cols: Sequence[str]) -> Callable[[dict], str]:
    def f(r: dict) -> str:
        bad = [f"{c} {_g(r[c])}" for c in cols if r.get(c) is not None and r[c] <= 0]
        return ", ".join(bad) or "non-positive"
    return f


def _detail_null(cols: Sequence[str]) -> Callable[[dict], str]:
    return lambda r: ", ".join(f"{c} null" for c in cols if r.get(c) is None) or "null"


def _detail_vix(r: dict) -> str:
    lo, hi = VIX_RANGE
    bad = [f"{c} {_g(r[c])}" for c in _OHLC if r.get(c) is not None and not lo <= r[c] <= hi]
    return ", ".join(bad) + f" outside [{lo:g}, {hi:g}]"


def _schema_rules(prefix: str, schema: dict[str, pl.DataType]) -> list[_Rule]:
    cols = tuple(schema)
    return [
        _Rule(f"{prefix}_required_columns", "error",
              f"columns {', '.join(cols)} exist", (),
              lambda gxe, p: [gxe.ExpectColumnToExist(column=c) for c in cols], level="schema"),
        _Rule(f"{prefix}_column_types", "error",
              "each column has its canonical type ("
              + ", ".join(f"{c}: {t}" for c, t in schema.items()) + ")", (),
              lambda gxe, p: [gxe.ExpectColumnTypeToBe(column=c, type_=_PANDAS_TYPES[prefix][c])
                              for c in cols], level="schema"),
    ]


def _bars_suite() -> list[_Rule]:
    return [
        *_schema_rules("bars", BARS_SCHEMA),
        _Rule("bars_ohlc_not_null", "error", "ticker, date, open, high, low, close, adj_close are never null",
              ("ticker", "date", *_OHLC, "adj_close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToNotBeNull(column=c)
                              for c in ("ticker", "date", *_OHLC, "adj_close")],
              show=(*_OHLC, "adj_close"), detail=_detail_null((*_OHLC, "adj_close"))),
        _Rule("bars_prices_positive", "error", "open, high, low, close, adj_close > 0",
              (*_OHLC, "adj_close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
                              for c in (*_OHLC, "adj_close")],
              show=(*_OHLC, "adj_close"), detail=_detail_nonpositive((*_OHLC, "adj_close"))),
        _Rule("bars_volume_non_negative", "error", "volume >= 0 when present (zero-volume days are real)",
              ("volume",),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)],
              show=("volume",), detail=lambda r: f"volume {_g(r['volume'])}"),
        _Rule("bars_high_ge_open_close", "error",
              f"high >= max(open, close) within relative tolerance {OHLC_REL_TOL:g} "
              "(derived _high_excess = max(open, close) / high - 1)",
              ("open", "high", "close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="_high_excess", max_value=OHLC_REL_TOL)],
              show=("open", "high", "low", "close", "_high_excess"), detail=_detail_high),
        _Rule("bars_low_le_open_close", "error",
              f"low <= min(open, close) within relative tolerance {OHLC_REL_TOL:g} "
              "(derived _low_excess = low / min(open, close) - 1)",
              ("open", "low", "close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="_low_excess", max_value=OHLC_REL_TOL)],
              show=("open", "high", "low", "close", "_low_excess"), detail=_detail_low),
        _Rule("bars_unique_ticker_date", "error", "(ticker, date) is unique",
              ("ticker", "date"),
              lambda gxe, p: [gxe.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"])],
              show=("close",), detail=lambda r: "duplicate (ticker, date)"),
        _Rule("bars_dates_in_range", "error",
              "history_start <= date <= history_end (today when unset)", ("date",),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="date", min_value=p.start,
                                                                max_value=p.end)],
              detail=lambda r: "date outside the configured range"),
        _Rule("bars_no_long_gaps", "error",
              f"no run of more than {MAX_GAP_TRADING_DAYS} reference-calendar trading days missing between "
              "a ticker's first and last bar (derived _gap_days = calendar days strictly between "
              "consecutive bars)", ("ticker", "date"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="_gap_days", min_value=0,
                                                                max_value=MAX_GAP_TRADING_DAYS)],
              show=("_gap_days", "_prev_date"),
              detail=lambda r: f"{r['gap_days']} trading days missing after {r['prev_date']}"),
        _Rule("bars_scale_break", "error",
              f"no scale break: an ETF's one-session |log close change| <= {ETF_SCALE_BREAK:.3f} (x1.5); a stock's "
              f"jump beyond {STOCK_SCALE_BREAK:.3f} (x1.8) must revert (median log close of the {SCALE_WINDOW} rows "
              "before vs from the jump); derived _scale_break. Waivable in known_anomalies.csv",
              ("ticker", "date", "close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeInSet(column="_scale_break", value_set=[False])],
              show=("close", "_prev_close", "_return"),
              detail=lambda r: f"scale break {r['return']:+.1%} ({_g(r['prev_close'])} -> {_g(r['close'])})"),
        _Rule("bars_dates_on_calendar", "warn",
              "bar dates inside the reference calendar's span are calendar trading days (derived _on_calendar)", ("date",),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeInSet(column="_on_calendar", value_set=[True])],
              detail=lambda r: "not a reference-calendar trading day"),
        _Rule("bars_extreme_returns", "warn",
              f"|close-to-close return| <= {EXTREME_RETURN:.0%} per ticker (flag only: real events exist; "
              "derived _abs_return)", ("ticker", "date", "close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="_abs_return", max_value=EXTREME_RETURN)],
              show=("close", "_prev_close", "_return"),
              detail=lambda r: f"return {r['return']:+.1%} ({_g(r['prev_close'])} -> {_g(r['close'])})"),
    ]


def _is_vix() -> Any:
    """GX row condition ``symbol == "VIX"`` (imported lazily: GX's import is slow)."""
    from great_expectations.expectations.row_conditions import Column

    return Column("symbol") == "VIX"


def _index_suite() -> list[_Rule]:
    lo, hi = VIX_RANGE
    return [
        *_schema_rules("index", INDEX_BARS_SCHEMA),
        _Rule("index_ohlc_not_null", "error", "symbol, date, open, high, low, close are never null",
              ("symbol", "date", *_OHLC),
              lambda gxe, p: [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("symbol", "date", *_OHLC)],
              show=_OHLC, detail=_detail_null(_OHLC)),
        _Rule("index_prices_positive", "error", "open, high, low, close > 0", _OHLC,
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
                              for c in _OHLC],
              show=_OHLC, detail=_detail_nonpositive(_OHLC)),
        _Rule("index_unique_symbol_date", "error", "(symbol, date) is unique", ("symbol", "date"),
              lambda gxe, p: [gxe.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "date"])],
              show=("close",), detail=lambda r: "duplicate (symbol, date)"),
        _Rule("index_symbols_present", "error",
              f"symbols {', '.join(REQUIRED_INDEX_SYMBOLS)} are all present", ("symbol",),
              lambda gxe, p: [gxe.ExpectColumnDistinctValuesToContainSet(
                  column="symbol", value_set=list(REQUIRED_INDEX_SYMBOLS))], level="schema"),
        _Rule("index_dates_in_range", "error",
              "history_start <= date <= history_end (today when unset); rows on non-NYSE dates "
              "(CBOE holiday sessions) are allowed", ("date",),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="date", min_value=p.start,
                                                                max_value=p.end)],
              detail=lambda r: "date outside the configured range"),
        _Rule("index_no_long_gaps", "error",
              f"no run of more than {MAX_GAP_TRADING_DAYS} reference-calendar trading days missing "
              "between a symbol's first and last row (derived _gap_days)", ("symbol", "date"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(column="_gap_days", min_value=0,
                                                                max_value=MAX_GAP_TRADING_DAYS)],
              show=("_gap_days", "_prev_date"),
              detail=lambda r: f"{r['gap_days']} trading days missing after {r['prev_date']}"),
        _Rule("index_scale_break", "error",
              f"no scale break: one-session |log close change| <= {INDEX_SCALE_BREAK:g} (x2.34; the largest real "
              "VIX move is +115 %); derived _scale_break. Waivable in known_anomalies.csv", ("symbol", "date", "close"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeInSet(column="_scale_break", value_set=[False])],
              show=("close",), detail=lambda r: f"close {_g(r['close'])} after a scale break"),
        _Rule("index_vix_range", "error",
              f"VIX open, high, low, close within [{lo:g}, {hi:g}]", ("symbol", *_OHLC),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeBetween(
                  column=c, min_value=lo, max_value=hi, row_condition=_is_vix())
                  for c in _OHLC],
              show=_OHLC, detail=_detail_vix),
        _Rule("index_vix3m_present", "error",
              "every reference-calendar trading day between VIX3M's first and last row has a VIX3M "
              "row (derived coverage table, _present)", ("symbol", "date"),
              lambda gxe, p: [gxe.ExpectColumnValuesToBeInSet(column="_present", value_set=[True])],
              table="coverage", detail=lambda r: "no VIX3M row"),
    ]


def _to_pandas(df: pl.DataFrame) -> Any:
    """Polars -> pandas for GX. ``pl.Date`` becomes ``datetime64[ns]``: GX's between-check is
    vectorised only for ns datetimes (other units fall back to a per-row Python map, ~10x slower)."""
    dates = [c for c, t in df.schema.items() if t == pl.Date]
    if not dates:
        return df.to_pandas()
    # ns datetimes span 1677-09-22..2262-04-11; clipping keeps absurd dates absurd (out of range)
    ns = pl.col(dates).clip(date(1677, 9, 22), date(2262, 4, 11)).cast(pl.Datetime("ns"))
    return df.with_columns(ns).to_pandas()


def _pandas_types(schema: dict[str, pl.DataType]) -> dict[str, str]:
    """The pandas dtype name each canonical column gets from ``_to_pandas``."""
    pdf = _to_pandas(pl.DataFrame(schema=schema))
    return {c: str(pdf[c].dtype) for c in schema}


_PANDAS_TYPES = {"bars": _pandas_types(BARS_SCHEMA), "index": _pandas_types(INDEX_BARS_SCHEMA)}

#: (name, severity, description) of every bars rule, in report order (no GX import needed).
BARS_RULES: list[tuple[str, Severity, str]] = [(r.name, r.severity, r.description) for r in _bars_suite()]
#: (name, severity, description) of every index-bars rule, in report order.
INDEX_RULES: list[tuple[str, Severity, str]] = [(r.name, r.severity, r.description) for r in _index_suite()]


# --------------------------------------------------------------------------------------------
# Waivers
# --------------------------------------------------------------------------------------------
def load_known_anomalies(path: str | Path | None = None) -> pl.DataFrame:
    """Known anomalies shipped next to this module: ticker, date, rule, handling, reason.

    Only rows with ``handling == "waived"`` act as waivers (they must name a ticker/symbol and a
    date). The other rows document anomalies the suites tolerate by design (``tolerated``,
    ``not_checked``, ``dropped_upstream``; ``*`` = any) and never change a result.
    """
    df = pl.read_csv(path or KNOWN_ANOMALIES_PATH, infer_schema=False)
    df = df.with_columns(pl.col("date").str.to_date("%Y-%m-%d", strict=False).alias("date"))
    bad = df.filter((pl.col("handling") == "waived")
                    & (pl.col("date").is_null() | pl.col("ticker").is_null() | (pl.col("ticker") == "*")))
    if not bad.is_empty():
        raise ValueError(f"waived anomalies need a ticker and an ISO date: {bad.to_dicts()}")
    return df


def _waiver_frame(waivers: pl.DataFrame | None) -> pl.DataFrame:
    """Normalise waivers to (ticker, date, rule, reason); ``None`` = the shipped list."""
    if waivers is None:
        waivers = load_known_anomalies()
    if "symbol" in waivers.columns and "ticker" not in waivers.columns:
        waivers = waivers.rename({"symbol": "ticker"})
    if waivers.is_empty():
        return pl.DataFrame(schema=WAIVER_SCHEMA)
    missing = {"ticker", "date", "rule"} - set(waivers.columns)
    if missing:
        raise ValueError(f"waivers lack column(s) {sorted(missing)}; got {waivers.columns}")
    if "handling" in waivers.columns:
        waivers = waivers.filter(pl.col("handling") == "waived")
    if "reason" not in waivers.columns:
        waivers = waivers.with_columns(reason=pl.lit(""))
    if waivers.schema["date"] == pl.Utf8:
        waivers = waivers.with_columns(pl.col("date").str.to_date("%Y-%m-%d"))
    return waivers.select(pl.col(c).cast(t) for c, t in WAIVER_SCHEMA.items()).unique(
        ["ticker", "date", "rule"], keep="first", maintain_order=True)


# --------------------------------------------------------------------------------------------
# GX plumbing
# --------------------------------------------------------------------------------------------
_GX_LOCK = threading.RLock()
_GX_STATE: dict[str, Any] = {}


def _gx() -> dict[str, Any]:
    """Import GX and build one ephemeral context with a pandas data source (cached per process)."""
    with _GX_LOCK:
        if not _GX_STATE:
            _init_gx()
    return _GX_STATE


def _init_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ds = ctx.data_sources.add_pandas("regimeflow_quality")
    batch_defs = {
        name: ds.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        for name in ("main", "coverage")
    }
    _GX_STATE.update(gx=gx, gxe=gxe, ctx=ctx, batch_defs=batch_defs)


def _run_gx(table: str, pdf: Any, expectations: list) -> list:
    """Validate ``expectations`` on one pandas frame indexed by ``_row``; returns GX results.

    Offending rows come back as ``unexpected_index_list == [{"_row": [...]}]``: with a *named*
    index and ``exclude_unexpected_values`` GX just lists the index. Naming data columns in
    ``unexpected_index_column_names`` instead makes GX do one ``DataFrame.at`` per row and column
    (~0.5 ms per offending row: minutes when a rule fails on 100k+ rows); ticker/date and the
    values are looked up in the Polars frame afterwards.
    """
    st = _gx()
    suite = st["gx"].ExpectationSuite(name=f"regimeflow_{table}")
    for e in expectations:
        suite.add_expectation(e)
    batch = st["batch_defs"][table].get_batch(batch_parameters={"dataframe": pdf})
    res = batch.validate(suite, result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": ["_row"],
        "exclude_unexpected_values": True, "partial_unexpected_count": 0})
    return list(res.results)


# --------------------------------------------------------------------------------------------
# Derived columns
# --------------------------------------------------------------------------------------------
def _calendar_days(calendar: Sequence[date] | pl.Series) -> np.ndarray:
    cal = pl.Series("d", calendar, dtype=pl.Date) if not isinstance(calendar, pl.Series) else calendar.cast(pl.Date)
    return np.unique(cal.drop_nulls().to_physical().to_numpy().astype(np.int64))


def _derive(frame: pl.DataFrame, key: str, schema: dict[str, pl.DataType], usable: set[str],
            cal: np.ndarray, bars: bool) -> pl.DataFrame:
    """Keep the canonical columns, sort by key/date, add ``_row`` and the derived check columns
    that the usable (present and canonically typed) columns allow."""
    keep = [c for c in schema if c in frame.columns]
    sort_by = [c for c in (key, "date") if c in usable]
    df = frame.select(keep)
    if sort_by:
        df = df.sort(sort_by, nulls_last=False, maintain_order=True)
    df = df.with_row_index("_row")
    exprs: list[pl.Expr] = []
    if {"open", "high", "close"} <= usable:
        exprs.append((pl.max_horizontal("open", "close") / pl.col("high") - 1)
                     .fill_nan(None).alias("_high_excess"))
    if {"open", "low", "close"} <= usable:
        exprs.append((pl.col("low") / pl.min_horizontal("open", "close") - 1)
                     .fill_nan(None).alias("_low_excess"))
    if {key, "date"} <= usable:
        exprs.append(pl.col("date").shift(1).over(key).alias("_prev_date"))
        if bars and "close" in usable:
            prev = pl.col("close").shift(1).over(key)
            exprs += [prev.alias("_prev_close"), (pl.col("close") / prev - 1).alias("_return")]
    if exprs:
        df = df.with_columns(exprs)
    if "_return" in df.columns:
        df = df.with_columns(pl.col("_return").abs().fill_nan(None).alias("_abs_return"))
    if {key, "date", "close"} <= usable:
        df = df.with_columns(_scale_break(key, bars))
    if "_prev_date" in df.columns:
        d = df["date"].to_physical().to_numpy(allow_copy=True).astype("float64")
        p = df["_prev_date"].to_physical().to_numpy(allow_copy=True).astype("float64")
        ok = ~(np.isnan(d) | np.isnan(p))
        gap = np.full(len(df), np.nan)
        if ok.any():
            left = np.searchsorted(cal, d[ok].astype(np.int64), side="left")
            right = np.searchsorted(cal, p[ok].astype(np.int64), side="right")
            gap[ok] = np.maximum(left - right, 0)
        df = df.with_columns(pl.Series("_gap_days", gap).fill_nan(None).cast(pl.Int64))
    if bars and "date" in usable:
        # only dates inside the calendar's own span are judged (null = not checked)
        phys = df["date"].to_physical().fill_null(0).to_numpy()
        on = pl.Series("_on_calendar", np.isin(phys, cal))
        inside = pl.Series((phys >= cal[0]) & (phys <= cal[-1]) if len(cal)
                           else np.zeros(len(phys), dtype=bool))
        df = df.with_columns(pl.when(pl.col("date").is_not_null() & inside).then(on)
                             .alias("_on_calendar"))
    return df


def _scale_break(key: str, bars: bool) -> pl.Expr:
    """Derived ``_scale_break`` (bool; null on a key's first row): see ``ETF_SCALE_BREAK`` and friends. Rows
    are sorted by key and date; a jump on the newest rows counts as persistent (no later rows yet)."""
    from ml.data.universe import ALLOCATION_ASSETS, SECTOR_ETFS

    lp = pl.when(pl.col("close") > 0).then(pl.col("close").log())
    jump = (lp - lp.shift(1)).over(key)
    if not bars:
        return (jump.abs() > INDEX_SCALE_BREAK).alias("_scale_break")
    w = SCALE_WINDOW
    before = lp.shift(1).rolling_median(w, min_samples=1).over(key)
    after = lp.reverse().rolling_median(w, min_samples=1).reverse().over(key)
    shift = after - before
    stock = (jump.abs() > STOCK_SCALE_BREAK) & (shift.abs() > 0.8 * STOCK_SCALE_BREAK) & (jump * shift > 0)
    etf = pl.col(key).is_in(list(dict.fromkeys([*ALLOCATION_ASSETS, *SECTOR_ETFS])))
    return pl.when(etf).then(jump.abs() > ETF_SCALE_BREAK).otherwise(stock).alias("_scale_break")


def _coverage(frame: pl.DataFrame, cal: np.ndarray, symbol: str) -> pl.DataFrame:
    """One row per calendar day between ``symbol``'s first and last date: ``_present`` or not."""
    dates = frame.filter(pl.col("symbol") == symbol)["date"].drop_nulls()
    if dates.is_empty():
        span = np.array([], dtype=np.int64)
    else:
        lo, hi = dates.min().toordinal(), dates.max().toordinal()  # type: ignore[union-attr]
        epoch = date(1970, 1, 1).toordinal()
        span = cal[(cal >= lo - epoch) & (cal <= hi - epoch)]
    cov = pl.DataFrame({"date": pl.Series(span, dtype=pl.Int32).cast(pl.Date)})
    have = dates.unique().implode()
    return cov.with_columns(symbol=pl.lit(symbol), _present=pl.col("date").is_in(have)) \
        .with_row_index("_row").select("_row", "symbol", "date", "_present")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _py(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (date, datetime)):
        return v.isoformat() if not isinstance(v, datetime) else v.date().isoformat()
    return v


def _validate(kind: str, frame: pl.DataFrame, key: str, schema: dict[str, pl.DataType],
              rules: list[_Rule], calendar: Any, history_start: date | None,
              history_end: date | None, waivers: pl.DataFrame | None) -> QualityReport:
    t0 = time.perf_counter()
    usable = {c for c, t in schema.items() if c in frame.columns and frame.schema[c] == t}
    cal = _calendar_days(calendar)
    end = history_end or date.today()
    params = _Params(
        start=datetime.combine(history_start, datetime.min.time()) if history_start else None,
        end=datetime.combine(end, datetime.min.time()))
    tables = {"main": _derive(frame, key, schema, usable, cal, bars=(kind == "bars"))}
    if kind == "index" and {"symbol", "date"} <= usable:
        tables["coverage"] = _coverage(frame, cal, "VIX3M")

    st = _gx()
    gxe = st["gxe"]
    skipped: dict[str, str] = {}
    exp_by_table: dict[str, list] = {}
    for rule in rules:
        missing = [c for c in rule.needs if c not in usable]
        if missing:
            skipped[rule.name] = f"not evaluated: column(s) {', '.join(missing)} missing or mistyped"
            continue
        for e in rule.expectations(gxe, params):
            e.meta = {"rule": rule.name}
            exp_by_table.setdefault(rule.table, []).append(e)

    by_rule: dict[str, list] = {}
    with _GX_LOCK:
        for table, exps in exp_by_table.items():
            df = tables[table]
            # only the columns GX reads: it copies whole rows when collecting unexpected indices
            used = {c for e in exps for c in [e.configuration.kwargs.get("column"),
                                              *(e.configuration.kwargs.get("column_list") or [])]}
            pdf = _to_pandas(df.select("_row", *[c for c in df.columns if c in used]))
            for r in _run_gx(table, pdf.set_index("_row"), exps):
                by_rule.setdefault(r.expectation_config.meta["rule"], []).append(r)

    wv = _waiver_frame(waivers)
    results: list[RuleResult] = []
    for rule in rules:
        if rule.name in skipped:
            results.append(RuleResult(rule.name, rule.severity, False, 0, 0, 0,
                                      description=rule.description, note=skipped[rule.name]))
            continue
        gx_results = by_rule.get(rule.name, [])
        if rule.level == "schema":
            results.append(_schema_result(rule, gx_results))
        else:
            results.append(_row_result(rule, gx_results, tables[rule.table], key, wv))
    return QualityReport(dataset="bars" if kind == "bars" else "index_bars", n_rows=frame.height,
                         results=results, seconds=time.perf_counter() - t0)


def _exception(r: Any) -> str:
    info = r.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    for i in infos:
        if isinstance(i, dict) and i.get("raised_exception"):
            return str(i.get("exception_message") or "exception")
    return ""


def _schema_result(rule: _Rule, gx_results: list) -> RuleResult:
    failed = [r for r in gx_results if not r.success]
    examples, details = [], []
    for r in failed:
        kw = {k: v for k, v in r.expectation_config.kwargs.items() if k not in ("batch_id",)}
        ex = {**kw, "observed": (r.result or {}).get("observed_value")}
        if _exception(r):
            ex["error"] = _exception(r)
        examples.append(ex)
        if "column" in kw and "type_" in kw:
            details.append(f"{kw['column']}: {ex['observed']} (expected {kw['type_']})")
        elif "column" in kw and "value_set" in kw:
            details.append(f"{kw['column']} values {ex['observed']} lack {kw['value_set']}")
        elif "column" in kw:
            details.append(f"column {kw['column']} missing")
        else:
            details.append(str(kw))
    unit = "column" if all("column" in r.expectation_config.kwargs and "value_set" not in
                           r.expectation_config.kwargs for r in gx_results) else "check"
    return RuleResult(rule.name, rule.severity, not failed, len(gx_results), len(failed), 0,
                      examples=examples[:MAX_EXAMPLES], description=rule.description,
                      details=details[:MAX_EXAMPLES], unit=unit)


def _row_result(rule: _Rule, gx_results: list, df: pl.DataFrame, key: str,
                wv: pl.DataFrame) -> RuleResult:
    rows: set[int] = set()
    n_checked = 0
    errors = []
    for r in gx_results:
        res = r.result or {}
        exc = _exception(r)
        if exc or "unexpected_index_list" not in res:
            errors.append(exc or "no row-level result")
            continue
        for u in res["unexpected_index_list"]:  # [{"_row": [...]}] (or one dict per row)
            v = u["_row"] if isinstance(u, dict) else u
            rows.update(int(i) for i in v) if isinstance(v, list) else rows.add(int(v))
        missing = 0 if r.expectation_config.type == "expect_column_values_to_not_be_null" \
            else res.get("missing_count", 0)
        n_checked = max(n_checked, int(res.get("element_count", 0)) - int(missing or 0))
    if errors:
        return RuleResult(rule.name, rule.severity, False, n_checked, 0, 0,
                          description=rule.description, note="GX error: " + errors[0])
    keycol = key if key in df.columns else None
    cols = ["_row"] + [c for c in (keycol, "date") if c] + [c for c in rule.show if c in df.columns
                                                            and c not in (key, "date")]
    bad = df.filter(pl.col("_row").is_in(sorted(rows))).select(list(dict.fromkeys(cols))).sort("_row")
    if (keycol and bad.schema.get(key) == pl.Utf8 and bad.schema.get("date") == pl.Date
            and not wv.is_empty()):
        w = wv.filter(pl.col("rule") == rule.name).rename({"ticker": key})
        bad = bad.join(w.select(key, "date", "reason"), on=[key, "date"], how="left",
                       nulls_equal=False, maintain_order="left")
    else:
        bad = bad.with_columns(reason=pl.lit(None, pl.Utf8))
    failing = bad.filter(pl.col("reason").is_null()).drop("reason")
    waived = bad.filter(pl.col("reason").is_not_null())

    def rows_to_dicts(frame: pl.DataFrame) -> list[dict]:
        out = []
        for rec in frame.head(MAX_EXAMPLES).drop("_row").to_dicts():
            out.append({(k[1:] if k.startswith("_") else k): _py(v) for k, v in rec.items()})
        return out

    examples = rows_to_dicts(failing)
    details = []
    for ex in examples:
        head = " ".join(str(ex[c]) for c in (key, "date") if c in ex and ex[c] is not None)
        text = rule.detail(ex) if rule.detail else ""
        details.append(f"{head} ({text})" if text else head)
    return RuleResult(rule.name, rule.severity, failing.is_empty(), n_checked, failing.height,
                      waived.height, examples=examples, description=rule.description,
                      waived=rows_to_dicts(waived.rename({"reason": "_waiver_reason"})),
                      details=details)


def validate_bars(bars: pl.DataFrame, calendar: Sequence[date] | pl.Series, *,
                  history_start: date | None, history_end: date | None,
                  waivers: pl.DataFrame | None = None) -> QualityReport:
    """Run the bars suite (``BARS_RULES``) on canonical bars against a reference calendar.

    ``waivers``: (ticker, date, rule, reason) rows reported as waived instead of failed;
    ``None`` uses the shipped ``known_anomalies.csv``; pass an empty frame to waive nothing.
    """
    return _validate("bars", bars, "ticker", BARS_SCHEMA, _bars_suite(), calendar,
                     history_start, history_end, waivers)


def validate_index_bars(index_bars: pl.DataFrame, calendar: Sequence[date] | pl.Series, *,
                        history_start: date | None, history_end: date | None,
                        waivers: pl.DataFrame | None = None) -> QualityReport:
    """Run the index suite (``INDEX_RULES``) on VIX/VIX3M bars; waivers match ``symbol`` on
    the ``ticker`` column. No OHLC-consistency rule and no on-calendar rule (see module doc)."""
    return _validate("index", index_bars, "symbol", INDEX_BARS_SCHEMA, _index_suite(), calendar,
                     history_start, history_end, waivers)
