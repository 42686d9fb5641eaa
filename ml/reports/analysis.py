"""Behaviour analysis of backtested strategies: pure Polars / NumPy, no I/O.

Inputs (long frames, built by the caller from the warehouse):

* ``daily``: one row per (``strategy``, ``date``) with ``net_return`` (simple return, fraction, net of
  costs) earned on ``date`` (close of the previous trading day -> close of ``date``), ``turnover``
  (sum of |weight change| at the rebalance that preceded ``date``; optional for most functions) and
  optionally ``equity`` (compounded from 1.0; computed per strategy when absent).
* ``allocations``: one row per (``strategy``, ``date``) with weight columns ``w_<ASSET>`` (e.g. ``w_SPY``,
  ``w_QQQ``, ``w_TLT``, ``w_GLD``, ``w_cash``): the weights *held on* ``date``, i.e. decided at the close of
  the trading day before ``date``. A frame without a ``strategy`` column is one strategy.
* ``vix``: ``date``, ``vix`` (index points) and optionally ``bucket``; the row dated t is the VIX known at
  the close of t (see :mod:`ml.regimes.vix`).

Timing: with ``vix_timing="decision"`` (default) the weights/return dated ``date`` are paired with the VIX
of the decision day, the last VIX row dated strictly before ``date`` (what the policy could see when it
chose the weights). ``vix_timing="same_day"`` pairs them with the VIX dated ``date`` itself.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import polars as pl

from ml.metrics import TRADING_DAYS, cagr, drawdown, max_drawdown, sharpe
from ml.data.universe import EQUITY_ASSETS
from ml.regimes.vix import BUCKETS, VixRegimeConfig, vix_buckets

__all__ = [
    "DEFAULT_CRISES",
    "CrisisWindow",
    "action_diagnostics",
    "align_vix",
    "allocation_by_vix_bucket",
    "cost_stress",
    "crisis_windows",
    "equity_curves",
    "equity_exposure",
    "equity_vix_correlation",
    "equity_vix_correlation_table",
    "multiplier_label",
    "panic_day_volatility",
    "weight_columns",
]

VixTiming = Literal["decision", "same_day"]

#: Assets whose weights sum to the "equity exposure".
#: Largest gap (calendar days) between a row's date and the VIX row paired with it.
VIX_TOLERANCE_DAYS = 7


@dataclass(frozen=True)
class CrisisWindow:
    """A named stress window (bounds inclusive, calendar dates)."""

    label: str
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"crisis window {self.label!r}: end {self.end} before start {self.start}")


DEFAULT_CRISES: tuple[CrisisWindow, ...] = (
    CrisisWindow("2008-09 GFC", date(2008, 9, 1), date(2009, 6, 30)),
    CrisisWindow("2020 COVID crash", date(2020, 2, 19), date(2020, 6, 30)),
    CrisisWindow("2022 bear year", date(2022, 1, 1), date(2022, 12, 31)),
    CrisisWindow("2025-04 tariff shock", date(2025, 4, 1), date(2025, 6, 30)),
)


# --------------------------------------------------------------------------------------------- helpers


def weight_columns(allocations: pl.DataFrame) -> list[str]:
    """The ``w_*`` columns of an allocation frame, in frame order (``w_cash`` last when present)."""
    cols = [c for c in allocations.columns if c.startswith("w_")]
    if not cols:
        raise ValueError(f"allocations has no w_* weight columns (columns: {allocations.columns})")
    return [c for c in cols if c != "w_cash"] + [c for c in cols if c == "w_cash"]


def equity_exposure(allocations: pl.DataFrame, assets: Sequence[str] = EQUITY_ASSETS) -> pl.Expr:
    """Expression: sum of the ``w_<asset>`` columns present for ``assets`` (SPY + QQQ by default)."""
    cols = [f"w_{a}" for a in assets if f"w_{a}" in allocations.columns]
    if not cols:
        raise ValueError(f"allocations has none of the equity weight columns {[f'w_{a}' for a in assets]}")
    return pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in cols]).alias("equity_exposure")


def _select_strategy(frame: pl.DataFrame, strategy: str | None, what: str) -> pl.DataFrame:
    if "strategy" not in frame.columns:
        return frame
    if strategy is None:
        if frame.get_column("strategy").n_unique() > 1:
            raise ValueError(f"{what}: the frame holds several strategies; name one")
        return frame
    out = frame.filter(pl.col("strategy") == strategy)
    if out.is_empty():
        known = sorted(frame.get_column("strategy").unique().to_list())
        raise ValueError(f"{what}: no rows for strategy {strategy!r} (have {known})")
    return out


def _with_strategy(frame: pl.DataFrame, default: str = "strategy") -> pl.DataFrame:
    if "strategy" in frame.columns:
        return frame
    return frame.with_columns(pl.lit(default).alias("strategy"))


def _vix_frame(vix: pl.DataFrame, config: VixRegimeConfig | None) -> pl.DataFrame:
    cfg = config or VixRegimeConfig()
    v = vix.select(pl.col("date").cast(pl.Date), pl.col("vix").cast(pl.Float64)).filter(
        pl.col("vix").is_not_null() & pl.col("vix").is_finite()
    )
    v = v.unique("date", keep="last").sort("date")
    # Buckets are recomputed from the levels with the configured edges, so a stale or missing
    # ``bucket`` column can never disagree with ``vix``.
    return v.with_columns(pl.Series("bucket", vix_buckets(v.get_column("vix").to_numpy(), cfg), dtype=pl.Utf8))


def align_vix(
    frame: pl.DataFrame,
    vix: pl.DataFrame,
    vix_timing: VixTiming = "decision",
    config: VixRegimeConfig | None = None,
) -> pl.DataFrame:
    """``frame`` with ``vix`` and ``bucket`` columns paired by date (see the module docstring for timing).

    Rows with no VIX within :data:`VIX_TOLERANCE_DAYS` get nulls. Row order of ``frame`` is not kept
    (the result is sorted by date).
    """
    if vix_timing not in ("decision", "same_day"):
        raise ValueError(f"vix_timing must be 'decision' or 'same_day', got {vix_timing!r}")
    v = _vix_frame(vix, config)
    left = frame.with_columns(pl.col("date").cast(pl.Date)).drop(["vix", "bucket"], strict=False).sort("date")
    return left.join_asof(
        v,
        on="date",
        strategy="backward",
        tolerance=f"{VIX_TOLERANCE_DAYS}d",
        allow_exact_matches=(vix_timing == "same_day"),
    )


def equity_curves(daily: pl.DataFrame) -> pl.DataFrame:
    """``daily`` sorted by (strategy, date) with an ``equity`` column (compounded ``net_return`` from 1.0)
    and a ``drawdown`` column (equity / running peak - 1, the starting 1.0 counting as a peak).

    An existing ``equity`` column is kept as given.
    """
    d = _with_strategy(daily).with_columns(pl.col("date").cast(pl.Date)).sort(["strategy", "date"])
    if "equity" not in d.columns:
        d = d.with_columns(
            (1.0 + pl.col("net_return").cast(pl.Float64).fill_null(0.0)).cum_prod().over("strategy").alias("equity")
        )
    dd = pl.col("equity").cast(pl.Float64).map_batches(lambda s: pl.Series(drawdown(s.to_numpy())),
                                                        return_dtype=pl.Float64)
    return d.with_columns(dd.over("strategy").alias("drawdown"))


def multiplier_label(m: float) -> str:
    """``2.0`` -> ``"2x"``, ``2.5`` -> ``"2.5x"``."""
    return f"{m:g}x"


# ----------------------------------------------------------------------------------- VIX-bucket table


def allocation_by_vix_bucket(
    allocations: pl.DataFrame,
    vix: pl.DataFrame,
    strategy: str | None = "ppo",
    *,
    vix_timing: VixTiming = "decision",
    config: VixRegimeConfig | None = None,
) -> pl.DataFrame:
    """"Does it learn to fear?": average weights held per VIX bucket for one strategy.

    One row per bucket in order calm, normal, elevated, stress, panic (all five, even when empty):
    ``bucket``, ``vix_range`` (e.g. ``"[20, 25)"``), ``days``, ``share_days`` (fraction of days with a
    VIX), ``avg_vix``, the mean of every ``w_*`` column and ``equity_exposure`` (mean of SPY + QQQ weight).
    Empty buckets have ``days = 0`` and null averages. Days without a VIX are left out.

    Timing: weights dated ``date`` (held on ``date``) are paired with the VIX of the decision day
    (the close before ``date``) by default; see :func:`align_vix`.
    """
    cfg = config or VixRegimeConfig()
    a = _select_strategy(allocations, strategy, "allocation_by_vix_bucket")
    wcols = weight_columns(a)
    a = a.select("date", *wcols, equity_exposure(a))
    j = align_vix(a, vix, vix_timing, cfg).filter(pl.col("bucket").is_not_null())
    total = j.height
    stats = j.group_by("bucket").agg(
        pl.len().alias("days"),
        pl.col("vix").mean().alias("avg_vix"),
        *[pl.col(c).mean() for c in wcols],
        pl.col("equity_exposure").mean(),
    )
    edges = list(cfg.bucket_edges)
    lows = [None, *edges]
    highs = [*edges, None]
    below, above, between = ("< {hi:g}", ">= {lo:g}", "[{lo:g}, {hi:g})") if cfg.closed == "left" else \
        ("<= {hi:g}", "> {lo:g}", "({lo:g}, {hi:g}]")
    ranges = [(below if lo is None else above if hi is None else between).format(lo=lo, hi=hi)
              for lo, hi in zip(lows, highs)]
    skeleton = pl.DataFrame({"bucket": list(BUCKETS), "vix_range": ranges}, schema={"bucket": pl.Utf8, "vix_range": pl.Utf8})
    out = skeleton.join(stats, on="bucket", how="left", maintain_order="left").with_columns(
        pl.col("days").fill_null(0).cast(pl.Int64)
    )
    share = (pl.col("days") / total) if total else pl.lit(None, dtype=pl.Float64)
    return out.with_columns(share.cast(pl.Float64).alias("share_days")).select(
        "bucket", "vix_range", "days", "share_days", "avg_vix", *wcols, "equity_exposure"
    )


def equity_vix_correlation(
    allocations: pl.DataFrame,
    vix: pl.DataFrame,
    strategy: str | None = "ppo",
    *,
    vix_timing: VixTiming = "decision",
) -> float:
    """Pearson correlation between the equity exposure (SPY + QQQ weight) and the VIX level.

    Negative = the strategy holds less equity when the VIX is high. NaN when either series is constant
    or fewer than 3 paired days. Timing as in :func:`allocation_by_vix_bucket`.
    """
    a = _select_strategy(allocations, strategy, "equity_vix_correlation")
    j = align_vix(a.select("date", equity_exposure(a)), vix, vix_timing).drop_nulls(["vix", "equity_exposure"])
    x = j.get_column("equity_exposure").to_numpy().astype(float)
    y = j.get_column("vix").to_numpy().astype(float)
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def equity_vix_correlation_table(
    allocations: pl.DataFrame, vix: pl.DataFrame, *, vix_timing: VixTiming = "decision"
) -> pl.DataFrame:
    """One row per strategy: ``strategy``, ``days`` (paired days), ``avg_equity_exposure``, ``corr_equity_vix``."""
    a = _with_strategy(allocations)
    rows = []
    for name in sorted(a.get_column("strategy").unique().to_list()):
        s = a.filter(pl.col("strategy") == name)
        j = align_vix(s.select("date", equity_exposure(s)), vix, vix_timing).drop_nulls(["vix", "equity_exposure"])
        rows.append(
            {
                "strategy": name,
                "days": j.height,
                "avg_equity_exposure": j.get_column("equity_exposure").mean() if j.height else None,
                "corr_equity_vix": equity_vix_correlation(s, vix, None, vix_timing=vix_timing),
            }
        )
    return pl.DataFrame(
        rows,
        schema={"strategy": pl.Utf8, "days": pl.Int64, "avg_equity_exposure": pl.Float64, "corr_equity_vix": pl.Float64},
    )


# ------------------------------------------------------------------------------------ crisis windows


def _recovery(dates: np.ndarray, eq: np.ndarray, after: int, level: float) -> tuple[date | None, int | None]:
    hit = np.flatnonzero(eq[after:] >= level - 1e-12)
    if hit.size == 0:
        return None, None
    i = after + int(hit[0])
    return dates[i], i


def crisis_windows(
    daily: pl.DataFrame,
    windows: Sequence[CrisisWindow] = DEFAULT_CRISES,
    *,
    benchmark: str = "spy_buy_hold",
) -> pl.DataFrame:
    """Per strategy and crisis window: how deep it fell and whether/when it got back.

    Only windows with at least one data day inside them are reported. Columns:

    * ``window``, ``start``, ``end`` (the window's definition), ``days`` (trading days inside it) and
      ``partial`` (the data starts after ``start`` + 7 days or ends before ``end``);
    * ``return``: compounded net return over the window's days;
    * ``max_drawdown``: worst equity / running peak - 1 inside the window, the peak starting at the
      pre-window peak (the highest equity before the window; 1.0 if the data starts in the window);
    * ``trough_date``: the window's lowest-equity day;
    * ``recovery_date``: first day at or after the trough (inside the window or later) with equity back
      at the pre-window peak, as ISO text; ``"not recovered"`` if that never happens in the data, and
      ``"stayed above peak"`` if the equity never fell below the pre-window peak in the window;
    * ``recovery_days``: trading days from the trough to the recovery (null if not recovered);
    * ``vs_benchmark``: ``return`` minus the benchmark's ``return`` in the same window (null when the
      benchmark is absent), so every row reads side by side against SPY buy & hold.

    Rows are ordered by window, then the benchmark first, then the other strategies by name.
    """
    d = equity_curves(daily)
    strategies = sorted(d.get_column("strategy").unique().to_list(), key=lambda s: (s != benchmark, s))
    rows = []
    for w in windows:
        for name in strategies:
            s = d.filter(pl.col("strategy") == name)
            dates = np.array(s.get_column("date").to_list(), dtype=object)
            eq = s.get_column("equity").to_numpy().astype(float)
            inside = np.flatnonzero([(w.start <= x <= w.end) for x in dates])
            if inside.size == 0:
                continue
            i0, i1 = int(inside[0]), int(inside[-1])
            pre_eq = 1.0 if i0 == 0 else float(eq[i0 - 1])
            pre_peak = max(1.0, float(eq[:i0].max())) if i0 > 0 else 1.0
            seg = eq[i0 : i1 + 1]
            mdd = float(drawdown(seg, start_peak=pre_peak).min())
            t = i0 + int(np.argmin(seg))
            if eq[t] >= pre_peak - 1e-12:
                rec_text, rec_days = "stayed above peak", None
            else:
                rec_date, rec_i = _recovery(dates, eq, t, pre_peak)
                rec_text = rec_date.isoformat() if rec_date is not None else "not recovered"
                rec_days = (rec_i - t) if rec_i is not None else None
            rows.append(
                {
                    "window": w.label,
                    "start": w.start,
                    "end": w.end,
                    "strategy": name,
                    "days": i1 - i0 + 1,
                    "partial": bool((dates[i0] - w.start).days > 7 or dates[-1] < w.end),
                    "return": float(eq[i1] / pre_eq - 1.0),
                    "max_drawdown": mdd,
                    "trough_date": dates[t],
                    "recovery_date": rec_text,
                    "recovery_days": rec_days,
                }
            )
    schema = {
        "window": pl.Utf8, "start": pl.Date, "end": pl.Date, "strategy": pl.Utf8, "days": pl.Int64,
        "partial": pl.Boolean, "return": pl.Float64, "max_drawdown": pl.Float64, "trough_date": pl.Date,
        "recovery_date": pl.Utf8, "recovery_days": pl.Int64,
    }  # fmt: skip
    out = pl.DataFrame(rows, schema=schema)
    bench = out.filter(pl.col("strategy") == benchmark).select("window", pl.col("return").alias("_bench"))
    return (
        out.join(bench, on="window", how="left", maintain_order="left")
        .with_columns((pl.col("return") - pl.col("_bench")).alias("vs_benchmark"))
        .drop("_bench")
    )


# ------------------------------------------------------------------------------- panic-day volatility


def panic_day_volatility(
    daily: pl.DataFrame,
    vix: pl.DataFrame,
    threshold: float = 35.0,
    *,
    vix_timing: VixTiming = "decision",
) -> pl.DataFrame:
    """Annualised volatility of each strategy's daily net returns on days with VIX > ``threshold``.

    One row per strategy: ``strategy``, ``panic_days``, ``panic_ann_vol`` (std(ddof=1) * sqrt(252) on
    panic days; null with < 2 days), ``panic_mean_return`` (mean daily return on those days),
    ``panic_worst_day``, and ``all_days_ann_vol`` for comparison. Timing: the return dated ``date`` is a
    panic day when the VIX of its decision day (the close before ``date``) is above the threshold
    (``vix_timing="same_day"``: the VIX dated ``date``).
    """
    d = _with_strategy(daily).select("strategy", pl.col("date").cast(pl.Date), pl.col("net_return").cast(pl.Float64))
    j = align_vix(d, vix, vix_timing)
    panic = pl.col("vix") > threshold
    ann = float(np.sqrt(TRADING_DAYS))
    return (
        j.group_by("strategy")
        .agg(
            panic.sum().cast(pl.Int64).alias("panic_days"),
            (pl.col("net_return").filter(panic).std(ddof=1) * ann).alias("panic_ann_vol"),
            pl.col("net_return").filter(panic).mean().alias("panic_mean_return"),
            pl.col("net_return").filter(panic).min().alias("panic_worst_day"),
            (pl.col("net_return").std(ddof=1) * ann).alias("all_days_ann_vol"),
        )
        .sort("strategy")
    )


# -------------------------------------------------------------------------------- action diagnostics


def action_diagnostics(allocations: pl.DataFrame, daily: pl.DataFrame | None = None) -> pl.DataFrame:
    """How the strategies act: concentration, trading and cash use. One row per strategy:

    * ``hhi_mean``, ``hhi_p50``, ``hhi_p90``: Herfindahl-Hirschman index of the weights held,
      ``sum_i w_i^2`` over every ``w_*`` column *including cash* (1 = all in one asset, 1/k = evenly
      spread over k columns);
    * ``turnover_mean``, ``turnover_p50``, ``turnover_p90``, ``turnover_max``: daily turnover from
      ``daily`` (sum |weight change| incl. cash, 0..2; null when ``daily`` has no ``turnover``);
    * ``cash_mean`` (mean cash weight) and ``cash_over_50_share`` (share of days with cash > 50%),
      null without a ``w_cash`` column.

    Percentiles use linear interpolation.
    """
    a = _with_strategy(allocations)
    wcols = weight_columns(a)
    hhi = pl.sum_horizontal([pl.col(c).cast(pl.Float64) ** 2 for c in wcols]).alias("hhi")
    has_cash = "w_cash" in a.columns
    cash = pl.col("w_cash").cast(pl.Float64) if has_cash else pl.lit(None, dtype=pl.Float64)
    out = (
        a.with_columns(hhi, cash.alias("_cash"))
        .group_by("strategy")
        .agg(
            pl.len().cast(pl.Int64).alias("days"),
            pl.col("hhi").mean().alias("hhi_mean"),
            pl.col("hhi").quantile(0.5, "linear").alias("hhi_p50"),
            pl.col("hhi").quantile(0.9, "linear").alias("hhi_p90"),
            pl.col("_cash").mean().alias("cash_mean"),
            (pl.col("_cash") > 0.5).mean().cast(pl.Float64).alias("cash_over_50_share")
            if has_cash
            else pl.lit(None, dtype=pl.Float64).alias("cash_over_50_share"),
        )
    )
    tcols = ["turnover_mean", "turnover_p50", "turnover_p90", "turnover_max"]
    if daily is not None and "turnover" in daily.columns:
        t = (
            _with_strategy(daily)
            .group_by("strategy")
            .agg(
                pl.col("turnover").cast(pl.Float64).mean().alias("turnover_mean"),
                pl.col("turnover").cast(pl.Float64).quantile(0.5, "linear").alias("turnover_p50"),
                pl.col("turnover").cast(pl.Float64).quantile(0.9, "linear").alias("turnover_p90"),
                pl.col("turnover").cast(pl.Float64).max().alias("turnover_max"),
            )
        )
        out = out.join(t, on="strategy", how="left")
    else:
        out = out.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in tcols])
    return out.select(
        "strategy", "days", "hhi_mean", "hhi_p50", "hhi_p90", *tcols, "cash_mean", "cash_over_50_share"
    ).sort("strategy")


# ------------------------------------------------------------------------------------- cost stress


def cost_stress(
    results: Mapping[float, Mapping[str, Sequence[float] | np.ndarray]],
    *,
    risk_free: float = 0.0,
) -> pl.DataFrame:
    """Sharpe and CAGR per cost multiplier, from backtests re-run at scaled transaction costs.

    ``results``: ``{multiplier: {strategy: daily net returns}}``, e.g. ``{1.0: {...}, 2.0: {...}, 3.0: {...}}``
    (the caller re-runs the backtest with ``cost_bps * multiplier``). One row per strategy (sorted;
    a strategy missing at some multiplier gets nulls there), columns ``strategy``, then
    ``sharpe_<m>x`` for every multiplier (ascending), then ``cagr_<m>x``, then ``max_drawdown_<m>x``.
    Sharpe uses ``risk_free`` (annual, fraction) as :func:`ml.metrics.sharpe` does.
    """
    if not results:
        raise ValueError("cost_stress: no results")
    mults = sorted(float(m) for m in results)
    by_float = {float(k): v for k, v in results.items()}
    names = sorted({s for v in results.values() for s in v})
    data: dict[str, list] = {"strategy": names}
    for metric, fn in (
        ("sharpe", lambda r: sharpe(r, risk_free)),
        ("cagr", cagr),
        ("max_drawdown", max_drawdown),
    ):
        for m in mults:
            col = []
            for n in names:
                r = by_float[m].get(n)
                r = None if r is None else np.asarray(r, dtype=float)
                col.append(None if r is None or r.size == 0 else fn(r))
            data[f"{metric}_{multiplier_label(m)}"] = col
    schema = {c: (pl.Utf8 if c == "strategy" else pl.Float64) for c in data}
    return pl.DataFrame(data, schema=schema)
