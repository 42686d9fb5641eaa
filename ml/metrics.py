"""Performance metrics of daily net returns (simple returns, fraction per day; 252 trading days a year).

Conventions: returns are the net-of-cost daily returns earned from close t to close t+1; the equity
curve is their compounded product starting at 1.0; the risk-free rate is 0 unless given.

Uncertainty: stationary-bootstrap (Politis & Romano) percentile intervals of the Sharpe ratio and of
paired Sharpe differences, and the probabilistic Sharpe ratio (Bailey & Lopez de Prado).
:func:`metrics_table` gathers everything, one row per strategy.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

TRADING_DAYS = 252


def sharpe(returns: np.ndarray, risk_free: float = 0.0) -> float:
    """Annualised Sharpe: mean(r - rf/252) / std(r, ddof=1) * sqrt(252); NaN if std is 0 or < 2 days."""
    r = np.asarray(returns, dtype=float) - risk_free / TRADING_DAYS
    if r.size < 2 or r.std(ddof=1) == 0:
        return float("nan")
    return float(r.mean() / r.std(ddof=1) * np.sqrt(TRADING_DAYS))


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """Compounded equity after each day, starting from 1.0 before the first return."""
    return np.cumprod(1.0 + np.asarray(returns, dtype=float))


def drawdown(equity: np.ndarray, *, start_peak: float | None = 1.0, window: int | None = None) -> np.ndarray:
    """Drawdown at each point of an equity curve: ``equity_t / peak_t - 1`` (fraction <= 0).

    ``peak_t`` is the highest equity up to and including t, and at least ``start_peak`` (the starting
    capital counts as a peak; ``None``: only the curve's own points); a 2-D array holds one curve per row.
    With ``window`` (1-D curves only), the peak is taken
    over the last ``window`` points only (a trailing drawdown, as the circuit breaker uses).
    The project's one drawdown implementation: metrics, reports, crisis windows and the breaker call it."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return e.copy()
    if window is None:
        peak = np.maximum.accumulate(e, axis=-1)  # along the last axis: one curve per row of a 2-D array
    else:
        padded = np.concatenate([np.full(int(window) - 1, -np.inf), e])
        peak = np.lib.stride_tricks.sliding_window_view(padded, int(window)).max(axis=1)
    if start_peak is not None:
        peak = np.maximum(peak, start_peak)
    return e / peak - 1.0


def max_drawdown(returns: np.ndarray) -> float:
    """Most negative equity / running peak - 1 (the starting equity 1.0 counts as a peak); 0 if none."""
    eq = equity_curve(returns)
    return float(drawdown(eq).min()) if eq.size else 0.0


def cagr(returns: np.ndarray) -> float:
    """Compound annual growth rate: equity_T ** (252 / T) - 1."""
    r = np.asarray(returns, dtype=float)
    return float(equity_curve(r)[-1] ** (TRADING_DAYS / r.size) - 1.0) if r.size else float("nan")


def annual_volatility(returns: np.ndarray) -> float:
    """std(r, ddof=1) * sqrt(252)."""
    r = np.asarray(returns, dtype=float)
    return float(r.std(ddof=1) * np.sqrt(TRADING_DAYS)) if r.size > 1 else float("nan")


def summary(returns: np.ndarray, risk_free: float = 0.0) -> dict[str, float]:
    """Sharpe (rf stated), CAGR, annual volatility, max drawdown, total return, days."""
    r = np.asarray(returns, dtype=float)
    return {
        "days": int(r.size),
        "sharpe": sharpe(r, risk_free),
        "risk_free": risk_free,
        "cagr": cagr(r),
        "ann_vol": annual_volatility(r),
        "max_drawdown": max_drawdown(r),
        "total_return": float(equity_curve(r)[-1] - 1.0) if r.size else float("nan"),
    }


# ----------------------------------------------------------------------------------------------------
# Extended metrics (walk-forward evaluation). Same conventions as above: ``returns`` are simple daily
# net returns (fractions) of the *earned* days, aligned with ``dates`` (the earned dates, see
# :class:`ml.backtest.engine.BacktestResult`); equity starts at 1.0 before the first day; annual rates
# (``risk_free``) are simple annual fractions converted to ``risk_free / 252`` per day.
# ----------------------------------------------------------------------------------------------------

def total_return(returns: np.ndarray) -> float:
    """Compounded return over the period: ``prod(1 + r) - 1`` (fraction); NaN for no days."""
    r = np.asarray(returns, dtype=float)
    return float(np.prod(1.0 + r) - 1.0) if r.size else float("nan")


def sortino(returns: np.ndarray, risk_free: float = 0.0) -> float:
    """Annualised Sortino: ``mean(x) / DD * sqrt(252)`` with ``x = r - rf/252`` and downside deviation
    ``DD = sqrt(mean(min(x, 0)^2))`` over ALL days (target = the daily risk-free rate, 0 by default);
    NaN if there is no downside day (DD = 0) or fewer than 2 days."""
    x = np.asarray(returns, dtype=float) - risk_free / TRADING_DAYS
    if x.size < 2:
        return float("nan")
    dd = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
    return float(x.mean() / dd * math.sqrt(TRADING_DAYS)) if dd > 0 else float("nan")


@dataclass(frozen=True)
class DrawdownInfo:
    """The deepest drawdown of an equity curve.

    ``max_drawdown``: ``min(equity / running_peak - 1)`` (<= 0, fraction; the start equity 1.0 is a peak).
    ``peak_date``: the last date at which equity stood at the peak preceding the trough (``start_date``
    when that peak is the starting capital); ``trough_date``: the date of the minimum (first if tied);
    ``recovery_date``: the first date after the trough with equity >= that peak (None = not recovered);
    ``recovery_days``: trading days (rows) from trough to recovery, None = not recovered.
    With no drawdown at all every date is None and ``recovery_days`` is 0.
    Indices (``peak_idx``/``trough_idx``/``recovery_idx``) are rows of ``returns``; ``peak_idx = -1`` is
    the start capital.
    """

    max_drawdown: float
    peak_date: date | None
    trough_date: date | None
    recovery_date: date | None
    recovery_days: int | None
    peak_idx: int | None
    trough_idx: int | None
    recovery_idx: int | None


def _as_date(dates: np.ndarray | Sequence | None, i: int | None, start_date: date | None = None) -> date | None:
    if i is None or dates is None:
        return None
    if i < 0:
        return start_date
    d = np.asarray(dates)[i]
    return np.datetime64(d, "D").astype(object) if not isinstance(d, date) else d


def drawdown_info(
    returns: np.ndarray, dates: np.ndarray | Sequence | None = None, start_date: date | None = None
) -> DrawdownInfo:
    """Max drawdown with its peak / trough / recovery (see :class:`DrawdownInfo`). ``dates`` aligned
    with ``returns`` (earned dates); ``start_date``: the date of the starting capital (decision close
    before the first earned day), reported when the peak is the start."""
    r = np.asarray(returns, dtype=float)
    if r.size == 0:
        return DrawdownInfo(0.0, None, None, None, 0, None, None, None)
    eq = np.concatenate([[1.0], np.cumprod(1.0 + r)])  # eq[k+1] = equity after day k
    dd = drawdown(eq)
    k = int(np.argmin(dd))
    mdd = float(dd[k])
    if mdd >= 0.0:
        return DrawdownInfo(0.0, None, None, None, 0, None, None, None)
    peak = eq[: k + 1].max()
    p = int(np.flatnonzero(eq[: k + 1] == peak)[-1])
    after = np.flatnonzero(eq[k + 1 :] >= peak)
    rec = None if after.size == 0 else int(k + 1 + after[0])
    return DrawdownInfo(
        max_drawdown=mdd,
        peak_date=_as_date(dates, p - 1, start_date),
        trough_date=_as_date(dates, k - 1),
        recovery_date=_as_date(dates, None if rec is None else rec - 1),
        recovery_days=None if rec is None else rec - k,
        peak_idx=p - 1,
        trough_idx=k - 1,
        recovery_idx=None if rec is None else rec - 1,
    )


def calmar(returns: np.ndarray) -> float:
    """Calmar ratio: ``CAGR / |max drawdown|`` over the whole period; NaN if there is no drawdown."""
    mdd = max_drawdown(returns)
    return float(cagr(returns) / abs(mdd)) if mdd < 0 else float("nan")


def average_turnover(turnover: np.ndarray) -> float:
    """Mean daily turnover ``mean(sum_i |w_new_i - w_old_i|)`` incl. cash (0..2 per day); NaN for no days."""
    t = np.asarray(turnover, dtype=float)
    return float(t.mean()) if t.size else float("nan")


def hit_rate(returns: np.ndarray) -> float:
    """Share of days with a strictly positive net return (0..1); NaN for no days."""
    r = np.asarray(returns, dtype=float)
    return float((r > 0).mean()) if r.size else float("nan")


def worst_day(returns: np.ndarray) -> float:
    """Lowest daily net return (a return, negative for a loss); NaN for no days."""
    r = np.asarray(returns, dtype=float)
    return float(r.min()) if r.size else float("nan")


def var_cvar(returns: np.ndarray, level: float = 0.05) -> tuple[float, float]:
    """Historical one-day VaR and CVaR (expected shortfall) at ``level``, as POSITIVE LOSS fractions.

    With the ``N`` returns sorted ascending and ``k = ceil(level * N)`` (at least 1):
    ``VaR = -r_(k)`` (minus the k-th smallest return, i.e. the ``inverted_cdf`` empirical quantile) and
    ``CVaR = -mean(r_(1) .. r_(k))`` (minus the mean of the k worst days). A 2% loss reads 0.02; a
    negative value means even the tail day was a gain. NaN for no days.
    """
    r = np.sort(np.asarray(returns, dtype=float))
    if r.size == 0:
        return float("nan"), float("nan")
    k = max(1, math.ceil(level * r.size - 1e-12))
    return float(-r[k - 1]), float(-r[:k].mean())


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0, risk_free: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012): probability that the true Sharpe
    exceeds ``sr_benchmark`` (ANNUALISED, like :func:`sharpe`).

    ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with per-day quantities:
    ``SR = mean(x) / std(x, ddof=1)`` (``x = r - rf/252``; = sharpe / sqrt(252)), ``SR* = sr_benchmark /
    sqrt(252)``, ``g3`` the skewness and ``g4`` the (non-excess, normal = 3) kurtosis of ``x`` from
    population moments. NaN for fewer than 3 days or zero variance.
    """
    x = np.asarray(returns, dtype=float) - risk_free / TRADING_DAYS
    n = x.size
    if n < 3:
        return float("nan")
    sd = x.std(ddof=1)
    if sd == 0:
        return float("nan")
    sr = x.mean() / sd
    c = x - x.mean()
    m2 = float(np.mean(c**2))
    g3 = float(np.mean(c**3)) / m2**1.5
    g4 = float(np.mean(c**4)) / m2**2
    denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        return float("nan")
    return _norm_cdf((sr - sr_benchmark / math.sqrt(TRADING_DAYS)) * math.sqrt(n - 1) / math.sqrt(denom))


# -- stationary bootstrap ------------------------------------------------------------------------------


def stationary_bootstrap_indices(
    n: int, n_boot: int = 1000, mean_block: float = 20.0, seed: int | None = 0
) -> np.ndarray:
    """``[n_boot, n]`` resampled row indices of the stationary bootstrap (Politis & Romano 1994).

    Each resample starts at a uniform row; every next position starts a new block at a uniform row with
    probability ``p = 1 / mean_block`` and otherwise continues with the next row (wrapping around), so
    blocks have geometric lengths of mean ``mean_block`` days. Vectorised, seeded (``numpy`` PCG64).
    """
    if n < 1 or n_boot < 1:
        raise ValueError("n and n_boot must be >= 1")
    if mean_block < 1:
        raise ValueError("mean_block must be >= 1 day")
    rng = np.random.default_rng(seed)
    new = rng.random((n_boot, n)) < 1.0 / mean_block
    new[:, 0] = True
    starts = rng.integers(0, n, size=(n_boot, n))
    pos = np.arange(n)
    last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # row of the current block's start
    return (np.take_along_axis(starts, last, axis=1) + (pos - last)) % n


def _sharpe_rows(x: np.ndarray) -> np.ndarray:
    """Annualised Sharpe of each row of ``x`` ``[B, n]`` (ddof=1; NaN for zero variance)."""
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    var = ((x - mean[..., None]) ** 2).sum(axis=-1) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, mean / np.sqrt(var), np.nan) * math.sqrt(TRADING_DAYS)


def _ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_sharpes(
    returns: np.ndarray | Sequence[np.ndarray],
    risk_free: float = 0.0,
    n_boot: int = 1000,
    mean_block: float = 20.0,
    seed: int | None = 0,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Annualised Sharpe of each stationary-bootstrap resample: ``[n_boot]`` for one series, ``[S, n_boot]``
    for ``S`` aligned series ``[S, n]`` (the SAME resampled rows for every series, so differences are
    paired). ``indices``: precomputed :func:`stationary_bootstrap_indices` (overrides n_boot/seed)."""
    x = np.asarray(returns, dtype=float) - risk_free / TRADING_DAYS
    single = x.ndim == 1
    x = np.atleast_2d(x)
    idx = stationary_bootstrap_indices(x.shape[1], n_boot, mean_block, seed) if indices is None else indices
    out = np.stack([_sharpe_rows(row[idx]) for row in x])
    return out[0] if single else out


def _max_drawdown_rows(x: np.ndarray) -> np.ndarray:
    """Maximum drawdown (fraction <= 0, from a start capital of 1) of each row of daily returns ``[B, n]``."""
    return drawdown(np.cumprod(1.0 + x, axis=-1)).min(axis=-1)


def bootstrap_max_drawdowns(returns: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Max drawdown of each stationary-bootstrap resample ``[S, n_boot]`` of aligned series ``[S, n]``
    (the same resampled rows for every series, so differences are paired)."""
    x = np.atleast_2d(np.asarray(returns, dtype=float))
    return np.stack([_max_drawdown_rows(row[indices]) for row in x])


def sharpe_ci(
    returns: np.ndarray,
    risk_free: float = 0.0,
    n_boot: int = 1000,
    mean_block: float = 20.0,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile ``1 - alpha`` (95%) stationary-bootstrap confidence interval of the annualised Sharpe
    (:func:`sharpe`): the ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled Sharpes."""
    return _ci(bootstrap_sharpes(returns, risk_free, n_boot, mean_block, seed), alpha)


def sharpe_diff_ci(
    returns_a: np.ndarray,
    returns_b: np.ndarray,
    risk_free: float = 0.0,
    n_boot: int = 1000,
    mean_block: float = 20.0,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """``(sharpe(a) - sharpe(b), ci_low, ci_high)`` for two ALIGNED daily series: paired stationary
    bootstrap (the same resampled rows for both), percentile ``1 - alpha`` interval of the difference."""
    a = np.asarray(returns_a, dtype=float)
    b = np.asarray(returns_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"series are not aligned: {a.shape} vs {b.shape}")
    s = bootstrap_sharpes(np.stack([a, b]), risk_free, n_boot, mean_block, seed)
    lo, hi = _ci(s[0] - s[1], alpha)
    return sharpe(a, risk_free) - sharpe(b, risk_free), lo, hi


# -- the table -----------------------------------------------------------------------------------------


def metrics_table(
    returns_by_name: Mapping[str, np.ndarray],
    dates: np.ndarray | Sequence,
    turnover_by_name: Mapping[str, np.ndarray] | None = None,
    risk_free: float = 0.0,
    benchmark_names: Sequence[str] = ("spy_buy_hold", "equal_weight"),
    *,
    n_boot: int = 1000,
    mean_block: float = 20.0,
    seed: int | None = 0,
    alpha: float = 0.05,
    var_level: float = 0.05,
    start_date: date | None = None,
) -> pl.DataFrame:
    """One row per strategy of aligned daily net returns (all series on the same earned ``dates``).

    Columns: ``strategy, start_date, end_date, days, total_return, cagr, ann_vol, sharpe, sharpe_ci_low,
    sharpe_ci_high, sortino, max_drawdown, mdd_peak_date, mdd_trough_date, recovery_date, recovery_days
    (null = not recovered), calmar, avg_turnover (null without turnover), hit_rate, worst_day, var_5,
    cvar_5 (positive losses at ``var_level``), psr (vs SR* = 0), risk_free`` and, for each benchmark ``b``,
    ``sharpe_diff_<b>, sharpe_diff_<b>_ci_low, sharpe_diff_<b>_ci_high`` and ``mdd_diff_<b>,
    mdd_diff_<b>_ci_low, mdd_diff_<b>_ci_high`` (max drawdown minus the benchmark's, fractions: > 0 = a
    shallower drawdown than ``b``; percentile interval of the paired resampled paths' max drawdowns; null
    when ``b`` is not among the series). ``start_date`` (the first column) defaults to the first earned date; pass the decision date
    before it to date a drawdown peaked at the start capital. One set of stationary-bootstrap rows
    (``n_boot`` x days, mean block ``mean_block``, ``seed``) is shared by every series and difference.
    """
    names = list(returns_by_name)
    if not names:
        raise ValueError("no return series")
    d = np.asarray(dates).astype("datetime64[D]")
    x = np.stack([np.asarray(returns_by_name[k], dtype=float) for k in names])
    if x.shape[1] != d.size:
        raise ValueError(f"returns have {x.shape[1]} days but {d.size} dates")
    n = d.size
    idx = stationary_bootstrap_indices(n, n_boot, mean_block, seed) if n >= 2 else None
    boot = bootstrap_sharpes(x, risk_free, indices=idx) if idx is not None else np.full((len(names), 1), np.nan)
    boot_dd = bootstrap_max_drawdowns(x, idx) if idx is not None else np.full((len(names), 1), np.nan)
    first = d[0].astype(object) if n else None
    rows = []
    for i, name in enumerate(names):
        r = x[i]
        dd = drawdown_info(r, d, start_date if start_date is not None else first)
        lo, hi = _ci(boot[i], alpha)
        var5, cvar5 = var_cvar(r, var_level)
        to = None if turnover_by_name is None or name not in turnover_by_name else turnover_by_name[name]
        row = {
            "strategy": name,
            "start_date": start_date if start_date is not None else first,
            "end_date": d[-1].astype(object) if n else None,
            "days": int(n),
            "total_return": total_return(r),
            "cagr": cagr(r),
            "ann_vol": annual_volatility(r),
            "sharpe": sharpe(r, risk_free),
            "sharpe_ci_low": lo,
            "sharpe_ci_high": hi,
            "sortino": sortino(r, risk_free),
            "max_drawdown": dd.max_drawdown,
            "mdd_peak_date": dd.peak_date,
            "mdd_trough_date": dd.trough_date,
            "recovery_date": dd.recovery_date,
            "recovery_days": dd.recovery_days,
            "calmar": calmar(r),
            "avg_turnover": None if to is None else average_turnover(to),
            "hit_rate": hit_rate(r),
            "worst_day": worst_day(r),
            "var_5": var5,
            "cvar_5": cvar5,
            "psr": probabilistic_sharpe_ratio(r, 0.0, risk_free),
            "risk_free": float(risk_free),
        }
        for b in benchmark_names:
            if b in returns_by_name:
                j = names.index(b)
                blo, bhi = _ci(boot[i] - boot[j], alpha)
                row[f"sharpe_diff_{b}"] = sharpe(r, risk_free) - sharpe(x[j], risk_free)
            else:
                row[f"sharpe_diff_{b}"], blo, bhi = None, None, None
            row[f"sharpe_diff_{b}_ci_low"] = blo
            row[f"sharpe_diff_{b}_ci_high"] = bhi
        for b in benchmark_names:
            if b in returns_by_name:
                j = names.index(b)
                row[f"mdd_diff_{b}"] = float(_max_drawdown_rows(r) - _max_drawdown_rows(x[j]))
                row[f"mdd_diff_{b}_ci_low"], row[f"mdd_diff_{b}_ci_high"] = _ci(boot_dd[i] - boot_dd[j], alpha)
            else:
                row[f"mdd_diff_{b}"] = row[f"mdd_diff_{b}_ci_low"] = row[f"mdd_diff_{b}_ci_high"] = None
        rows.append(row)
    schema: dict[str, pl.DataType] = {
        "strategy": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date, "days": pl.Int64,
        "mdd_peak_date": pl.Date, "mdd_trough_date": pl.Date, "recovery_date": pl.Date, "recovery_days": pl.Int64,
    }
    for k in rows[0]:
        schema.setdefault(k, pl.Float64)
    return pl.DataFrame(rows, schema=schema)


# --- thesis conventions (log returns; reproduction of the Q-learning thesis) ---
# Inputs are DAILY LOG returns (fraction per day, 252 days a year); x100 gives "log points".


def log_total_return(log_returns: np.ndarray) -> float:
    """Sum of daily log returns (fraction; x100 = log points); 0.0 for an empty array."""
    return float(np.sum(np.asarray(log_returns, dtype=float)))


def log_volatility(log_returns: np.ndarray) -> float:
    """Annualised volatility of log returns: std(r, ddof=1) * sqrt(252); NaN if fewer than 2 values."""
    r = np.asarray(log_returns, dtype=float)
    return float(r.std(ddof=1) * np.sqrt(TRADING_DAYS)) if r.size > 1 else float("nan")


def log_max_drawdown(log_returns: np.ndarray) -> float:
    """Most negative cumulative log return minus its running maximum (the 0.0 start counts as a peak).

    A negative fraction (-0.4112 = 41.12 log points); 0.0 if never below the peak or for an empty array."""
    r = np.asarray(log_returns, dtype=float)
    if r.size == 0:
        return 0.0
    cum = np.cumsum(r)
    peak = np.maximum(np.maximum.accumulate(cum), 0.0)
    return float(min((cum - peak).min(), 0.0))


def sr_annual(log_returns: np.ndarray, risk_free: float = 0.02) -> float:
    """Thesis annual Sharpe: (mean(r) * 252 - risk_free) / log_volatility; risk_free a yearly fraction.

    NaN if the volatility is 0 or NaN."""
    r = np.asarray(log_returns, dtype=float)
    vol = log_volatility(r)
    if not np.isfinite(vol) or vol == 0:
        return float("nan")
    return float((r.mean() * TRADING_DAYS - risk_free) / vol)


def sr_full_period(log_returns: np.ndarray, risk_free: float = 0.02) -> float:
    """Full-period Sharpe: sr_annual * sqrt(years), years = n / 252."""
    r = np.asarray(log_returns, dtype=float)
    return float(sr_annual(r, risk_free) * np.sqrt(r.size / TRADING_DAYS))


def sortino_log(log_returns: np.ndarray, risk_free: float = 0.02) -> float:
    """(mean(r) * 252 - risk_free) / (downside deviation * sqrt(252)).

    Downside deviation = sqrt(mean(min(r - risk_free/252, 0)^2)) over all days; NaN if it is 0 (or no days)."""
    r = np.asarray(log_returns, dtype=float)
    if r.size == 0:
        return float("nan")
    dd = float(np.sqrt(np.mean(np.minimum(r - risk_free / TRADING_DAYS, 0.0) ** 2)))
    if dd == 0:
        return float("nan")
    return float((r.mean() * TRADING_DAYS - risk_free) / (dd * np.sqrt(TRADING_DAYS)))


def information_ratio(log_returns: np.ndarray, benchmark_log_returns: np.ndarray) -> float:
    """Annualised information ratio of active = r - b: mean * 252 / (std(ddof=1) * sqrt(252)).

    ValueError if the lengths differ; NaN if the active std is 0 or there are fewer than 2 days."""
    r = np.asarray(log_returns, dtype=float)
    b = np.asarray(benchmark_log_returns, dtype=float)
    if r.shape != b.shape:
        raise ValueError(f"returns and benchmark differ in length: {r.shape} vs {b.shape}")
    active = r - b
    if active.size < 2:
        return float("nan")
    sd = float(active.std(ddof=1))
    if sd == 0:
        return float("nan")
    return float(active.mean() * TRADING_DAYS / (sd * np.sqrt(TRADING_DAYS)))


def mann_whitney_p(log_returns: np.ndarray, benchmark_log_returns: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test of the two samples of daily log returns."""
    from scipy.stats import mannwhitneyu

    r = np.asarray(log_returns, dtype=float)
    b = np.asarray(benchmark_log_returns, dtype=float)
    return float(mannwhitneyu(r, b, alternative="two-sided").pvalue)


def thesis_summary(
    log_returns: np.ndarray, benchmark_log_returns: np.ndarray | None = None, risk_free: float = 0.02
) -> dict[str, float]:
    """Thesis metrics: total log return, annual std, max drawdown (log), SR annual / full, Sortino, days.

    With a benchmark, also the information ratio and the Mann-Whitney two-sided p-value."""
    r = np.asarray(log_returns, dtype=float)
    out: dict[str, float] = {
        "total_log_return": log_total_return(r),
        "std": log_volatility(r),
        "max_drawdown_log": log_max_drawdown(r),
        "sr_annual": sr_annual(r, risk_free),
        "sr_full": sr_full_period(r, risk_free),
        "sortino": sortino_log(r, risk_free),
        "days": int(r.size),
    }
    if benchmark_log_returns is not None:
        b = np.asarray(benchmark_log_returns, dtype=float)
        out["information_ratio"] = information_ratio(r, b)
        out["mann_whitney_p"] = mann_whitney_p(r, b)
    return out


def kde_monte_carlo(
    log_returns: np.ndarray,
    n_paths: int = 10_000,
    horizon: int = 252,
    seed: int = 0,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
) -> dict:
    """Monte Carlo of cumulative log return paths drawn from a Gaussian KDE of the daily log returns.

    Fits ``scipy.stats.gaussian_kde`` (default bandwidth), draws ``n_paths * horizon`` daily returns with
    ``np.random.default_rng(seed)``, and cumulates each row. Returns ``{"quantiles": tuple, "bands":
    [len(quantiles), horizon] quantiles of the cumulative log return after each day, "terminal": [n_paths]
    cumulative log return after ``horizon`` days}``. Deterministic for a given seed."""
    from scipy.stats import gaussian_kde

    r = np.asarray(log_returns, dtype=float)
    q = tuple(float(x) for x in quantiles)
    kde = gaussian_kde(r)
    draws = kde.resample(int(n_paths) * int(horizon), seed=np.random.default_rng(seed))
    paths = np.cumsum(draws.reshape(int(n_paths), int(horizon)), axis=1)
    bands = np.quantile(paths, q, axis=0).reshape(len(q), int(horizon))
    return {"quantiles": q, "bands": bands, "terminal": paths[:, -1].copy()}
