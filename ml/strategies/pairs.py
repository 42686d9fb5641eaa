"""Statistical-arbitrage pairs: Engle-Granger selection per stock group, the pair's market state, and
the baseline z-score rule.

Pipeline: :func:`select_pairs` on a fold's train window -> :func:`pair_states` over the whole history
(pair x date, :data:`PAIR_STATE_COLUMNS` + ``spread_ret``) -> :func:`state_arrays` ([T, P, 26] arrays for
an agent) -> :func:`zscore_positions` (the rule-based baseline). ``groups`` (columns group, ticker) can be
:func:`ml.regimes.hmm.sector_groups` in ``basket`` mode with ``sector`` renamed to ``group``.

Spread of a pair A/B with hedge ratio b and intercept c (fixed at selection): ``ln A_t - b ln B_t - c``
(log closes). Timing convention: every state value dated t uses closes / features up to and including
the close of t (trailing windows over the pair's sessions, i.e. the dates on which both legs have a close;
warm-up rows null, non-finite values null). ``spread_ret`` dated t is the return earned over (t-1, t] by a
position held from the close of t-1, so a position decided at the close of t earns ``spread_ret`` of t+1.
"""
from __future__ import annotations

import math
from datetime import date
from itertools import combinations
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

__all__ = [
    "LEG_FEATURES",
    "PAIRS_SCHEMA",
    "PAIR_STATE_COLUMNS",
    "PairsConfig",
    "engle_granger",
    "pair_states",
    "select_pairs",
    "state_arrays",
    "zscore_positions",
    "zscore_step",
]

#: Per-leg features taken from the feature store (suffix ``_a`` / ``_b``).
LEG_FEATURES: tuple[str, ...] = ("rsi_14", "macd_hist", "bb_pctb_20", "rel_volume_20", "atr_pct_14", "adx_14")
#: The 26 market-state columns of a pair at date t (the RL agent adds position and days held).
PAIR_STATE_COLUMNS: tuple[str, ...] = (
    "spread",  # ln A - b ln B - c (log units)
    "z",  # (spread - mean) / std over z_window sessions
    "half_life",  # rolling AR(1) half-life of the spread, sessions, clipped to [0, 252]
    "vol_ratio",  # vol_window realised vol of A's daily log returns / B's
    "corr_60",  # correlation of the legs' daily log returns, 60 sessions
    "corr_20",  # same, 20 sessions
    *(f"{f}_a" for f in LEG_FEATURES),
    *(f"{f}_b" for f in LEG_FEATURES),
    "sector_momentum",  # mean ret_21d (log) of the pair's group members on t
    "vix_level",  # VIX close (index points), from the feature store
    "vix_term",  # VIX / VIX3M (replaces the reference's rate spread, absent from the data)
    "spread_momentum",  # z_t - z_{t - momentum_lag}
    "hurst",  # rolling variance-ratio Hurst exponent of the spread (0.5 random walk, < 0.5 mean-reverting)
    "spread_skew",  # skewness of daily spread changes, moment_window sessions
    "spread_kurt",  # excess kurtosis of daily spread changes, moment_window sessions
    "spy_ret_21d",  # the market ticker's ret_21d (log)
)
HALF_LIFE_MAX = 252.0
PAIRS_SCHEMA: dict[str, pl.DataType] = {
    "group": pl.Utf8,
    "pair": pl.Utf8,
    "ticker_a": pl.Utf8,
    "ticker_b": pl.Utf8,
    "hedge_ratio": pl.Float64,
    "intercept": pl.Float64,
    "pvalue": pl.Float64,
    "half_life": pl.Float64,
    "n_obs": pl.Int64,
    "rank": pl.Int64,
}


class PairsConfig(BaseModel):
    """Pair selection, state windows (sessions) and the z-score rule.

    ``lookback``: None = every session of the selection window; an int (default 504, two years: a fold's
    expanding train window spans up to 20 years, over which few pairs stay cointegrated) = the trailing
    ``lookback`` sessions ending at the window end. ``ordering``: ``"both"`` runs Engle-Granger with each leg as
    the dependent variable and keeps the smaller p-value (A = the dependent leg); ``"alphabetical"`` regresses the
    alphabetically first ticker on the second. Column names fix the correlation windows (60, 20).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_k: int = Field(default=5, ge=1)
    pvalue_max: float = Field(default=0.05, gt=0.0, le=1.0)
    lookback: int | None = Field(default=504, ge=30)
    min_obs: int = Field(default=250, ge=30)
    ordering: Literal["both", "alphabetical"] = "both"
    z_window: int = Field(default=60, ge=5)
    entry_z: float = Field(default=2.0, gt=0.0)
    exit_z: float = Field(default=0.5, ge=0.0)
    hl_window: int = Field(default=120, ge=10)
    vol_window: int = Field(default=20, ge=5)
    hurst_window: int = Field(default=100, ge=20)
    hurst_lag: int = Field(default=10, ge=2)
    moment_window: int = Field(default=60, ge=10)
    momentum_lag: int = Field(default=5, ge=1)
    market_ticker: str = "SPY"


# ----------------------------------------------------------------------------- selection
def _half_life(resid: np.ndarray) -> float:
    """AR(1) half-life (sessions) of ``resid``: Δe_t = α + λ e_{t-1}, φ = 1 + λ, -ln 2 / ln φ.

    φ >= 1 (no mean reversion) -> inf; φ <= 0 -> 0."""
    x, dy = resid[:-1], np.diff(resid)
    xc = x - x.mean()
    phi = 1.0 + float(xc @ (dy - dy.mean()) / (xc @ xc))
    if phi >= 1.0:
        return math.inf
    return 0.0 if phi <= 0.0 else -math.log(2.0) / math.log(phi)


def _adf_stat(e: np.ndarray) -> float:
    """ADF t-statistic of ``e`` without constant, lags by AIC up to ceil(12 (n/100)^(1/4)) (as statsmodels'
    ``adfuller(regression="n", autolag="aic")``; nested least squares from one QR instead of one fit per lag)."""
    n = e.size
    maxlag = min(int(np.ceil(12.0 * (n / 100.0) ** 0.25)), n // 2 - 1)
    de = np.diff(e)

    def design(lag: int) -> tuple[np.ndarray, np.ndarray]:
        rows = de.size - lag
        cols = [e[lag : lag + rows]] + [de[lag - j : lag - j + rows] for j in range(1, lag + 1)]
        return np.column_stack(cols), de[lag:]

    x, y = design(maxlag)  # AIC compares every lag on the same rows
    qy = np.linalg.qr(x, mode="reduced")[0].T @ y
    ssr = y @ y - np.cumsum(qy * qy)  # ssr of the first 1..maxlag+1 columns
    m = y.size
    aic = m * np.log(np.maximum(ssr, 1e-300) / m) + 2.0 * np.arange(1, maxlag + 2)  # + constants
    x, y = design(int(np.argmin(aic)))  # first minimum: the shortest lag on ties
    beta, res, *_ = np.linalg.lstsq(x, y, rcond=None)
    s2 = float(res[0] if res.size else np.sum((y - x @ beta) ** 2)) / (y.size - x.shape[1])
    return float(beta[0] / np.sqrt(s2 * np.linalg.inv(x.T @ x)[0, 0]))


def engle_granger(log_a: np.ndarray, log_b: np.ndarray) -> dict[str, float]:
    """Engle-Granger test of ``log_a`` on ``log_b``: OLS ``log_a = c + b log_b``, ADF on the residual
    (:func:`_adf_stat`), MacKinnon (1994) p-value for 2 variables with constant - the same statistic and
    p-value as ``statsmodels.tsa.stattools.coint(log_a, log_b)`` (trend "c", AIC lags; equal to ~1e-15,
    tested), from one QR instead of one statsmodels OLS fit per lag (~10 ms on 5,000 sessions instead of
    ~1 s). Also the residual's AR(1) half-life (sessions)."""
    from statsmodels.tsa.adfvalues import mackinnonp

    x = np.column_stack([log_b, np.ones_like(log_b)])
    (b, c), *_ = np.linalg.lstsq(x, log_a, rcond=None)
    resid = log_a - b * log_b - c
    tss = np.sum((log_a - log_a.mean()) ** 2)
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else 1.0
    stat = _adf_stat(resid) if r2 < 1.0 - 100.0 * np.sqrt(np.finfo(float).eps) else -np.inf  # as coint
    return {
        "hedge_ratio": float(b),
        "intercept": float(c),
        "pvalue": float(mackinnonp(stat, regression="c", N=2)),
        "half_life": _half_life(resid),
    }


def _window_closes(bars: pl.DataFrame, start: date, end: date, lookback: int | None) -> pl.DataFrame:
    """Wide frame date x ticker of log closes on the selection window's sessions."""
    px = bars.select("ticker", "date", "close").filter(pl.col("date").is_between(start, end))
    if lookback is not None:
        sessions = px.get_column("date").unique().sort()
        if sessions.len() > lookback:
            px = px.filter(pl.col("date") >= sessions[-lookback])
    px = px.filter(pl.col("close") > 0).with_columns(pl.col("close").log())
    return px.pivot(on="ticker", index="date", values="close", sort_columns=True).sort("date")


def select_pairs(
    bars: pl.DataFrame,
    groups: pl.DataFrame,
    start: date,
    end: date,
    config: PairsConfig | None = None,
) -> pl.DataFrame:
    """Cointegrated pairs of each group (``groups``: columns group, ticker) on the closes in [start, end].

    Every pair of a group's tickers with >= ``min_obs`` common closes in the window (or its trailing
    ``lookback`` sessions) is tested on log closes (:func:`engle_granger`); pairs with p-value <=
    ``pvalue_max`` are kept, the ``top_k`` smallest p-values per group (ties: pair name), ``rank`` 1..k.
    Schema :data:`PAIRS_SCHEMA`, sorted by group then rank; deterministic. Uses only bars dated in the
    window, so a selection on a fold's train window is causal for every later date.
    """
    cfg = config or PairsConfig()
    wide = _window_closes(bars, start, end, cfg.lookback)
    rows: list[dict] = []
    members = groups.group_by("group").agg(pl.col("ticker").unique().sort()).sort("group")
    with threadpool_limits(limits=1):  # small least squares: BLAS threads only contend (100x slower seen)
        for group, tickers in members.iter_rows():
            for t1, t2 in combinations([t for t in tickers if t in wide.columns], 2):
                both = wide.select(t1, t2).drop_nulls()
                if both.height < cfg.min_obs:
                    continue
                x1, x2 = both.get_column(t1).to_numpy(), both.get_column(t2).to_numpy()
                if np.ptp(x1) == 0.0 or np.ptp(x2) == 0.0:  # a constant leg: no regression
                    continue
                fits = [(t1, t2, engle_granger(x1, x2))]
                if cfg.ordering == "both":
                    fits.append((t2, t1, engle_granger(x2, x1)))
                a, b, fit = min(fits, key=lambda f: f[2]["pvalue"])  # ties: the alphabetical ordering
                rows.append({"group": group, "pair": f"{a}/{b}", "ticker_a": a, "ticker_b": b, **fit,
                             "n_obs": both.height, "rank": 0})
    out = pl.DataFrame(rows, schema=PAIRS_SCHEMA)
    return (
        out.filter(pl.col("pvalue") <= cfg.pvalue_max)
        .sort("group", "pvalue", "pair")
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("group").alias("rank"))
        .filter(pl.col("rank") <= cfg.top_k)
    )


# ----------------------------------------------------------------------------- pair state
def _legs_frame(bars: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """(pair, group, b, c, date, lc_a, lc_b) on the dates where both legs have a positive close.

    Eager on purpose: the lazy optimiser reorders these joins into a ticker x ticker x date blow-up."""
    px = bars.select("ticker", "date", pl.col("close").cast(pl.Float64)).filter(pl.col("close") > 0)
    px = px.with_columns(pl.col("close").log())
    legs = pairs.select("pair", "group", "ticker_a", "ticker_b",
                        pl.col("hedge_ratio").alias("_b"), pl.col("intercept").alias("_c"))
    return (
        legs.join(px.rename({"ticker": "ticker_a", "close": "_lc_a"}), on="ticker_a")
        .join(px.rename({"ticker": "ticker_b", "close": "_lc_b"}), on=["ticker_b", "date"])
        .sort("pair", "date")
    )


def _context(features: pl.DataFrame, groups: pl.DataFrame, market: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(group, date, sector_momentum) and (date, spy_ret_21d)."""
    sector = (
        features.select("ticker", "date", "ret_21d")
        .join(groups.select("group", "ticker"), on="ticker")
        .group_by("group", "date")
        .agg(pl.col("ret_21d").mean().alias("sector_momentum"))
    )
    spy = features.filter(pl.col("ticker") == market).select("date", pl.col("ret_21d").alias("spy_ret_21d"))
    return sector, spy


def _state_exprs(cfg: PairsConfig) -> list[list[pl.Expr]]:
    """Dependency layers of the state expressions (all per pair, over its sorted sessions)."""
    p = "pair"
    s, ds = pl.col("spread"), pl.col("_ds")
    ra, rb = pl.col("_ra"), pl.col("_rb")
    b = pl.col("_b")
    w_a, w_b = 1.0 / (1.0 + b.abs()), -b / (1.0 + b.abs())
    k, hw = cfg.hurst_lag, cfg.hurst_window
    s_lag = pl.col("_s_lag")
    lam = pl.rolling_cov(ds, s_lag, window_size=cfg.hl_window) / s_lag.rolling_var(cfg.hl_window)  # AR(1) slope
    phi = pl.col("_phi")
    half_life = (
        pl.when(phi.is_null() | phi.is_nan()).then(None)  # polars orders NaN above every number
        .when(phi <= 0.0).then(0.0)
        .when(phi >= 1.0).then(HALF_LIFE_MAX)
        .otherwise((-math.log(2.0) / phi.log()).clip(0.0, HALF_LIFE_MAX))
    )
    v1 = ds.rolling_var(hw - 1).over(p)  # 1-lag differences inside the last hw spreads
    vk = (s - s.shift(k)).rolling_var(hw - k).over(p)  # k-lag differences inside the same hw spreads
    return [
        [
            (pl.col("_lc_a") - b * pl.col("_lc_b") - pl.col("_c")).alias("spread"),
            pl.col("_lc_a").diff().over(p).alias("_ra"),
            pl.col("_lc_b").diff().over(p).alias("_rb"),
        ],
        [
            ((s - s.rolling_mean(cfg.z_window)) / s.rolling_std(cfg.z_window)).over(p).alias("z"),
            s.diff().over(p).alias("_ds"),
            s.shift(1).over(p).alias("_s_lag"),
            (ra.rolling_std(cfg.vol_window) / rb.rolling_std(cfg.vol_window)).over(p).alias("vol_ratio"),
            pl.rolling_corr(ra, rb, window_size=60).over(p).alias("corr_60"),
            pl.rolling_corr(ra, rb, window_size=20).over(p).alias("corr_20"),
            (w_a * (ra.exp() - 1.0) + w_b * (rb.exp() - 1.0)).alias("spread_ret"),
        ],
        [
            (1.0 + lam.over(p)).alias("_phi"),
            (pl.col("z") - pl.col("z").shift(cfg.momentum_lag).over(p)).alias("spread_momentum"),
            (0.5 * (vk / v1).log() / math.log(k)).alias("hurst"),
            ds.rolling_skew(cfg.moment_window).over(p).alias("spread_skew"),
            ds.rolling_kurtosis(cfg.moment_window).over(p).alias("spread_kurt"),
        ],
        [half_life.alias("half_life")],
    ]


def pair_states(
    bars: pl.DataFrame,
    features: pl.DataFrame,
    pairs: pl.DataFrame,
    groups: pl.DataFrame,
    config: PairsConfig | None = None,
) -> pl.DataFrame:
    """Market state of every pair of ``pairs`` (:func:`select_pairs` output) on every session of the pair.

    Columns: ``pair``, ``date``, :data:`PAIR_STATE_COLUMNS`, ``spread_ret``; sorted by pair, date. A row
    dated t uses data known at the close of t: trailing windows over the pair's sessions, the legs' feature
    store rows of t, the group's mean ``ret_21d`` over ``groups`` members, VIX from leg A's row (the VIX
    columns repeat on every ticker's row). Windows: z ``z_window``; half-life = AR(1) on the spread
    (Δs_t on s_{t-1}) over ``hl_window`` sessions, -ln 2 / ln φ clipped to [0, 252] (φ >= 1 -> 252,
    φ <= 0 -> 0); Hurst = 0.5 ln(Var Δ_k s / Var Δ_1 s) / ln k with k = ``hurst_lag``, both variances
    over the differences inside the last ``hurst_window`` spreads (the variance-ratio estimator: 0.5
    for a random walk, < 0.5 mean-reverting, ~0 for white noise). ``spread_ret``: simple return over
    (t-1, t] of the gross-1 long-spread book w_a = 1/(1+|b|) in A, w_b = -b/(1+|b|) in B.
    ``vix_term`` (VIX / VIX3M) stands in for the reference's rate spread, which the data does not have.
    Warm-up rows and non-finite values are null; every column is finite from about ``hl_window`` + 1
    sessions after the pair's first common session (the longest window).
    """
    cfg = config or PairsConfig()
    sector, spy = _context(features, groups, cfg.market_ticker)
    leg_cols = ["ticker", "date", *LEG_FEATURES]
    feat_a = features.select(*leg_cols, "vix_level", "vix_term").rename(
        {"ticker": "ticker_a", **{c: f"{c}_a" for c in LEG_FEATURES}})
    feat_b = features.select(*leg_cols).rename({"ticker": "ticker_b", **{c: f"{c}_b" for c in LEG_FEATURES}})
    df = _legs_frame(bars, pairs)
    for layer in _state_exprs(cfg):
        df = df.with_columns(layer)
    df = (
        df.join(feat_a, on=["ticker_a", "date"], how="left", maintain_order="left")
        .join(feat_b, on=["ticker_b", "date"], how="left", maintain_order="left")
        .join(sector, on=["group", "date"], how="left", maintain_order="left")
        .join(spy, on="date", how="left", maintain_order="left")
    )
    values = [*PAIR_STATE_COLUMNS, "spread_ret"]
    clean = [
        pl.when(pl.col(c).cast(pl.Float64).is_finite()).then(pl.col(c).cast(pl.Float64)).alias(c) for c in values
    ]
    return df.select("pair", "date", *clean)


def state_arrays(
    states: pl.DataFrame, pairs: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pivot :func:`pair_states` onto the union of its dates (sorted) and the pairs in ``pairs`` order.

    Returns ``dates`` [T] (datetime64[D]), ``states`` [T, P, 26] (:data:`PAIR_STATE_COLUMNS` order),
    ``spread_returns`` [T, P] and ``z`` [T, P], float64 with NaN for null / missing rows.
    """
    names = pairs.get_column("pair").to_list()
    index = {n: i for i, n in enumerate(names)}
    rows = states.filter(pl.col("pair").is_in(names))
    dates = np.unique(states.get_column("date").to_numpy().astype("datetime64[D]"))
    ti = np.searchsorted(dates, rows.get_column("date").to_numpy().astype("datetime64[D]"))
    pi = rows.get_column("pair").replace_strict(index, return_dtype=pl.Int64).to_numpy().astype(np.int64)
    cols = [*PAIR_STATE_COLUMNS, "spread_ret"]
    vals = rows.select(pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in cols).to_numpy()
    full = np.full((dates.size, len(names), len(cols)), np.nan)
    full[ti, pi] = vals
    z_at = PAIR_STATE_COLUMNS.index("z")
    return dates, full[:, :, :-1].copy(), full[:, :, -1].copy(), full[:, :, z_at].copy()


# ----------------------------------------------------------------------------- baseline rule
def zscore_step(z: np.ndarray, position: np.ndarray, config: PairsConfig | None = None) -> np.ndarray:
    """Next positions (-1 short spread, 0 flat, +1 long spread) from today's ``z`` and held ``position``.

    Flat: +1 when z < -entry_z, -1 when z > +entry_z. Held: flat when |z| < exit_z, otherwise kept (also
    when z crosses to the other entry band: the rule only exits through the mean). NaN z -> flat.
    """
    cfg = config or PairsConfig()
    z = np.asarray(z, dtype=float)
    pos = np.asarray(position, dtype=float)
    enter = np.where(z < -cfg.entry_z, 1.0, np.where(z > cfg.entry_z, -1.0, 0.0))
    held = np.where(np.abs(z) < cfg.exit_z, 0.0, pos)
    return np.where(np.isnan(z), 0.0, np.where(pos == 0.0, enter, held))


def zscore_positions(z: np.ndarray, config: PairsConfig | None = None) -> np.ndarray:
    """[T, P] positions decided at each close from [T, P] z-scores, starting flat (earns t+1's spread_ret)."""
    z = np.asarray(z, dtype=float)
    out = np.zeros_like(z)
    pos = np.zeros(z.shape[1:])
    for t in range(z.shape[0]):
        pos = zscore_step(z[t], pos, config)
        out[t] = pos
    return out
