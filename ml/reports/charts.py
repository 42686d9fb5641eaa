"""PNG charts of backtests (matplotlib, Agg canvas: no display, no pyplot global state).

Every function returns the PNG as ``bytes`` (about 1200 x 500 px at 100 DPI); :func:`save_chart` writes one
to disk. Pass ``source="synthetic"`` and the title says ``SYNTHETIC DATA`` (in red).

Timing (project convention): a ``daily`` row dated t carries the net return earned from the close of the
previous trading day to the close of t, so an equity point dated t is the equity at the close of t. An
``allocations`` row dated t holds the weights held on t, decided at the close of the previous trading day.
A ``vix`` row dated t is the VIX close of t.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.backends.backend_agg import (
    FigureCanvasAgg,  # the Agg canvas: never a display
)
from matplotlib.figure import Figure

from ml.data.universe import EQUITY_ASSETS
from ml.reports.analysis import equity_curves, weight_columns
from ml.artifacts import atomic_write

__all__ = [
    "ASSET_COLORS",
    "DPI",
    "FIGSIZE",
    "PNG_MAGIC",
    "STRATEGY_COLORS",
    "allocation_area_chart",
    "drawdown_chart",
    "exposure_vs_vix_chart",
    "fold_sharpe_chart",
    "growth_chart",
    "is_png",
    "save_chart",
    "strategy_color",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGSIZE: tuple[float, float] = (12.0, 5.0)
DPI = 100
SYNTHETIC_TAG = "SYNTHETIC DATA"

STRATEGY_COLORS: dict[str, str] = {
    "ppo": "#1f4e9c",
    "spy_buy_hold": "#3a3a3a",
    "equal_weight": "#2e8b57",
    "sixty_forty": "#e07b00",
    "vix_rule": "#8e44ad",
    "vix_switch": "#b03a2e",
}
_FALLBACK = ["#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#8c564b", "#9467bd", "#2ca02c", "#d62728"]

ASSET_COLORS: dict[str, str] = {
    "SPY": "#2f6db5",
    "QQQ": "#7fb0e0",
    "TLT": "#3c9d5d",
    "GLD": "#d9a521",
    "cash": "#c8c8c8",
}

_STYLE = {
    "font.size": 11,
    "axes.titlesize": 14,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.8,
    "legend.fontsize": 10,
    "legend.framealpha": 0.92,
    "legend.edgecolor": "#cccccc",
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
}


def strategy_color(name: str, order: Sequence[str] = ()) -> str:
    """Stable colour of a strategy: a fixed one for the known names, else by position in ``order``."""
    if name in STRATEGY_COLORS:
        return STRATEGY_COLORS[name]
    unknown = [s for s in order if s not in STRATEGY_COLORS]
    i = unknown.index(name) if name in unknown else sum(map(ord, name))
    return _FALLBACK[i % len(_FALLBACK)]


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the PNG signature."""
    return bytes(data[:8]) == PNG_MAGIC


def save_chart(path: str | os.PathLike[str], png: bytes) -> Path:
    """Write PNG bytes to ``path`` atomically (temp file + rename); parent folders are created."""
    return atomic_write(path, png)


# --------------------------------------------------------------------------------------------- helpers


def _figure() -> Figure:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(ax, title: str, source: str | None) -> None:
    if source is not None and str(source).lower() == "synthetic":
        ax.set_title(f"{title}  ({SYNTHETIC_TAG})", loc="left", color="#c0392b")
    else:
        ax.set_title(title, loc="left")


def _date_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("Date")
    ax.margins(x=0.01)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _order(names: Sequence[str], highlight: str | None) -> list[str]:
    """Known strategies in a fixed order, the highlighted one last (drawn on top)."""
    known = list(STRATEGY_COLORS)
    out = sorted(names, key=lambda s: (s == highlight, known.index(s) if s in known else len(known), s))
    return out


def _dates(frame: pl.DataFrame) -> np.ndarray:
    return frame.get_column("date").cast(pl.Date).to_numpy().astype("datetime64[D]")


def _pct(ax, axis: str = "y", decimals: int = 0) -> None:
    fmt = ticker.PercentFormatter(xmax=1.0, decimals=decimals)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _legend_below(fig: Figure, ax, highlight: str | None) -> None:
    """Legend under the plot (never over the data), the highlighted strategy first."""
    handles, labels = ax.get_legend_handles_labels()
    pairs = sorted(zip(handles, labels), key=lambda hl: not (highlight and hl[1].split("  ")[0] == highlight))
    fig.legend([h for h, _ in pairs], [lab for _, lab in pairs], loc="outside lower center",
               ncols=min(len(pairs), 6), frameon=False)  # fmt: skip


def _empty(ax, msg: str) -> None:
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, color="#777777", fontsize=13)
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------- charts


def growth_chart(
    daily: pl.DataFrame,
    *,
    log_scale: bool = True,
    highlight: str | None = "ppo",
    source: str | None = None,
    title: str = "Growth of $1 (net of costs)",
) -> bytes:
    """Equity of $1 invested at the start, one line per strategy (``highlight`` drawn thick, on top).

    ``daily``: ``strategy``, ``date``, ``net_return`` (and optionally ``equity``). The legend shows the
    final value. ``log_scale`` makes equal percentage moves equal heights.
    """
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if daily.is_empty():
            _empty(ax, "no data")
            return _png(fig)
        d = equity_curves(daily)
        names = _order(d.get_column("strategy").unique().to_list(), highlight)
        lo, hi = np.inf, -np.inf
        for name in names:
            s = d.filter(pl.col("strategy") == name)
            eq = s.get_column("equity").to_numpy().astype(float)
            lo, hi = min(lo, np.nanmin(eq)), max(hi, np.nanmax(eq))
            ax.plot(
                _dates(s), eq,
                label=f"{name}  (${eq[-1]:,.2f})",
                color=strategy_color(name, names),
                linewidth=2.6 if name == highlight else 1.4,
                alpha=1.0 if name == highlight else 0.85,
                zorder=3 if name == highlight else 2,
            )  # fmt: skip
        ax.axhline(1.0, color="#999999", linewidth=0.9, linestyle="--", zorder=1)
        if log_scale:
            ax.set_yscale("log")
            if hi / max(lo, 1e-9) < 20:
                ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=8))
            else:
                ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"${v:,.2f}"))
        ax.set_ylabel("Value of $1 (USD" + (", log scale)" if log_scale else ")"))
        _date_axis(ax)
        _legend_below(fig, ax, highlight)
        return _png(fig)


def drawdown_chart(
    daily: pl.DataFrame,
    *,
    highlight: str | None = "ppo",
    source: str | None = None,
    title: str = "Drawdown from running peak",
) -> bytes:
    """Drawdown (equity / running peak - 1, in %) per strategy; the ``highlight`` strategy is shaded."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if daily.is_empty():
            _empty(ax, "no data")
            return _png(fig)
        d = equity_curves(daily)
        names = _order(d.get_column("strategy").unique().to_list(), highlight)
        for name in names:
            s = d.filter(pl.col("strategy") == name)
            x, dd = _dates(s), s.get_column("drawdown").to_numpy().astype(float)
            c = strategy_color(name, names)
            worst = float(np.nanmin(dd)) if dd.size else 0.0
            if name == highlight:
                ax.fill_between(x, dd, 0.0, color=c, alpha=0.18, linewidth=0, zorder=2)
            ax.plot(
                x, dd, color=c, label=f"{name}  (max {worst:.1%})",
                linewidth=2.2 if name == highlight else 1.2, zorder=3 if name == highlight else 2,
            )  # fmt: skip
        ax.axhline(0.0, color="#999999", linewidth=0.9)
        _pct(ax)
        ax.set_ylabel("Drawdown (% below peak)")
        _date_axis(ax)
        _legend_below(fig, ax, highlight)
        return _png(fig)


def exposure_vs_vix_chart(
    allocations: pl.DataFrame,
    vix: pl.DataFrame,
    *,
    strategies: Sequence[str] = ("ppo",),
    panic_threshold: float | None = 35.0,
    source: str | None = None,
    title: str = "Equity exposure (SPY + QQQ) vs VIX",
) -> bytes:
    """Equity weight (SPY + QQQ, left axis, %) of ``strategies`` against the VIX level (right axis, grey).

    A dashed line marks ``panic_threshold`` on the VIX axis. Weights are plotted on the day they are held
    (decided at the previous close); the VIX on its own date.
    """
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        a = allocations if "strategy" in allocations.columns else allocations.with_columns(pl.lit("ppo").alias("strategy"))
        present = set(a.get_column("strategy").unique().to_list()) if a.height else set()
        names = [s for s in strategies if s in present]
        ecols = [f"w_{x}" for x in EQUITY_ASSETS if f"w_{x}" in a.columns]
        if not names or not ecols:
            _empty(ax, "no allocations")
            return _png(fig)
        ax2 = ax.twinx()
        v = vix.select(pl.col("date").cast(pl.Date), pl.col("vix").cast(pl.Float64)).drop_nulls().sort("date")
        ax2.fill_between(_dates(v), v.get_column("vix").to_numpy(), 0, color="#9e9e9e", alpha=0.22, linewidth=0, zorder=1)
        ax2.plot(_dates(v), v.get_column("vix").to_numpy(), color="#7a7a7a", linewidth=0.9, label="VIX (right axis)")
        if panic_threshold is not None:
            ax2.axhline(panic_threshold, color="#c0392b", linewidth=1.0, linestyle="--",
                        label=f"VIX = {panic_threshold:g} (panic)")  # fmt: skip
        ax2.set_ylabel("VIX (index points)", color="#555555")
        ax2.set_ylim(bottom=0)
        ax2.grid(False)
        ax2.spines["right"].set_visible(True)
        for name in names:
            s = a.filter(pl.col("strategy") == name).sort("date")
            expo = s.select(pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in ecols])).to_series().to_numpy()
            ax.plot(_dates(s), expo, color=strategy_color(name, names), linewidth=1.6, zorder=3,
                    label=f"{name} equity weight (left axis)")  # fmt: skip
        # Exposure above the VIX shading.
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_ylim(-0.02, 1.02)
        _pct(ax)
        ax.set_ylabel("Equity weight, SPY + QQQ (% of equity)")
        _date_axis(ax)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncols=min(4, len(l1 + l2)), frameon=False)
        return _png(fig)


def allocation_area_chart(
    allocations: pl.DataFrame,
    *,
    strategy: str = "ppo",
    rolling_days: int = 1,
    source: str | None = None,
    title: str | None = None,
) -> bytes:
    """Stacked area of the weights held by ``strategy`` over time (all ``w_*`` columns, cash on top).

    ``rolling_days > 1`` smooths each weight with a trailing mean over that many rows (noted in the title).
    """
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        a = allocations
        if "strategy" in a.columns:
            a = a.filter(pl.col("strategy") == strategy)
        smooth = f", {rolling_days}-day mean" if rolling_days > 1 else ""
        _title(ax, title or f"Allocation of {strategy} over time (weights held{smooth})", source)
        if a.is_empty():
            _empty(ax, f"no allocations for {strategy}")
            return _png(fig)
        a = a.sort("date")
        wcols = weight_columns(a)
        if rolling_days > 1:
            a = a.with_columns([pl.col(c).cast(pl.Float64).rolling_mean(rolling_days, min_samples=1) for c in wcols])
        ys = [a.get_column(c).cast(pl.Float64).fill_null(0.0).to_numpy() for c in wcols]
        labels = [c.removeprefix("w_") for c in wcols]
        colors = [ASSET_COLORS.get(lab, _FALLBACK[i % len(_FALLBACK)]) for i, lab in enumerate(labels)]
        ax.stackplot(_dates(a), *ys, labels=labels, colors=colors, linewidth=0, alpha=0.95)
        ax.set_ylim(0, 1)
        _pct(ax)
        ax.set_ylabel("Weight (% of equity)")
        ax.grid(True, axis="y", color="#ffffff", alpha=0.5)
        ax.grid(False, axis="x")
        _date_axis(ax)
        handles, labs = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labs[::-1], loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
        return _png(fig)


def fold_sharpe_chart(
    folds: pl.DataFrame,
    *,
    metric: str = "sharpe",
    highlight: str | None = "ppo",
    source: str | None = None,
    title: str | None = None,
) -> bytes:
    """Grouped bars of ``metric`` (default Sharpe) per walk-forward fold and strategy.

    ``folds``: long frame with ``fold``, ``metric`` and optionally ``strategy`` (one bar group per fold,
    folds in the frame's order of first appearance).
    """
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title or f"{metric.replace('_', ' ').capitalize()} per walk-forward fold (test window)", source)
        if folds.is_empty() or metric not in folds.columns:
            _empty(ax, "no per-fold results")
            return _png(fig)
        f = folds if "strategy" in folds.columns else folds.with_columns(pl.lit(highlight or "strategy").alias("strategy"))
        fold_keys = list(dict.fromkeys(str(k) for k in f.get_column("fold").to_list()))
        names = _order(f.get_column("strategy").unique().to_list(), None)
        if highlight in names:  # policy first in each group
            names = [highlight] + [n for n in names if n != highlight]
        width = 0.8 / len(names)
        x = np.arange(len(fold_keys))
        for j, name in enumerate(names):
            s = f.filter(pl.col("strategy") == name)
            vals = dict(zip((str(k) for k in s.get_column("fold").to_list()), s.get_column(metric).to_list()))
            y = np.array([np.nan if vals.get(k) is None else float(vals[k]) for k in fold_keys])
            ax.bar(x - 0.4 + width * (j + 0.5), y, width=width * 0.92, label=name,
                   color=strategy_color(name, names), edgecolor="white", linewidth=0.5,
                   alpha=1.0 if name == highlight else 0.8)  # fmt: skip
        ax.axhline(0.0, color="#555555", linewidth=0.9)
        ax.set_xticks(x, fold_keys, rotation=30 if len(fold_keys) > 10 else 0)
        ax.set_xlabel("Fold (test window)")
        ax.set_ylabel(f"{metric.replace('_', ' ').capitalize()} (annualised)" if "sharpe" in metric else metric)
        ax.grid(False, axis="x")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
        return _png(fig)


def log_growth_chart(daily: pl.DataFrame, *, highlight: str | None = "stack", source: str | None = None,
                     title: str = "Cumulative log return", colors: Sequence[str] = ()) -> bytes:
    """One line per strategy of ``cum_log_return`` (log points, the thesis's convention) over ``date``;
    ``colors``: the strategy order that fixes each one's colour (shared between charts)."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if daily.is_empty():
            _empty(ax, "no data")
            return _png(fig)
        names = _order(daily.get_column("strategy").unique(maintain_order=True).to_list(), highlight)
        for name in names:
            s = daily.filter(pl.col("strategy") == name)
            y = 100 * s.get_column("cum_log_return").to_numpy().astype(float)
            ax.plot(_dates(s), y, label=f"{name}  ({y[-1]:+.0f})", color=strategy_color(name, colors or names),
                    linewidth=2.6 if name == highlight else 1.4, zorder=3 if name == highlight else 2)
        ax.axhline(0.0, color="#999999", linewidth=0.9, linestyle="--", zorder=1)
        ax.set_ylabel("Σ daily log returns (log points)")
        _date_axis(ax)
        _legend_below(fig, ax, highlight)
        return _png(fig)


def band_chart(bands: pl.DataFrame, *, source: str | None = None,
               title: str = "KDE Monte Carlo: cumulative log return, 5 / 50 / 95 %", colors: Sequence[str] = ()) -> bytes:
    """Per strategy: the median line and the 5-95 % band of ``q05, q50, q95`` (fractions) over ``day``;
    ``colors`` as :func:`log_growth_chart`."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        _title(ax, title, source)
        if bands.is_empty():
            _empty(ax, "no data")
            return _png(fig)
        names = bands.get_column("strategy").unique(maintain_order=True).to_list()
        for name in names:
            b = bands.filter(pl.col("strategy") == name)
            day = b.get_column("day").to_numpy()
            color = strategy_color(name, colors or names)
            ax.fill_between(day, 100 * b["q05"].to_numpy(), 100 * b["q95"].to_numpy(), color=color, alpha=0.15)
            ax.plot(day, 100 * b["q50"].to_numpy(), color=color, linewidth=1.8,
                    label=f"{name}  (median {100 * b['q50'][-1]:+.0f}, 5 % {100 * b['q05'][-1]:+.0f})")
        ax.axhline(0.0, color="#999999", linewidth=0.9, linestyle="--")
        ax.set_xlabel("Trading day")
        ax.set_ylabel("Cumulative log return (log points)")
        _legend_below(fig, ax, None)
        return _png(fig)
