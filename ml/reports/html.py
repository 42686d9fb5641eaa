"""Self-contained HTML evaluation reports (inline CSS, charts as base64 PNG, no JavaScript, no external assets).

Usage::

    ctx = ReportContext(source="csv", code_version="abc1234", cost_bps=5, seeds=[0, 1, 2],
                        folds=[fold], metrics=metrics, daily=daily, allocations=allocations, vix=vix)
    html = render_report("Walk-forward evaluation", ctx)
    write_report("data/reports/walk_forward.html", html)

Analysis tables and charts that are not given in the context are derived from ``daily`` / ``allocations``
/ ``vix`` (``derive=True``); a section whose inputs are missing is left out.

The page is a Jinja2 template (``templates/report.html.j2``: the page; ``sections.html.j2``: one macro per
section; ``macros.html.j2``: tables and figures; ``report.css``: the stylesheet, inlined). This module only
prepares the data (which rows and columns, in which order, derived tables); cells are written by the
template filters ``fmt`` / ``cellclass`` / ``label`` / ``date`` (:mod:`ml.reports.formatting`).

Timing convention (stated in the report): a decision taken at the close of day t is held from close t to
close t+1 and earns day t+1's return net of costs; ``daily`` rows are dated by the day the return was earned,
``allocations`` rows by the day the weights were held, ``vix`` rows by the VIX close of that day.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup

from ml.artifacts import atomic_write
from ml.regimes.vix import BUCKETS, VixRegimeConfig
from ml.reports.formatting import LABELS, cell_class, fmt_date, format_value, is_missing, label
from ml.reports.markdown import markdown_table

__all__ = [
    "SECTION_TITLES",
    "ReportContext",
    "build_charts",
    "format_value",
    "markdown_table",
    "render_report",
    "save_charts",
    "source_label",
    "template_environment",
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

#: Chart-only sections: section id -> key of the chart in ``ReportContext.charts``.
_CHART_SECTIONS = {"growth": "growth", "drawdowns": "drawdown", "exposure": "exposure_vix", "allocation": "allocation"}

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

    ``vix_config``: the VIX regime thresholds the warehouse uses (None = the defaults); its bucket edges
    define the derived ``vix_buckets`` table and the bucket text of the report.
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
    vix_config: VixRegimeConfig | None = None

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
                c.vix_buckets = an.allocation_by_vix_bucket(c.allocations, c.vix, c.strategy, config=c.vix_config)
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


# ---------------------------------------------------------------------------------- jinja environment


@functools.cache
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (built once): HTML autoescaping, undefined names are
    errors, and the filters ``fmt`` (``value|fmt(column)``, see :func:`format_value`), ``cellclass``,
    ``label``, ``date``, ``num`` (``value|num(".2f")``), ``strftime``, ``source_label``, ``png_data_uri``,
    ``rows`` (a frame's rows as dicts) and ``numeric_columns``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ml.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=lambda value, column: format_value(column, value),
        cellclass=lambda value, column: cell_class(column, value),
        label=label,
        date=fmt_date,
        num=format,
        strftime=lambda d, spec: d.strftime(spec).strip(),
        source_label=source_label,
        png_data_uri=lambda png: "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        rows=lambda frame: list(frame.iter_rows(named=True)),
        numeric_columns=lambda frame: {c for c, t in frame.schema.items() if t.is_numeric()},
    )
    env.globals.update(SECTION_TITLES=SECTION_TITLES, SYNTHETIC_BANNER=SYNTHETIC_BANNER)
    return env


@functools.cache
def _stylesheet() -> Markup:
    """``report.css``, to be inlined in ``<style>`` (trusted package file: not escaped)."""
    env = template_environment()
    css = env.loader.get_source(env, "report.css")[0]
    if "</" in css:
        raise ValueError("report.css must not contain '</' (it would close the <style> element)")
    return Markup(css.strip())


# ------------------------------------------------------------------------------------ data preparation

_METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Return and risk", ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "calmar", "psr")),
    (
        "Drawdowns, tails and trading",
        ("max_drawdown", "max_dd_peak", "max_dd_trough", "recovery_days", "worst_day", "var_5", "cvar_5",
         "hit_rate", "avg_turnover"),
    ),
)  # fmt: skip
_METRIC_SKIP = {"strategy", "sharpe_ci_low", "sharpe_ci_high", "risk_free"}
_DIFF_PREFIXES = ("sharpe_diff_", "mdd_diff_")  # vs a benchmark, with a paired-bootstrap CI each
_CRISIS_COLUMNS = ("window", "strategy", "days", "return", "vs_benchmark", "max_drawdown", "trough_date",
                   "recovery_date", "recovery_days", "partial")  # fmt: skip
_COST_STRESS_METRICS = ("sharpe", "cagr", "max_drawdown")


def _nonempty(frame: pl.DataFrame | None) -> bool:
    return frame is not None and not frame.is_empty()


def _order_strategies(frame: pl.DataFrame, first: Sequence[str]) -> pl.DataFrame:
    """``frame`` with the rows of the ``first`` strategies on top (in that order), the others as they were."""
    if "strategy" not in frame.columns:
        return frame
    rank = {s: i for i, s in enumerate(first)}
    return (
        frame.with_row_index("_i")
        .with_columns(pl.col("strategy").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_r"))
        .sort(["_r", "_i"])
        .drop(["_i", "_r"])
    )


def _fold_rows(folds: Sequence[Any] | pl.DataFrame | None) -> list[dict[str, Any]]:
    if folds is None:
        return []
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


def _data_range(ctx: ReportContext) -> tuple[Any, Any]:
    start, end = ctx.data_start, ctx.data_end
    for frame in (ctx.daily, ctx.vix, ctx.allocations):
        if (start is None or end is None) and _nonempty(frame) and "date" in frame.columns:
            d = frame.get_column("date").cast(pl.Date)
            start = start if start is not None else d.min()
            end = end if end is not None else d.max()
    return start, end


def _metric_tables(m: pl.DataFrame, has_ci: bool) -> list[dict[str, Any]]:
    """The metrics split by theme (one table each; columns no theme names go to "Other"); with a confidence
    interval, Sharpe's cell reads ``0.52 [-0.10, 1.14]``."""
    groups = list(_METRIC_GROUPS)
    diffs = tuple(c for c in m.columns if c.startswith(_DIFF_PREFIXES) and not c.endswith(("_ci_low", "_ci_high")))
    if diffs:
        groups.append(("Difference vs the benchmarks (95% paired stationary-bootstrap CI; max drawdown: > 0 is "
                       "shallower)", diffs))
    skip = _METRIC_SKIP | {c for c in m.columns if c.startswith(_DIFF_PREFIXES) and c.endswith(("_ci_low", "_ci_high"))}
    rest = [c for c in m.columns if c not in skip and not any(c in g for _, g in groups)]
    if rest:
        groups.append(("Other", tuple(rest)))
    used: set[str] = set()
    tables = []
    for heading, cols in groups:
        present = [c for c in cols if c in m.columns and c not in used]
        if not present:
            continue
        used.update(present)
        formatted = {}
        if has_ci and "sharpe" in present:
            formatted["sharpe"] = [
                f"{format_value('sharpe', s)} [{format_value('sharpe', lo)}, {format_value('sharpe', hi)}]"
                if not is_missing(s)
                else format_value("sharpe", s)
                for s, lo, hi in m.select("sharpe", "sharpe_ci_low", "sharpe_ci_high").iter_rows()
            ]
        for c in present:
            if c in diffs and {f"{c}_ci_low", f"{c}_ci_high"} <= set(m.columns):
                kind = "sharpe" if c.startswith("sharpe") else "max_drawdown"
                formatted[c] = [
                    format_value(kind, v) if is_missing(v) or is_missing(lo)
                    else f"{format_value(kind, v)} [{format_value(kind, lo)}, {format_value(kind, hi)}]"
                    for v, lo, hi in m.select(c, f"{c}_ci_low", f"{c}_ci_high").iter_rows()
                ]
        sub = m.select(["strategy", *present] if "strategy" in m.columns else present)
        tables.append({"heading": heading, "frame": sub, "formatted": formatted})
    return tables


def _per_fold_tables(ctx: ReportContext) -> list[dict[str, Any]]:
    """One wide table per metric (rows: folds, columns: strategies, focal strategy and benchmark first);
    empty when ``per_fold`` is not long (``fold``, ``strategy``, metrics)."""
    pf = ctx.per_fold
    index = [c for c in ("fold", "test_start", "test_end") if c in pf.columns]
    metrics = [c for c in ("sharpe", "cagr", "total_return", "max_drawdown") if c in pf.columns]
    if not ("strategy" in pf.columns and "fold" in pf.columns and metrics):
        return []
    present = set(pf.get_column("strategy").to_list())
    names = [n for n in dict.fromkeys([ctx.strategy, ctx.benchmark, *sorted(present)]) if n in present]
    tables = []
    for metric in metrics:
        wide = pf.pivot(on="strategy", index=index, values=metric, aggregate_function="first")
        shown = [n for n in names if n in wide.columns]
        wide = wide.select([*index, *shown])
        tables.append({
            "metric": metric,
            "frame": wide,
            "labels": {n: n for n in shown},  # strategy names as they are
            "formatted": {n: [format_value(metric, v) for v in wide.get_column(n).to_list()] for n in shown},
        })  # fmt: skip
    return tables


def _focal_corr(ctx: ReportContext) -> float | None:
    """Correlation of the focal strategy's equity weight with the VIX (None when unknown)."""
    corr = ctx.equity_vix_corr
    if not _nonempty(corr):
        return None
    focal = corr.filter(pl.col("strategy") == ctx.strategy)
    if not focal.height or is_missing(focal.get_column("corr_equity_vix")[0]):
        return None
    return float(focal.get_column("corr_equity_vix")[0])


def _cost_stress_header(columns: Sequence[str]) -> dict[str, Any]:
    """Grouped header of the cost-stress table: a first row Sharpe | CAGR | Max drawdown over the columns of
    each metric (``sharpe_2x`` ...), and the columns headed by their multiplier (``2× costs``)."""
    groups: list[tuple[str, int]] = []
    labels: dict[str, str] = {}
    for c in columns:
        metric = next((m for m in _COST_STRESS_METRICS if c.startswith(m + "_") and c.endswith("x")), None)
        text = LABELS[metric] if metric else ""
        if metric:
            labels[c] = c[len(metric) + 1 : -1] + "× costs"
        if groups and groups[-1][0] == text:
            groups[-1] = (text, groups[-1][1] + 1)
        else:
            groups.append((text, 1))
    return {"labels": labels, "groups": groups}


def _sections(ctx: ReportContext, charts: Mapping[str, bytes]) -> list[str]:
    """Ids of the sections that have something to show, in :data:`SECTION_TITLES` order."""
    present = {
        "provenance": True,
        "metrics": _nonempty(ctx.metrics),
        "per_fold": _nonempty(ctx.per_fold),
        **{sid: key in charts for sid, key in _CHART_SECTIONS.items()},
        "vix_buckets": ctx.vix_buckets is not None or _nonempty(ctx.equity_vix_corr),
        "crisis": ctx.crisis is not None,
        "panic": ctx.panic_vol is not None,
        "diagnostics": ctx.diagnostics is not None,
        "cost_stress": ctx.cost_stress is not None,
    }
    return [sid for sid in SECTION_TITLES if present[sid]]


def render_report(title: str, context: ReportContext) -> str:
    """The whole report as one self-contained HTML document (UTF-8 text)."""
    ctx = context.with_derived()
    charts = ctx.charts or {}
    sections = _sections(ctx, charts)
    first = [ctx.strategy, ctx.benchmark]
    data_start, data_end = _data_range(ctx)
    view: dict[str, Any] = {
        "title": title,
        "ctx": ctx,
        "charts": charts,
        "sections": sections,
        "synthetic": _is_synthetic(ctx.source),
        "generated": ctx.generated_at or datetime.now(UTC),
        "data_start": data_start,
        "data_end": data_end,
        "folds": _fold_rows(ctx.folds),
        "css": _stylesheet(),
        "metric_tables": [],
        "metrics_risk_free": ctx.risk_free,
        "has_ci": False,
        "per_fold_tables": _per_fold_tables(ctx) if "per_fold" in sections else [],
        "bucket_edges": (ctx.vix_config or VixRegimeConfig()).bucket_edges,
        "bucket_names": BUCKETS,
        "vix_corr": _order_strategies(ctx.equity_vix_corr, [ctx.strategy]) if _nonempty(ctx.equity_vix_corr) else None,
        "focal_corr": _focal_corr(ctx),
        "crisis_columns": [c for c in _CRISIS_COLUMNS if ctx.crisis is not None and c in ctx.crisis.columns],
        "ordered": {
            name: _order_strategies(frame, first)
            for name, frame in (("panic", ctx.panic_vol), ("diagnostics", ctx.diagnostics), ("cost_stress", ctx.cost_stress))
            if frame is not None
        },
        "cost_stress_header": _cost_stress_header(ctx.cost_stress.columns if ctx.cost_stress is not None else ()),
    }
    if "metrics" in sections:
        m = _order_strategies(ctx.metrics, first)
        if "risk_free" in m.columns and m.get_column("risk_free").drop_nulls().n_unique() == 1:
            view["metrics_risk_free"] = float(m.get_column("risk_free").drop_nulls()[0])
        view["has_ci"] = {"sharpe", "sharpe_ci_low", "sharpe_ci_high"} <= set(m.columns)
        view["metric_tables"] = _metric_tables(m, view["has_ci"])
    return template_environment().get_template("report.html.j2").render(view)


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
