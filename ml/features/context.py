"""Market-context features, joined per date: VIX regime/term structure and the ticker vs SPY.

VIX timing. CBOE index bars close at 16:15 ET, after the 16:00 equity close. ``vix_lag_days``
(``FeatureConfig``, default **0**) lags VIX/VIX3M by that many rows of the trading calendar:
with 0, the row dated t carries the VIX close of t (the project's decision for t is taken in
the end-of-day batch after 16:15 ET); with 1 it carries the close of the previous trading day
(strict "known at 16:00"). Either way a feature dated t uses only data timestamped <= t's
decision time.

Calendar / as-of semantics. The trading calendar is the set of dates of the input bars. For each
calendar date t the VIX value is the last VIX close dated <= t (as-of join), only if it is at most
``vix_max_staleness_days`` calendar days old (else null, never carried further). CBOE rows on
dates that are not trading days (holiday rows, e.g. 2022-05-30) are therefore never rows of the
output and are never used while the next trading day has its own row. The lag and every VIX
window (5-day change, 21-day mean, 63-day percentile) count trading-calendar rows. VIX3M-based
features are null before VIX3M exists (2006-07-17).

SPY-relative features (per ticker, over the ticker's own rows): the market close is joined on
the ticker's dates, so ticker and market returns always span the same interval. Null while the
market ticker has no bar (e.g. before SPY's 1993 inception, or when SPY is absent from ``bars``).
"""
from __future__ import annotations

import polars as pl

from ml.features._common import (
    ENGINE,
    KEYS,
    LOG_CLOSE,
    LOG_RET,
    MKT_CLOSE,
    FeatureSpec,
    lag,
    prepare_bars,
    roll_t,
    select_features,
)
from ml.features.config import FeatureConfig

FAMILY = "context"
VIX_NEUTRAL, VIX_SCALE = 20.0, 10.0
VIX_HIGH_WINDOW, VIX_HIGH_QUANTILE = 63, 0.8
BETA_WINDOW = 63
RS_WINDOWS: tuple[int, ...] = (21, 63)

VIX_FEATURES: tuple[str, ...] = (
    "vix_level", "vix_centered", "vix_chg_5d", "vix_pct_chg_5d", "vix_rel_21", "vix_high_63", "vix_term",
    "vix_term_chg_5d",
)


def vix_specs(vix_lag_days: int = 0) -> tuple[FeatureSpec, ...]:
    """VIX specs; warm-ups count trading-calendar rows after the first VIX (VIX3M) value."""
    lag = vix_lag_days
    cal = "calendar_rows"
    return (
        FeatureSpec("vix_level", FAMILY, None, "index points", f"VIX close (lag {lag} trading days)", lag, "VIX", cal),
        FeatureSpec("vix_centered", FAMILY, None, "unitless", "(VIX - 20) / 10", lag, "VIX", cal),
        FeatureSpec("vix_chg_5d", FAMILY, 5, "index points", "VIX_t - VIX_(t-5)", lag + 5, "VIX", cal),
        FeatureSpec(
            "vix_pct_chg_5d", FAMILY, 5, "fraction", "VIX_t / VIX_(t-5) - 1 (the seed article's pct_change(5))",
            lag + 5, "VIX", cal,
        ),
        FeatureSpec(
            "vix_rel_21", FAMILY, 21, "fraction", "VIX / mean(VIX over 21 rows ending at t) - 1", lag + 20, "VIX", cal
        ),
        FeatureSpec(
            "vix_high_63", FAMILY, VIX_HIGH_WINDOW, "flag 0/1",
            "1 if VIX > its 80th percentile (linear interpolation) over the 63 rows ending at t, else 0",
            lag + VIX_HIGH_WINDOW - 1, "VIX", cal,
        ),
        FeatureSpec(
            "vix_term", FAMILY, None, "ratio", "VIX / VIX3M (> 1 = inverted term structure)", lag, "VIX,VIX3M", cal
        ),
        FeatureSpec(
            "vix_term_chg_5d", FAMILY, 5, "ratio change", "vix_term_t - vix_term_(t-5)", lag + 5, "VIX,VIX3M", cal
        ),
    )


MARKET_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "beta_spy_63", FAMILY, BETA_WINDOW, "beta",
        "OLS beta of daily log returns on SPY's over 63 rows: cov / var(SPY)", BETA_WINDOW, "close,SPY close",
    ),
    FeatureSpec(
        "corr_spy_63", FAMILY, BETA_WINDOW, "correlation -1..1",
        "Pearson correlation of daily log returns with SPY's over 63 rows", BETA_WINDOW, "close,SPY close",
    ),
    *[
        FeatureSpec(
            f"rs_spy_{w}", FAMILY, w, "log return",
            f"relative strength: ret_{w}d(ticker) - ret_{w}d(SPY), log returns", w, "close,SPY close",
        )
        for w in RS_WINDOWS
    ],
)


def context_specs(vix_lag_days: int = 0) -> tuple[FeatureSpec, ...]:
    return (*vix_specs(vix_lag_days), *MARKET_SPECS)


SPECS: tuple[FeatureSpec, ...] = context_specs(0)


def _index_series(index_bars: pl.DataFrame | None, symbol: str, name: str) -> pl.DataFrame:
    if index_bars is None or index_bars.height == 0:
        return pl.DataFrame(schema={"date": pl.Date, name: pl.Float64})
    return (
        index_bars.lazy()
        .filter((pl.col("symbol") == symbol) & pl.col("close").is_not_null())
        .select(pl.col("date").cast(pl.Date), pl.col("close").cast(pl.Float64).alias(name))
        .unique("date", keep="last")
        .sort("date")
        .collect(engine=ENGINE)
    )


def vix_features(
    index_bars: pl.DataFrame | None,
    calendar: pl.Series | pl.DataFrame,
    config: FeatureConfig | None = None,
) -> pl.DataFrame:
    """VIX features on a trading calendar: one row per calendar date (``date`` + VIX columns).

    ``calendar``: trading dates (a Date series, or a frame with a ``date`` column; duplicates ok).
    """
    cfg = config or FeatureConfig()
    dates = calendar.get_column("date") if isinstance(calendar, pl.DataFrame) else calendar
    cal = pl.DataFrame({"date": dates.cast(pl.Date)}).unique().sort("date")
    tol = f"{cfg.vix_max_staleness_days}d"
    for symbol, name in ((cfg.vix_symbol, "_vix"), (cfg.vix3m_symbol, "_vix3m")):
        series = _index_series(index_bars, symbol, name)
        cal = cal.join_asof(series, on="date", strategy="backward", tolerance=tol)
    lag = cfg.vix_lag_days
    v = pl.col("_vix").shift(lag)
    term = v / pl.col("_vix3m").shift(lag)
    exprs = {
        "vix_level": v,
        "vix_centered": (v - VIX_NEUTRAL) / VIX_SCALE,
        "vix_chg_5d": v - v.shift(5),
        "vix_pct_chg_5d": v / v.shift(5) - 1.0,
        "vix_rel_21": v / v.rolling_mean(21) - 1.0,
        "vix_high_63": (
            v > v.rolling_quantile(VIX_HIGH_QUANTILE, window_size=VIX_HIGH_WINDOW, interpolation="linear")
        ).cast(pl.Float64),
        "vix_term": term,
        "vix_term_chg_5d": term - term.shift(5),
    }
    return cal.select(
        "date",
        *[pl.when(e.is_finite()).then(e).cast(pl.Float64).alias(n) for n, e in exprs.items()],
    )


def market_exprs() -> dict[str, pl.Expr]:
    """SPY-relative features and helpers over a frame from ``prepare_bars(..., market_ticker)``."""
    x, y = pl.col(LOG_RET), pl.col("_mkt_lr")
    w = BETA_WINDOW
    out: dict[str, pl.Expr] = {
        "_mkt_lc": pl.col(MKT_CLOSE).log(),
        "_mkt_lr": pl.col("_mkt_lc") - lag("_mkt_lc", 1),
        # pairwise-complete returns: a row counts only when both returns exist
        "_bx": pl.when(y.is_not_null()).then(x),
        "_by": pl.when(x.is_not_null()).then(y),
        "_bxy": pl.col("_bx") * pl.col("_by"),
        "_bxx": pl.col("_bx") * pl.col("_bx"),
        "_byy": pl.col("_by") * pl.col("_by"),
    }
    for k in ("_bx", "_by", "_bxy", "_bxx", "_byy"):
        out[f"{k}_m"] = roll_t(k, "mean", w)
    mx, my = pl.col("_bx_m"), pl.col("_by_m")
    out["_cov"] = pl.col("_bxy_m") - mx * my
    out["_var_x"] = pl.col("_bxx_m") - mx * mx
    out["_var_y"] = pl.col("_byy_m") - my * my
    out["beta_spy_63"] = pl.col("_cov") / pl.col("_var_y")
    out["corr_spy_63"] = (pl.col("_cov") / (pl.col("_var_x") * pl.col("_var_y")).sqrt()).clip(-1.0, 1.0)
    for k in RS_WINDOWS:
        out[f"rs_spy_{k}"] = (pl.col(LOG_CLOSE) - lag(LOG_CLOSE, k)) - (pl.col("_mkt_lc") - lag("_mkt_lc", k))
    return out


def join_vix(features: pl.LazyFrame, vix: pl.DataFrame) -> pl.LazyFrame:
    return features.join(vix.lazy(), on="date", how="left", maintain_order="left")


def context_features(
    bars: pl.DataFrame | pl.LazyFrame,
    index_bars: pl.DataFrame | None = None,
    config: FeatureConfig | None = None,
) -> pl.DataFrame:
    """Context features: ticker, date + VIX and SPY-relative columns (see :func:`context_specs`)."""
    cfg = config or FeatureConfig()
    lf = prepare_bars(bars, market_ticker=cfg.market_ticker)
    market = select_features(lf, MARKET_SPECS, market_exprs())
    vix = vix_features(index_bars, lf.select("date").collect(engine=ENGINE), cfg)
    names = [s.name for s in context_specs(cfg.vix_lag_days)]
    return join_vix(market, vix).select(*KEYS, *names).collect(engine=ENGINE)
