"""Daily decisions (ml level): night-by-night decisions reproduce the evaluation rollout, with and without
the circuit breaker; replays are exact; skipped sessions are held and compounded; the logged rows hand the
paper track on exactly; catch-up never decides inside the training window."""
from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo
from ml.costs import drift_weights, rebalance
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.dataset import allocation_panel
from ml.decisions import (
    PaperState,
    Provenance,
    decide_sessions,
    decision_frame,
    paper_state,
    replay_decision,
    rows_to_decide,
)
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import EnvConfig
from ml.features import compute_features
from ml.risk import BreakerTracker, CircuitBreakerConfig

COST = 5e-4


@pytest.fixture(scope="module")
def trained():
    market = generate_market(Universe(include_stocks=False, history_start=None), seed=11, start=date(2012, 1, 3))
    panel = allocation_panel(compute_features(market.bars, market.index_bars))
    lo, hi = panel.index_range("2013-01-01", "2016-12-31")
    result = train_ppo(panel, lo, hi, EnvConfig(episode_length=128, cost_rate=COST, execution="close"),
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


def _log(decisions, policy, panel, breaker) -> pl.DataFrame:
    prov = Provenance(run_id="r", source="synthetic", code_version="test", fold="f", policy_kind="ppo",
                      checkpoint_path="models/f.pt", checkpoint_sha256="0" * 64, policy_data_hash=policy.data_hash,
                      decided_at=datetime(2020, 1, 1))
    vix = pl.DataFrame({"date": [d.date for d in decisions], "band": "low", "bucket": 1})
    return decision_frame(decisions, prov, panel.assets, decisions[-1].date, breaker, vix, pl.DataFrame(), None)


@pytest.mark.parametrize("breaker", [None, CircuitBreakerConfig(vix_threshold=18.0, drawdown_limit=0.03,
                                                                drawdown_window=20)])
def test_logged_rows_hand_the_paper_track_on_exactly(trained, breaker):
    """Deciding from the state rebuilt from the log (the nightly job) = one uninterrupted track."""
    panel, policy = trained
    lo, hi = panel.index_range("2017-01-01", "2017-06-30")
    rows = list(range(lo, hi))
    whole, _ = decide_sessions(policy, panel, rows, PaperState(), COST, breaker)
    log = _log(whole[:40], policy, panel, breaker)
    assert log.height == 40 and log["catch_up"].to_list() == [True] * 39 + [False]
    assert log["observation"][0].to_list() == whole[0].observation.tolist()
    assert log["obs_names"][0].to_list() == policy.obs_names and log["assets"][0].to_list() == [*panel.assets, "cash"]
    state = paper_state(log)
    assert state.last_date == whole[39].date and paper_state(pl.DataFrame()) == PaperState()
    rest, _ = decide_sessions(policy, panel, rows[40:], state, COST, breaker)
    for a, b in zip(whole[40:], rest):
        for f in ("observation", "held_weights", "policy_weights", "target_weights"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert (a.paper_return, a.paper_equity, a.trailing_drawdown, a.breaker_active) == (
            b.paper_return, b.paper_equity, b.trailing_drawdown, b.breaker_active)
    # a logged row replays to its logged weights
    r = log.row(25, named=True)
    w_pol, w_tgt = replay_decision(policy, r["observation"], panel.assets, r["vix"], r["trailing_drawdown"], breaker)
    assert w_pol.tolist() == r["policy_weights"] and w_tgt.tolist() == r["target_weights"]


def test_catch_up_never_decides_inside_the_deployed_policys_training_window():
    n = 30
    panel = MarketPanel.from_arrays(np.zeros((n, 1)))
    d = [panel.date_of(i) for i in range(n)]
    train_end = d[20]
    # the log stopped at d[10]; the deployed fold has since trained through d[20]: held, not decided
    assert rows_to_decide(panel.dates, d[10], None, train_end) == (list(range(21, n)), list(range(11, 21)))
    assert rows_to_decide(panel.dates, d[25], None, train_end) == (list(range(26, n)), [])
    assert rows_to_decide(panel.dates, d[n - 1], None, train_end) == ([], [])  # nothing new
    assert rows_to_decide(panel.dates, None, None, train_end) == ([n - 1], [])  # empty log: the newest session
    with pytest.raises(ValueError, match="inside the deployed policy's training window"):
        rows_to_decide(panel.dates, None, d[5], train_end)
    with pytest.raises(ValueError, match="training window"):
        rows_to_decide(panel.dates, None, train_end, train_end)
    assert rows_to_decide(panel.dates, None, d[27], train_end) == ([27, 28, 29], [])


@pytest.mark.parametrize(("execution", "observed"), [("next_open", "held"), ("next_close", "held"),
                                                      ("close", "target")])
def test_paper_track_rollout_and_backtester_agree_under_later_fills(trained, execution, observed):
    """Orders filling at the next open (or close): the nightly paper track, the evaluation rollout and the
    backtester of the logged targets earn the same returns."""
    import copy

    from ml.backtest import backtest

    panel, trained_policy = trained
    policy = copy.deepcopy(trained_policy)
    policy.env_config = policy.env_config.model_copy(update={"execution": execution, "observed_weights": observed})
    lo, hi = panel.index_range("2017-01-01", "2017-06-30")
    rollout = evaluate_policy(policy, panel, lo, hi)
    decisions = _nightly(policy, panel, lo, hi, None)
    targets = np.array([d.target_weights for d in decisions])
    np.testing.assert_allclose(targets, rollout.weights, rtol=0, atol=1e-6)
    paper = np.array([d.paper_return for d in decisions[1:]])
    np.testing.assert_allclose(paper, rollout.net_returns[:-1], rtol=0, atol=1e-8)
    bt = backtest(targets, panel, lo, hi, COST, execution=execution)
    np.testing.assert_allclose(bt.net_returns, rollout.net_returns, rtol=0, atol=1e-8)
    if execution != "close":
        close = backtest(targets, panel, lo, hi, COST, execution="close")
        assert np.abs(close.net_returns - bt.net_returns).max() > 1e-4  # the fill time matters
    else:  # the observation carried the previous targets, not the drifted holdings
        assert not np.allclose(decisions[3].observation[-5:], decisions[3].held_weights)
        np.testing.assert_allclose(decisions[3].observation[-5:], decisions[2].target_weights, atol=1e-12)
