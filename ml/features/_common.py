"""Shared plumbing for the feature families: specs, warm-up arithmetic, staged evaluation.

Timing convention (all families): a feature dated t uses only data with timestamp <= the close
of t. Bars are sorted by (ticker, date) and every feature is computed per ticker: recursive and
rolling operators run with ``.over("ticker")`` on single columns (:func:`ewm_t`, :func:`roll_t`),
lags are global shifts guarded by the row number within the ticker (:func:`lag`), so a value
never comes from another ticker. The first ``warmup`` rows of every ticker are null (never
back-filled) and non-finite values (0/0, x/0) are null.

Family modules describe their features as a flat ``{name: expr}`` mapping whose expressions
refer to each other through ``pl.col(name)``; :func:`evaluate` orders them into dependency
layers (one ``with_columns`` per layer, evaluated in parallel by polars).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

KEYS: tuple[str, str] = ("ticker", "date")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
ANNUALIZATION: float = 252.0
SQRT_252: float = math.sqrt(ANNUALIZATION)

#: Polars engine for every collect: the default/streaming engines evaluate the many
#: ``.over("ticker")`` windows 2-4x slower on polars 2.x.
ENGINE = "in-memory"

#: Weight left on the seed of a recursive EMA when its warm-up ends (see :func:`ewm_warmup`).
SEED_WEIGHT: float = 0.05

# Helper columns (dropped from every output).
ROW = "_row"  # 0-based row number within the ticker
LOG_CLOSE = "_lc"  # ln(close)
PREV_CLOSE = "_pc"  # close of the previous row of the same ticker (null on row 0)
LOG_RET = "_lr"  # ln(close_t / close_{t-1}) (null on row 0)
TRUE_RANGE = "_tr"  # max(H-L, |H-C_{t-1}|, |L-C_{t-1}|); H-L on row 0
MKT_CLOSE = "_mkt_close"  # close of the market ticker (SPY) on the same date, null if absent


@dataclass(frozen=True)
class FeatureSpec:
    """One registry entry.

    ``window``: the look-back parameter in rows (trading days), None when not windowed.
    ``warmup``: rows at the start of each series for which the feature is null. Basis:
    ``ticker_rows`` (rows of the ticker) or ``calendar_rows`` (rows of the trading calendar
    after the first VIX observation, for VIX-derived features).
    """

    name: str
    family: str
    window: int | None
    unit: str
    description: str
    warmup: int
    inputs: str = "close"
    warmup_basis: str = "ticker_rows"


def wilder_alpha(period: int) -> float:
    """Wilder's smoothing factor 1/period (RSI, ATR, ADX)."""
    return 1.0 / period


def span_alpha(span: int) -> float:
    """Classic EMA smoothing factor 2/(span+1) (MACD)."""
    return 2.0 / (span + 1.0)


def ewm_warmup(alpha: float, seed_weight: float = SEED_WEIGHT) -> int:
    """Rows after the seed until the seed's weight (1-alpha)^k drops to <= ``seed_weight``.

    The recursive EMA ``e_t = alpha*x_t + (1-alpha)*e_{t-1}`` (``ewm_mean(adjust=False)``) is
    seeded with the first observation; after k more rows the seed still carries (1-alpha)^k of
    the weight. Examples: Wilder-14 -> 41 rows, span 26 -> 39, span 12 -> 18, span 9 -> 14.
    """
    return math.ceil(math.log(seed_weight) / math.log(1.0 - alpha) - 1e-12)


# ---------------------------------------------------------------- per-ticker primitives
def lag(col: str, k: int) -> pl.Expr:
    """``col`` k rows earlier in the same ticker (null for the first k rows of each ticker)."""
    return pl.when(pl.col(ROW) >= k).then(pl.col(col).shift(k))


def ewm_t(col: str, alpha: float) -> pl.Expr:
    """Causal recursive EMA per ticker, seeded with the first non-null value."""
    return pl.col(col).ewm_mean(alpha=alpha, adjust=False).over("ticker")


def roll_t(col: str, op: str, window: int, **kwargs) -> pl.Expr:
    """Trailing rolling ``op`` (``mean``/``sum``/``std``/...) over ``window`` rows ending at t, per ticker."""
    return getattr(pl.col(col), f"rolling_{op}")(window, **kwargs).over("ticker")


def finite(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_finite()).then(expr)


def masked(expr: pl.Expr, warmup: int, row: str = ROW) -> pl.Expr:
    """Null the first ``warmup`` rows (never back-filled); non-finite values become null."""
    cleaned = finite(expr)
    if warmup <= 0:
        return cleaned
    return pl.when(pl.col(row) >= warmup).then(cleaned)


# ---------------------------------------------------------------- input preparation
def validate_bars(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Canonical columns (Float64 prices/volume), sorted by (ticker, date), unique keys."""
    lf = bars.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in (*KEYS, *PRICE_COLUMNS) if c not in names]
    if missing:
        raise ValueError(f"bars is missing columns {missing}; expected ml.data.market.BARS_SCHEMA")
    df = lf.select(
        pl.col("ticker").cast(pl.Utf8),
        pl.col("date").cast(pl.Date),
        *[pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS],
    ).collect(engine=ENGINE)
    t, d = pl.col("ticker"), pl.col("date")
    same = t == t.shift(1)
    ordered = df.select(((t > t.shift(1)) | (same & (d > d.shift(1)))).fill_null(True).all()).item()
    if not ordered:
        df = df.sort(list(KEYS))
        if df.select((same & (d == d.shift(1))).any()).item():
            raise ValueError("bars has duplicate (ticker, date) rows")
    return df


def prepare_bars(bars: pl.DataFrame | pl.LazyFrame, market_ticker: str | None = None) -> pl.LazyFrame:
    """Validated bars plus ``_row`` (and ``_mkt_close`` joined per date when ``market_ticker``)."""
    df = validate_bars(bars)
    lf = df.lazy().with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("ticker").alias(ROW))
    if market_ticker is not None:
        mkt = df.lazy().filter(pl.col("ticker") == market_ticker).select("date", pl.col("close").alias(MKT_CLOSE))
        lf = lf.join(mkt, on="date", how="left", maintain_order="left")
    return lf


def base_exprs() -> dict[str, pl.Expr]:
    """Helper columns shared by the families."""
    h, l = pl.col("high"), pl.col("low")
    pc = pl.col(PREV_CLOSE)
    return {
        LOG_CLOSE: pl.col("close").log(),
        PREV_CLOSE: lag("close", 1),
        LOG_RET: pl.col(LOG_CLOSE) - lag(LOG_CLOSE, 1),
        TRUE_RANGE: pl.max_horizontal(h - l, (h - pc).abs(), (l - pc).abs()),
    }


# ---------------------------------------------------------------- staged evaluation
def merge_exprs(*parts: Mapping[str, pl.Expr]) -> dict[str, pl.Expr]:
    """Union of expression maps; a name defined twice must have the same expression."""
    out: dict[str, pl.Expr] = {}
    for part in parts:
        for name, expr in part.items():
            if name in out and not out[name].meta.eq(expr):
                raise ValueError(f"conflicting definitions of {name!r}")
            out[name] = expr
    return out


def evaluate(
    lf: pl.LazyFrame, exprs: Mapping[str, pl.Expr], keep: Sequence[str] | None = None
) -> pl.LazyFrame:
    """Add every expression as a column, in dependency layers (one ``with_columns`` each).

    With ``keep``, helper columns are dropped as soon as no pending expression needs them (bounds
    peak memory) and the result holds ``keep`` plus the input columns still referenced.
    """
    available = set(lf.collect_schema().names())
    pending = dict(exprs)
    while pending:
        layer = {n: e for n, e in pending.items() if set(e.meta.root_names()) <= available}
        if not layer:
            raise ValueError(f"unresolvable feature dependencies among {sorted(pending)}")
        lf = lf.with_columns(*[e.alias(n) for n, e in layer.items()])
        available.update(layer)
        for n in layer:
            del pending[n]
        if keep is not None:
            needed = set(keep) | {ROW} | {r for e in pending.values() for r in e.meta.root_names()}
            cols = [c for c in lf.collect_schema().names() if c in needed]
            lf = lf.select(cols)
            available = set(cols)
    return lf


def select_features(
    lf: pl.LazyFrame, specs: Sequence[FeatureSpec], exprs: Mapping[str, pl.Expr]
) -> pl.LazyFrame:
    """Keys plus one masked Float64 column per spec (in spec order)."""
    names = [s.name for s in specs]
    full = evaluate(lf, merge_exprs(base_exprs(), exprs), keep=[*KEYS, *names])
    return full.select(*KEYS, *[masked(pl.col(s.name).cast(pl.Float64), s.warmup).alias(s.name) for s in specs])


def check_unique_names(specs: Sequence[FeatureSpec]) -> None:
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ValueError(f"duplicate feature name {s.name!r}")
        seen.add(s.name)
