"""Regime-conditioned strategies per stock group (the sector book's daily picks), pure Polars/NumPy.

Groups are the GICS sectors of the stock universe (basket mode: sector ETFs excluded). A group needs at least
``min_group_size`` stocks (default 4: a bull day longs 3, a bear day shorts 2, a sideways day trades pairs).
Undersized groups (on the real snapshot: Materials 1, Real Estate 2, Energy 3, Utilities 3 stocks) are
``skip``-ped (default) or ``merge``-d into one group ``Other`` whose regime probabilities are the stock-count
weighted mean of its members' sector probabilities.

A group's regime on day t is the most likely state of its filtered HMM probabilities at the close of t
(``P(state_t | obs_1..t)``, from the fold's sector HMMs or the weekly refit). The picks at the close of t:

* Bull: long the 3 stocks with the highest 20-session return ``close_t / close_(t-20) - 1``, 1/3 each;
* Bear: short the 2 with the lowest, 1/2 each (long-only mode: that capital stays in cash);
* Sideways: the group's cointegrated pairs (:mod:`ml.strategies.pairs`), positions from the pair policy.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from ml.regimes.hmm import OBS_COLUMNS, HmmConfig, fit_sector_hmm, forward_filter, prob_columns

REGIMES = ("Bull", "Sideways", "Bear")
BULL, SIDEWAYS, BEAR = 0, 1, 2
MERGED_GROUP = "Other"
Undersized = Literal["skip", "merge"]


def stock_groups(sectors: pl.DataFrame, tickers: list[str] | set[str], min_group_size: int = 4,
                 undersized: Undersized = "skip") -> pl.DataFrame:
    """``(group, ticker, sector)`` for the stocks of ``sectors`` (``ticker, gics_sector``) present in
    ``tickers``; sector ETFs and the allocation ETFs are not stocks (``ref.sectors`` lists only stocks and
    sector ETFs; ETFs are recognised by ``ml.data.universe``)."""
    from ml.data.universe import ALLOCATION_ASSETS, SECTOR_ETFS

    etfs = set(SECTOR_ETFS) | set(ALLOCATION_ASSETS)
    rows = (sectors.select("ticker", pl.col("gics_sector").alias("sector"))
            .filter(pl.col("ticker").is_in(list(tickers)) & ~pl.col("ticker").is_in(list(etfs))
                    & pl.col("sector").is_not_null()))
    size = rows.group_by("sector").len()
    small = set(size.filter(pl.col("len") < min_group_size)["sector"])
    if undersized == "skip":
        rows = rows.filter(~pl.col("sector").is_in(list(small))).with_columns(pl.col("sector").alias("group"))
    elif undersized == "merge":
        rows = rows.with_columns(pl.when(pl.col("sector").is_in(list(small))).then(pl.lit(MERGED_GROUP))
                                 .otherwise(pl.col("sector")).alias("group"))
    else:
        raise ValueError(f"undersized must be 'skip' or 'merge', got {undersized!r}")
    return rows.select("group", "ticker", "sector").sort("group", "ticker")


def group_regimes(groups: pl.DataFrame, sector_probs: pl.DataFrame) -> pl.DataFrame:
    """Per (group, date): ``p_bull, p_sideways, p_bear`` = the mean over the group's stocks of their sector's
    filtered probabilities (``sector_probs``: ``sector, date, p_bull, p_sideways, p_bear``), and ``regime``
    (the most likely state). A group whose sectors have no probabilities on a date has no row (no regime, no
    trade). Known at the close of ``date``."""
    p = ["p_bull", "p_sideways", "p_bear"]
    probs = sector_probs.select("sector", "date", *p).fill_nan(None).drop_nulls(p)
    out = (groups.join(probs, on="sector", how="inner")
           .group_by("group", "date").agg(*[pl.col(c).mean() for c in p],
                                           pl.col("sector").n_unique().alias("n_sectors")))
    expected = groups.group_by("group").agg(pl.col("sector").n_unique().alias("need"))
    out = out.join(expected, on="group").filter(pl.col("n_sectors") == pl.col("need")).drop("n_sectors", "need")
    arg = np.argmax(out.select(p).to_numpy(), axis=1) if out.height else np.zeros(0, dtype=np.int64)
    return out.with_columns(pl.Series("regime", np.asarray(REGIMES)[arg].tolist(), dtype=pl.Utf8)).sort("group", "date")


def momentum(close: np.ndarray, t: int, lookback: int = 20) -> np.ndarray:
    """``close_t / close_(t-lookback) - 1`` per column (NaN when either close is missing or t < lookback)."""
    if t < lookback:
        return np.full(close.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return close[t] / close[t - lookback] - 1.0


def bull_picks(mom: np.ndarray, members: np.ndarray, n: int = 3) -> np.ndarray:
    """Column indices of the ``n`` members with the highest momentum (NaN excluded; ties by column order)."""
    m = members[np.isfinite(mom[members])]
    return m[np.argsort(-mom[m], kind="stable")[:n]]


def bear_picks(mom: np.ndarray, members: np.ndarray, n: int = 2) -> np.ndarray:
    """Column indices of the ``n`` members with the lowest momentum (NaN excluded; ties by column order)."""
    m = members[np.isfinite(mom[members])]
    return m[np.argsort(mom[m], kind="stable")[:n]]


def weekly_refit_probabilities(obs: pl.DataFrame, dates: list, window: int = 252, every: int = 5,
                               config: HmmConfig | None = None) -> pl.DataFrame:
    """The reference design's refit policy: every ``every`` sessions (weekly) refit each sector's HMM on the
    trailing ``window`` observation rows ending at the refit day r (known at the close of r), then
    forward-filter that window and the days up to the next refit with the new parameters.

    ``obs``: :func:`ml.regimes.hmm.sector_observations` (``sector, date, ret_mean, corr_mean, vol``);
    ``dates``: the sessions to label (e.g. the test window and the decision day before it). Returns
    ``sector, date, p_bull, p_sideways, p_bear`` - the same shape as the fold's filtered probabilities, so
    :func:`group_regimes` takes either. Causal: a row dated t uses observations up to t only. Costly
    (``len(dates) / every`` fits per sector; 1 EM restart by default)."""
    cfg = config or HmmConfig(restarts=1)
    days = sorted(dates)
    frames = []
    for sector in sorted(obs["sector"].unique().to_list()):
        s = obs.filter(pl.col("sector") == sector).sort("date").drop_nulls(list(OBS_COLUMNS))
        d = s["date"].to_numpy().astype("datetime64[D]")
        x = s.select(OBS_COLUMNS).to_numpy()
        for k in range(0, len(days), every):
            block = np.array(days[k:k + every], dtype="datetime64[D]")
            end = int(np.searchsorted(d, block[0], side="right"))  # rows <= the refit day
            if end < max(cfg.min_train_obs, 30) or end < window // 2:
                continue
            lo = max(0, end - window)
            try:
                fitted = fit_sector_hmm(x[lo:end], n_states=cfg.n_states, restarts=cfg.restarts, seed=cfg.seed,
                                        n_iter=cfg.n_iter, tol=cfg.tol)
            except ValueError:
                continue
            last = int(np.searchsorted(d, block[-1], side="right"))
            p = forward_filter(fitted, x[lo:last])
            rows = np.isin(d[lo:last], block)
            if rows.any():
                frames.append(pl.DataFrame({"sector": sector, "date": pl.Series(d[lo:last][rows]).cast(pl.Date),
                                            **{c: p[rows, j] for j, c in enumerate(prob_columns(fitted.state_names))}}))
    if not frames:
        return pl.DataFrame(schema={"sector": pl.Utf8, "date": pl.Date, "p_bull": pl.Float64,
                                    "p_sideways": pl.Float64, "p_bear": pl.Float64})
    return pl.concat(frames).sort("sector", "date")
