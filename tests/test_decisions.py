"""Daily decisions (ml level): night-by-night decisions reproduce the evaluation rollout, with and without
the circuit breaker; replays are exact; skipped sessions are held and compounded."""
from datetime import date

import numpy as np
import pytest

from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo
from ml.backtest.costs import drift_weights, rebalance
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.decisions import PaperState, decide_sessions, replay_decision
from ml.envs.market_panel import build_panel
from ml.envs.portfolio import EnvConfig
from ml.risk import BreakerTracker, CircuitBreakerConfig

COST = 5e-4


@pytest.fixture(scope="module")
def trained():
    market = generate_market(Universe(include_stocks=False, history_start=None), seed=11, start=date(2012, 1, 3))
    panel = build_panel(market.bars, market.index_bars)
    lo, hi = panel.index_range("2013-01-01", "2016-12-31")
    result = train_ppo(panel, lo, hi, EnvConfig(episode_length=128, cost_rate=COST),
                       PPOConfig(total_steps=4096, num_envs=8, num_steps=64, num_minibatches=2, device="cpu"))
    return panel, result.policy


def _nightly(policy, panel, lo, hi, breaker):
    """One decide_sessions call per session, like the nightly job (state handed over each night)."""
    state, out = PaperState(), []
    for t in range(lo, hi):
        decided, state = decide_sessions(policy, panel, [t], state, COST, breaker)
        out += decided
    return out


@pytest.mark.parametrize("breaker", [None, CircuitBreakerConfig(vix_threshold=18.0, drawdown_limit=0.03,
                                                                drawdown_window=20)])
def test_nightly_decisions_reproduce_the_evaluation_rollout(trained, breaker):
    panel, policy = trained
    lo, hi = panel.index_range("2017-01-01", "2017-12-31")
    tracker = BreakerTracker(breaker, panel.assets, panel.vix) if breaker else None
    rollout = evaluate_policy(policy, panel, lo, hi, overlay=tracker)
    decisions = _nightly(policy, panel, lo, hi, breaker)
    targets = np.array([d.target_weights for d in decisions])
    np.testing.assert_allclose(targets, rollout.weights, rtol=0, atol=1e-6)
    paper = np.array([d.paper_return for d in decisions[1:]])  # day t earned by the decision of t-1
    np.testing.assert_allclose(paper, rollout.net_returns[:-1], rtol=0, atol=1e-8)
    assert decisions[0].paper_return is None and decisions[0].paper_equity == 1.0
    np.testing.assert_allclose(decisions[-1].paper_equity, np.prod(1 + rollout.net_returns[:-1]), rtol=1e-8)
    if breaker is not None:
        assert any(d.breaker_active for d in decisions) and not all(d.breaker_active for d in decisions)
        assert [panel.date_of(r) for r, _ in tracker.activations] == [d.date for d in decisions if d.breaker_active]
        for d in decisions:
            assert d.breaker_active == bool(d.breaker_reason)
            if d.breaker_active:
                assert d.target_weights[:2].sum() <= breaker.max_equity_weight + 1e-12
    for d in decisions:
        np.testing.assert_allclose(d.target_weights.sum(), 1.0, atol=1e-12)
        w_pol, w_tgt = replay_decision(policy, d.observation.tolist(), panel.assets, d.vix, d.trailing_drawdown,
                                       breaker)
        assert np.array_equal(w_pol, d.policy_weights) and np.array_equal(w_tgt, d.target_weights)


def test_skipped_sessions_are_held_and_compounded(trained):
    panel, policy = trained
    lo, _ = panel.index_range("2017-01-01", "2017-12-31")
    first, state = decide_sessions(policy, panel, [lo], PaperState(), COST, None)
    later, _ = decide_sessions(policy, panel, [lo + 3], state, COST, None)
    d0, d3 = first[0], later[0]
    res = rebalance(d0.target_weights, d0.held_weights, panel.returns[lo + 1], COST)
    growth, held = 1 + res.net, res.drifted
    for k in (lo + 2, lo + 3):
        growth *= 1 + held[:-1] @ panel.returns[k]
        held = drift_weights(held, panel.returns[k])
    assert d3.paper_return == pytest.approx(growth - 1, abs=1e-14)
    np.testing.assert_allclose(d3.held_weights, held, atol=1e-14)
    with pytest.raises(ValueError, match="not after the last decision"):
        decide_sessions(policy, panel, [lo], state, COST, None)


def test_catch_up_never_decides_inside_the_deployed_policys_training_window():
    from types import SimpleNamespace

    from assets.decisions import _decision_rows
    from ml.envs.market_panel import MarketPanel
    from ml.folds import Fold

    n = 30
    panel = MarketPanel.from_arrays(np.zeros((n, 1)), np.zeros((n, 1, 3)), np.zeros((n, 4)))
    d = [panel.date_of(i) for i in range(n)]
    fold = Fold("x", train_start=d[0], train_end=d[20], embargo_days=0, test_start=d[21], test_end=d[29])
    warnings: list[str] = []
    ctx = SimpleNamespace(log=SimpleNamespace(warning=warnings.append))
    assert _decision_rows(ctx, panel, d[10], None, fold) == list(range(21, n))
    assert "10 missed session(s)" in warnings[0] and "not decided" in warnings[0]
    assert _decision_rows(ctx, panel, d[25], None, fold) == list(range(26, n)) and len(warnings) == 1
    assert _decision_rows(ctx, panel, None, None, fold) == [n - 1]
    with pytest.raises(Exception, match="inside the training window"):
        _decision_rows(ctx, panel, None, str(d[5]), fold)
    assert _decision_rows(ctx, panel, None, str(d[27]), fold) == [27, 28, 29]
