"""Fold evaluation: policy and baselines on identical days and costs; the policy's P&L equals its env rollout."""
import numpy as np
import polars as pl
import pytest

from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.dataset import allocation_panel
from ml.envs.portfolio import EnvConfig
from ml.evaluation import POLICY, evaluate_fold
from ml.features import compute_features


@pytest.fixture(scope="module")
def trained():
    market = generate_market(Universe(include_stocks=False, history_start=None), seed=5,
                             start=__import__("datetime").date(2012, 1, 3))
    panel = allocation_panel(compute_features(market.bars, market.index_bars))
    lo, hi = panel.index_range("2013-01-01", "2016-12-31")
    result = train_ppo(panel, lo, hi, EnvConfig(episode_length=128),
                       PPOConfig(total_steps=4096, num_envs=8, num_steps=64, num_minibatches=2, device="cpu"))
    return panel, result.policy


def test_policy_and_baselines_share_days_and_costs(trained):
    panel, policy = trained
    lo, hi = panel.index_range("2017-01-01", "2017-12-31")
    ev = evaluate_fold(policy, panel, lo, hi, cost_rate=5e-4)
    strategies = ev.daily["strategy"].unique(maintain_order=True).to_list()
    assert strategies[0] == POLICY and {"spy_buy_hold", "equal_weight", "sixty_forty", "vix_rule",
                                        "vix_switch"} <= set(strategies)
    dates = {s: ev.daily.filter(pl.col("strategy") == s)["date"].to_list() for s in strategies}
    assert all(d == dates[POLICY] for d in dates.values())
    assert dates[POLICY][0].year == 2017 and dates[POLICY][-1].year == 2017
    costs = ev.daily.with_columns((pl.col("cost") - 5e-4 * pl.col("turnover")).abs().alias("err"))
    assert costs["err"].max() < 1e-15
    rollout = evaluate_policy(policy, panel, lo, hi)
    ppo = ev.daily.filter(pl.col("strategy") == POLICY)
    np.testing.assert_allclose(ppo["net_return"].to_numpy(), rollout.net_returns, rtol=0, atol=1e-12)
    weights = ev.allocations.filter(pl.col("strategy") == POLICY).select(pl.col("^w_.*$")).to_numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)


def test_cost_stress_lowers_returns_of_trading_strategies(trained):
    panel, policy = trained
    lo, hi = panel.index_range("2017-01-01", "2017-12-31")
    m = evaluate_fold(policy, panel, lo, hi, cost_rate=5e-4).metrics
    assert set(m["cost_multiplier"]) == {1.0, 2.0, 3.0}
    ppo = m.filter(pl.col("strategy") == POLICY).sort("cost_multiplier")["total_return"].to_list()
    assert ppo[0] > ppo[1] > ppo[2]
    assert (m["risk_free"] == 0.0).all()


def test_walk_forward_stitches_folds_in_order_and_stresses_costs():
    from datetime import date

    from ml.evaluation import stitch_walk_forward, walk_forward_metrics

    rows = []
    for fold, year in (("2013", 2013), ("2012", 2012)):
        for s in ("ppo", "spy_buy_hold"):
            for d in range(1, 4):
                rows.append({"fold": fold, "strategy": s, "date": date(year, 1, d + 1), "net_return": 0.01,
                             "gross_return": 0.011, "turnover": 2.0, "cost": 0.001})
    track = stitch_walk_forward(pl.DataFrame(rows), ["2012", "2013"])
    ppo = track.filter(pl.col("strategy") == "ppo")
    assert ppo["fold"].to_list() == ["2012"] * 3 + ["2013"] * 3
    assert ppo["equity"][-1] == pytest.approx(1.01 ** 6)
    assert (ppo["drawdown"] == 0).all()
    m = walk_forward_metrics(track, seed=0)
    tot = m.filter(pl.col("strategy") == "ppo").sort("cost_multiplier")["total_return"].to_list()
    assert tot == pytest.approx([1.01 ** 6 - 1, 1.009 ** 6 - 1, 1.008 ** 6 - 1])
    with pytest.raises(ValueError, match="overlap"):
        stitch_walk_forward(pl.concat([pl.DataFrame(rows), pl.DataFrame(rows).with_columns(pl.lit("x").alias("fold"))
                                       .with_columns(pl.col("fold").replace({"x": "2014"}))]), ["2012", "2013", "2014"])
