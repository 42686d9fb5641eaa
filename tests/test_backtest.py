"""Backtester: reproduces the environment's net returns, hand-checked drift/costs, and baselines on identical
dates with identical cost arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.backtest import BacktestResult, backtest, month_start_mask
from ml.backtest.baselines import (
    BASELINE_NAMES,
    BaselineConfig,
    baseline_schedules,
    run_baselines,
    vix_moving_average,
)
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, PortfolioEnv

C = 0.0005
ETFS = ("SPY", "QQQ", "TLT", "GLD")


def _panel(t: int = 90, assets=ETFS, seed: int = 0, vix=None, dates=None) -> MarketPanel:
    rng = np.random.default_rng(seed)
    a = len(assets)
    returns = rng.normal(0.0003, 0.01, size=(t, a))
    gaps = rng.normal(0.0001, 0.004, size=(t, a))
    feats = rng.normal(0.0, 0.1, size=(t, a * 3))
    vixf = rng.normal(0.0, 0.5, size=(t, 4))
    return MarketPanel.from_arrays(returns, np.hstack([feats, vixf]), assets=assets, dates=dates,
                                   vix=20.0 + 10.0 * vixf[:, 0] if vix is None else vix, gaps=gaps)


def _hand_panel() -> MarketPanel:
    """4 rows across a month boundary: Thu 2021-01-28, Fri 01-29, Mon 02-01, Tue 02-02 (2 assets)."""
    returns = np.array([[0.0, 0.0], [0.10, 0.0], [-0.05, 0.02], [0.02, -0.01]])
    dates = np.array(["2021-01-28", "2021-01-29", "2021-02-01", "2021-02-02"], dtype="datetime64[D]")
    return MarketPanel.from_arrays(returns, assets=("EQ", "BOND"), dates=dates)


# ----------------------------------------------------------------------------------------------------
# engine vs environment
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("execution", ["close", "next_open", "next_close"])
@pytest.mark.parametrize("init", ["cash", "equal"])
def test_backtest_reproduces_gym_env_net_returns(init, execution):
    p = _panel(120, seed=1)
    start, n = 7, 100
    cfg = EnvConfig(reward="net", terminate_below=None, dtype="float64", episode_length=10_000, initial_weights=init,
                    execution=execution)
    env = PortfolioEnv(p, cfg, 0, p.n_dates - 1)
    env.reset(options={"start_idx": start})
    rng = np.random.default_rng(5)
    weights, nets, turns = [], [], []
    for _ in range(n):
        _, _, _, _, info = env.step(rng.normal(0.0, 2.0, size=p.n_assets + 1))
        weights.append(info["weights"])
        nets.append(info["net"])
        turns.append(info["turnover"])
    res = backtest(np.array(weights), p, start, start + n, C, initial_weights=init, execution=execution)
    np.testing.assert_allclose(res.net_returns, nets, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.turnover, turns, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.dates, p.dates[start + 1 : start + n + 1])
    np.testing.assert_array_equal(res.decision_dates, p.dates[start : start + n])
    np.testing.assert_allclose(res.weights_held, weights, atol=0)


def test_backtest_reproduces_batched_env_like_evaluate_policy():
    p = _panel(80, seed=2)
    start, end = 3, 70
    cfg = EnvConfig(reward="net", terminate_below=None, dtype="float64", episode_length=end - start)
    env = BatchedPortfolioEnv(p, cfg, start, end, num_envs=1)
    env.reset(starts=[start])
    g = torch.Generator().manual_seed(0)
    w, net = [], []
    for _ in range(end - start):
        _, _, _, _, info = env.step(torch.randn(1, p.n_assets + 1, generator=g, dtype=torch.float64) * 3)
        w.append(info["weights"][0].numpy().copy())
        net.append(float(info["net"][0]))
    res = backtest(np.array(w), p, start, end, C, execution=cfg.execution)  # the default: next open
    np.testing.assert_allclose(res.net_returns, net, rtol=0, atol=1e-12)
    assert len(res) == end - start


@pytest.mark.parametrize("execution", ["close", "next_open", "next_close"])
def test_buy_and_hold_under_every_execution_compounds_the_positions(execution):
    """Entry from cash (turnover 2) on the first decision, then no trade: the final equity is the positions
    compounded, with the first day split by when the entry filled."""
    p = _panel(60, seed=4)
    w = np.array([0.4, 0.3, 0.2, 0.1])
    lo, hi = 5, 50
    res = backtest(np.append(w, 0.0), p, lo, hi, C, rebalance="never", execution=execution)
    assert res.turnover[0] == pytest.approx(2.0)
    np.testing.assert_allclose(res.turnover[1:], 0.0, atol=1e-12)
    r1, g1 = p.returns[lo + 1], p.gaps[lo + 1]
    later = np.prod(1.0 + p.returns[lo + 2 : hi + 1], axis=0)  # days 2..n per asset
    if execution == "close":  # bought at the close of the decision day, additive cost
        expected = (1.0 + w @ r1 - 2 * C) * (w * (1.0 + r1) / (1.0 + w @ r1)) @ later
    elif execution == "next_open":  # the cash misses the gap, bought at the open
        expected = (1.0 - 2 * C) * (w * (1.0 + r1) / (1.0 + g1)) @ later
    else:  # cash through day 1, bought at its close
        expected = (1.0 - 2 * C) * w @ later
    assert res.equity[-1] == pytest.approx(expected, rel=1e-13)


def test_daily_hand_computed_three_days():
    """Same numbers as tests/test_env.py's hand example: entry cost from cash, drift, all-cash day."""
    returns = np.array([[0.0, 0.0], [0.01, -0.02], [0.03, 0.0], [-0.01, 0.02]])
    p = MarketPanel.from_arrays(returns, assets=("EQ", "BOND"))
    w = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    res = backtest(w, p, 0, 3, C)
    drift1 = np.array([0.505, 0.294, 0.2]) / 0.999
    expected = [-0.001 - C * 1.6, 0.0 - C * (drift1[0] + drift1[1] + (1.0 - drift1[2])), -0.01 - C * 2.0]
    np.testing.assert_allclose(res.net_returns, expected, atol=1e-15)
    np.testing.assert_allclose(res.gross_returns, [-0.001, 0.0, -0.01], atol=1e-15)
    np.testing.assert_allclose(res.costs, C * res.turnover, atol=0)
    np.testing.assert_allclose(res.equity[-1], np.prod(1.0 + np.array(expected)), rtol=1e-15)


def test_monthly_rebalance_drifts_between_month_starts_by_hand():
    p = _hand_panel()
    target = np.array([0.5, 0.5, 0.0])
    res = backtest(target, p, 0, 3, C, rebalance="monthly")
    # decisions: Jan 28 (entry from cash), Jan 29 (no trade: drift), Feb 1 (first trading day of Feb: trade)
    np.testing.assert_array_equal(res.rebalanced, [True, False, True])
    # day 1 (Jan 29): cash -> 50/50, turnover 0.5 + 0.5 + 1 = 2; earns +10% on EQ
    # day 2 (Feb 1): holdings 0.55 / 0.50 of start equity -> weights [0.55, 0.50] / 1.05; earns -5% / +2%
    # day 3 (Feb 2): holdings 0.5225 / 0.51 (total 1.0325) -> trade back to 50/50: turnover 2 * 0.00625 / 1.0325
    w2 = np.array([0.55, 0.50, 0.0]) / 1.05
    np.testing.assert_allclose(res.weights_held, [[0.5, 0.5, 0.0], w2, [0.5, 0.5, 0.0]], atol=1e-15)
    np.testing.assert_allclose(res.turnover, [2.0, 0.0, 0.0125 / 1.0325], atol=1e-15)
    np.testing.assert_allclose(res.gross_returns, [0.05, 1.0325 / 1.05 - 1.0, 0.005], atol=1e-15)
    np.testing.assert_allclose(res.net_returns, [0.05 - 2 * C, 1.0325 / 1.05 - 1.0, 0.005 - C * 0.0125 / 1.0325], atol=1e-15)
    np.testing.assert_array_equal(res.dates, np.array(["2021-01-29", "2021-02-01", "2021-02-02"], dtype="datetime64[D]"))
    # never: keeps drifting on day 3 as well
    never = backtest(target, p, 0, 3, C, rebalance="never")
    w3 = np.array([0.5225, 0.51, 0.0]) / 1.0325
    np.testing.assert_allclose(never.weights_held[2], w3, atol=1e-15)
    np.testing.assert_allclose(never.turnover, [2.0, 0.0, 0.0], atol=0)
    # daily: trades back on day 2 too
    daily = backtest(target, p, 0, 3, C, rebalance=True)
    assert daily.turnover[1] == pytest.approx(2 * (0.55 / 1.05 - 0.5), abs=1e-15)


def test_month_start_mask_uses_row_before_window():
    p = _hand_panel()
    np.testing.assert_array_equal(month_start_mask(p, 1, 3), [False, True])  # Jan 29 is not a month start
    np.testing.assert_array_equal(month_start_mask(p, 2, 3), [True])
    np.testing.assert_array_equal(month_start_mask(p, 0, 3), [True, False, True])


def test_cost_multiplier_scales_costs_exactly():
    p = _panel(60, seed=3)
    w = np.random.default_rng(0).dirichlet(np.ones(5), size=50)
    base = backtest(w, p, 5, 55, C)
    for m in (0.0, 2.0, 3.0):
        res = backtest(w, p, 5, 55, C, cost_multiplier=m)
        np.testing.assert_array_equal(res.gross_returns, base.gross_returns)
        np.testing.assert_array_equal(res.turnover, base.turnover)
        np.testing.assert_allclose(res.costs, m * base.costs, rtol=1e-15, atol=0)
        np.testing.assert_allclose(res.net_returns, res.gross_returns - res.costs, rtol=0, atol=1e-18)
    assert (base.costs > 0).all()


def test_callable_policy_equals_array_targets_and_sees_drifted_weights():
    p = _panel(40, seed=4)
    w = np.random.default_rng(1).dirichlet(np.ones(5), size=30)
    seen = []

    def policy(row, w_in):
        seen.append((row, w_in))
        return w[row - 4]

    a = backtest(w, p, 4, 34, C, rebalance="monthly")
    b = backtest(policy, p, 4, 34, C, rebalance="monthly")
    np.testing.assert_array_equal(a.net_returns, b.net_returns)
    assert [s[0] for s in seen] == list(4 + np.flatnonzero(a.rebalanced))
    np.testing.assert_array_equal(seen[0][1], [0, 0, 0, 0, 1.0])  # starts in cash


def test_bool_mask_and_validation():
    p = _panel(30)
    w = np.tile([0.25, 0.25, 0.25, 0.25, 0.0], (20, 1))
    mask = np.zeros(20, dtype=bool)
    res = backtest(w, p, 0, 20, C, rebalance=mask)  # mask used as given: never enters, stays in cash
    assert (res.net_returns == 0).all() and (res.weights_held[:, -1] == 1).all()
    with pytest.raises(ValueError, match="rows"):
        backtest(w[:-1], p, 0, 20, C)
    with pytest.raises(ValueError, match="columns"):
        backtest(w[:, :-1], p, 0, 20, C)
    with pytest.raises(ValueError, match="summing to 1"):
        backtest(w * 0.5, p, 0, 20, C)
    with pytest.raises(ValueError, match="mask"):
        backtest(w, p, 0, 20, C, rebalance=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="invalid"):
        backtest(w, p, 10, 40, C)


# ----------------------------------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------------------------------


def test_baselines_identical_dates_and_same_cost_arithmetic():
    p = _panel(90, seed=7, vix=np.linspace(10, 40, 90))
    results = run_baselines(p, 5, 85, C)
    assert tuple(results) == BASELINE_NAMES
    for name, res in results.items():
        assert isinstance(res, BacktestResult)
        np.testing.assert_array_equal(res.dates, p.dates[6:86], err_msg=name)
        np.testing.assert_array_equal(res.decision_dates, p.dates[5:85], err_msg=name)
        np.testing.assert_allclose(res.costs, C * res.turnover, rtol=0, atol=0)
        np.testing.assert_allclose(res.net_returns, res.gross_returns - res.costs, rtol=0, atol=1e-18)
        # the held weights, re-run through the engine with daily "rebalancing", give the same P&L:
        # on non-trading days the held weights ARE the drifted ones (zero turnover)
        again = backtest(res.weights_held, p, 5, 85, C, rebalance="daily")
        np.testing.assert_allclose(again.net_returns, res.net_returns, rtol=0, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(res.weights_held.sum(1), 1.0, atol=1e-12)
    # a cost multiplier goes through the same engine
    hi = run_baselines(p, 5, 85, C, BaselineConfig(cost_multiplier=2.0, names=("equal_weight",)))
    np.testing.assert_allclose(hi["equal_weight"].costs, 2 * results["equal_weight"].costs, rtol=1e-15)


def test_spy_buy_hold_equal_weight_sixty_forty_by_hand():
    p = _panel(70, seed=8)
    res = run_baselines(p, 0, 60, C, BaselineConfig(names=("spy_buy_hold", "equal_weight", "sixty_forty")))
    spy = p.returns[1:61, 0]
    expected = spy.copy()
    expected[0] -= 2 * C  # cash -> 100% SPY once
    np.testing.assert_allclose(res["spy_buy_hold"].net_returns, expected, atol=1e-15)
    assert res["spy_buy_hold"].turnover[1:].sum() == 0
    months = month_start_mask(p, 0, 60)
    months[0] = True
    for name, w in (("equal_weight", [0.25, 0.25, 0.25, 0.25, 0]), ("sixty_forty", [0.6, 0, 0.4, 0, 0])):
        r = res[name]
        np.testing.assert_array_equal(r.rebalanced, months)
        np.testing.assert_allclose(r.weights_held[months], np.tile(w, (months.sum(), 1)), atol=1e-15)
        assert (r.turnover[~months] == 0).all()
        assert not np.allclose(r.weights_held[~months][:, :4], np.array(w)[:4])  # drifted in between


def test_vix_rule_bands_and_vix_switch_moving_average():
    vix = np.array([14.9, 15.0, 19.99, 20.0, 29.9, 30.0, 45.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    p = _panel(12, vix=vix)
    s = baseline_schedules(p, 0, 11, BaselineConfig(switch_window=2, switch_threshold=25.0))
    eq = np.array([0.8, 0.6, 0.6, 0.35, 0.35, 0.10, 0.10, 0.8, 0.8, 0.8, 0.8])
    w = s["vix_rule"].weights
    np.testing.assert_allclose(w[:, 0], eq / 2)
    np.testing.assert_allclose(w[:, 1], eq / 2)
    for col in (2, 3, 4):
        np.testing.assert_allclose(w[:, col], (1 - eq) / 3)
    np.testing.assert_array_equal(s["vix_rule"].rebalance, [1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0])  # on band change
    # 2-row MA: 14.9, 14.95, 17.495, 19.995, 24.95, 29.95, 37.5, 27.5, 10, 10, 10 -> > 25 at rows 5, 6, 7
    np.testing.assert_allclose(vix_moving_average(p, 2)[:3], [14.9, 14.95, 17.495])
    spy = s["vix_switch"].weights[:, 0]
    np.testing.assert_allclose(spy, [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 1, 1, 1])
    np.testing.assert_allclose(s["vix_switch"].weights[:, -1], 1 - spy)
    np.testing.assert_array_equal(s["vix_switch"].rebalance, [1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    daily = baseline_schedules(p, 0, 11, BaselineConfig(signal_rebalance="daily"))
    assert daily["vix_rule"].rebalance == "daily"


def test_baselines_need_their_assets():
    p = _panel(30, assets=("SPY", "TLT"))
    with pytest.raises(ValueError, match="QQQ"):
        run_baselines(p, 0, 20, C)
    assert set(run_baselines(p, 0, 20, C, BaselineConfig(names=("spy_buy_hold", "sixty_forty")))) == {
        "spy_buy_hold", "sixty_forty"
    }
    with pytest.raises(ValueError, match="unknown baselines"):
        BaselineConfig(names=("nope",))
