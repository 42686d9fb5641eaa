"""Seeded synthetic daily market: ETFs, stocks, VIX and VIX3M in the canonical schemas.

Model (all returns are daily log returns, one step = one trading day, everything dated t is known
at the close of day t):

* Fear index: ``x_t = log VIX_t`` follows a mean-reverting (OU) process around a slowly moving level
  (so there are calm years and stressed years), plus upward jumps whose intensity is self-exciting
  (a Hawkes process: every jump raises the next days' jump probability, so spikes cluster).
  Typical level 12-25, spikes to 40-80, hard bounds [9.5, 110] on the close.
* Market factor: ``r_m,t = mu - sigma_t^2/2 + sigma_t * z_t - gamma * J_t`` with
  ``sigma_t = k * VIX_{t-1} / 100 / sqrt(252)`` (yesterday's close, known before day t), ``z_t``
  correlated -0.75 with the VIX diffusion shock and ``J_t`` the VIX jump (crashes come with spikes).
* SPY = market; QQQ = 1.2 x market + growth factor; TLT/GLD have a regime-dependent market beta
  (bonds hedge equities when VIX is high, mildly positive when calm); sector ETFs = beta x market +
  sector factor + idio; stocks = beta x sector ETF return + idio + rare jumps.
* Bars: the log return is split into an overnight gap (close_{t-1} -> open_t) and an intraday move
  (open_t -> close_t); high/low extend beyond open/close by half-normal amounts scaled with sigma_t;
  volume (shares) rises with sigma_t and |return|. Prices are total-return style: adj_close == close.
"""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl

from ml.data.market import (
    BARS_SCHEMA,
    INDEX_BARS_SCHEMA,
    SECTORS_SCHEMA,
    MarketData,
    conform,
)
from ml.data.universe import SECTOR_ETFS, Universe

#: First trading day of late-listed tickers (as for the real ones): no rows before these dates.
LISTING_DATES: dict[str, date] = {"XLRE": date(2015, 10, 8), "XLC": date(2018, 6, 19), "VIX3M": date(2006, 7, 17)}

#: Short codes for synthetic stock tickers, e.g. ``SYN_IT1``.
SECTOR_CODES: dict[str, str] = {
    "Information Technology": "IT",
    "Financials": "FIN",
    "Health Care": "HC",
    "Energy": "EN",
    "Industrials": "IND",
    "Materials": "MAT",
    "Consumer Staples": "CS",
    "Consumer Discretionary": "CD",
    "Utilities": "UTL",
    "Real Estate": "RE",
    "Communication Services": "COM",
}

# ticker -> (market beta, own-factor daily vol at VIX=18, start price)
_SECTOR_PARAMS: dict[str, tuple[float, float, float]] = {
    "XLB": (1.05, 0.0055, 30.0),
    "XLE": (1.00, 0.0100, 40.0),
    "XLF": (1.20, 0.0070, 30.0),
    "XLI": (1.05, 0.0040, 30.0),
    "XLK": (1.15, 0.0050, 20.0),
    "XLP": (0.60, 0.0040, 24.0),
    "XLU": (0.55, 0.0060, 28.0),
    "XLV": (0.80, 0.0050, 30.0),
    "XLY": (1.10, 0.0045, 33.0),
    "XLRE": (0.95, 0.0065, 32.0),
    "XLC": (1.00, 0.0055, 48.0),
}
_ANNUAL = 252.0
# market drift (per year): ~8% plus compensation for the crash component -0.08 x VIX jumps
_MKT_DRIFT = 0.14
_VIX_MEAN = np.log(17.5)
_VIX_BOUNDS = (9.5, 110.0)


def trading_calendar(start: date, end: date) -> np.ndarray:
    """Weekdays in [start, end] minus fixed US-style holidays, as ``datetime64[D]``.

    Holidays: Jan 1, Jul 4, Dec 25 (when on a weekday), 3rd Monday of January, last Monday of May,
    1st Monday of September and 4th Thursday of November. The longest gap is 4 calendar days.
    """
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    if days.size == 0:
        return days
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday == 0
    years = days.astype("datetime64[Y]")
    month = (days.astype("datetime64[M]") - years.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    nth = (dom - 1) // 7 + 1  # 1st, 2nd, ... occurrence of this weekday in the month
    month_start = days.astype("datetime64[M]")
    month_len = ((month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype(np.int64)
    last_in_month = dom + 7 > month_len
    holiday = (
        ((month == 1) & (dom == 1))
        | ((month == 7) & (dom == 4))
        | ((month == 12) & (dom == 25))
        | ((month == 1) & (weekday == 0) & (nth == 3))
        | ((month == 5) & (weekday == 0) & last_in_month)
        | ((month == 9) & (weekday == 0) & (nth == 1))
        | ((month == 11) & (weekday == 3) & (nth == 4))
    )
    return days[(weekday < 5) & ~holiday]


def _simulate_vix(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log-VIX path with clustered jumps.

    Returns ``(x, level, shock, jump)``: ``x_t`` = log VIX close of day t, ``level_t`` = slow
    long-run log level, ``shock_t`` = standard-normal diffusion shock of day t, ``jump_t`` >= 0 =
    jump in log VIX on day t (0 on most days). The recursion is one scalar loop (~5k steps, ~10 ms).
    """
    shock = rng.standard_normal(n)
    level_shock = rng.standard_normal(n)
    u = rng.random(n)
    sizes = rng.exponential(0.15, n) + 0.05
    lo, hi = np.log(_VIX_BOUNDS[0]), np.log(_VIX_BOUNDS[1])
    x = np.empty(n)
    level = np.empty(n)
    jump = np.zeros(n)
    lam0, alpha, decay = 0.003, 0.11, 0.85  # base hazard/day, excitation per jump, daily decay
    kappa_up, kappa_dn, sigma = 0.05, 0.02, 0.05  # faster reversion from above (spikes fade)
    phi, lvl_sd = 0.997, 0.010  # slow level: AR(1), stationary sd ~0.13 in log
    xt, lt, h = _VIX_MEAN, 0.0, 0.0
    for t in range(n):
        lt = phi * lt + lvl_sd * level_shock[t]
        m = _VIX_MEAN + lt
        p = 1.0 - math.exp(-(lam0 + h))
        j = sizes[t] if u[t] < p else 0.0
        vol = sigma * (0.9 + 1.0 * max(xt - m, 0.0) + 3.0 * h)  # vol of vol rises in stress
        h = decay * h + (alpha if j else 0.0)
        kappa = kappa_up if xt > m else kappa_dn
        xt = xt + kappa * (m - xt) + vol * shock[t] + j
        if xt < lo:  # reflect at the bounds: the floor/cap are rarely touched, never sticky
            xt = min(2.0 * lo - xt, hi)
        elif xt > hi:
            xt = max(2.0 * hi - xt, lo)
        x[t], level[t], jump[t] = xt, m, j
    return x, level, shock, jump


def _ohlcv(
    rng: np.random.Generator, r: np.ndarray, sigma: np.ndarray, p0: float, base_volume: float, first: int
) -> tuple[np.ndarray, ...]:
    """OHLCV arrays from daily log returns ``r`` (rows from index ``first``; close[first] ~ p0)."""
    r, sigma = r[first:], sigma[first:]
    n = r.size
    close = p0 * np.exp(np.cumsum(r) - r[0])
    prev = np.concatenate([[close[0] * np.exp(-r[0])], close[:-1]])
    gap = 0.3 * r + 0.25 * sigma * rng.standard_normal(n)
    open_ = prev * np.exp(gap)
    hi_ext = np.abs(rng.standard_normal(n)) * 0.45 * sigma
    lo_ext = np.abs(rng.standard_normal(n)) * 0.45 * sigma
    high = np.maximum(open_, close) * np.exp(hi_ext)
    low = np.minimum(open_, close) * np.exp(-lo_ext)
    s_ratio = sigma / np.median(sigma)
    volume = base_volume * s_ratio**1.2 * np.exp(0.25 * np.abs(r) / sigma + 0.25 * rng.standard_normal(n))
    volume = np.maximum(np.round(volume), 1.0)
    return open_, high, low, close, volume


def _stock_names(universe: Universe, sectors: list[str], n_per_sector: int) -> list[tuple[str, str, str]]:
    """(ticker, name, gics_sector) for every stock; explicit tickers get sectors round-robin."""
    if not universe.include_stocks:
        return []
    if universe.stocks is not None:
        return [
            (t, f"Synthetic {SECTOR_CODES[sectors[i % len(sectors)]]} stock {t}", sectors[i % len(sectors)])
            for i, t in enumerate(universe.stocks)
        ]
    return [
        (f"SYN_{SECTOR_CODES[s]}{k}", f"Synthetic {SECTOR_CODES[s]} stock {k}", s)
        for s in sectors
        for k in range(1, n_per_sector + 1)
    ]


def generate_market(
    universe: Universe,
    seed: int = 7,
    start: date = date(2005, 1, 3),
    end: date = date(2025, 12, 31),
    n_stocks_per_sector: int = 3,
) -> MarketData:
    """Generate a deterministic synthetic market for ``universe`` (same seed -> identical frames).

    The date range is ``[start, end]`` intersected with ``universe.history_start/history_end``.
    Prices are in dollars, volume in shares, index levels in index points; every value dated t is
    known at the close of t (VIX/VIX3M at 16:15 ET, like the real indices).
    """
    lo = max(start, universe.history_start) if universe.history_start else start
    hi = min(end, universe.history_end) if universe.history_end else end
    days = trading_calendar(lo, hi)
    n = days.size
    if n < 2:
        raise ValueError(f"synthetic market needs at least 2 trading days in {lo}..{hi}")
    rng = np.random.default_rng(seed)
    warnings: list[str] = []

    # --- fear index and market factor -------------------------------------------------------
    x, level, shock, jump = _simulate_vix(rng, n)
    vix = np.exp(x)
    vix_prev = np.concatenate([[vix[0]], vix[:-1]])  # known at the close of t-1
    sig_m = 0.85 * vix_prev / 100.0 / np.sqrt(_ANNUAL)
    rho = -0.75
    z_m = rho * shock + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    r_m = _MKT_DRIFT / _ANNUAL - 0.5 * sig_m**2 + sig_m * z_m - 0.08 * jump
    stress = 1.0 / (1.0 + np.exp(-(vix_prev - 22.0) / 3.0))  # 0 calm .. 1 stressed
    vol_scale = np.sqrt(vix_prev / 18.0)

    def noise(sd: float | np.ndarray) -> np.ndarray:
        return sd * rng.standard_normal(n)

    # --- ETFs: log returns and daily vol proxies ----------------------------------------------
    rets: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}  # ticker -> (r, sigma, p0, volume)
    rets["SPY"] = (r_m + noise(0.0008), sig_m, 100.0, 1.0e8)
    r_qqq = 1.2 * r_m + noise(0.004 * vol_scale) + 0.02 / _ANNUAL
    rets["QQQ"] = (r_qqq, 1.2 * sig_m, 40.0, 6.0e7)
    bond_beta = 0.15 - 0.55 * stress
    rets["TLT"] = (0.035 / _ANNUAL + bond_beta * r_m + noise(0.0085), np.hypot(bond_beta * sig_m, 0.0085), 90.0, 8.0e6)
    gold_beta = 0.10 - 0.20 * stress
    rets["GLD"] = (0.06 / _ANNUAL + gold_beta * r_m + noise(0.011), np.hypot(gold_beta * sig_m, 0.011), 45.0, 1.0e7)
    sector_ret: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for etf in SECTOR_ETFS:
        beta, own_sd, p0 = _SECTOR_PARAMS[etf]
        r = beta * r_m + noise(own_sd * vol_scale) + noise(0.0015)
        sig = np.hypot(beta * sig_m, own_sd * vol_scale)
        sector_ret[SECTOR_ETFS[etf]] = (r, sig)
        rets[etf] = (r, sig, p0, 1.5e7)

    bars: list[pl.DataFrame] = []

    def add_bars(ticker: str, r: np.ndarray, sig: np.ndarray, p0: float, vol0: float) -> None:
        listed = LISTING_DATES.get(ticker)
        first = int(np.searchsorted(days, np.datetime64(listed, "D"))) if listed else 0
        if first >= n:
            return
        r = np.clip(r, -0.4, 0.4)
        o, h, l, c, v = _ohlcv(rng, r, sig, p0, vol0, first)
        bars.append(pl.DataFrame({"ticker": ticker, "date": days[first:], "open": o, "high": h,
                                  "low": l, "close": c, "adj_close": c, "volume": v}))

    for ticker in universe.etf_tickers():
        if ticker in rets:
            add_bars(ticker, *rets[ticker])
        else:  # an ETF the model does not know: a generic beta-1 equity fund
            add_bars(ticker, r_m + noise(0.004 * vol_scale), sig_m, 50.0, 5.0e6)

    # --- stocks -------------------------------------------------------------------------------
    sectors = list(SECTOR_ETFS.values())
    stocks = _stock_names(universe, sectors, n_stocks_per_sector)
    for ticker, _, sector in stocks:
        r_s, sig_s = sector_ret[sector]
        beta = rng.uniform(0.7, 1.3)
        idio = rng.uniform(0.008, 0.018) * vol_scale
        jumps = (rng.random(n) < 1.0 / 250.0) * rng.normal(0.0, 0.08, n)
        p0 = float(np.exp(rng.uniform(np.log(10.0), np.log(150.0))))
        add_bars(ticker, beta * r_s + noise(idio) + jumps + 0.01 / _ANNUAL, np.hypot(beta * sig_s, idio),
                 p0, float(np.exp(rng.uniform(np.log(1e6), np.log(2e7)))))

    # --- indices ------------------------------------------------------------------------------
    index_frames: list[pl.DataFrame] = []
    vix3m = np.exp(level + 0.12 + 0.55 * (x - level) + noise(0.01))
    for symbol in universe.indices:
        if symbol == "VIX":
            close = vix
        elif symbol == "VIX3M":
            close = vix3m
        else:
            warnings.append(f"synthetic source has no index {symbol!r}; only VIX and VIX3M are generated")
            continue
        listed = LISTING_DATES.get(symbol)
        first = int(np.searchsorted(days, np.datetime64(listed, "D"))) if listed else 0
        if first >= n:
            continue
        c = close[first:]
        prev = np.concatenate([[c[0]], c[:-1]])
        o = np.clip(prev * np.exp(0.4 * np.log(c / prev) + noise(0.015)[first:]), *_VIX_BOUNDS)
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        h = np.minimum(top * np.exp(np.abs(noise(0.03)[first:])), np.maximum(top, 120.0))
        lw = np.maximum(bottom * np.exp(-np.abs(noise(0.03)[first:])), np.minimum(bottom, 9.0))
        index_frames.append(pl.DataFrame({"symbol": symbol, "date": days[first:], "open": o, "high": h,
                                          "low": lw, "close": c}))

    sector_rows = [(t, name, s) for t, name, s in stocks] + [(t, t, s) for t, s in SECTOR_ETFS.items()]
    sectors_df = pl.DataFrame(sector_rows, schema=list(SECTORS_SCHEMA), orient="row")
    bars_df = pl.concat([pl.DataFrame(schema=BARS_SCHEMA), *bars], how="vertical_relaxed")
    index_df = pl.concat([pl.DataFrame(schema=INDEX_BARS_SCHEMA), *index_frames], how="vertical_relaxed")
    return MarketData(
        bars=conform(bars_df, BARS_SCHEMA, ["ticker", "date"]),
        index_bars=conform(index_df, INDEX_BARS_SCHEMA, ["symbol", "date"]),
        sectors=conform(sectors_df, SECTORS_SCHEMA, ["ticker"]),
        source="synthetic",
        description=f"synthetic market (seed={seed})",
        warnings=tuple(warnings),
    )
