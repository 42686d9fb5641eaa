"""Sector-regime book: groups, group regimes, bull/bear picks, the Thompson bandit, the book's accounting
(costs both sides, borrow on shorts, caps) and trades, on hand-built inputs."""
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from ml.backtest.sector_book import (
    BookMarket,
    SectorBookConfig,
    book_targets,
    fill_day,
    month_starts,
    run_book,
    trade_statistics,
)
from ml.strategies.bandit import ThompsonBandit
from ml.strategies.sector_regime import (
    BEAR,
    BULL,
    SIDEWAYS,
    bear_picks,
    bull_picks,
    group_regimes,
    stock_groups,
    weekly_refit_probabilities,
)


# ----------------------------------------------------------------------------- groups and regimes
def _sectors() -> pl.DataFrame:
    rows = [("XLK", "Information Technology"), ("SPY", None)]
    rows += [(f"T{i}", "Information Technology") for i in range(5)]
    rows += [(f"E{i}", "Energy") for i in range(3)]
    rows += [("M0", "Materials")]
    return pl.DataFrame(rows, schema={"ticker": pl.Utf8, "gics_sector": pl.Utf8}, orient="row")


def test_undersized_groups_are_skipped_or_merged():
    tickers = set(_sectors()["ticker"])
    skip = stock_groups(_sectors(), tickers, min_group_size=4, undersized="skip")
    assert set(skip["group"]) == {"Information Technology"}
    assert "XLK" not in set(skip["ticker"]) and len(skip) == 5  # sector ETFs are not stocks
    merged = stock_groups(_sectors(), tickers, min_group_size=4, undersized="merge")
    assert set(merged["group"]) == {"Information Technology", "Other"}
    assert sorted(merged.filter(pl.col("group") == "Other")["ticker"]) == ["E0", "E1", "E2", "M0"]
    with pytest.raises(ValueError):
        stock_groups(_sectors(), tickers, undersized="drop")


def test_merged_group_regime_is_the_stock_weighted_mean_of_its_sectors():
    groups = stock_groups(_sectors(), set(_sectors()["ticker"]), 4, "merge")
    d = date(2020, 1, 2)
    probs = pl.DataFrame({"sector": ["Energy", "Materials", "Information Technology"], "date": [d, d, d],
                          "p_bull": [0.1, 0.9, 0.2], "p_sideways": [0.2, 0.05, 0.7], "p_bear": [0.7, 0.05, 0.1]})
    reg = group_regimes(groups, probs)
    other = reg.filter(pl.col("group") == "Other").row(0, named=True)
    # 3 Energy stocks and 1 Materials stock: p_bear = (3 x 0.7 + 0.05) / 4
    assert other["p_bear"] == pytest.approx((3 * 0.7 + 0.05) / 4)
    assert other["regime"] == "Bear"
    assert reg.filter(pl.col("group") == "Information Technology")["regime"].item() == "Sideways"
    # a group missing one of its sectors that day has no regime
    assert group_regimes(groups, probs.filter(pl.col("sector") != "Materials")).filter(
        pl.col("group") == "Other").is_empty()


def test_bull_and_bear_picks_rank_by_momentum():
    mom = np.array([0.05, -0.02, np.nan, 0.10, -0.08, 0.01])
    members = np.array([0, 1, 2, 3, 4, 5])
    assert bull_picks(mom, members, 3).tolist() == [3, 0, 5]
    assert bear_picks(mom, members, 2).tolist() == [4, 1]
    assert bull_picks(mom, np.array([2]), 3).size == 0  # no momentum, no pick


# ----------------------------------------------------------------------------- bandit
def test_bandit_posterior_on_a_fixed_reward_sequence():
    b = ThompsonBandit(["A", "B", "C"], seed=3)
    for pnl in [0.01, -0.002, 0.004, 0.0]:  # 0.0 is not a win
        b.update("A", pnl)
    b.update("B", -0.01)
    post = {r["group"]: r for r in b.posterior().iter_rows(named=True)}
    assert (post["A"]["alpha"], post["A"]["beta"]) == (3.0, 3.0)
    assert (post["B"]["alpha"], post["B"]["beta"]) == (1.0, 2.0)
    assert post["A"]["mean"] == pytest.approx(0.5) and post["B"]["mean"] == pytest.approx(1 / 3)
    assert post["A"]["sd"] == pytest.approx(np.sqrt(9 / (36 * 7)))
    assert (post["A"]["trades"], post["A"]["wins"], post["C"]["trades"]) == (4, 2, 0)


def test_bandit_is_seeded_and_prefers_the_winning_group():
    def run(seed):
        b = ThompsonBandit(["A", "B", "C", "D"], seed=seed)
        for _ in range(40):
            b.update("C", 1.0)
            b.update("A", -1.0)
        return [b.select(2) for _ in range(200)]

    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other
    picks = [g for day in first for g in day]
    assert picks.count("C") == 200  # Beta(41, 1) always beats the uniform priors' top draw here
    assert picks.count("A") == 0  # Beta(1, 41) never makes the top 2 of 4
    assert ThompsonBandit(["A", "B"], seed=1).select(5, eligible=["B"]) == ["B"]


# ----------------------------------------------------------------------------- accounting
def test_fill_day_costs_both_sides_and_borrow_on_shorts():
    cost_rate, borrow = 6e-4, 0.05
    w_old = np.array([0.0, 0.0])
    target = np.array([0.05, -0.05])
    g = np.array([0.0, 0.0])
    i = np.array([0.02, 0.01])
    f = fill_day(w_old, target, g, i, cost_rate, borrow)
    assert f.turnover == pytest.approx(0.10)
    assert f.cost == pytest.approx(0.10 * 6e-4 * (1 + 0.05 * 0.02 - 0.05 * 0.01), rel=1e-9)
    assert f.borrow == pytest.approx(0.05 * 0.05 / 252)
    expected_net = (1 - 0.10 * 6e-4 - 0.05 * 0.05 / 252) * (1 + 0.05 * 0.02 - 0.05 * 0.01) - 1
    assert f.net == pytest.approx(expected_net, rel=1e-12)
    # closing the round trip pays the same rate again on the way out (both sides)
    g2 = np.zeros(2)
    close = fill_day(f.w_after, np.zeros(2), g2, np.zeros(2), cost_rate, borrow)
    assert close.turnover == pytest.approx(np.abs(f.w_after).sum())
    assert close.net == pytest.approx(-cost_rate * close.turnover)
    assert close.borrow == 0.0


def test_fill_day_next_open_earns_the_gap_on_old_weights():
    w_old = np.array([0.5])
    f = fill_day(w_old, np.array([0.0]), np.array([0.04]), np.array([0.10]), 0.0, 0.0)
    assert f.net == pytest.approx(0.5 * 0.04)  # sold at the open: the session's +10 % is not earned
    f2 = fill_day(w_old, np.array([0.5]), np.array([0.0]), np.array([0.10]), 0.0, 0.0, band=0.01)
    assert f2.turnover == 0.0 and f2.net == pytest.approx(0.05)


def _market(close: np.ndarray, regime: np.ndarray, members, pairs=None) -> BookMarket:
    t = close.shape[0]
    dates = np.array([np.datetime64(date(2021, 1, 4) + timedelta(days=k)) for k in range(t)])
    p = pairs or {}
    return BookMarket(dates=dates, tickers=[f"S{j}" for j in range(close.shape[1])], close=close, open_=close.copy(),
                      groups=[f"G{g}" for g in range(len(members))], members=[np.array(m) for m in members],
                      regime=regime, **p)


def test_targets_follow_the_regime_and_respect_the_caps():
    t_n, s = 25, 8
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (t_n, s)), axis=0))
    close[:, 0] *= np.linspace(1, 1.5, t_n)  # S0 the best momentum of G0, S3 the worst
    close[:, 3] *= np.linspace(1, 0.6, t_n)
    regime = np.zeros((t_n, 2), dtype=np.int64)
    regime[:, 1] = BEAR
    m = _market(close, regime, [[0, 1, 2, 3], [4, 5, 6, 7]])
    cfg = SectorBookConfig(groups_per_day=2, max_weight=0.05)
    target, sleeve = book_targets(m, 24, [0, 1], cfg)
    longs, shorts = np.flatnonzero(target > 0), np.flatnonzero(target < 0)
    assert set(longs) <= {0, 1, 2, 3} and 0 in longs and 3 not in longs and len(longs) == 3
    assert set(shorts) <= {4, 5, 6, 7} and len(shorts) == 2
    # group capital 1/2: bull 1/6 each and bear 1/4 each, both capped at 5 %
    assert np.allclose(np.abs(target[target != 0]), 0.05)
    assert set(sleeve[longs]) == {0} and set(sleeve[shorts]) == {1}
    long_only, _ = book_targets(m, 24, [0, 1], cfg.model_copy(update={"long_only": True}))
    assert (long_only >= 0).all() and (long_only[4:] == 0).all()
    few, _ = book_targets(m, 24, [0, 1], cfg.model_copy(update={"max_positions": 4}))
    assert np.count_nonzero(few) == 4


def test_sideways_group_trades_its_pairs_by_the_policy_position():
    t_n = 25
    close = np.full((t_n, 4), 100.0)
    regime = np.full((t_n, 1), SIDEWAYS, dtype=np.int64)
    pos = np.zeros((t_n, 1))
    pos[10] = 1.0  # long spread: long A, short b x B
    pairs = dict(pair_group=np.array([0]), pair_a=np.array([0]), pair_b=np.array([1]), pair_w_a=np.array([0.4]),
                 pair_w_b=np.array([-0.6]), pair_position=pos)
    m = _market(close, regime, [[0, 1, 2, 3]], pairs)
    target, sleeve = book_targets(m, 10, [0], SectorBookConfig(groups_per_day=5, max_weight=1.0))
    assert target[0] == pytest.approx(0.2 * 0.4) and target[1] == pytest.approx(-0.2 * 0.6)
    assert sleeve[0] == 2 and sleeve[1] == 2
    flat, _ = book_targets(m, 11, [0], SectorBookConfig())
    assert not flat.any()


def test_run_book_records_trades_and_updates_the_bandit():
    t_n = 30
    close = np.ones((t_n, 4)) * 100.0
    close[:, 0] = 100 * 1.01 ** np.arange(t_n)  # S0 rises every day
    close[:, 1] = 100 * 1.002 ** np.arange(t_n)
    close[:, 2] = 100 * 0.99 ** np.arange(t_n)
    regime = np.full((t_n, 1), -1, dtype=np.int64)
    regime[20:25] = BULL  # bull for 5 decisions, then no regime: the book closes everything
    m = _market(close, regime, [[0, 1, 2, 3]])
    cfg = SectorBookConfig(groups_per_day=1, max_weight=1.0, execution="close", slippage_bps=0, commission_bps=0)
    res = run_book(m, 1, t_n, cfg)
    closed = res.trades.filter(pl.col("closed"))
    assert set(closed["ticker"]) == {"S0", "S1", "S3"}  # the 3 best 20-day movers (S3 flat beats S2 falling)
    s0 = closed.filter(pl.col("ticker") == "S0").row(0, named=True)
    assert s0["holding_days"] == 5 and s0["side"] == "long" and s0["sleeve"] == "bull"
    assert s0["pnl"] > 0
    post = res.posterior.row(0, named=True)
    assert post["trades"] == 3 and post["wins"] == 2  # S0, S1 gained; S3 (flat) is not a win
    assert res.daily["positions"].max() == 3
    stats = trade_statistics(res.trades)
    assert stats["trades"] == 3 and stats["win_rate"] == pytest.approx(2 / 3)
    assert stats["avg_hold_days"] == pytest.approx(5.0)
    # the daily net returns compound to the final equity
    assert np.prod(1 + res.daily["net_return"].to_numpy()) == pytest.approx(res.daily["equity"][-1])


def test_month_starts():
    d = np.array(["2021-01-29", "2021-02-01", "2021-02-02", "2021-03-01"], dtype="datetime64[D]")
    assert month_starts(d).tolist() == [True, True, False, True]


# ----------------------------------------------------------------------------- weekly refit
def test_weekly_refit_probabilities_are_causal():
    rng = np.random.default_rng(1)
    n = 420
    days = [date(2019, 1, 1) + timedelta(days=k) for k in range(n)]
    regime = (np.arange(n) // 60) % 3
    x = np.column_stack([np.array([0.002, 0.0, -0.002])[regime] + rng.normal(0, 0.002, n),
                         0.3 + 0.1 * regime + rng.normal(0, 0.05, n), 0.01 + 0.005 * regime + rng.normal(0, 0.001, n)])
    obs = pl.DataFrame({"sector": "S", "date": days, "ret_mean": x[:, 0], "corr_mean": x[:, 1], "vol": x[:, 2]})
    labelled = days[300:330]
    full = weekly_refit_probabilities(obs, labelled, window=252, every=5)
    assert full.height == 30 and np.allclose(full.select("p_bull", "p_sideways", "p_bear").sum_horizontal(), 1.0)
    cut = days[312]
    garbled = obs.with_columns(pl.when(pl.col("date") > cut).then(pl.col("ret_mean") * -50).otherwise(
        pl.col("ret_mean")).alias("ret_mean"))
    again = weekly_refit_probabilities(garbled, labelled, window=252, every=5)
    a = full.filter(pl.col("date") <= cut).select("p_bull", "p_bear").to_numpy()
    b = again.filter(pl.col("date") <= cut).select("p_bull", "p_bear").to_numpy()
    assert np.allclose(a, b)
    assert not np.allclose(full.select("p_bull").to_numpy(), again.select("p_bull").to_numpy())


# ----------------------------------------------------------------------------- one fold, end to end (ml only)
def _fold_inputs(stocks_per_sector: int):
    from ml.data.synthetic import generate_market
    from ml.data.universe import Universe
    from ml.features.pipeline import compute_features
    from ml.regimes.hmm import HmmConfig, SectorHmms, fit_sector_hmms, sector_observations

    m = generate_market(Universe(sector_etfs=["XLK", "XLF"], include_stocks=True, history_start=date(2016, 1, 1),
                                 history_end=date(2019, 12, 31)), seed=5, n_stocks_per_sector=stocks_per_sector)
    cfg = HmmConfig(mode="basket", restarts=1)
    obs = sector_observations(m.bars, m.sectors, cfg)
    hmms = SectorHmms(fit_sector_hmms(obs, date(2016, 1, 1), date(2018, 11, 30), cfg), cfg)
    return m, compute_features(m.bars, m.index_bars), hmms.probabilities(m.bars, m.sectors)


@pytest.mark.parametrize("per_sector", [2, 5])
def test_run_fold_book_end_to_end(per_sector):
    from ml.sector_book import BOOK_VARIANTS, COMPARISONS, SectorBookSettings, run_fold_book, universe_groups
    from ml.strategies.pairs import PairsConfig, pair_states, select_pairs

    m, feats, probs = _fold_inputs(per_sector)
    cfg = SectorBookSettings(pairs=PairsConfig(pvalue_max=0.5, lookback=252))
    groups = universe_groups(m.bars, m.sectors, cfg)
    assert groups.is_empty() == (per_sector < 4)
    pairs = select_pairs(m.bars.filter(pl.col("date") <= date(2018, 11, 30)), groups, date(2016, 1, 1),
                         date(2018, 11, 30), cfg.pairs)
    states = pair_states(m.bars, feats, pairs, groups, cfg.pairs)
    book = run_fold_book(m.bars, groups, probs, pairs, states, None, date(2019, 1, 2), date(2019, 12, 31), cfg)
    assert set(book.daily["strategy"]) == set(BOOK_VARIANTS) | set(COMPARISONS)
    assert book.pair_policy == "zscore (fallback)"
    assert book.daily["date"].min() >= date(2019, 1, 2)
    traded = book.daily.filter(pl.col("strategy") == "sector_book")
    if per_sector < 4:  # no group: the book holds cash, the comparisons still run
        assert (traded["net_return"] == 0).all() and book.trades.is_empty()
    else:
        assert traded["positions"].max() > 0 and traded["positions"].max() <= 20
        assert book.trades.height > 0
        assert (book.daily.filter(pl.col("strategy") == "sector_book_long_only")["short_exposure"] == 0).all()
    assert book.metrics.filter(pl.col("strategy") == "ew_stocks")["trades"].is_null().all()


def test_targets_at_t_ignore_everything_after_t():
    """The book's inputs at the close of t (momentum, regimes, pair positions) are read at rows <= t only:
    garbling every later row leaves the day's targets unchanged."""
    t_n, s = 60, 8
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (t_n, s)), axis=0))
    regime = rng.integers(0, 3, (t_n, 2))
    pos = rng.uniform(-1, 1, (t_n, 1))
    pairs = dict(pair_group=np.array([1]), pair_a=np.array([4]), pair_b=np.array([5]), pair_w_a=np.array([0.5]),
                 pair_w_b=np.array([-0.5]), pair_position=pos)
    m = _market(close, regime, [[0, 1, 2, 3], [4, 5, 6, 7]], pairs)
    cfg = SectorBookConfig(groups_per_day=2)
    for t in (25, 40, 58):
        before, _ = book_targets(m, t, [0, 1], cfg)
        g_close, g_regime, g_pos = close.copy(), regime.copy(), pos.copy()
        g_close[t + 1:] = rng.uniform(1, 1000, g_close[t + 1:].shape)
        g_regime[t + 1:] = (g_regime[t + 1:] + 1) % 3
        g_pos[t + 1:] = -g_pos[t + 1:]
        garbled = _market(g_close, g_regime, [[0, 1, 2, 3], [4, 5, 6, 7]], {**pairs, "pair_position": g_pos})
        after, _ = book_targets(garbled, t, [0, 1], cfg)
        assert np.array_equal(before, after)
