"""Performance metrics of daily net returns (simple returns, fraction per day; 252 trading days a year).

Conventions: returns are the net-of-cost daily returns earned from close t to close t+1; the equity
curve is their compounded product starting at 1.0; the risk-free rate is 0 unless given.
"""
from __future__ import annotations

import numpy as np

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


def max_drawdown(returns: np.ndarray) -> float:
    """Most negative equity / running peak - 1 (the starting equity 1.0 counts as a peak); 0 if none."""
    eq = equity_curve(returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    return float((eq / peak - 1.0).min()) if eq.size else 0.0


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
