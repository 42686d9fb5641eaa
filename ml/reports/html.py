"""Self-contained HTML evaluation reports (inline CSS, charts as base64 PNG, no JavaScript, no external assets).

Usage::

    ctx = ReportContext(source="csv", code_version="abc1234", cost_bps=5, seeds=[0, 1, 2],
                        folds=[fold], metrics=metrics, daily=daily, allocations=allocations, vix=vix)
    html = render_report("Walk-forward evaluation", ctx)
    write_report("data/reports/walk_forward.html", html)

Analysis tables and charts that are not given in the context are derived from ``daily`` / ``allocations``
/ ``vix`` (``derive=True``); a section whose inputs are missing is left out.

Timing convention (stated in the report): a decision taken at the close of day t is held from close t to
close t+1 and earns day t+1's return net of costs; ``daily`` rows are dated by the day the return was earned,
``allocations`` rows by the day the weights were held, ``vix`` rows by the VIX close of that day.
"""
from __future__ import annotations

import base64
import dataclasses
import html as _html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from ml.regimes.vix import VixRegimeConfig
from ml.reports.files import atomic_write

__all__ = [
    "SECTION_TITLES",
    "ReportContext",
    "build_charts",
    "format_value",
    "markdown_table",
    "render_report",
    "save_charts",
    "source_label",
    "write_report",
]

SYNTHETIC_BANNER = "SYNTHETIC DATA"

#: Section id -> heading, in report order.
SECTION_TITLES: dict[str, str] = {
    "provenance": "Provenance",
    "metrics": "Performance metrics",
    "per_fold": "Per-fold results",
    "growth": "Growth of $1",
    "drawdowns": "Drawdowns",
    "exposure": "Equity exposure vs VIX",
    "allocation": "Allocation over time",
    "vix_buckets": "Allocation by VIX bucket",
    "crisis": "Crisis windows",
    "panic": "Panic-day volatility",
    "diagnostics": "Action diagnostics",
    "cost_stress": "Cost stress",
}

_SOURCE_LABELS = {
    "csv": "real snapshot (CSV)",
    "real": "real snapshot (CSV)",
    "snapshot": "real snapshot (CSV)",
    "yahoo": "Yahoo",
    "yfinance": "Yahoo",
    "synthetic": SYNTHETIC_BANNER,
}


def source_label(source: str) -> str:
    """Display name of a data source: ``csv`` -> "real snapshot (CSV)", ``yahoo`` -> "Yahoo",
    ``synthetic`` -> "SYNTHETIC DATA"; anything else as given."""
    return _SOURCE_LABELS.get(str(source).strip().lower(), str(source))


def _is_synthetic(source: str) -> bool:
    return str(source).strip().lower() == "synthetic"


# ------------------------------------------------------------------------------------------- context


@dataclass
class ReportContext:
    """Everything a report shows. Frames follow :mod:`ml.reports.analysis`; every table/chart is optional.

    Provenance: ``source`` (``"csv"`` | ``"yahoo"`` | ``"synthetic"``), ``code_version`` (e.g. a git sha),
    ``data_start``/``data_end`` (derived from ``daily`` when None), ``folds`` (:class:`ml.folds.Fold`, their
    ``to_dict()`` dicts, or a frame with the same columns), ``cost_bps`` (cost per unit of turnover),
    ``seeds``, ``generated_at`` (now, UTC, when None), ``risk_free`` (annual, fraction; used by Sharpe) and
    ``ci_level`` (of the Sharpe confidence interval in ``metrics``).

    Inputs: ``metrics`` (one row per strategy), ``daily``, ``allocations``, ``vix``, ``per_fold`` (long:
    ``fold``, ``strategy``, ``sharpe``, ...), ``cost_stress`` (from :func:`ml.reports.analysis.cost_stress`).
    Derived when None and ``derive`` is true: ``vix_buckets``, ``equity_vix_corr``, ``crisis``,
    ``panic_vol``, ``diagnostics`` and ``charts`` (name -> PNG bytes, see :func:`build_charts`).
    """

    source: str
    code_version: str = "unknown"
    data_start: date | str | None = None
    data_end: date | str | None = None
    folds: Sequence[Any] | pl.DataFrame | None = None
    cost_bps: float | str | None = None
    seeds: Sequence[int] | int | str | None = None
    generated_at: datetime | None = None
    risk_free: float = 0.0
    ci_level: float | None = 0.95
    strategy: str = "ppo"
    benchmark: str = "spy_buy_hold"
    source_detail: str | None = None
    notes: Sequence[str] = ()

    metrics: pl.DataFrame | None = None
    daily: pl.DataFrame | None = None
    allocations: pl.DataFrame | None = None
    vix: pl.DataFrame | None = None
    per_fold: pl.DataFrame | None = None
    cost_stress: pl.DataFrame | None = None

    vix_buckets: pl.DataFrame | None = None
    equity_vix_corr: pl.DataFrame | None = None
    crisis: pl.DataFrame | None = None
    panic_vol: pl.DataFrame | None = None
    diagnostics: pl.DataFrame | None = None
    charts: dict[str, bytes] | None = None

    derive: bool = True
    log_scale: bool = True
    panic_threshold: float = 35.0
    allocation_rolling_days: int = 1
    exposure_strategies: Sequence[str] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def with_derived(self) -> ReportContext:
        """A copy with the analysis tables and charts filled in from the raw frames (where None)."""
        from ml.reports import analysis as an

        c = dataclasses.replace(self)
        if not c.derive:
            return c
        has_alloc = c.allocations is not None and not c.allocations.is_empty()
        has_vix = c.vix is not None and not c.vix.is_empty()
        has_daily = c.daily is not None and not c.daily.is_empty()
        if c.vix_buckets is None and has_alloc and has_vix:
            try:
                c.vix_buckets = an.allocation_by_vix_bucket(c.allocations, c.vix, c.strategy)
            except ValueError:
                c.vix_buckets = None
        if c.equity_vix_corr is None and has_alloc and has_vix:
            c.equity_vix_corr = an.equity_vix_correlation_table(c.allocations, c.vix)
        if c.crisis is None and has_daily:
            c.crisis = an.crisis_windows(c.daily, benchmark=c.benchmark)
        if c.panic_vol is None and has_daily and has_vix:
            c.panic_vol = an.panic_day_volatility(c.daily, c.vix, c.panic_threshold)
        if c.diagnostics is None and has_alloc:
            c.diagnostics = an.action_diagnostics(c.allocations, c.daily)
        if c.charts is None:
            c.charts = build_charts(c)
        return c


def build_charts(ctx: ReportContext) -> dict[str, bytes]:
    """PNG charts for the context: ``growth``, ``drawdown`` (from ``daily``), ``exposure_vix`` (allocations +
    vix), ``allocation`` (allocations of ``ctx.strategy``), ``fold_sharpe`` (``per_fold`` with a ``sharpe``)."""
    from ml.reports import charts as ch

    out: dict[str, bytes] = {}
    src = ctx.source
    if ctx.daily is not None and not ctx.daily.is_empty():
        out["growth"] = ch.growth_chart(ctx.daily, log_scale=ctx.log_scale, highlight=ctx.strategy, source=src)
        out["drawdown"] = ch.drawdown_chart(ctx.daily, highlight=ctx.strategy, source=src)
    if ctx.allocations is not None and not ctx.allocations.is_empty():
        if ctx.vix is not None and not ctx.vix.is_empty():
            strategies = ctx.exposure_strategies or (ctx.strategy,)
            out["exposure_vix"] = ch.exposure_vs_vix_chart(
                ctx.allocations, ctx.vix, strategies=strategies, panic_threshold=ctx.panic_threshold, source=src
            )
        out["allocation"] = ch.allocation_area_chart(
            ctx.allocations, strategy=ctx.strategy, rolling_days=ctx.allocation_rolling_days, source=src
        )
    if ctx.per_fold is not None and not ctx.per_fold.is_empty() and "sharpe" in ctx.per_fold.columns:
        out["fold_sharpe"] = ch.fold_sharpe_chart(ctx.per_fold, highlight=ctx.strategy, source=src)
    return out


# ------------------------------------------------------------------------------------- number format

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
_NO_NEG_COLOUR = ("drawdown", "worst", "var_5", "cvar_5")

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

_MISSING = "–"


def _label(col: str) -> str:
    if col in LABELS:
        return LABELS[col]
    if col.startswith("w_"):
        return col[2:] if col != "w_cash" else "Cash"
    for metric in ("sharpe", "cagr", "max_drawdown"):
        if col.startswith(metric + "_") and col.endswith("x"):
            return f"{LABELS[metric]} @ {col[len(metric) + 1:]}"
    return col.replace("_", " ").capitalize()


def _kind(col: str) -> str:
    c = col.lower()
    if c in _PCT_2DP:
        return "pct2"
    if c in _PCT or c.startswith(_PCT_PREFIX):
        return "pct"
    if c.startswith(_RATIO3):
        return "ratio3"
    if c.startswith(_RATIO_PREFIX):
        return "ratio"
    if c == "avg_vix" or c == "vix":
        return "level"
    if c.endswith(_INT_SUFFIX):
        return "int"
    return "auto"


def _bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def format_value(column: str, value: Any) -> str:
    """Text of one table cell, by column name: returns/weights/vols as %, Sharpe-like ratios with 2
    decimals, HHI/PSR with 3, day counts as integers, dates as ISO; missing/NaN as an en dash."""
    if _bad(value):
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        k = _kind(column)
        v = float(value)
        if k == "pct":
            return f"{v:.1%}"
        if k == "pct2":
            return f"{v:.2%}"
        if k == "ratio":
            return f"{v:.2f}"
        if k == "ratio3":
            return f"{v:.3f}"
        if k == "level":
            return f"{v:.1f}"
        if k == "int" or isinstance(value, int):
            return f"{round(v):,}"
        return f"{v:.4g}"
    return str(value)


def _cell_class(column: str, value: Any) -> str:
    if _bad(value) or isinstance(value, bool):
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


def _esc(s: Any) -> str:
    return _html.escape(str(s), quote=True)


def markdown_table(frame: pl.DataFrame, max_rows: int = 50) -> str:
    """A frame as a GitHub markdown table (for Dagster ``MetadataValue.md``), values formatted as in the
    HTML report (percentages, ratios, ISO dates); column names are kept as they are in the frame."""
    if frame.width == 0:
        return "_(empty)_"
    head = "| " + " | ".join(c.replace("|", "\\|") for c in frame.columns) + " |"
    align = "|" + "|".join("---:" if frame.schema[c].is_numeric() else "---" for c in frame.columns) + "|"
    body = [
        "| " + " | ".join(format_value(c, v).replace("|", "\\|") for c, v in zip(frame.columns, row)) + " |"
        for row in frame.head(max_rows).iter_rows()
    ]
    if frame.height > max_rows:
        body.append(f"\n_… {frame.height - max_rows} more rows_")
    if not body:
        body.append("| " + " | ".join("" for _ in frame.columns) + " |")
    return "\n".join([head, align, *body])


# ------------------------------------------------------------------------------------------ html bits


def _table(
    frame: pl.DataFrame,
    *,
    highlight: str | None = None,
    group_col: str | None = None,
    labels: Mapping[str, str] | None = None,
    css: str = "",
    formatted: Mapping[str, Sequence[str]] | None = None,
    html_cells: Mapping[str, Sequence[str]] | None = None,
    header_groups: Sequence[tuple[str, int]] | None = None,
) -> str:
    """HTML table of a frame.

    ``highlight`` bolds the row whose ``strategy`` equals it; ``group_col`` draws a rule where its value
    changes; ``formatted`` gives pre-formatted text and ``html_cells`` ready (escaped) HTML for some columns;
    ``header_groups`` adds a first header row of (label, column span) cells.
    """
    labels = labels or {}
    formatted = formatted or {}
    html_cells = html_cells or {}
    cols = frame.columns
    head = "".join(
        f'<th class="{"num" if frame.schema[c].is_numeric() else ""}">{_esc(labels.get(c, _label(c)))}</th>'
        for c in cols
    )
    group_head = ""
    if header_groups:
        group_head = "<tr class=\"groups\">" + "".join(
            f'<th colspan="{span}" class="{"grouphead" if lab else ""}">{_esc(lab)}</th>' for lab, span in header_groups
        ) + "</tr>"
    rows = []
    prev: Any = object()
    for i, row in enumerate(frame.iter_rows(named=True)):
        cls = []
        if highlight is not None and row.get("strategy") == highlight:
            cls.append("hl")
        if group_col is not None and row[group_col] != prev and i > 0:
            cls.append("grp")
        if group_col is not None:
            prev = row[group_col]
        cells = []
        for c in cols:
            v = row[c]
            if c in html_cells:
                cells.append(f'<td class="wrap">{html_cells[c][i]}</td>')
                continue
            text = formatted[c][i] if c in formatted else format_value(c, v)
            cells.append(f'<td class="{_cell_class(c, v)}">{_esc(text)}</td>')
        rows.append(f'<tr class="{" ".join(cls)}">{"".join(cells)}</tr>')
    return (
        f'<div class="tablewrap"><table class="{css}"><thead>{group_head}<tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
    )


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{_esc(alt)}" width="1200" height="500">'


def _figure(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="muted">Chart not available ({_esc(alt)}).</p>'
    return f"<figure>{_img(png, alt)}<figcaption>{caption}</figcaption></figure>"


def _section(sid: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{sid}"><h2>{_esc(SECTION_TITLES[sid])}</h2>{intro_html}{body}</section>'


def _fmt_date(d: Any) -> str:
    if d is None:
        return _MISSING
    return d.isoformat() if isinstance(d, date) else str(d)


def _fold_rows(folds: Sequence[Any] | pl.DataFrame) -> list[dict[str, Any]]:
    if isinstance(folds, pl.DataFrame):
        return list(folds.iter_rows(named=True))
    rows = []
    for f in folds:
        if hasattr(f, "to_dict"):
            rows.append(f.to_dict())
        elif isinstance(f, Mapping):
            rows.append(dict(f))
        else:
            rows.append({"key": str(f)})
    return rows


def _folds_html(folds: Sequence[Any] | pl.DataFrame | None) -> str:
    if folds is None or len(folds) == 0:
        return _MISSING
    items = []
    for r in _fold_rows(folds):
        key = r.get("key", r.get("fold", "?"))
        if "train_start" not in r:
            items.append(f"<li><b>{_esc(key)}</b></li>")
            continue
        emb = r.get("embargo_days")
        emb_txt = f" · embargo {_esc(emb)} sessions · " if emb is not None else " · "
        items.append(
            f'<li><b>{_esc(key)}</b>: train {_esc(_fmt_date(r.get("train_start")))} → '
            f'{_esc(_fmt_date(r.get("train_end")))}{emb_txt}test {_esc(_fmt_date(r.get("test_start")))} → '
            f'{_esc(_fmt_date(r.get("test_end")))}</li>'
        )
    if len(items) > 8:
        return f'<details><summary>{len(items)} folds (expanding train window)</summary><ul class="folds">{"".join(items)}</ul></details>'
    return f'<ul class="folds">{"".join(items)}</ul>'


def _data_range(ctx: ReportContext) -> tuple[str, str]:
    start, end = ctx.data_start, ctx.data_end
    for frame in (ctx.daily, ctx.vix, ctx.allocations):
        if (start is None or end is None) and frame is not None and not frame.is_empty() and "date" in frame.columns:
            d = frame.get_column("date").cast(pl.Date)
            start = start if start is not None else d.min()
            end = end if end is not None else d.max()
    return _fmt_date(start), _fmt_date(end)


def _cost_text(cost: float | str | None) -> str:
    if cost is None:
        return _MISSING
    if isinstance(cost, int | float):
        return f"{cost:g} bps × turnover (turnover = Σ|Δw| incl. cash; moving 10% of equity = 0.2 turnover)"
    return str(cost)


def _seeds_text(seeds: Sequence[int] | int | str | None) -> str:
    if seeds is None:
        return _MISSING
    if isinstance(seeds, str | int):
        return str(seeds)
    return ", ".join(str(s) for s in seeds) or _MISSING


def _provenance(ctx: ReportContext, generated: datetime) -> str:
    start, end = _data_range(ctx)
    synthetic = _is_synthetic(ctx.source)
    src = source_label(ctx.source)
    src_html = f'<span class="tag-synth">{_esc(src)}</span>' if synthetic else _esc(src)
    if ctx.source_detail:
        src_html += f' <span class="muted">({_esc(ctx.source_detail)})</span>'
    items = [
        ("Data source", src_html),
        ("Data range", f"{_esc(start)} → {_esc(end)}"),
        ("Folds", _folds_html(ctx.folds)),
        ("Transaction costs", _esc(_cost_text(ctx.cost_bps))),
        ("Seeds", _esc(_seeds_text(ctx.seeds))),
        ("Risk-free rate", _esc(f"{ctx.risk_free:.2%} a year")),
        ("Code version", f"<code>{_esc(ctx.code_version)}</code>"),
        ("Generated", _esc(generated.strftime("%Y-%m-%d %H:%M:%S %Z").strip())),
        *[(k, _esc(v)) for k, v in ctx.extra.items()],
        (
            "Timing",
            (
                "Weights are decided at the close of day t and held to the close of t+1, earning day t+1's "
                "return net of costs. Returns are dated by the day they were earned; weights by the day they "
                "were held; the VIX by its own close (16:15 ET)."
            ),
        ),
    ]
    dl = "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    notes = "".join(f"<li>{_esc(n)}</li>" for n in ctx.notes)
    notes_html = f'<ul class="notes">{notes}</ul>' if notes else ""
    return _section("provenance", f'<dl class="prov">{dl}</dl>{notes_html}')


# ------------------------------------------------------------------------------------------- sections

_METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Return and risk", ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "calmar", "psr")),
    (
        "Drawdowns, tails and trading",
        ("max_drawdown", "max_dd_peak", "max_dd_trough", "recovery_days", "worst_day", "var_5", "cvar_5",
         "hit_rate", "avg_turnover"),
    ),
)  # fmt: skip
_METRIC_SKIP = {"strategy", "sharpe_ci_low", "sharpe_ci_high", "risk_free"}


def _order_strategies(frame: pl.DataFrame, first: Sequence[str]) -> pl.DataFrame:
    if "strategy" not in frame.columns:
        return frame
    rank = {s: i for i, s in enumerate(first)}
    return (
        frame.with_row_index("_i")
        .with_columns(pl.col("strategy").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_r"))
        .sort(["_r", "_i"])
        .drop(["_i", "_r"])
    )


def _metrics_section(ctx: ReportContext) -> str:
    m = _order_strategies(ctx.metrics, [ctx.strategy, ctx.benchmark])
    rf = ctx.risk_free
    if "risk_free" in m.columns and m.get_column("risk_free").drop_nulls().n_unique() == 1:
        rf = float(m.get_column("risk_free").drop_nulls()[0])
    has_ci = {"sharpe", "sharpe_ci_low", "sharpe_ci_high"} <= set(m.columns)
    level = f"{ctx.ci_level:.0%} " if ctx.ci_level else ""
    ci_note = (
        f" Sharpe is shown with its {level}confidence interval in brackets; an interval that contains 0 means "
        "the track is too short to tell skill from luck."
        if has_ci
        else ""
    )
    intro = (
        f"Computed on the daily net returns of each strategy (252 trading days a year). Sharpe and Sortino are "
        f"annualised excess returns over a risk-free rate of <b>{rf:.2%}</b> a year.{ci_note} "
        f"<b>{_esc(ctx.strategy)}</b> is highlighted; {_esc(ctx.benchmark)} is the benchmark."
    )
    used: set[str] = set()
    parts = []
    groups = list(_METRIC_GROUPS)
    rest = [c for c in m.columns if c not in _METRIC_SKIP and not any(c in g for _, g in groups)]
    if rest:
        groups.append(("Other", tuple(rest)))
    for heading, cols in groups:
        present = [c for c in cols if c in m.columns and c not in used]
        if not present:
            continue
        used.update(present)
        sub = m.select(["strategy", *present] if "strategy" in m.columns else present)
        formatted = {}
        labels = {}
        if has_ci and "sharpe" in present:
            formatted["sharpe"] = [
                f"{format_value('sharpe', s)} [{format_value('sharpe', lo)}, {format_value('sharpe', hi)}]"
                if not _bad(s)
                else _MISSING
                for s, lo, hi in m.select("sharpe", "sharpe_ci_low", "sharpe_ci_high").iter_rows()
            ]
            labels["sharpe"] = f"Sharpe [{level}CI]"
        parts.append(f"<h3>{_esc(heading)}</h3>" + _table(sub, highlight=ctx.strategy, formatted=formatted, labels=labels))
    return _section("metrics", "".join(parts), intro)


def _per_fold_section(ctx: ReportContext, charts: Mapping[str, bytes]) -> str:
    pf = ctx.per_fold
    parts = []
    if "fold_sharpe" in charts:
        parts.append(
            _figure(
                charts["fold_sharpe"],
                "Sharpe per fold",
                "Sharpe of every strategy inside each fold's test window: out of sample, the policy of a fold "
                "was trained on that fold's train window only. Consistency across folds matters more than "
                "the best year.",
            )
        )
    index = [c for c in ("fold", "test_start", "test_end") if c in pf.columns]
    metrics = [c for c in ("sharpe", "cagr", "total_return", "max_drawdown") if c in pf.columns]
    if "strategy" in pf.columns and "fold" in pf.columns and metrics:
        tables = []
        names = list(dict.fromkeys([ctx.strategy, ctx.benchmark, *sorted(pf.get_column("strategy").unique().to_list())]))
        names = [n for n in names if n in set(pf.get_column("strategy").to_list())]
        for metric in metrics:
            wide = pf.pivot(on="strategy", index=index, values=metric, aggregate_function="first")
            wide = wide.select([*index, *[n for n in names if n in wide.columns]])
            labels = {n: n for n in names}
            formatted = {n: [format_value(metric, v) for v in wide.get_column(n).to_list()] for n in names if n in wide.columns}
            tables.append(f"<div><h3>{_esc(_label(metric))} per fold</h3>" + _table(wide, labels=labels, formatted=formatted) + "</div>")
        parts.append(f'<div class="grid">{"".join(tables)}</div>')
    else:
        parts.append(_table(pf, highlight=ctx.strategy))
    return _section("per_fold", "".join(parts), "Each fold is evaluated on its own test window; rows are folds.")


def _vix_bucket_section(ctx: ReportContext) -> str:
    cfg = VixRegimeConfig()
    e = cfg.bucket_edges
    intro = (
        f"Average weights held by <b>{_esc(ctx.strategy)}</b>, grouped by the VIX close of the decision day "
        f"(the close before the weights were held). Buckets: calm &lt; {e[0]:g} ≤ normal &lt; {e[1]:g} ≤ "
        f"elevated &lt; {e[2]:g} ≤ stress &lt; {e[3]:g} ≤ panic. A policy that learned to fear should hold "
        "less equity (SPY+QQQ) as the VIX rises."
    )
    parts = []
    if ctx.vix_buckets is not None:
        parts.append(_table(ctx.vix_buckets))
    corr = ctx.equity_vix_corr
    if corr is not None and not corr.is_empty():
        focal = corr.filter(pl.col("strategy") == ctx.strategy)
        if focal.height and not _bad(focal.get_column("corr_equity_vix")[0]):
            r = float(focal.get_column("corr_equity_vix")[0])
            verdict = "de-risks when fear rises" if r < -0.1 else ("adds risk when fear rises" if r > 0.1 else "barely reacts to the VIX")
            parts.append(
                f'<p class="callout">Correlation of {_esc(ctx.strategy)}\'s equity weight with the VIX: '
                f"<b>{r:+.2f}</b> — it {verdict}.</p>"
            )
        parts.append("<h3>Equity weight vs VIX, all strategies</h3>" + _table(_order_strategies(corr, [ctx.strategy]), highlight=ctx.strategy))
    return _section("vix_buckets", "".join(parts), intro)


def _crisis_section(ctx: ReportContext) -> str:
    c = ctx.crisis
    intro = (
        "Return over each stress window, the deepest fall inside it (measured from the pre-window peak), the "
        "trough day and the first day the equity was back at its pre-window peak (possibly after the window). "
        f"“vs SPY” = the strategy's window return minus {_esc(ctx.benchmark)}'s. Only windows covered by the "
        "data are shown; “partial” marks a window the data covers only in part."
    )
    if c.is_empty():
        return _section("crisis", '<p class="muted">None of the crisis windows falls inside the data range.</p>', intro)
    cols = [x for x in ("window", "strategy", "days", "return", "vs_benchmark", "max_drawdown", "trough_date",
                        "recovery_date", "recovery_days", "partial") if x in c.columns]  # fmt: skip
    window_html, prev = [], None
    for w, start, end in c.select("window", "start", "end").iter_rows():
        window_html.append(
            "" if w == prev else f'<b>{_esc(w)}</b><br><span class="small muted">{_esc(_fmt_date(start))} → {_esc(_fmt_date(end))}</span>'
        )
        prev = w
    labels = {"vs_benchmark": f"vs {ctx.benchmark}" if ctx.benchmark != "spy_buy_hold" else "vs SPY",
              "recovery_days": "Days to recover", "recovery_date": "Back at pre-window peak"}  # fmt: skip
    table = _table(c.select(cols), highlight=ctx.strategy, group_col="window", labels=labels,
                   html_cells={"window": window_html})  # fmt: skip
    return _section("crisis", table, intro)


def _cost_stress_table(cs: pl.DataFrame, highlight: str) -> str:
    """Cost-stress table with a grouped header: Sharpe | CAGR | Max drawdown, each over the multipliers."""
    groups: list[tuple[str, int]] = []
    labels: dict[str, str] = {}
    for c in cs.columns:
        metric = next((m for m in ("sharpe", "cagr", "max_drawdown") if c.startswith(m + "_") and c.endswith("x")), None)
        lab = LABELS[metric] if metric else ""
        if metric:
            labels[c] = c[len(metric) + 1 : -1] + "× costs"
        if groups and groups[-1][0] == lab:
            groups[-1] = (lab, groups[-1][1] + 1)
        else:
            groups.append((lab, 1))
    return _table(cs, highlight=highlight, labels=labels, header_groups=groups)


def render_report(title: str, context: ReportContext) -> str:
    """The whole report as one self-contained HTML document (UTF-8 text)."""
    ctx = context.with_derived()
    charts = ctx.charts or {}
    generated = ctx.generated_at or datetime.now(UTC)
    synthetic = _is_synthetic(ctx.source)
    sections: list[tuple[str, str]] = [("provenance", _provenance(ctx, generated))]

    if ctx.metrics is not None and not ctx.metrics.is_empty():
        sections.append(("metrics", _metrics_section(ctx)))
    if ctx.per_fold is not None and not ctx.per_fold.is_empty():
        sections.append(("per_fold", _per_fold_section(ctx, charts)))
    log_txt = " on a log scale (equal heights = equal percentage moves)" if ctx.log_scale else ""
    cost_txt = f" ({ctx.cost_bps:g} bps per unit of turnover)" if isinstance(ctx.cost_bps, int | float) else ""
    exposure_names = _esc(", ".join(ctx.exposure_strategies or (ctx.strategy,)))
    smooth_txt = (
        f"; smoothed with a {ctx.allocation_rolling_days}-day trailing mean." if ctx.allocation_rolling_days > 1 else "."
    )
    chart_specs = (
        ("growth", "growth", "Growth of $1", (
            f"Value of $1 invested at the start in each strategy, net of transaction costs{cost_txt}{log_txt}. "
            "A point dated t is the equity at the close of t; the weights that earned day t's return were chosen "
            "at the close of the previous trading day. The legend shows the final value."
        )),
        ("drawdowns", "drawdown", "Drawdowns", (
            "How far each strategy's equity is below its running peak (the starting $1 counts as a peak), at "
            f"each close. The legend shows the worst drawdown; {_esc(ctx.strategy)} is shaded."
        )),
        ("exposure", "exposure_vix", "Equity exposure vs VIX", (
            f"Equity weight (SPY + QQQ, left axis) held by {exposure_names} on each day — chosen at the previous "
            "close — against the VIX close (grey, right axis; dashed red line = "
            f"{ctx.panic_threshold:g}, the panic level). A policy that learned to fear moves against the grey area."
        )),
        ("allocation", "allocation", "Allocation over time", (
            f"Weights held by {_esc(ctx.strategy)} each day, stacked to 100% (cash on top). Weights dated t were "
            f"chosen at the close of the previous trading day and held to the close of t{smooth_txt}"
        )),
    )  # fmt: skip
    for sid, key, alt, caption in chart_specs:
        if key in charts:
            sections.append((sid, _section(sid, _figure(charts[key], alt, caption))))
    if ctx.vix_buckets is not None or (ctx.equity_vix_corr is not None and not ctx.equity_vix_corr.is_empty()):
        sections.append(("vix_buckets", _vix_bucket_section(ctx)))
    if ctx.crisis is not None:
        sections.append(("crisis", _crisis_section(ctx)))
    if ctx.panic_vol is not None:
        intro = (
            f"Annualised volatility (std × √252) of daily net returns on days whose decision-day VIX close "
            f"was above {ctx.panic_threshold:g}, next to the volatility over all days. A policy that de-risks "
            "in panics keeps the first number close to the second."
        )
        pv = _order_strategies(ctx.panic_vol, [ctx.strategy, ctx.benchmark])
        sections.append(("panic", _section("panic", _table(pv, highlight=ctx.strategy), intro)))
    if ctx.diagnostics is not None:
        intro = (
            "How the strategies trade. HHI = Σ w² over all positions including cash (1 = everything in one "
            "asset, 0.2 = evenly spread over five). Turnover = Σ|Δw| at each daily rebalance (0–2; the cost is "
            "bps × turnover). Cash columns show how often the strategy steps aside."
        )
        dg = _order_strategies(ctx.diagnostics, [ctx.strategy, ctx.benchmark])
        sections.append(("diagnostics", _section("diagnostics", _table(dg, highlight=ctx.strategy), intro)))
    if ctx.cost_stress is not None:
        intro = (
            "The backtest re-run with transaction costs multiplied (1× = the costs above). An edge that "
            "disappears at 2× or 3× costs comes from trading too much."
        )
        cs = _order_strategies(ctx.cost_stress, [ctx.strategy, ctx.benchmark])
        sections.append(("cost_stress", _section("cost_stress", _cost_stress_table(cs, ctx.strategy), intro)))

    nav = "".join(f'<a href="#{sid}">{_esc(SECTION_TITLES[sid])}</a>' for sid, _ in sections)
    banner = (
        f'<div class="synth-banner">{SYNTHETIC_BANNER} — generated prices, not market history. '
        "Nothing in this report says anything about real markets.</div>"
        if synthetic
        else ""
    )
    start, end = _data_range(ctx)
    subtitle = (
        f"{_esc(source_label(ctx.source))} · {_esc(start)} → {_esc(end)} · code <code>{_esc(ctx.code_version)}</code>"
        f" · generated {_esc(generated.strftime('%Y-%m-%d %H:%M %Z').strip())}"
    )
    body = "".join(s for _, s in sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'{banner}<header><div class="wrap"><h1>{_esc(title)}</h1><p class="sub">{subtitle}</p></div></header>'
        f'<nav><div class="wrap">{nav}</div></nav><main class="wrap">{body}</main>'
        f'<footer class="wrap">Generated by regimeflow · code {_esc(ctx.code_version)} · {_esc(generated.isoformat(timespec="seconds"))}</footer>'
        f"{banner}</body></html>\n"
    )


# ----------------------------------------------------------------------------------------------- files


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write the HTML atomically (temp file in the same folder, fsync, rename): readers see the old file or
    the new one, never half of one. Parent folders are created."""
    p = Path(path)
    atomic_write(p, html.encode("utf-8"))
    return p


def save_charts(directory: str | os.PathLike[str], charts: Mapping[str, bytes]) -> dict[str, Path]:
    """Write each chart as ``<directory>/<name>.png`` (atomically); returns name -> path."""
    d = Path(directory)
    out = {}
    for name, png in charts.items():
        p = d / f"{name}.png"
        atomic_write(p, png)
        out[name] = p
    return out


# ------------------------------------------------------------------------------------------------- css

_CSS = """
:root{--ink:#1d2733;--muted:#667085;--line:#e3e7ed;--stripe:#f6f8fb;--accent:#1f4e9c;--hl:#eaf1fc;--bad:#b42318}
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;
 font-size:15px;line-height:1.5;color:var(--ink);background:#fafbfc}
.wrap{max-width:1260px;margin:0 auto;padding:0 24px}
header{background:linear-gradient(135deg,#14213d,#1f4e9c);color:#fff;padding:26px 0 20px}
header h1{margin:0 0 6px;font-size:28px;font-weight:650;letter-spacing:.2px}
header .sub{margin:0;color:#d5def0;font-size:14px}
header code{background:rgba(255,255,255,.14);color:#fff}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav .wrap{display:flex;flex-wrap:wrap;gap:4px 16px;padding-top:9px;padding-bottom:9px}
nav a{color:var(--accent);text-decoration:none;font-size:13.5px;white-space:nowrap}
nav a:hover{text-decoration:underline}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px 20px;margin:22px 0;
 box-shadow:0 1px 2px rgba(16,24,40,.04)}
h2{margin:0 0 8px;font-size:21px;color:#14213d;border-bottom:2px solid var(--accent);display:inline-block;padding-bottom:2px}
h3{margin:18px 0 8px;font-size:16px;color:#344054}
p.intro{margin:6px 0 14px;color:#475467;max-width:1100px}
.muted{color:var(--muted)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;background:#f2f4f7;padding:1px 5px;border-radius:4px}
.tablewrap{overflow-x:auto;margin:6px 0 4px}
table{border-collapse:collapse;font-size:13.5px;min-width:40%}
th,td{padding:6px 11px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{background:#f0f3f8;color:#344054;font-weight:600;position:sticky;top:0}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
td.c{text-align:center;color:#475467}
td.wrap{white-space:normal;min-width:170px}
.small{font-size:12px}
tr.groups th{background:#e6ebf3;text-align:center;border-bottom:1px solid #cfd6e2}
tr.groups th.grouphead{border-left:2px solid #fff}
.grid{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
tbody tr:nth-child(even){background:var(--stripe)}
tbody tr:hover{background:#eef3fb}
tr.hl td{font-weight:650;background:var(--hl)}
tr.grp td{border-top:2px solid #b9c3d3}
td.neg{color:var(--bad)}
td.bad{color:var(--bad);font-weight:600}
figure{margin:6px 0 0}
figure img{width:100%;max-width:1200px;height:auto;border:1px solid var(--line);border-radius:6px;display:block}
figcaption{color:#475467;font-size:13.5px;margin-top:8px;max-width:1100px}
dl.prov{display:grid;grid-template-columns:170px 1fr;gap:7px 18px;margin:8px 0 0}
dl.prov dt{font-weight:600;color:#344054}
dl.prov dd{margin:0}
ul.folds{margin:0;padding-left:18px}
ul.notes{color:#475467}
p.callout{background:#f3f7fd;border-left:4px solid var(--accent);padding:8px 12px;margin:12px 0}
.tag-synth{background:#c0392b;color:#fff;font-weight:800;padding:2px 8px;border-radius:4px;letter-spacing:.6px}
.synth-banner{background:repeating-linear-gradient(45deg,#c0392b,#c0392b 18px,#b03024 18px,#b03024 36px);
 color:#fff;font-weight:800;font-size:18px;text-align:center;padding:12px 16px;letter-spacing:.5px}
footer{color:var(--muted);font-size:12.5px;padding:10px 24px 30px}
"""
