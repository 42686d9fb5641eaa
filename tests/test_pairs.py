"""Pairs: Engle-Granger selection (matches statsmodels' coint), the z-score rule, spread returns, the state
estimators and the look-ahead check of every state column (plus a planted leak that must fail)."""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits

from ml.data.synthetic import generate_market, trading_calendar
from ml.data.universe import Universe
from ml.features import compute_features
from ml.lookahead import check_lookahead
from ml.strategies.pairs import (
    LEG_FEATURES,
    PAIR_STATE_COLUMNS,
    PAIRS_SCHEMA,
    PairsConfig,
    engle_granger,
    pair_states,
    select_pairs,
    state_arrays,
    zscore_positions,
    zscore_step,
)

START = date(2018, 1, 1)


def _bars(log_prices: dict[str, np.ndarray], start: date = START) -> pl.DataFrame:
    """Bars with close = exp(log price) (other price columns = close) on consecutive sessions."""
    n = max(len(v) for v in log_prices.values())
    days = trading_calendar(start, date(start.year + 10, 12, 31))[:n]
    frames = []
    for t, lp in log_prices.items():
        c = np.exp(np.asarray(lp, dtype=float))
        frames.append(pl.DataFrame({"ticker": t, "date": days[: c.size], "open": c, "high": c, "low": c,
                                    "close": c, "volume": 1e6}))
    return pl.concat(frames).with_columns(pl.col("date").cast(pl.Date))


def _null_features(bars: pl.DataFrame) -> pl.DataFrame:
    """A feature store frame with every column pair_states reads, all null."""
    cols = ["ret_21d", *LEG_FEATURES, "vix_level", "vix_term"]
    return bars.select("ticker", "date", *[pl.lit(None, pl.Float64).alias(c) for c in cols])


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    e = np.zeros(n)
    shocks = sd * rng.standard_normal(n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + shocks[t]
    return e


def _walk(rng: np.random.Generator, n: int, sd: float = 0.015, p0: float = 50.0) -> np.ndarray:
    return math.log(p0) + np.cumsum(sd * rng.standard_normal(n))


# ----------------------------------------------------------------------------- selection
def test_engle_granger_matches_statsmodels_coint():
    from statsmodels.tsa.stattools import coint

    rng = np.random.default_rng(4)
    with threadpool_limits(limits=1):
        for n, coupled in ((300, True), (400, False), (250, True)):
            b = _walk(rng, n)
            a = 0.7 * b + _ar1(rng, n, 0.85, 0.01) if coupled else _walk(rng, n)
            _, p_ref, _ = coint(a, b, trend="c")
            fit = engle_granger(a, b)
            assert fit["pvalue"] == pytest.approx(p_ref, abs=1e-10)
            slope, intercept = np.polyfit(b, a, 1)
            assert fit["hedge_ratio"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept)


@pytest.fixture(scope="module")
def coint_market():
    """G1: AAA = 1.5 BBB + AR(1) noise (cointegrated), CCC and DDD independent walks.
    G2: EEE, FFF both tied to GGG (three cointegrated pairs, of different strength)."""
    rng = np.random.default_rng(0)
    n = 600
    bbb, ggg = _walk(rng, n), _walk(rng, n, p0=30.0)
    prices = {
        "AAA": 1.5 * bbb - 2.0 + _ar1(rng, n, 0.9, 0.005),
        "BBB": bbb,
        "CCC": _walk(rng, n),
        "DDD": _walk(rng, n),
        "EEE": 0.8 * ggg + 1.0 + _ar1(rng, n, 0.5, 0.005),
        "FFF": 1.2 * ggg + 0.5 + _ar1(rng, n, 0.8, 0.005),
        "GGG": ggg,
    }
    groups = pl.DataFrame({"group": ["G1"] * 4 + ["G2"] * 3, "ticker": list(prices)})
    return _bars(prices), groups


def test_select_pairs_finds_the_cointegrated_pair(coint_market):
    bars, groups = coint_market
    end = bars.get_column("date").max()
    alpha = select_pairs(bars, groups, START, end, PairsConfig(ordering="alphabetical", lookback=None))
    assert alpha.schema == pl.Schema(PAIRS_SCHEMA)
    g1 = alpha.filter(pl.col("group") == "G1")
    assert g1.get_column("pair").to_list() == ["AAA/BBB"]  # the independent walks are not selected
    row = g1.row(0, named=True)
    assert row["hedge_ratio"] == pytest.approx(1.5, abs=0.05) and row["intercept"] == pytest.approx(-2.0, abs=0.25)
    assert row["pvalue"] < 1e-3 and row["n_obs"] == 600 and row["rank"] == 1
    assert 3.0 < row["half_life"] < 15.0  # AR(1) phi 0.9: -ln 2 / ln 0.9 = 6.6 sessions

    # every pair tested: the independent ones have large p-values
    every = select_pairs(bars, groups, START, end, PairsConfig(pvalue_max=1.0, top_k=10, lookback=None))
    p = dict(zip(every.get_column("pair"), every.get_column("pvalue"), strict=True))
    assert len(p) == 6 + 3 and all(v > 0.05 for k, v in p.items() if "AAA" not in k and "GGG" not in k
                                   and k not in ("EEE/FFF", "FFF/EEE"))
    # both orderings: AAA/BBB or BBB/AAA, whichever has the smaller p-value; hedge ratio consistent
    both = select_pairs(bars, groups, START, end, PairsConfig(lookback=None)).filter(pl.col("group") == "G1").row(0, named=True)
    assert {both["ticker_a"], both["ticker_b"]} == {"AAA", "BBB"}
    expected = 1.5 if both["ticker_a"] == "AAA" else 1 / 1.5
    assert both["hedge_ratio"] == pytest.approx(expected, rel=0.05)


def test_select_pairs_ranking_top_k_window_and_causality(coint_market):
    bars, groups = coint_market
    end = bars.get_column("date").max()
    g2 = select_pairs(bars, groups, START, end, PairsConfig(top_k=5, lookback=None)).filter(pl.col("group") == "G2")
    assert g2.height == 3
    assert g2.get_column("rank").to_list() == [1, 2, 3]
    assert g2.get_column("pvalue").is_sorted()
    top2 = select_pairs(bars, groups, START, end, PairsConfig(top_k=2, lookback=None)).filter(pl.col("group") == "G2")
    assert top2.equals(g2.head(2))
    assert select_pairs(bars, groups, START, end, PairsConfig(top_k=2, lookback=None)).equals(
        select_pairs(bars, groups, START, end, PairsConfig(top_k=2, lookback=None)))  # deterministic

    # lookback: the trailing 300 sessions; min_obs above what the window holds: nothing
    tail = select_pairs(bars, groups, START, end, PairsConfig(lookback=300, pvalue_max=1.0))
    assert set(tail.get_column("n_obs")) == {300}
    assert select_pairs(bars, groups, START, end, PairsConfig(min_obs=601, lookback=None)).height == 0

    # causal: only bars in [start, end] matter - rewriting every later close changes nothing
    mid = bars.get_column("date").unique().sort()[399]
    base = select_pairs(bars, groups, START, mid, PairsConfig(pvalue_max=1.0, lookback=None))
    garbled = bars.with_columns(pl.when(pl.col("date") > mid).then(pl.col("close") * 3.0).otherwise(pl.col("close"))
                                .alias("close"))
    assert base.equals(select_pairs(garbled, groups, START, mid, PairsConfig(pvalue_max=1.0, lookback=None)))
    assert set(base.get_column("n_obs")) == {400}


# ----------------------------------------------------------------------------- rule
def test_zscore_rule_entries_and_exits():
    cfg = PairsConfig(entry_z=2.0, exit_z=0.5)
    nan = np.nan
    z = np.array([
        [nan, -2.0],
        [0.0, 2.0],  # exactly at the bands: no entry
        [-2.1, -2.5],  # both enter long spread
        [-1.0, 3.0],  # held (|z| >= exit); the long is kept through the opposite band (exit only via the mean)
        [-0.4, 0.5],  # pair 0 exits; pair 1 stays (0.5 is not < 0.5)
        [2.5, 0.49],  # pair 0 enters short; pair 1 exits
        [1.0, 0.0],
        [0.3, -2.0001],
        [2.1, 1.0],
        [nan, -1.0],  # NaN z -> flat
        [-3.0, 0.2],
    ])
    expected = np.array([
        [0, 0], [0, 0], [1, 1], [1, 1], [0, 1], [-1, 0], [-1, 0], [0, 1], [-1, 1], [0, 1], [1, 0],
    ], dtype=float)
    np.testing.assert_array_equal(zscore_positions(z, cfg), expected)
    np.testing.assert_array_equal(
        zscore_step(np.array([-2.5, 2.5, 0.1, nan, 1.0]), np.array([0.0, 0.0, -1.0, 1.0, -1.0]), cfg),
        [1.0, -1.0, 0.0, 0.0, -1.0],
    )


# ----------------------------------------------------------------------------- state
def test_spread_and_spread_return_by_hand():
    bars = _bars({"AAA": np.log([100.0, 110.0, 99.0]), "BBB": np.log([50.0, 45.0, 45.0])})
    pairs = pl.DataFrame({"group": ["G", "G"], "pair": ["AAA/BBB", "NEG"], "ticker_a": ["AAA", "AAA"],
                          "ticker_b": ["BBB", "BBB"], "hedge_ratio": [0.5, -0.5], "intercept": [0.1, 0.0]})
    groups = pl.DataFrame({"group": ["G", "G"], "ticker": ["AAA", "BBB"]})
    st = pair_states(bars, _null_features(bars), pairs, groups)
    assert st.columns == ["pair", "date", *PAIR_STATE_COLUMNS, "spread_ret"] and len(PAIR_STATE_COLUMNS) == 26
    pos = st.filter(pl.col("pair") == "AAA/BBB")
    np.testing.assert_allclose(pos.get_column("spread").to_numpy(),
                               np.log([100, 110, 99]) - 0.5 * np.log([50, 45, 45]) - 0.1)
    # w_a = 1/1.5, w_b = -0.5/1.5: day 1 +10 % A, -10 % B -> 0.1; day 2 -10 % A, 0 % B -> -0.0667
    r = pos.get_column("spread_ret").to_list()
    assert r[0] is None and r[1] == pytest.approx(0.1) and r[2] == pytest.approx(-0.1 / 1.5)
    # negative hedge ratio: long both legs, w_b = +0.5/1.5
    r = st.filter(pl.col("pair") == "NEG").get_column("spread_ret").to_list()
    assert r[1] == pytest.approx(0.1 / 1.5 * 1 + 0.5 / 1.5 * -0.1) and r[2] == pytest.approx(-0.1 / 1.5)


def test_state_estimators_and_arrays():
    """White-noise spread: Hurst ~0, short half-life; random-walk spread: Hurst ~0.5, long half-life."""
    rng = np.random.default_rng(2)
    n = 700
    b = _walk(rng, n)
    bars = _bars({"A1": b + 0.02 * rng.standard_normal(n), "A2": b + _walk(rng, n, 0.01, 1.0), "B": b})
    pairs = pl.DataFrame({"group": ["G", "G"], "pair": ["A1/B", "A2/B"], "ticker_a": ["A1", "A2"],
                          "ticker_b": ["B", "B"], "hedge_ratio": [1.0, 1.0], "intercept": [0.0, 0.0]})
    groups = pl.DataFrame({"group": ["G"] * 3, "ticker": ["A1", "A2", "B"]})
    cfg = PairsConfig()
    st = pair_states(bars, _null_features(bars), pairs, groups, cfg)
    noise = st.filter(pl.col("pair") == "A1/B").drop_nulls("half_life")
    walk = st.filter(pl.col("pair") == "A2/B").drop_nulls("half_life")
    assert noise.get_column("hurst").mean() < 0.15 and 0.3 < walk.get_column("hurst").mean() < 0.7
    assert noise.get_column("half_life").max() < 2.0 and walk.get_column("half_life").median() > 20.0
    assert st.get_column("half_life").drop_nulls().is_between(0.0, 252.0).all()
    # warm-up: z null for the first z_window - 1 rows; z at t by hand
    z = st.filter(pl.col("pair") == "A1/B").get_column("z")
    assert z.head(cfg.z_window - 1).null_count() == cfg.z_window - 1 and z[cfg.z_window - 1] is not None
    s = st.filter(pl.col("pair") == "A1/B").get_column("spread").to_numpy()
    w = s[300 - cfg.z_window + 1 : 301]
    assert z[300] == pytest.approx((s[300] - w.mean()) / w.std(ddof=1))

    # arrays: a pair without rows on some dates gets NaN there; pairs in the given order
    short = st.filter(~((pl.col("pair") == "A2/B") & (pl.col("date") < bars.get_column("date")[10])))
    dates, states, rets, zz = state_arrays(short, pairs.reverse())
    assert states.shape == (n, 2, 26) and rets.shape == zz.shape == (n, 2) and dates.size == n
    assert np.isnan(states[:10, 0]).all() and not np.isnan(states[-1, 0, 0])
    np.testing.assert_array_equal(zz[:, 1], np.asarray(z.to_numpy(), dtype=float))
    np.testing.assert_array_equal(states[:, 1, PAIR_STATE_COLUMNS.index("z")], zz[:, 1])


# ----------------------------------------------------------------------------- look-ahead
@pytest.fixture(scope="module")
def lookahead_setup():
    u = Universe(allocation=["SPY"], sector_etfs=["XLK"], stocks=[f"S{i}" for i in range(6)],
                 history_start=date(2019, 1, 1), history_end=date(2021, 6, 30))
    m = generate_market(u, seed=8)
    groups = pl.DataFrame({"group": ["G1"] * 3 + ["G2"] * 3, "ticker": [f"S{i}" for i in range(6)]})
    pairs = select_pairs(m.bars, groups, date(2019, 1, 1), date(2019, 12, 31),
                         PairsConfig(pvalue_max=1.0, top_k=2, min_obs=200))
    assert pairs.height == 4
    return m, groups, pairs


def _states_fn(pairs, groups, leak=False):
    def fn(bars, index_bars):
        st = pair_states(bars, compute_features(bars, index_bars), pairs, groups)
        if leak:
            st = st.with_columns(pl.col("z").shift(-1).over("pair"))
        return st.rename({"pair": "ticker"})
    return fn


def test_pair_states_pass_lookahead(lookahead_setup):
    m, groups, pairs = lookahead_setup
    fn = _states_fn(pairs, groups)
    full = fn(m.bars, m.index_bars)
    cols = [*PAIR_STATE_COLUMNS, "spread_ret"]
    assert all(full.get_column(c).drop_nulls().len() > 0 for c in cols)  # every column has values to compare
    report = check_lookahead(fn, m.bars, m.index_bars, mode="fast", columns=cols)
    assert report.passed, report.to_markdown()
    assert [c.feature for c in report.checks] == cols and all(c.n_compared > 0 for c in report.checks)


def test_planted_leak_fails_lookahead(lookahead_setup):
    m, groups, pairs = lookahead_setup
    report = check_lookahead(_states_fn(pairs, groups, leak=True), m.bars, m.index_bars, mode="fast", k=4,
                             columns=["spread", "z"])
    assert not report.passed and report.failed_features == ["z"]
