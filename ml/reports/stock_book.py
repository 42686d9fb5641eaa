"""The stock book's walk-forward report: one self-contained HTML page (template ``stock_book.html.j2``;
inline CSS, charts as base64 PNG, no JavaScript, no external URL), modelled on the sector book's
(:mod:`ml.reports.sector_book`, whose table and formatting helpers it reuses).

Inputs are the frames of :mod:`ml.stock_book` stitched over the walk-forward folds (see
:func:`render_stock_book_report`). :func:`stock_book_view` prepares everything the template shows (which
rows and columns, in which order, how each cell is written, the charts as PNG bytes);
:func:`render_stock_book_html` renders it; :func:`render_stock_book_report` writes the page atomically.
Every table and chart survives an empty or missing frame: the page then says "none" in one short line.
A synthetic data source (``"synthetic"`` or ``"synthetic:<detail>"``) is labelled in the banner, the
header, every section heading and every chart title. Pure Python: no dagster, no duckdb.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np
import polars as pl

from ml.decision_engine import SOURCES
from ml.metrics import sharpe, sharpe_diff_ci
from ml.regimes.vix import BANDS
from ml.reports.analysis import equity_curves
from ml.reports.charts import _STYLE, _date_axis, _dates, _empty, _figure, _pct, _png, _title
from ml.reports.formatting import MISSING, is_missing
from ml.reports.html import _order_strategies, _stylesheet, template_environment, write_report
from ml.reports.sector_book import _KINDS as _SECTOR_KINDS
from ml.reports.sector_book import _LABELS as _SECTOR_LABELS
from ml.reports.tables import cell, fold_order, has_rows, is_synthetic_source, source_text, view_table, with_ci
from ml.reports.tables import cost_stress_table as shared_cost_stress_table
from ml.stock_book import BENCHMARKS, STOCK_VARIANTS, SURVIVORSHIP_NOTE

__all__ = [
    "ABLATION",
    "ATTRIBUTION_SOURCES",
    "BENCHMARK",
    "FOCUS",
    "SECTIONS",
    "STRATEGIES",
    "STRATEGY_COLORS",
    "TOP_TRADES",
    "attribution_chart",
    "attribution_table",
    "cap_search_tables",
    "cost_stress_table",
    "drawdown_chart",
    "ensemble_table",
    "exit_reason_table",
    "exposure_band_table",
    "exposure_vix_chart",
    "growth_chart",
    "headline_tables",
    "per_fold_table",
    "regime_weighting",
    "render_stock_book_html",
    "render_stock_book_report",
    "stock_book_view",
    "trade_tables",
]

FOCUS = "stock_book"
#: The ablation: every VIX band weighs the signals equally.
ABLATION = "stock_book_equal_weights"
BENCHMARK = "spy_buy_hold"
#: Report order of the strategies (others follow as they come).
STRATEGIES: tuple[str, ...] = (*STOCK_VARIANTS, *BENCHMARKS)
STRATEGY_COLORS: dict[str, str] = {"stock_book": "#1f4e9c", "stock_book_max_sharpe": "#e07b00",
                                   "stock_book_equal_weights": "#8e44ad", "spy_buy_hold": "#3a3a3a",
                                   "ew_stocks": "#8c564b", "prescreen_only": "#2e8b57"}
#: Attribution sources in report order (the engine's signals, then the P&L no signal explains).
ATTRIBUTION_SOURCES: tuple[str, ...] = (*SOURCES, "unattributed")
TOP_TRADES = 10
_VIX_COLOR = "#7a7a7a"

#: Section id -> heading, in page order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("headline", "Headline metrics (1× costs)"),
    ("cost_stress", "Cost stress"),
    ("regime_weighting", "Does the regime weighting add anything?"),
    ("equity", "Equity curves"),
    ("drawdown", "Drawdown: stock_book vs SPY"),
    ("exposure", "Exposure vs VIX"),
    ("attribution", "P&L attribution by signal source"),
    ("trades", "Top trades of stock_book"),
    ("exit_reasons", "Trade exit reasons"),
    ("per_fold", "Per-fold Sharpe"),
    ("position_cap", "Position cap chosen per fold"),
    ("ensemble", "RL ensemble weights per fold"),
)

# The sector book's cell kinds and headings plus this report's columns (kinds: ml.reports.tables.FORMATS).
_KINDS: dict[str, str] = {
    **_SECTOR_KINDS, "entry_conviction": "ratio", "entry_prescreen": "ratio", "entry_rl": "ratio",
    "entry_technical": "ratio", "max_weight": "pct", "position_cap": "pct", "val_sharpe": "ratio",
    "val_return": "pct", "weight": "pct", "composite": "ratio3", "share": "pct", "long_exposure": "pct",
    "short_exposure": "pct", "avg_vix": "dec1", "positions": "dec1", "candidates": "dec1", "sortino": "ratio",
}  # fmt: skip
_LABELS: dict[str, str] = {
    **_SECTOR_LABELS, "sharpe": "Sharpe", "ann_vol": "Ann. vol", "exit_reason": "Exit reason",
    "entry_conviction": "Conviction at entry", "entry_prescreen": "Prescreen", "entry_rl": "RL",
    "entry_technical": "Technical", "max_weight": "Max weight", "position_cap": "Position cap (calm)",
    "val_sharpe": "Validation Sharpe", "val_return": "Validation return", "member": "Member", "weight": "Weight",
    "composite": "Composite score", "fallback_equal": "Equal-weight fallback", "share": "Share",
    "band": "VIX band", "avg_vix": "Avg VIX", "long_exposure": "Avg long exposure",
    "short_exposure": "Avg short exposure", "positions": "Avg positions", "candidates": "Avg candidates",
    "source": "Source", "total": "Total",
}  # fmt: skip
_HEADLINE_COLUMNS = ("strategy", "sharpe", "cagr", "ann_vol", "max_drawdown", "avg_turnover", "cost_drag", "trades",
                     "win_rate", "avg_win", "avg_loss", "profit_factor", "avg_hold_days")
_TRADE_LIST_COLUMNS = ("fold", "ticker", "entry_date", "exit_date", "holding_days", "pnl", "exit_reason",
                       "entry_conviction", "entry_prescreen", "entry_rl", "entry_technical", "max_weight")
_END = "(open at fold end)"


# --------------------------------------------------------------------------------------------- helpers


def _table(frame: pl.DataFrame, columns: Sequence[str], *, formatted: Mapping[str, list[str]] | None = None,
           labels: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """:func:`view_table` with this report's cell kinds and headings."""
    return view_table(frame, columns, _KINDS, _LABELS, formatted=formatted, headings=labels, **extra)


def _order(frame: pl.DataFrame) -> pl.DataFrame:
    return _order_strategies(frame, STRATEGIES)


def _at_1x(frame: pl.DataFrame) -> pl.DataFrame:
    if "cost_multiplier" in frame.columns and frame.get_column("cost_multiplier").n_unique() > 1:
        return frame.filter(pl.col("cost_multiplier") == 1.0)
    return frame


def _names(present: Sequence[str]) -> list[str]:
    """``present`` strategies in report order, unknown ones after (sorted)."""
    have = set(present)
    return [s for s in STRATEGIES if s in have] + sorted(have - set(STRATEGIES))


def _fold_rank(folds: Sequence[str]) -> pl.Expr:
    rank = {k: i for i, k in enumerate(folds)}
    return pl.col("fold").cast(pl.Utf8).replace_strict(rank, default=len(rank), return_dtype=pl.Int64)


def _color(name: str) -> str:
    return STRATEGY_COLORS.get(name, "#7f7f7f")


def _num(value: Any, spec: str) -> str:
    return MISSING if is_missing(value) else format(float(value), spec)


# ---------------------------------------------------------------------------------------------- tables


def headline_tables(metrics: pl.DataFrame | None) -> list[dict[str, Any]]:
    """The 1x-cost headline (Sharpe with its 95 % CI, CAGR, vol, drawdown, turnover, cost drag and the closed-
    trade statistics) of the variants and comparisons, and each one's Sharpe minus the comparisons' (paired
    bootstrap CIs)."""
    if not has_rows(metrics, "strategy"):
        return []
    m = _order(_at_1x(metrics))
    formatted = {"sharpe": with_ci(m, "sharpe")} if "sharpe" in m.columns else {}
    out = [{"heading": "Return, risk and trades", **_table(m, _HEADLINE_COLUMNS, formatted=formatted,
                                                            labels={"sharpe": "Sharpe [95% CI]"})}]
    diffs = [f"sharpe_diff_{b}" for b in BENCHMARKS if f"sharpe_diff_{b}" in m.columns]
    if diffs:
        out.append({"heading": "Sharpe minus each comparison's [95% CI]",
                    **_table(m, ("strategy", *diffs), formatted={c: with_ci(m, c) for c in diffs},
                             labels={c: f"− {c.removeprefix('sharpe_diff_')}" for c in diffs})})
    return out


def cost_stress_table(metrics: pl.DataFrame | None) -> dict[str, Any] | None:
    """Sharpe and CAGR per strategy at each cost multiplier (:func:`ml.reports.tables.cost_stress_table`)."""
    return shared_cost_stress_table(metrics, STRATEGIES)


def regime_weighting(track: pl.DataFrame | None, metrics: pl.DataFrame | None, *, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """``stock_book`` (regime weights by VIX band) against ``stock_book_equal_weights`` (every band weighs
    the signals equally): the Sharpe difference over their common earned days with its paired stationary-
    bootstrap 95 % CI (:func:`ml.metrics.sharpe_diff_ci`), and one sentence read off the numbers. Without
    both daily series: both 1x-cost Sharpes from ``metrics`` (when there)."""
    out: dict[str, Any] = {"focus": FOCUS, "ablation": ABLATION, "days": 0, "sharpe_focus": MISSING,
                           "sharpe_ablation": MISSING, "diff": None, "ci_low": None, "ci_high": None,
                           "diff_text": MISSING, "ci_text": MISSING}
    if has_rows(track, "strategy", "date", "net_return"):
        keys = ["fold", "date"] if "fold" in track.columns else ["date"]
        sides = [track.filter(pl.col("strategy") == s).select(*keys, pl.col("net_return").cast(pl.Float64).alias(s))
                 for s in (FOCUS, ABLATION)]
        both = sides[0].join(sides[1], on=keys, how="inner").drop_nulls().sort("date")
        out["days"] = both.height
        if both.height >= 2:
            a, b = both.get_column(FOCUS).to_numpy(), both.get_column(ABLATION).to_numpy()
            diff, lo, hi = sharpe_diff_ci(a, b, n_boot=n_boot, seed=seed)
            out.update(sharpe_focus=_num(sharpe(a), ".2f"), sharpe_ablation=_num(sharpe(b), ".2f"), diff=diff,
                       ci_low=lo, ci_high=hi, diff_text=_num(diff, "+.2f"),
                       ci_text=f"[{_num(lo, '+.2f')}, {_num(hi, '+.2f')}]")
    if out["diff"] is None and has_rows(metrics, "strategy", "sharpe"):
        m = _at_1x(metrics)
        for key, name in (("sharpe_focus", FOCUS), ("sharpe_ablation", ABLATION)):
            r = m.filter(pl.col("strategy") == name)
            if r.height:
                out[key] = _num(r.get_column("sharpe")[0], ".2f")
    diff, lo, hi = out["diff"], out["ci_low"], out["ci_high"]
    if diff is None or any(is_missing(x) for x in (diff, lo, hi)):
        if out["sharpe_focus"] == MISSING and out["sharpe_ablation"] == MISSING:
            out["sentence"] = f"Neither {FOCUS} nor {ABLATION} is on the track: nothing to compare."
        else:
            out["sentence"] = (f"Sharpe {out['sharpe_focus']} ({FOCUS}) vs {out['sharpe_ablation']} ({ABLATION}); "
                               f"without both daily series over common days there is no interval on the difference, "
                               f"so the track cannot say whether the regime weighting adds anything.")
    elif lo <= 0.0 <= hi:
        out["sentence"] = (f"The 95 % interval of the Sharpe difference, {out['ci_text']}, includes 0: over these "
                           f"{out['days']} days the regime weighting by VIX band cannot be told apart from weighting "
                           f"the signals equally.")
    elif lo > 0.0:
        out["sentence"] = (f"The 95 % interval of the Sharpe difference, {out['ci_text']}, lies above 0: over these "
                           f"{out['days']} days the regime weighting by VIX band raised the Sharpe by "
                           f"{out['diff_text']} against equal weights.")
    else:
        out["sentence"] = (f"The 95 % interval of the Sharpe difference, {out['ci_text']}, lies below 0: over these "
                           f"{out['days']} days equal weights did better than the regime weighting by VIX band "
                           f"(Sharpe {out['diff_text']}).")
    return out


def exposure_band_table(track: pl.DataFrame | None) -> dict[str, Any] | None:
    """``stock_book``'s earned days per VIX band: days, share, average VIX, average long / short exposure,
    positions and candidates (bands in :data:`ml.regimes.vix.BANDS` order, days without a band last)."""
    if not has_rows(track, "strategy", "band", "long_exposure"):
        return None
    t = track.filter(pl.col("strategy") == FOCUS)
    if not t.height:
        return None
    rank = {b: i for i, b in enumerate(BANDS)}
    aggs = [pl.len().alias("days"), (pl.len() / t.height).alias("share"),
            *[pl.col(c).cast(pl.Float64).mean().alias(a) for c, a in (
                ("vix", "avg_vix"), ("long_exposure", "long_exposure"), ("short_exposure", "short_exposure"),
                ("positions", "positions"), ("candidates", "candidates")) if c in t.columns]]
    g = (t.with_columns(pl.col("band").cast(pl.Utf8).fill_null("(none)")).group_by("band").agg(aggs)
         .with_columns(pl.col("band").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_r"))
         .sort("_r", "band").drop("_r"))
    return _table(g, ("band", "days", "share", "avg_vix", "long_exposure", "short_exposure", "positions",
                      "candidates"), labels={"days": "Earned days", "share": "Share of days"})


def exposure_vix_corr(track: pl.DataFrame | None) -> float | None:
    """Correlation of ``stock_book``'s long exposure with the VIX over the days with both (None if < 3)."""
    if not has_rows(track, "strategy", "long_exposure", "vix"):
        return None
    t = (track.filter(pl.col("strategy") == FOCUS)
         .select(pl.col("long_exposure").cast(pl.Float64), pl.col("vix").cast(pl.Float64)).drop_nulls())
    if t.height < 3 or t.get_column("vix").std() == 0 or t.get_column("long_exposure").std() == 0:
        return None
    value = t.select(pl.corr("long_exposure", "vix")).item()
    return None if is_missing(value) else float(value)


def attribution_table(attribution: pl.DataFrame | None) -> dict[str, Any] | None:
    """P&L per source (fraction of equity summed over the track), one row per book variant, plus the total."""
    if not has_rows(attribution, "strategy", "source", "pnl"):
        return None
    a = attribution.group_by("strategy", "source").agg(pl.col("pnl").cast(pl.Float64).sum())
    present = set(a.get_column("source").to_list())
    sources = [s for s in ATTRIBUTION_SOURCES if s in present] + sorted(present - set(ATTRIBUTION_SOURCES))
    wide = _order(a.select("strategy").unique().sort("strategy"))
    for s in sources:
        part = a.filter(pl.col("source") == s).select("strategy", pl.col("pnl").alias(s))
        wide = wide.join(part, on="strategy", how="left", maintain_order="left")
    wide = wide.with_columns(pl.sum_horizontal([pl.col(s).fill_null(0.0) for s in sources]).alias("total"))
    cols = [*sources, "total"]
    formatted = {c: [cell(v, "pct2") for v in wide.get_column(c).to_list()] for c in cols}
    return _table(wide, ("strategy", *cols), formatted=formatted, labels={s: s for s in sources})


def _stock_book_trades(trades: pl.DataFrame | None) -> pl.DataFrame | None:
    if not has_rows(trades, "pnl"):
        return None
    t = trades.filter(pl.col("strategy") == FOCUS) if "strategy" in trades.columns else trades
    return t.with_columns(pl.col("fold").cast(pl.Utf8)) if "fold" in t.columns else t


def _closed(t: pl.DataFrame) -> pl.Expr:
    return pl.col("closed").fill_null(False) if "closed" in t.columns else pl.col("exit_date").is_not_null()


def trade_tables(trades: pl.DataFrame | None) -> dict[str, Any]:
    """The :data:`TOP_TRADES` best and worst closed trades of :data:`FOCUS` by P&L with their entry signals."""
    out: dict[str, Any] = {"best": None, "worst": None, "closed": 0, "open": 0}
    t = _stock_book_trades(trades)
    if t is None:
        return out
    closed = t.filter(_closed(t))
    out["closed"], out["open"] = closed.height, t.height - closed.height
    if closed.height:
        out["best"] = _table(closed.sort("pnl", descending=True, nulls_last=True).head(TOP_TRADES), _TRADE_LIST_COLUMNS)
        out["worst"] = _table(closed.sort("pnl", nulls_last=True).head(TOP_TRADES), _TRADE_LIST_COLUMNS)
    return out


def exit_reason_table(trades: pl.DataFrame | None) -> dict[str, Any] | None:
    """:data:`FOCUS`'s trades per exit reason (stop, sell, regime ...; trades still open at a fold's end on
    their own row): count, share, win rate, total and average P&L, average holding period."""
    t = _stock_book_trades(trades)
    if t is None or not t.height:
        return None
    reason = pl.col("exit_reason").cast(pl.Utf8) if "exit_reason" in t.columns else pl.lit(None, dtype=pl.Utf8)
    label = pl.when(~_closed(t)).then(pl.lit(_END)).otherwise(reason.fill_null("(none)")).alias("exit_reason")
    aggs = [pl.len().alias("trades"), (pl.len() / t.height).alias("share"),
            (pl.col("pnl") > 0).cast(pl.Float64).mean().alias("win_rate"), pl.col("pnl").sum().alias("total_pnl"),
            pl.col("pnl").mean().alias("avg_pnl")]
    if "holding_days" in t.columns:
        aggs.append(pl.col("holding_days").cast(pl.Float64).mean().alias("avg_hold_days"))
    g = (t.with_columns(label).group_by("exit_reason").agg(aggs)
         .with_columns((pl.col("exit_reason") == _END).alias("_end"))
         .sort("_end", "trades", "exit_reason", descending=[False, True, False]).drop("_end"))
    return _table(g, ("exit_reason", "trades", "share", "win_rate", "total_pnl", "avg_pnl", "avg_hold_days"),
                  labels={"trades": "Trades", "total_pnl": "Σ P&L (% of equity)"})


def per_fold_table(per_fold: pl.DataFrame | None, folds: Sequence[str]) -> dict[str, Any] | None:
    """Sharpe per fold (rows, time order) for each strategy (columns ``sharpe_<strategy>``), 1x costs."""
    if not has_rows(per_fold, "fold", "strategy", "sharpe"):
        return None
    pf = _at_1x(per_fold).with_columns(pl.col("fold").cast(pl.Utf8))
    names = _names(pf.get_column("strategy").unique().to_list())
    wide = pf.select("fold").unique().with_columns(_fold_rank(folds).alias("_r")).sort("_r", "fold").drop("_r")
    for s in names:
        part = (pf.filter(pl.col("strategy") == s).unique("fold", keep="first")
                .select("fold", pl.col("sharpe").cast(pl.Float64).alias(f"sharpe_{s}")))
        wide = wide.join(part, on="fold", how="left", maintain_order="left")
    cols = [f"sharpe_{s}" for s in names]
    formatted = {c: [cell(v, "ratio") for v in wide.get_column(c).to_list()] for c in cols}
    return {**_table(wide, ("fold", *cols), formatted=formatted, labels={f"sharpe_{s}": s for s in names}),
            "focus_column": f"sharpe_{FOCUS}"}


def _cap_label(cap: float) -> str:
    return f"{100.0 * cap:.4g}%"


def cap_search_tables(cap_search: pl.DataFrame | None, folds: Sequence[str]) -> dict[str, Any] | None:
    """The calm-market position cap chosen per fold (with its validation Sharpe and return) and the whole
    search grid: validation Sharpe per fold (rows) and cap (columns), the chosen one starred."""
    if not has_rows(cap_search, "fold", "position_cap"):
        return None
    c = (cap_search.with_columns(pl.col("fold").cast(pl.Utf8), pl.col("position_cap").cast(pl.Float64))
         .with_columns(_fold_rank(folds).alias("_r")).sort("_r", "fold", "position_cap").drop("_r"))
    chosen_flag = pl.col("chosen").fill_null(False) if "chosen" in c.columns else pl.lit(False)
    chosen = c.filter(chosen_flag).unique("fold", keep="first", maintain_order=True)
    out: dict[str, Any] = {"chosen": _table(chosen, ("fold", "position_cap", "val_sharpe", "val_return"))
                           if chosen.height else None, "grid": None}
    if "val_sharpe" in c.columns:
        caps = sorted(set(c.get_column("position_cap").drop_nulls().to_list()))
        wide = c.select("fold").unique(maintain_order=True)
        formatted: dict[str, list[str]] = {}
        labels: dict[str, str] = {}
        for i, cap in enumerate(caps):
            name = f"cap_{i}"
            part = (c.filter(pl.col("position_cap") == cap).unique("fold", keep="first")
                    .select("fold", pl.col("val_sharpe").cast(pl.Float64).alias(name),
                            chosen_flag.alias(f"_{name}")))
            wide = wide.join(part, on="fold", how="left", maintain_order="left")
            formatted[name] = [cell(v, "ratio") + (" ★" if flag else "")
                               for v, flag in wide.select(name, f"_{name}").iter_rows()]
            labels[name] = _cap_label(cap)
        cols = [f"cap_{i}" for i in range(len(caps))]
        if cols:
            out["grid"] = _table(wide.select("fold", *cols), ("fold", *cols), formatted=formatted, labels=labels,
                                 header_groups=[("", 1), ("Validation Sharpe by calm-market position cap", len(cols))])
    return out if out["chosen"] or out["grid"] else None


def ensemble_table(ensemble: pl.DataFrame | None, folds: Sequence[str]) -> dict[str, Any] | None:
    """The RL ensemble's members per fold (time order, heaviest first): weight, composite score, validation
    return and whether the fold fell back to equal weights."""
    if not has_rows(ensemble, "fold", "member"):
        return None
    e = ensemble.with_columns(pl.col("fold").cast(pl.Utf8), _fold_rank(folds).alias("_r"))
    by = ["_r", "fold", *(["weight"] if "weight" in e.columns else []), "member"]
    e = e.sort(by, descending=[c == "weight" for c in by], nulls_last=True).drop("_r")
    formatted = {}
    if "fallback_equal" in e.columns:
        formatted["fallback_equal"] = [MISSING if v is None else ("yes" if v else "no")
                                       for v in e.get_column("fallback_equal").to_list()]
    fallback = (sorted(set(e.filter(pl.col("fallback_equal").fill_null(False)).get_column("fold").to_list()),
                       key=lambda k: (folds.index(k) if k in folds else len(folds), k))
                if "fallback_equal" in e.columns else [])
    return {**_table(e, ("fold", "member", "weight", "composite", "val_return", "fallback_equal"),
                     formatted=formatted, group_col="fold"), "fallback_folds": fallback}


def _headline(metrics: pl.DataFrame | None) -> dict[str, Any] | None:
    """The focus strategy's and SPY's key numbers at 1x costs (None when absent)."""
    if not has_rows(metrics, "strategy"):
        return None
    m = _at_1x(metrics)
    out = {}
    for key, name in (("focus", FOCUS), ("spy", BENCHMARK)):
        r = m.filter(pl.col("strategy") == name)
        if r.height:
            row = r.row(0, named=True)
            out[key] = {"name": name, "sharpe": with_ci(r, "sharpe")[0] if "sharpe" in r.columns else MISSING,
                        **{c: cell(row.get(c), _KINDS[c]) for c in ("cagr", "max_drawdown", "trades", "win_rate")}}
    return out or None


# ---------------------------------------------------------------------------------------------- charts


def _curves(track: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """Equity compounded from 1 over the stitched track (``net_return``) and its drawdown, per strategy."""
    t = track.filter(pl.col("strategy").is_in(list(names))).select(
        "strategy", pl.col("date").cast(pl.Date), pl.col("net_return").cast(pl.Float64),
        *(["fold"] if "fold" in track.columns else []))
    return equity_curves(t)


def _fold_lines(ax, track: pl.DataFrame) -> None:
    if "fold" in track.columns:
        starts = track.group_by("fold").agg(pl.col("date").min()).sort("date").get_column("date")
        for d in starts.to_list()[1:]:
            ax.axvline(np.datetime64(d, "D"), color="#b9c3d3", linewidth=1.0, linestyle=":", zorder=1)


def _lines(ax, curves: pl.DataFrame, column: str, names: Sequence[str]) -> None:
    for name in sorted(names, key=lambda n: n == FOCUS):  # the focus drawn last (on top)
        s = curves.filter(pl.col("strategy") == name)
        if not s.height:
            continue
        y = s.get_column(column).to_numpy().astype(float)
        last = f"${y[-1]:,.2f}" if column == "equity" else f"max {np.nanmin(y):.1%}"
        ax.plot(_dates(s), y, label=f"{name}  ({last})", color=_color(name), linewidth=2.6 if name == FOCUS else 1.3,
                alpha=1.0 if name == FOCUS else 0.85, zorder=3 if name == FOCUS else 2)
        if name == FOCUS and column == "drawdown":
            ax.fill_between(_dates(s), y, 0.0, color=_color(name), alpha=0.15, linewidth=0, zorder=1)


def _legend(fig, ax, ncols: int = 3) -> None:
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].split("  ")[0] != FOCUS)
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncols=ncols,
               frameon=False)


def growth_chart(track: pl.DataFrame, *, source: str | None = None,
                 title: str = "Growth of $1 over the stitched walk-forward track (net of costs, log scale)") -> bytes:
    """Equity of $1 per variant and comparison (compounded ``net_return``, log scale), :data:`FOCUS` thick;
    dotted lines mark the folds' starts; final values in the legend."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(track, "strategy", "date", "net_return"):
            _empty(ax, "no data")
            return _png(fig)
        names = _names(track.get_column("strategy").unique().to_list())
        _lines(ax, _curves(track, names), "equity", names)
        _fold_lines(ax, track)
        ax.axhline(1.0, color="#999999", linewidth=0.9, linestyle="--", zorder=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=8))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"${v:,.2f}"))
        ax.set_ylabel("Value of $1 (log scale)")
        _date_axis(ax)
        _legend(fig, ax)
        return _png(fig)


def drawdown_chart(track: pl.DataFrame, *, source: str | None = None,
                   title: str = "Drawdown from running peak: stock_book vs SPY buy-and-hold") -> bytes:
    """Drawdown (equity / running peak - 1) of :data:`FOCUS` (shaded) and of SPY buy-and-hold."""
    names = [FOCUS, BENCHMARK]
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(track, "strategy", "date", "net_return") or not track.filter(
                pl.col("strategy").is_in(names)).height:
            _empty(ax, "no data")
            return _png(fig)
        _lines(ax, _curves(track, names), "drawdown", names)
        _fold_lines(ax, track)
        ax.axhline(0.0, color="#999999", linewidth=0.9)
        _pct(ax)
        ax.set_ylabel("Drawdown (% below peak)")
        _date_axis(ax)
        _legend(fig, ax, ncols=2)
        return _png(fig)


def exposure_vix_chart(track: pl.DataFrame, *, source: str | None = None,
                       title: str = "stock_book: invested fraction (long exposure) vs the VIX") -> bytes:
    """:data:`FOCUS`'s long exposure (left axis, % of equity) over the track with the VIX close (right axis,
    grey) on a twin axis; dotted lines mark the folds' starts."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        s = (track.filter(pl.col("strategy") == FOCUS).sort("date")
             if has_rows(track, "strategy", "date", "long_exposure") else None)
        if s is None or not s.height:
            _empty(ax, "no exposure data")
            return _png(fig)
        handles = []
        if "vix" in s.columns and s.get_column("vix").drop_nulls().len():
            ax2 = ax.twinx()
            v = s.select("date", pl.col("vix").cast(pl.Float64)).drop_nulls()
            ax2.fill_between(_dates(v), v.get_column("vix").to_numpy(), 0, color="#9e9e9e", alpha=0.22, linewidth=0,
                             zorder=1)
            handles += ax2.plot(_dates(v), v.get_column("vix").to_numpy(), color=_VIX_COLOR, linewidth=0.9,
                                label="VIX close (right axis)")
            ax2.set_ylabel("VIX (index points)", color="#555555")
            ax2.set_ylim(bottom=0)
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            ax.set_zorder(ax2.get_zorder() + 1)  # exposure above the VIX shading
            ax.patch.set_visible(False)
        expo = s.get_column("long_exposure").cast(pl.Float64).to_numpy()
        handles = ax.plot(_dates(s), expo, color=_color(FOCUS), linewidth=1.6, zorder=3,
                          label=f"{FOCUS} long exposure (left axis)") + handles
        _fold_lines(ax, s)
        ax.set_ylim(-0.02, max(1.02, float(np.nanmax(expo)) + 0.02) if np.isfinite(expo).any() else 1.02)
        _pct(ax)
        ax.set_ylabel("Long exposure (% of equity)")
        _date_axis(ax)
        fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=len(handles),
                   frameon=False)
        return _png(fig)


def attribution_chart(attribution: pl.DataFrame, *, source: str | None = None,
                      title: str = "P&L attribution by signal source (fraction of equity, summed over the track)") -> bytes:
    """Grouped bars: per source, one bar per book variant with its attributed P&L."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(attribution, "strategy", "source", "pnl"):
            _empty(ax, "no attribution")
            return _png(fig)
        a = attribution.group_by("strategy", "source").agg(pl.col("pnl").cast(pl.Float64).sum())
        present = set(a.get_column("source").to_list())
        sources = [s for s in ATTRIBUTION_SOURCES if s in present] + sorted(present - set(ATTRIBUTION_SOURCES))
        names = _names(a.get_column("strategy").unique().to_list())
        width = 0.8 / len(names)
        x = np.arange(len(sources))
        for j, name in enumerate(names):
            vals = dict(a.filter(pl.col("strategy") == name).select("source", "pnl").iter_rows())
            y = np.array([np.nan if vals.get(k) is None else float(vals[k]) for k in sources])
            ax.bar(x - 0.4 + width * (j + 0.5), y, width=width * 0.92, label=name, color=_color(name),
                   edgecolor="white", linewidth=0.5, alpha=1.0 if name == FOCUS else 0.8)
        ax.axhline(0.0, color="#555555", linewidth=0.9)
        ax.set_xticks(x, sources)
        ax.set_xlabel("Signal source")
        _pct(ax, decimals=1)
        ax.set_ylabel("P&L (% of equity)")
        ax.grid(False, axis="x")
        _legend(fig, ax)
        return _png(fig)


# ------------------------------------------------------------------------------------------------ page


def stock_book_view(*, track: pl.DataFrame | None, metrics: pl.DataFrame | None,
                    attribution: pl.DataFrame | None, trades: pl.DataFrame | None, per_fold: pl.DataFrame | None,
                    cap_search: pl.DataFrame | None, ensemble: pl.DataFrame | None, source: str, code_version: str,
                    title: str | None = None, generated_at: datetime | None = None) -> dict[str, Any]:
    """Everything ``stock_book.html.j2`` shows (tables as dicts of frame, columns, labels and formatted cells;
    charts as PNG bytes), from the frames of :func:`render_stock_book_report`. No file is written."""
    synthetic = is_synthetic_source(source)
    chart_source = "synthetic" if synthetic else source
    folds = fold_order(track, per_fold, cap_search, ensemble, trades)
    has_track = has_rows(track, "strategy", "date", "net_return")
    present = set(track.get_column("strategy").to_list()) if has_track else set()
    charts: dict[str, bytes] = {}
    if has_track:
        charts["equity"] = growth_chart(track, source=chart_source)
        if {FOCUS, BENCHMARK} & present:
            charts["drawdown"] = drawdown_chart(track, source=chart_source)
    if FOCUS in present and "long_exposure" in track.columns:
        charts["exposure"] = exposure_vix_chart(track, source=chart_source)
    if has_rows(attribution, "strategy", "source", "pnl"):
        charts["attribution"] = attribution_chart(attribution, source=chart_source)
    corr = exposure_vix_corr(track)
    return {
        "title": title or "regimeflow — stock book (walk-forward)",
        "source": source, "source_text": source_text(source), "synthetic": synthetic, "code_version": code_version,
        "generated": generated_at or datetime.now(UTC), "css": _stylesheet(), "sections": SECTIONS,
        "headings": dict(SECTIONS), "survivorship": SURVIVORSHIP_NOTE, "focus": FOCUS, "ablation": ABLATION,
        "benchmark": BENCHMARK, "variants": STOCK_VARIANTS, "benchmarks": BENCHMARKS,
        "data_start": track.get_column("date").min() if has_track else None,
        "data_end": track.get_column("date").max() if has_track else None,
        "folds": folds, "strategies": _names(present) if present else list(STRATEGIES),
        "headline": _headline(metrics), "headline_tables": headline_tables(metrics),
        "cost_stress": cost_stress_table(metrics), "regime_weighting": regime_weighting(track, metrics),
        "exposure_bands": exposure_band_table(track), "exposure_corr": None if corr is None else f"{corr:+.2f}",
        "attribution": attribution_table(attribution), "trades": trade_tables(trades), "top_n": TOP_TRADES,
        "exit_reasons": exit_reason_table(trades), "per_fold": per_fold_table(per_fold, folds),
        "cap_search": cap_search_tables(cap_search, folds), "ensemble": ensemble_table(ensemble, folds),
        "charts": charts,
    }


def render_stock_book_html(*, track: pl.DataFrame | None, metrics: pl.DataFrame | None,
                           attribution: pl.DataFrame | None, trades: pl.DataFrame | None,
                           per_fold: pl.DataFrame | None, cap_search: pl.DataFrame | None,
                           ensemble: pl.DataFrame | None, source: str, code_version: str, title: str | None = None,
                           generated_at: datetime | None = None) -> str:
    """The report as one self-contained HTML document (see :func:`render_stock_book_report`)."""
    view = stock_book_view(track=track, metrics=metrics, attribution=attribution, trades=trades, per_fold=per_fold,
                           cap_search=cap_search, ensemble=ensemble, source=source, code_version=code_version,
                           title=title, generated_at=generated_at)
    return template_environment().get_template("stock_book.html.j2").render(view)


def render_stock_book_report(path: str | os.PathLike[str], *, track: pl.DataFrame | None,
                             metrics: pl.DataFrame | None, attribution: pl.DataFrame | None,
                             trades: pl.DataFrame | None, per_fold: pl.DataFrame | None,
                             cap_search: pl.DataFrame | None, ensemble: pl.DataFrame | None, source: str,
                             code_version: str, title: str | None = None,
                             generated_at: datetime | None = None) -> Path:
    """Write the stock book's self-contained HTML report to ``path`` (atomically) and return its path.

    ``track``: the stitched walk-forward daily track, one row per strategy and earned day (``strategy, date,
    fold, net_return, ..., long_exposure, short_exposure, positions, candidates, band, vix``); ``metrics``:
    :func:`ml.stock_book.stock_metrics` rows per strategy and ``cost_multiplier``; ``attribution``
    (``strategy, source, pnl``), ``trades``, ``per_fold`` (per-fold metrics at 1x), ``cap_search`` (``fold,
    position_cap, val_sharpe, val_return, chosen``) and ``ensemble`` (``fold, member, weight, composite,
    val_return, fallback_equal``; may be empty); ``source`` the data source (``csv:/path``,
    ``synthetic:seed=7``, ``yahoo``), ``code_version`` e.g. a git sha. Empty or missing frames leave a one-line
    "none" in place of their table or chart."""
    html = render_stock_book_html(track=track, metrics=metrics, attribution=attribution, trades=trades,
                                  per_fold=per_fold, cap_search=cap_search, ensemble=ensemble, source=source,
                                  code_version=code_version, title=title, generated_at=generated_at)
    return write_report(path, html)
