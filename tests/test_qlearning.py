"""Cluster-state Q-learning (the thesis design): update rule, exploration, state, rewards, overlay, stacking,
the levered-exposure book, train-only fitting, look-ahead, and the reproduction protocol on synthetic data."""
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.agents.qlearning import (
    STATE_COLUMNS,
    QLearningConfig,
    book_exposures,
    choose,
    eliminate_correlated,
    fit_book,
    forward_returns,
    greedy_policy,
    rows_at,
    sharpe_rewards,
    state_frame,
    train_q,
    weighted_rewards,
)
from ml.backtest.exposure import Financing, backtest_exposure
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.envs.market_panel import MarketPanel
from ml.features import compute_features
from ml.lookahead import check_lookahead
from ml.research.thesis import ThesisProtocol, reproduce
from ml.strategies.stacking import extra_leverage, model_of_models
from ml.strategies.vix_switcher import SwitchConfig, apply_switch, choose_switch, switch_mask, trailing_mean

FAST = QLearningConfig(epochs_scale=0.02)


# ------------------------------------------------------------------------------------------ update rule


def test_update_rule_is_an_exponential_average_of_the_rewards():
    # one state, one action, rewards 1, 1, 1: Q = 0.1 * (1 + 0.9 + 0.81) = 0.271 = 1 - 0.9**3
    q = train_q(np.zeros(3, dtype=int), np.ones((3, 1)), 1, epochs=1, alpha=0.1, epsilon=0.0)
    assert q[0, 0] == pytest.approx(0.271, abs=1e-15)
    # rewards 2 then -1: 0.1*2 = 0.2, then 0.9*0.2 + 0.1*(-1) = 0.08
    q = train_q(np.zeros(2, dtype=int), np.array([[2.0], [-1.0]]), 1, epochs=1)
    assert q[0, 0] == pytest.approx(0.08, abs=1e-15)


def test_two_state_toy_learns_the_known_optimum():
    # state 0 pays 1 for action 1 (0 for action 0); state 1 pays 1 for action 0: optimum (1, 0)
    states = np.tile([0, 1], 500)
    rewards = np.where(states[:, None] == 0, [[0.0, 1.0]], [[1.0, 0.0]])
    q = train_q(states, rewards, 2, epochs=20, alpha=0.1, epsilon=0.3, seed=3)
    assert np.argmax(q, axis=1).tolist() == [1, 0]
    assert q[0, 1] == pytest.approx(1.0, abs=1e-6) and q[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert greedy_policy(q, np.array([True, True]), (0.0, 1.0), 0.5).tolist() == [1.0, 0.0]
    assert greedy_policy(q, np.array([True, False]), (0.0, 1.0), 0.5).tolist() == [1.0, 0.5]  # unvisited


def test_epsilon_greedy_needs_exploration_to_find_the_better_action():
    # action 0 pays 0.1, action 1 pays 1: greedy from Q = 0 picks action 0 first (first maximum) and, with
    # epsilon = 0, never tries action 1; epsilon = 0.3 finds it
    states = np.zeros(200, dtype=int)
    rewards = np.tile([[0.1, 1.0]], (200, 1))
    greedy = train_q(states, rewards, 1, epochs=5, epsilon=0.0)
    assert greedy[0, 1] == 0.0 and np.argmax(greedy[0]) == 0
    explore = train_q(states, rewards, 1, epochs=5, epsilon=0.3, seed=1)
    assert np.argmax(explore[0]) == 1
    # epsilon = 1: uniform actions, both Q values converge to their reward
    uniform = train_q(states, rewards, 1, epochs=5, epsilon=1.0, seed=1)
    np.testing.assert_allclose(uniform[0], [0.1, 1.0], atol=1e-6)


def test_training_is_seeded():
    rng = np.random.default_rng(0)
    s, r = rng.integers(0, 4, 500), rng.normal(size=(500, 3))
    np.testing.assert_array_equal(train_q(s, r, 4, 10, seed=5), train_q(s, r, 4, 10, seed=5))
    assert not np.array_equal(train_q(s, r, 4, 10, seed=5), train_q(s, r, 4, 10, seed=6))
    with pytest.raises(ValueError, match="finite"):
        train_q(s, np.full((500, 3), np.nan), 4, 1)


# ----------------------------------------------------------------------------------------- state, rewards


def test_correlation_elimination_drops_the_most_correlated_column():
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=500), rng.normal(size=500)
    b = 2 * a + 0.01 * rng.normal(size=500)  # |corr(a, b)| ~ 1
    d = a + c  # corr 0.71 with a and with c
    x = np.column_stack([a, b, c, d])
    # a and b share the largest |corr| (~1): one of them goes; then nothing exceeds 0.9
    kept = eliminate_correlated(x, ["a", "b", "c", "d"], max_corr=0.9)
    assert len(kept) == 3 and "c" in kept and "d" in kept and len({"a", "b"} & set(kept)) == 1
    assert eliminate_correlated(x, ["a", "b", "c", "d"], max_corr=0.6) in (("c",), ("a", "c"), ("b", "c"))
    assert eliminate_correlated(np.column_stack([a, c]), ["a", "c"], 0.9) == ("a", "c")  # nothing above


def test_reward_formulas_on_hand_computed_returns():
    fwd = np.array([[0.01, 0.02, -0.01, 0.03, 0.0]])
    # eq. 4.1: 0.9*0.01 + 0.7*0.02 + 0.5*(-0.01) + 0.2*0.03 = 0.024
    np.testing.assert_allclose(weighted_rewards(fwd, (-0.5, 0.0, 1.5)), [[-0.012, 0.0, 0.036]], atol=1e-15)
    # eq. 4.3: mean 0.01, std (ddof 1) sqrt(1e-3 / 4) = 0.0158114; SR = 0.632456 * sqrt(252) = 10.0399
    np.testing.assert_allclose(sharpe_rewards(fwd, (-0.5, 0.0, 1.5)), [[-10.0399, 0.0, 10.0399]], atol=1e-4)
    assert sharpe_rewards(np.zeros((1, 5)), (1.0,))[0, 0] == 0.0  # a flat week
    lr = np.array([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(forward_returns(lr, 2), [[0.2, 0.3], [0.3, np.nan], [np.nan, np.nan]])


def test_state_lags_are_the_tickers_previous_returns():
    f = pl.DataFrame({"ticker": ["SPY"] * 6 + ["QQQ"] * 6, "date": [date(2020, 1, d) for d in range(2, 8)] * 2,
                      **{c: [float(i) for i in range(12)] for c in ("close_to_sma_20", "close_to_sma_50",
                                                                 "close_to_sma_200", "macd_line", "macd_hist",
                                                                 "rsi_14", "roc_10", "bb_pctb_20", "ret_1d")}})
    st = state_frame(f.reverse())  # order of the input does not matter
    assert st.columns == ["date", *STATE_COLUMNS] and st.height == 6
    assert st["ret_1d_lag1"].to_list() == [None, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert st["ret_1d_lag4"].to_list() == [None] * 4 + [0.0, 1.0]
    with pytest.raises(ValueError, match="no feature rows"):
        state_frame(f, "GLD")


# ----------------------------------------------------------------------------------- overlay and stacking


def test_vix_switcher_overlay_switches_on_and_off():
    vix = np.array([10.0, 30.0, 30.0, 10.0, 10.0])
    np.testing.assert_allclose(trailing_mean(vix, 2), [10, 20, 30, 20, 10])
    on = switch_mask(vix, SwitchConfig(window=2, threshold=20.0))
    assert on.tolist() == [False, False, True, False, False]  # strictly above the threshold
    np.testing.assert_array_equal(apply_switch(np.array([1.5, 1.5, 1.5, -0.5, 0.0]), on, 0.5),
                                  [1.5, 1.5, 0.5, -0.5, 0.0])
    w = np.tile([0.2, 0.3, 0.5], (5, 1))  # weights [n, A+1]: the default row replaces the switched days
    out = apply_switch(w, on, np.array([0.5, 0.0, 0.5]))
    assert out[2].tolist() == [0.5, 0.0, 0.5] and (out[[0, 1, 3, 4]] == w[0]).all()


def test_switch_choice_uses_the_training_window_only():
    rng = np.random.default_rng(1)
    vix = np.r_[np.full(300, 15.0), np.full(100, 40.0)]
    r = np.r_[rng.normal(0.001, 0.01, 300), rng.normal(-0.004, 0.03, 100)]  # high VIX = losses
    cfg, grid = choose_switch(vix, r, windows=(5, 20), thresholds=(20.0, 30.0))
    assert grid.height == 4 and grid["share_on"].max() <= 0.25
    best = grid.sort("sharpe_train", descending=True).row(0, named=True)
    assert (cfg.window, cfg.threshold) == (best["window"], best["threshold"])
    no_switch = (np.ones(400) * r).mean() / r.std(ddof=1) * np.sqrt(252)
    assert best["sharpe_train"] > no_switch


def test_stacking_arithmetic():
    members = {"a": np.array([0.0, 1.0, 1.5]), "b": np.array([1.0, 0.5, -0.5]), "c": np.array([0.5, 0.0, 1.0])}
    np.testing.assert_allclose(model_of_models(members), [0.5, 0.5, 2.0 / 3.0])
    np.testing.assert_allclose(extra_leverage(model_of_models(members)), [1.0, 1.0, 4.0 / 3.0])
    with pytest.raises(ValueError):
        model_of_models({})


# ------------------------------------------------------------------------------------------ levered book


def test_levered_and_short_exposure_book_by_hand():
    r = np.array([[0.0], [0.10], [-0.05], [0.02]])
    panel = MarketPanel.from_arrays(r, assets=["SPY"])
    fin = Financing(borrow_rate=0.0252, short_fee=0.0126)  # 1e-4 / 0.5e-4 a day
    res = backtest_exposure(np.array([1.5, 1.5, -0.5]), panel, 0, 3, cost_rate=0.001, financing=fin)
    # day 1: from cash to 1.5 SPY / -0.5 cash: turnover 3.0, cost 0.003; gross 0.15 - carry 0.5*1e-4
    assert res.turnover[0] == pytest.approx(3.0) and res.net_returns[0] == pytest.approx(0.15 - 0.003 - 0.5e-4)
    # drifted: SPY 1.65 / 1.15 = 1.434783, back to 1.5: turnover 2 * 0.065217
    w = 1.65 / 1.15
    assert res.turnover[1] == pytest.approx(2 * (1.5 - w))
    assert res.net_returns[1] == pytest.approx(1.5 * -0.05 - 0.001 * 2 * (1.5 - w) - 0.5e-4)
    # day 3: short half: carry 0.5 * 0.5e-4 on the notional
    assert res.gross_returns[2] == pytest.approx(-0.5 * 0.02 - 0.25e-4)
    assert res.weights_held[2].tolist() == [-0.5, 1.5]
    free = backtest_exposure(np.array([1.0, 1.0, 1.0]), panel, 0, 3, cost_rate=0.0, financing=Financing(
        borrow_rate=0, short_fee=0))
    np.testing.assert_allclose(free.net_returns, r[1:, 0])


# ---------------------------------------------------------------------------------- fitting on synthetic data


@pytest.fixture(scope="module")
def spy_features():
    u = Universe(allocation=["SPY"], sector_etfs=[], include_stocks=False, history_start=None)
    m = generate_market(u, seed=7)
    return m, compute_features(m.bars, m.index_bars)


def test_book_fits_on_the_fit_rows_only(spy_features):
    _, feats = spy_features
    st = state_frame(feats, extra=("vix_level",))
    n = 1500
    book = fit_book(st, n, FAST)
    assert len(book.members) == 32 and set(book.columns) <= set(STATE_COLUMNS)
    garbled = st.with_columns([pl.when(pl.int_range(pl.len()) >= n).then(pl.col(c) * -7.0 + 3.0)
                               .otherwise(pl.col(c)).alias(c) for c in STATE_COLUMNS])
    other = fit_book(garbled, n, FAST)
    for name, m in book.members.items():  # test rows moved nothing: centroids, Q tables, policies
        np.testing.assert_array_equal(m.clusters.centers_original(), other.members[name].clusters.centers_original())
        np.testing.assert_array_equal(m.q, other.members[name].q)
    before = book.members["sim2_kmeans_k5"].clusters.centers_original().copy()
    book.members["sim2_kmeans_k5"].states(st)  # assigning later rows does not refit
    np.testing.assert_array_equal(before, book.members["sim2_kmeans_k5"].clusters.centers_original())
    scores = {k: float(i) for i, k in enumerate(book.members)}
    chosen = choose(book, scores, SwitchConfig().model_dump())
    assert chosen.best == list(book.members)[-1] and len(chosen.stack) == 4
    rows = rows_at(st, st["date"].to_numpy()[n:n + 50].astype("datetime64[D]"))
    ex = book_exposures(chosen, rows, np.zeros(50, dtype=bool))
    np.testing.assert_allclose(ex["q_el"], 2 * ex["q_stack"])
    np.testing.assert_array_equal(ex["q_stack_switch"], ex["q_stack"])


def test_state_and_clusters_pass_the_lookahead_check_and_a_leak_fails(spy_features):
    m, feats = spy_features
    book = fit_book(state_frame(feats), 1500, FAST)
    member = book.members["sim3_gmm_k5"]

    def states(bars, index_bars):
        st = state_frame(compute_features(bars, index_bars))
        return st.with_columns(pl.Series("cluster", member.states(st).astype(float)),
                               pl.Series("exposure", member.exposure(st)))

    report = check_lookahead(states, m.bars, m.index_bars, k=3)
    assert report.passed, report.summary()
    assert {"ret_1d_lag1", "ret_1d_lag4", "cluster", "exposure"} <= {c.feature for c in report.checks}

    def leaky(bars, index_bars):  # a "lag" that reads tomorrow's return
        return states(bars, index_bars).with_columns(pl.col("ret_1d").shift(-1).alias("ret_1d_lag1"))

    bad = check_lookahead(leaky, m.bars, m.index_bars, k=3)
    assert not bad.passed and "ret_1d_lag1" in bad.failed_features


def test_reproduction_protocol_on_synthetic_data(spy_features):
    _, feats = spy_features
    protocol = ThesisProtocol(train_start=date(2006, 1, 3), train_end=date(2014, 12, 31),
                              test_start=date(2015, 1, 1), test_end=date(2019, 12, 31), mc_paths=500)
    res = reproduce(feats, protocol, FAST)
    t = res.table
    assert {"spy", "best", "stack", "stack_switch", "stack_el", "stack_el_switch"} <= set(t["strategy"])
    assert t.filter(pl.col("simulation") != "").height == 32
    spy = t.filter(pl.col("strategy") == "spy").row(0, named=True)
    lr = feats.filter((pl.col("ticker") == "SPY") & pl.col("date").is_between(protocol.test_start, protocol.test_end))
    assert spy["days"] == lr.height and spy["total_log_return"] == pytest.approx(100 * lr["ret_1d"].sum(), abs=1e-9)
    assert spy["thesis_sr_full"] == 1.5  # the published reference sits next to the measured value
    d = res.daily
    stack = d.filter(pl.col("strategy") == "stack")["exposure"].to_numpy()
    np.testing.assert_allclose(d.filter(pl.col("strategy") == "stack_el")["exposure"].to_numpy(), 2 * stack)
    assert res.switch_grid.height == 16 and res.switch_grid["chosen"].sum() == 1
    mc = res.monte_carlo
    assert mc.height == 3 * 252 and (mc["q05"] <= mc["q50"]).all() and (mc["q50"] <= mc["q95"]).all()
    with pytest.raises(ValueError, match="needs SPY features"):
        reproduce(feats, ThesisProtocol(), FAST)  # synthetic history starts in 2005
