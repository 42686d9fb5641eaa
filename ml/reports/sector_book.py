"""The sector-regime book's walk-forward report: one self-contained HTML page (template
``sector_book.html.j2``; inline CSS, charts as base64 PNG, no JavaScript, no external URL).

Inputs are the frames of :mod:`ml.sector_book` / :mod:`ml.backtest.sector_book` (see
:func:`render_sector_book_report`). This module prepares the tables (which rows and columns, in which
order, how each cell is written) and draws the report's own charts (regime mix, bandit posterior) in the
style of :mod:`ml.reports.charts`; the growth, drawdown and per-fold Sharpe charts are
:mod:`ml.reports.charts`'s. A synthetic data source (``"synthetic"`` or ``"synthetic:<detail>"``) is
labelled in the banner, the header, every section heading and every chart title. Pure Python: no
dagster, no duckdb.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ml.reports.analysis import equity_curves
from ml.reports.charts import _STYLE, DPI, FIGSIZE, _date_axis, _dates, _empty, _figure, _pct, _png, _title
from ml.reports.formatting import MISSING
from ml.reports.html import _order_strategies, _stylesheet, template_environment, write_report
from ml.reports.tables import cell, fold_order, has_rows, is_synthetic_source, source_text, view_table, with_ci
from ml.reports.tables import cost_stress_table as shared_cost_stress_table
from ml.sector_book import BOOK_VARIANTS, COMPARISONS, PUBLISHED, SURVIVORSHIP_NOTE

__all__ = [
    "FOCUS",
    "REGIME_COLORS",
    "STRATEGIES",
    "STRATEGY_COLORS",
    "drawdown_chart",
    "fold_order",
    "fold_sharpe_chart",
    "growth_chart",
    "is_synthetic_source",
    "posterior_chart",
    "regime_mix",
    "regime_mix_chart",
    "render_sector_book_report",
    "sector_book_html",
]

FOCUS = "sector_book"
BENCHMARK = "spy_buy_hold"
#: Report order of the strategies (others follow as they come).
STRATEGIES: tuple[str, ...] = (*BOOK_VARIANTS, *COMPARISONS)
#: Fixed colours of the report's strategies (the book in the report accent, SPY dark grey).
STRATEGY_COLORS: dict[str, str] = {"sector_book": "#1f4e9c", "sector_book_zscore": "#e07b00",
                                   "sector_book_all_groups": "#8e44ad", "sector_book_long_only": "#17becf",
                                   "spy_buy_hold": "#3a3a3a", "ew_stocks": "#8c564b"}
REGIME_COLORS: dict[str, str] = {"Bull": "#2e8b57", "Sideways": "#d9a521", "Bear": "#c0392b"}
_REGIMES = tuple(REGIME_COLORS)
_ACCENT = "#1f4e9c"
TOP_TRADES = 10

# Cell kinds (ml.reports.tables.FORMATS) and headings of this report's columns.
_KINDS: dict[str, str] = {
    "total_return": "pct", "cagr": "pct", "ann_vol": "pct", "max_drawdown": "pct", "avg_turnover": "pct2",
    "cost_drag": "pct", "avg_gross_exposure": "pct", "trades": "int", "win_rate": "pct", "avg_win": "pct2",
    "avg_loss": "pct2", "profit_factor": "ratio", "avg_hold_days": "dec1", "sharpe": "ratio", "pnl": "pct2",
    "total_pnl": "pct2", "avg_pnl": "pct2", "holding_days": "int", "open_at_end": "int", "mean": "ratio3",
    "sd": "ratio3", "wins": "int", "selected_days": "int", "pooled_win_rate": "pct", "days": "int", "bull": "pct",
    "sideways": "pct", "bear": "pct", "selected_share": "pct", "final_mean": "ratio3", "final_sd": "ratio3",
}  # fmt: skip
_LABELS: dict[str, str] = {
    "strategy": "Strategy", "cost_drag": "Cost drag (Σ costs)", "avg_gross_exposure": "Avg gross exposure",
    "avg_turnover": "Avg turnover / day", "trades": "Closed trades", "win_rate": "Win rate", "avg_win": "Avg win",
    "avg_loss": "Avg loss", "profit_factor": "Profit factor", "avg_hold_days": "Avg hold (sessions)",
    "basis": "Figures", "pnl": "P&L (% of equity)", "total_pnl": "Σ P&L (% of equity)",
    "avg_pnl": "Avg P&L / trade", "holding_days": "Held (sessions)", "entry_date": "Entry (decision day)",
    "exit_date": "Exit (decision day)", "open_at_end": "Open at fold end", "pair_policy": "Pair policy",
    "sleeve": "Sleeve", "group": "Group", "ticker": "Ticker", "side": "Side", "fold": "Fold",
    "mean": "Posterior mean", "sd": "Posterior sd", "final_mean": "Final-fold mean", "final_sd": "Final-fold sd",
    "wins": "Wins", "selected_days": "Days selected", "pooled_win_rate": "Pooled win rate", "days": "Group-days",
    "bull": "Bull", "sideways": "Sideways", "bear": "Bear", "selected_share": "Selected by the bandit",
    "max_drawdown": "Max drawdown", "total_return": "Total return", "cagr": "CAGR", "ann_vol": "Ann. vol",
}  # fmt: skip

_RETURN_COLUMNS = ("total_return", "cagr", "ann_vol", "sharpe", f"sharpe_diff_{BENCHMARK}", "max_drawdown",
                   "avg_turnover", "cost_drag", "avg_gross_exposure")
_TRADE_COLUMNS = ("trades", "win_rate", "avg_win", "avg_loss", "profit_factor", "avg_hold_days")
_REFERENCE_COLUMNS = ("strategy", "basis", "total_return", "sharpe", "max_drawdown", "win_rate", "profit_factor",
                      "trades", "avg_hold_days")
_PER_FOLD_COLUMNS = ("fold", "strategy", "pair_policy", "total_return", "sharpe", "max_drawdown", "trades",
                     "win_rate", "profit_factor")
_TRADE_LIST_COLUMNS = ("fold", "ticker", "group", "sleeve", "side", "entry_date", "exit_date", "holding_days", "pnl")


# --------------------------------------------------------------------------------------------- helpers


def _view_table(frame: pl.DataFrame, columns: Sequence[str], **extra: Any) -> dict[str, Any]:
    """:func:`view_table` with this report's cell kinds and headings."""
    return view_table(frame, columns, _KINDS, _LABELS, formatted=extra.pop("formatted", None),
                      headings=extra.pop("labels", None), **extra)


def _order(frame: pl.DataFrame) -> pl.DataFrame:
    return _order_strategies(frame, STRATEGIES)


def _sort_folds(frame: pl.DataFrame, folds: Sequence[str]) -> pl.DataFrame:
    """``frame`` sorted by fold (time order), then by the report's strategy order."""
    rank = {k: i for i, k in enumerate(folds)}
    srank = {s: i for i, s in enumerate(STRATEGIES)}
    keys = [pl.col("fold").cast(pl.Utf8).replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_f")]
    if "strategy" in frame.columns:
        keys.append(pl.col("strategy").replace_strict(srank, default=len(srank), return_dtype=pl.Int64).alias("_s"))
    return frame.with_columns(keys).sort([k.meta.output_name() for k in keys], maintain_order=True).drop(
        [k.meta.output_name() for k in keys])


# ---------------------------------------------------------------------------------------------- tables


def metrics_tables(metrics: pl.DataFrame) -> list[dict[str, Any]]:
    """The 1x-cost metrics: return and risk (Sharpe with its CI, Sharpe minus SPY's with its paired CI),
    and the closed-trade statistics of the book variants."""
    if not has_rows(metrics, "strategy"):
        return []
    m = metrics.filter(pl.col("cost_multiplier") == 1.0) if "cost_multiplier" in metrics.columns else metrics
    m = _order(m)
    diff = f"sharpe_diff_{BENCHMARK}"
    formatted = {c: with_ci(m, c) for c in ("sharpe", diff) if c in m.columns}
    labels = {"sharpe": "Sharpe [95% CI]", diff: "Sharpe − SPY [95% CI]"}
    out = [{"heading": "Return and risk (1× costs)",
            **_view_table(m, ("strategy", *_RETURN_COLUMNS), formatted=formatted, labels=labels)}]
    trades = m.filter(pl.col("strategy").is_in(BOOK_VARIANTS))
    if trades.height and any(c in trades.columns for c in _TRADE_COLUMNS):
        out.append({"heading": "Closed trades (book variants)", **_view_table(trades, ("strategy", *_TRADE_COLUMNS))})
    return out


def cost_stress_table(metrics: pl.DataFrame) -> dict[str, Any] | None:
    """Sharpe and CAGR per strategy at each cost multiplier (:func:`ml.reports.tables.cost_stress_table`)."""
    return shared_cost_stress_table(metrics, STRATEGIES)


def reference_table(reference: pl.DataFrame | None) -> dict[str, Any]:
    """The design's published numbers next to ours over its window (1x costs); ours are absent when the
    track does not reach the window."""
    pub = PUBLISHED["sector_book"]
    pairs = PUBLISHED["pairs_qrdqn"]
    ours = _order(reference) if has_rows(reference, "strategy") else None

    def our_row(name: str) -> list[dict[str, Any]]:
        if ours is None:
            return []
        rows = ours.filter(pl.col("strategy") == name)
        return [{**{c: rows[c][0] for c in _REFERENCE_COLUMNS if c in rows.columns}, "strategy": name,
                 "basis": "ours"}] if rows.height else []

    rows: list[dict[str, Any]] = [{"strategy": FOCUS, "basis": "published (design)", **pub}, *our_row(FOCUS),
                                  {"strategy": "pairs sleeve alone (QR-DQN)", "basis": "published (design)", **pairs},
                                  {"strategy": BENCHMARK, "basis": "published (design, claimed)",
                                   "total_return": PUBLISHED["spy_claimed_total_return"]},
                                  *our_row(BENCHMARK)]  # fmt: skip
    if ours is not None:
        for name in ours.get_column("strategy").to_list():
            if name not in (FOCUS, BENCHMARK):
                rows.extend(our_row(name))
    schema = {"strategy": pl.Utf8, "basis": pl.Utf8, "total_return": pl.Float64, "sharpe": pl.Float64,
              "max_drawdown": pl.Float64, "win_rate": pl.Float64, "profit_factor": pl.Float64, "trades": pl.Int64,
              "avg_hold_days": pl.Float64}
    frame = pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")
    formatted = {"max_drawdown": [cell(v, "pct2") for v in frame.get_column("max_drawdown").to_list()]}
    spy = frame.filter((pl.col("strategy") == BENCHMARK) & (pl.col("basis") == "ours"))
    return {**_view_table(frame, _REFERENCE_COLUMNS, formatted=formatted), "group_col": "strategy",
            "has_ours": ours is not None and ours.height > 0,
            "spy_ours": spy["total_return"][0] if spy.height else None,
            "spy_claimed": PUBLISHED["spy_claimed_total_return"]}


def regime_mix(regimes: pl.DataFrame | None) -> pl.DataFrame:
    """Per group and calendar month: group-days with a regime, the share of Bull / Sideways / Bear days and
    (with ``selected``) the share of days the bandit traded the group."""
    schema = {"group": pl.Utf8, "month": pl.Date, "days": pl.UInt32, "bull": pl.Float64, "sideways": pl.Float64,
              "bear": pl.Float64, "selected_share": pl.Float64}
    if not has_rows(regimes, "date", "group", "regime"):
        return pl.DataFrame(schema=schema)
    sel = (pl.col("selected").cast(pl.Float64).mean() if "selected" in regimes.columns
           else pl.lit(None, dtype=pl.Float64))
    return (regimes.with_columns(pl.col("date").cast(pl.Date).dt.truncate("1mo").alias("month"))
            .group_by("group", "month")
            .agg(pl.len().alias("days"), *[(pl.col("regime") == r).cast(pl.Float64).mean().alias(r.lower())
                                           for r in _REGIMES], sel.alias("selected_share"))
            .sort("group", "month").cast({k: v for k, v in schema.items()}))


def regime_table(regimes: pl.DataFrame | None) -> dict[str, Any] | None:
    """Per group over the whole track: group-days, share of days in each regime, share selected."""
    if not has_rows(regimes, "date", "group", "regime"):
        return None
    sel = (pl.col("selected").cast(pl.Float64).mean() if "selected" in regimes.columns
           else pl.lit(None, dtype=pl.Float64))
    t = (regimes.group_by("group")
         .agg(pl.len().alias("days"), *[(pl.col("regime") == r).cast(pl.Float64).mean().alias(r.lower())
                                        for r in _REGIMES], sel.alias("selected_share"))
         .sort("group"))
    return _view_table(t, ("group", "days", "bull", "sideways", "bear", "selected_share"))


def posterior_tables(posterior: pl.DataFrame | None, folds: Sequence[str]) -> tuple[pl.DataFrame, str | None, dict | None]:
    """(final fold's posterior of :data:`FOCUS`, that fold's key, the pooled table): trades, wins and days
    selected summed over the folds (the bandit starts from its prior in every fold), the pooled win rate
    and the final fold's posterior mean and sd."""
    empty = pl.DataFrame(schema={"group": pl.Utf8, "mean": pl.Float64, "sd": pl.Float64, "trades": pl.Int64})
    if not has_rows(posterior, "group", "mean"):
        return empty, None, None
    p = posterior.filter(pl.col("strategy") == FOCUS) if "strategy" in posterior.columns else posterior
    if not p.height:
        return empty, None, None
    present = [str(k) for k in p.get_column("fold").unique().to_list()] if "fold" in p.columns else []
    ordered = [k for k in folds if k in present] or sorted(present)
    last = ordered[-1] if ordered else None
    final = p.filter(pl.col("fold").cast(pl.Utf8) == last) if last is not None else p
    sums = [c for c in ("trades", "wins", "selected_days") if c in p.columns]
    pooled = p.group_by("group").agg([pl.col(c).sum() for c in sums]) if sums else p.select("group").unique()
    if {"trades", "wins"} <= set(sums):
        pooled = pooled.with_columns(pl.when(pl.col("trades") > 0).then(pl.col("wins") / pl.col("trades"))
                                     .otherwise(None).alias("pooled_win_rate"))
    finals = final.select("group", pl.col("mean").alias("final_mean"),
                          (pl.col("sd") if "sd" in final.columns else pl.lit(None, dtype=pl.Float64)).alias("final_sd"))
    pooled = pooled.join(finals, on="group", how="left").sort("final_mean", "group", descending=[True, False],
                                                              nulls_last=True)
    table = _view_table(pooled, ("group", "trades", "wins", "pooled_win_rate", "selected_days", "final_mean",
                                 "final_sd"), labels={"trades": "Closed trades (all folds)"})
    return final, last, table


def per_fold_table(per_fold: pl.DataFrame | None, folds: Sequence[str]) -> dict[str, Any] | None:
    """Per-fold metrics (1x costs), rows grouped by fold in time order, :data:`FOCUS` highlighted."""
    if not has_rows(per_fold, "fold", "strategy"):
        return None
    pf = per_fold
    if "cost_multiplier" in pf.columns and pf.get_column("cost_multiplier").n_unique() > 1:
        pf = pf.filter(pl.col("cost_multiplier") == 1.0)
    pf = _sort_folds(pf.with_columns(pl.col("fold").cast(pl.Utf8)), folds)
    if "pair_policy" in pf.columns:  # the comparisons trade no pairs; the z-score variant always uses the rule
        pf = pf.with_columns(pl.when(pl.col("strategy") == "sector_book_zscore").then(pl.lit("zscore"))
                             .when(pl.col("strategy").is_in(BOOK_VARIANTS)).then(pl.col("pair_policy"))
                             .otherwise(None).alias("pair_policy"))
    formatted = {"sharpe": with_ci(pf, "sharpe")} if "sharpe" in pf.columns else {}
    return _view_table(pf, _PER_FOLD_COLUMNS, formatted=formatted, group_col="fold",
                       labels={"sharpe": "Sharpe [95% CI]"} if "sharpe_ci_low" in pf.columns else {})


def trade_tables(trades: pl.DataFrame | None) -> dict[str, Any]:
    """Best and worst :data:`TOP_TRADES` closed trades of :data:`FOCUS`, and its closed trades' P&L by
    sleeve and by group (plus the trades still open at a fold's end, counted)."""
    out: dict[str, Any] = {"best": None, "worst": None, "by_sleeve": None, "by_group": None, "closed": 0}
    if not has_rows(trades, "pnl"):
        return out
    t = trades.filter(pl.col("strategy") == FOCUS) if "strategy" in trades.columns else trades
    closed_flag = pl.col("closed") if "closed" in t.columns else pl.col("exit_date").is_not_null()
    closed = t.filter(closed_flag)
    out["closed"] = closed.height
    if not closed.height:
        return out
    if "fold" in closed.columns:
        closed = closed.with_columns(pl.col("fold").cast(pl.Utf8))
    out["best"] = _view_table(closed.sort("pnl", descending=True, nulls_last=True).head(TOP_TRADES), _TRADE_LIST_COLUMNS)
    out["worst"] = _view_table(closed.sort("pnl", nulls_last=True).head(TOP_TRADES), _TRADE_LIST_COLUMNS)
    still_open = t.filter(~closed_flag)
    for key, col in (("by_sleeve", "sleeve"), ("by_group", "group")):
        if col not in t.columns:
            continue
        agg = [pl.len().alias("trades"), (pl.col("pnl") > 0).cast(pl.Float64).mean().alias("win_rate"),
               pl.col("pnl").sum().alias("total_pnl"), pl.col("pnl").mean().alias("avg_pnl")]
        if "holding_days" in closed.columns:
            agg.append(pl.col("holding_days").cast(pl.Float64).mean().alias("avg_hold_days"))
        name = pl.col(col).fill_null("(none)")
        g = closed.with_columns(name).group_by(col).agg(agg)
        n_open = still_open.with_columns(name).group_by(col).agg(pl.len().cast(pl.Int64).alias("open_at_end"))
        g = (g.join(n_open, on=col, how="left").with_columns(pl.col("open_at_end").fill_null(0))
             .sort("total_pnl", descending=True))
        out[key] = _view_table(g, (col, "trades", "win_rate", "total_pnl", "avg_pnl", "avg_hold_days", "open_at_end"))
    return out


# ---------------------------------------------------------------------------------------------- charts


def _color(name: str) -> str:
    return STRATEGY_COLORS.get(name, "#7f7f7f")


def _track_lines(ax, track: pl.DataFrame, column: str, scale: float = 1.0) -> None:
    """One line of ``column`` per strategy (:data:`FOCUS` thick, on top), dotted lines at each fold's start."""
    names = [s for s in (*STRATEGIES, *sorted(set(track.get_column("strategy").to_list()) - set(STRATEGIES)))
             if s in set(track.get_column("strategy").to_list())]
    for name in sorted(names, key=lambda n: n == FOCUS):  # the focus drawn last (on top)
        s = track.filter(pl.col("strategy") == name)
        y = scale * s.get_column(column).cast(pl.Float64).to_numpy()
        last = f"${y[-1]:,.2f}" if column == "equity" else f"max {np.nanmin(y):.1%}"
        ax.plot(_dates(s), y, label=f"{name}  ({last})", color=_color(name), linewidth=2.6 if name == FOCUS else 1.3,
                alpha=1.0 if name == FOCUS else 0.85, zorder=3 if name == FOCUS else 2)
        if name == FOCUS and column == "drawdown":
            ax.fill_between(_dates(s), y, 0.0, color=_color(name), alpha=0.15, linewidth=0, zorder=1)
    if "fold" in track.columns:
        starts = track.group_by("fold").agg(pl.col("date").min()).sort("date").get_column("date")
        for d in starts.to_list()[1:]:
            ax.axvline(np.datetime64(d, "D"), color="#b9c3d3", linewidth=1.0, linestyle=":", zorder=1)


def _legend(fig: Figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].split("  ")[0] != FOCUS)
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncols=3,
               frameon=False)


def growth_chart(track: pl.DataFrame, *, source: str | None = None,
                 title: str = "Growth of $1 over the stitched walk-forward track (net of costs)") -> bytes:
    """Equity of $1 per strategy over the stitched track (log scale; ``equity`` as given, else compounded
    ``net_return``), :data:`FOCUS` thick; dotted lines mark the folds' starts; final values in the legend."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(track, "strategy", "date", "net_return"):
            _empty(ax, "no data")
            return _png(fig)
        _track_lines(ax, equity_curves(track), "equity")
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
                   title: str = "Drawdown from running peak (stitched track)") -> bytes:
    """Drawdown (equity / running peak - 1) per strategy, :data:`FOCUS` thick and shaded."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(track, "strategy", "date", "net_return"):
            _empty(ax, "no data")
            return _png(fig)
        _track_lines(ax, equity_curves(track), "drawdown")
        ax.axhline(0.0, color="#999999", linewidth=0.9)
        _pct(ax)
        ax.set_ylabel("Drawdown (% below peak)")
        _date_axis(ax)
        _legend(fig, ax)
        return _png(fig)


def fold_sharpe_chart(per_fold: pl.DataFrame, *, source: str | None = None,
                      title: str = "Sharpe per walk-forward fold (test window, 1× costs)") -> bytes:
    """Grouped bars of each strategy's Sharpe per fold (folds in the frame's order)."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if not has_rows(per_fold, "fold", "strategy", "sharpe"):
            _empty(ax, "no per-fold results")
            return _png(fig)
        folds = list(dict.fromkeys(str(k) for k in per_fold.get_column("fold").to_list()))
        present = set(per_fold.get_column("strategy").to_list())
        names = [s for s in STRATEGIES if s in present] + sorted(present - set(STRATEGIES))
        width = 0.8 / len(names)
        x = np.arange(len(folds))
        for j, name in enumerate(names):
            s = per_fold.filter(pl.col("strategy") == name)
            vals = dict(zip((str(k) for k in s.get_column("fold").to_list()), s.get_column("sharpe").to_list()))
            y = np.array([np.nan if vals.get(k) is None else float(vals[k]) for k in folds])
            ax.bar(x - 0.4 + width * (j + 0.5), y, width=width * 0.92, label=name, color=_color(name),
                   edgecolor="white", linewidth=0.5, alpha=1.0 if name == FOCUS else 0.8)
        ax.axhline(0.0, color="#555555", linewidth=0.9)
        ax.set_xticks(x, folds)
        ax.set_xlabel("Fold (test window)")
        ax.set_ylabel("Sharpe (annualised)")
        ax.grid(False, axis="x")
        _legend(fig, ax)
        return _png(fig)


def regime_mix_chart(regimes: pl.DataFrame | None, *, source: str | None = None,
                     title: str = "Monthly regime mix per group") -> bytes:
    """Heatmap group x month: each cell coloured by the month's dominant regime (Bull green, Sideways amber,
    Bear red), paler the smaller its share of the group's days; a dot where the bandit traded the group on
    at least half of the month's days."""
    mix = regime_mix(regimes)
    groups = sorted(mix.get_column("group").unique().to_list())
    months = sorted(mix.get_column("month").unique().to_list())
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(FIGSIZE[0], max(3.2, 1.9 + 0.34 * len(groups))), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        _title(ax, title, source)
        if mix.is_empty():
            _empty(ax, "no regimes")
            return _png(fig)
        gi = {g: i for i, g in enumerate(groups)}
        mi = {m: i for i, m in enumerate(months)}
        colors = np.array([to_rgb(REGIME_COLORS[r]) for r in _REGIMES])
        img = np.ones((len(groups), len(months), 3))
        dots = []
        for row in mix.iter_rows(named=True):
            shares = np.nan_to_num(np.array([row[r.lower()] for r in _REGIMES], dtype=float))
            k = int(shares.argmax())
            a = 0.25 + 0.75 * float(shares[k])
            img[gi[row["group"]], mi[row["month"]]] = a * colors[k] + (1.0 - a)
            if row["selected_share"] is not None and row["selected_share"] >= 0.5:
                dots.append((mi[row["month"]], gi[row["group"]]))
        ax.imshow(img, aspect="auto", interpolation="nearest")
        if dots:
            ax.scatter(*zip(*dots), s=9, color="#1d2733", zorder=3)
        ax.set_yticks(range(len(groups)), groups)
        step = max(1, math.ceil(len(months) / 24))
        ticks = list(range(0, len(months), step))
        ax.set_xticks(ticks, [months[i].strftime("%Y-%m") for i in ticks], rotation=45, ha="right")
        ax.set_xlabel("Month")
        ax.grid(False)
        handles = [Patch(color=REGIME_COLORS[r], label=f"{r} (dominant)") for r in _REGIMES]
        handles.append(Line2D([], [], marker="o", linestyle="", color="#1d2733", markersize=4,
                                               label="selected ≥ half the month's days"))
        fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
        return _png(fig)


def posterior_chart(posterior: pl.DataFrame, *, fold: str | None = None, source: str | None = None) -> bytes:
    """Bars of the bandit's posterior mean P(a closed trade of the group wins) ± one sd per group (green
    above 0.5, red below), closed trades counted above each bar."""
    title = "Bandit posterior: P(closed trade wins) per group, mean ± sd" + (f" (fold {fold})" if fold else "")
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if posterior.is_empty() or "mean" not in posterior.columns:
            _empty(ax, "no bandit posterior")
            return _png(fig)
        p = posterior.sort("mean", "group", descending=[True, False])
        mean = p.get_column("mean").cast(pl.Float64).fill_null(np.nan).to_numpy()
        sd = (p.get_column("sd").cast(pl.Float64).fill_null(0.0).to_numpy() if "sd" in p.columns
              else np.zeros_like(mean))
        x = np.arange(p.height)
        ax.bar(x, mean, yerr=sd, capsize=4, color=np.where(mean >= 0.5, "#2e8b57", "#c0392b"), alpha=0.85,
               edgecolor="white", error_kw={"ecolor": "#333333", "elinewidth": 1.2})
        if "trades" in p.columns:
            for xi, m, s, n in zip(x, mean, sd, p.get_column("trades").to_list()):
                if np.isfinite(m):
                    ax.text(xi, min(m + s + 0.02, 1.02), f"{n or 0} tr", ha="center", va="bottom", fontsize=9,
                            color="#475467")
        ax.axhline(0.5, color="#777777", linewidth=1.0, linestyle="--", label="0.5: no edge")
        ax.set_ylim(0.0, 1.08)
        names = p.get_column("group").to_list()
        ax.set_xticks(x, names, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
        ax.set_ylabel("Posterior P(win)")
        ax.grid(False, axis="x")
        ax.legend(loc="upper right")
        return _png(fig)


# ------------------------------------------------------------------------------------------------ page


def _headline(metrics: pl.DataFrame | None) -> dict[str, Any] | None:
    """The focus strategy's and SPY's key numbers at 1x costs (None when absent)."""
    if not has_rows(metrics, "strategy"):
        return None
    m = metrics.filter(pl.col("cost_multiplier") == 1.0) if "cost_multiplier" in metrics.columns else metrics
    out = {}
    for key, name in (("focus", FOCUS), ("spy", BENCHMARK)):
        r = m.filter(pl.col("strategy") == name)
        if r.height:
            row = r.row(0, named=True)
            out[key] = {"name": name, "sharpe": with_ci(r, "sharpe")[0] if "sharpe" in r.columns else MISSING,
                        **{c: cell(row.get(c), _KINDS[c]) for c in ("cagr", "total_return", "max_drawdown",
                                                                      "ann_vol", "trades", "win_rate")}}
    return out or None


def sector_book_html(*, track: pl.DataFrame, metrics: pl.DataFrame, reference: pl.DataFrame | None,
                     trades: pl.DataFrame | None, posterior: pl.DataFrame | None, regimes: pl.DataFrame | None,
                     per_fold: pl.DataFrame | None, source: str, code_version: str, title: str | None = None,
                     generated_at: datetime | None = None) -> str:
    """The report as one self-contained HTML document (see :func:`render_sector_book_report`)."""
    synthetic = is_synthetic_source(source)
    chart_source = "synthetic" if synthetic else source
    folds = fold_order(track, regimes, per_fold, posterior, trades)
    has_track = has_rows(track, "strategy", "date", "net_return")
    final, last_fold, pooled = posterior_tables(posterior, folds)
    pf = per_fold_table(per_fold, folds)
    charts: dict[str, bytes] = {}
    if has_track:
        charts["growth"] = growth_chart(track, source=chart_source)
        charts["drawdown"] = drawdown_chart(track, source=chart_source)
    charts["regimes"] = regime_mix_chart(regimes, source=chart_source)
    charts["posterior"] = posterior_chart(final, fold=last_fold, source=chart_source)
    if pf is not None and "sharpe" in pf["frame"].columns:
        charts["fold_sharpe"] = fold_sharpe_chart(pf["frame"], source=chart_source)
    pair_policies: dict[str, str] = {}
    if has_rows(per_fold, "fold", "pair_policy"):
        for k, v in per_fold.select(pl.col("fold").cast(pl.Utf8), "pair_policy").unique().iter_rows():
            if v is not None:
                pair_policies.setdefault(k, v)
    lo, hi = PUBLISHED["window"]
    view = {
        "title": title or "regimeflow — sector-regime book (walk-forward)",
        "source": source, "source_text": source_text(source), "synthetic": synthetic, "code_version": code_version,
        "generated": generated_at or datetime.now(UTC), "css": _stylesheet(),
        "survivorship": SURVIVORSHIP_NOTE, "focus": FOCUS, "benchmark": BENCHMARK,
        "data_start": track.get_column("date").min() if has_track else None,
        "data_end": track.get_column("date").max() if has_track else None,
        "folds": folds, "pair_policies": pair_policies,
        "fallback_folds": [k for k in folds if "fallback" in pair_policies.get(k, "")],
        "strategies": [s for s in STRATEGIES if has_track and s in set(track.get_column("strategy").to_list())]
        or list(STRATEGIES),
        "headline": _headline(metrics), "metric_tables": metrics_tables(metrics),
        "cost_stress": cost_stress_table(metrics), "reference": reference_table(reference),
        "window_start": lo, "window_end": hi, "regime_table": regime_table(regimes), "pooled": pooled,
        "last_fold": last_fold, "per_fold": pf, "trades": trade_tables(trades), "charts": charts,
        "top_n": TOP_TRADES, "regime_colors": REGIME_COLORS,
    }
    return template_environment().get_template("sector_book.html.j2").render(view)


def render_sector_book_report(path: str | os.PathLike[str], *, track: pl.DataFrame, metrics: pl.DataFrame,
                              reference: pl.DataFrame | None, trades: pl.DataFrame | None,
                              posterior: pl.DataFrame | None, regimes: pl.DataFrame | None,
                              per_fold: pl.DataFrame | None, source: str, code_version: str,
                              title: str | None = None, generated_at: datetime | None = None) -> Path:
    """Write the sector book's self-contained HTML report to ``path`` (atomically) and return its path.

    ``track``: the stitched daily track (``strategy, date, fold, net_return, equity, ...``); ``metrics``:
    :func:`ml.sector_book.book_metrics` rows per strategy and ``cost_multiplier``; ``reference``: the same at
    1x over the design's window ``PUBLISHED["window"]`` (may be empty); ``trades``, ``posterior``,
    ``regimes`` (per fold: ``date, group, regime, selected``) and ``per_fold`` (per-fold metrics) of
    :func:`ml.sector_book.run_fold_book`; ``source`` the data source (``csv:/path``, ``synthetic:seed=7``,
    ...), ``code_version`` e.g. a git sha. Empty or missing frames leave their tables out (charts say
    "no data")."""
    html = sector_book_html(track=track, metrics=metrics, reference=reference, trades=trades, posterior=posterior,
                            regimes=regimes, per_fold=per_fold, source=source, code_version=code_version,
                            title=title, generated_at=generated_at)
    return write_report(path, html)

