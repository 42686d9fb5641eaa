"""Metrics against hand-computed values."""
import math

import numpy as np
import pytest

from ml import metrics


def test_hand_computed_three_days():
    r = np.array([0.10, -0.20, 0.05])
    # equity 1.10, 0.88, 0.924; peak 1.10 -> drawdown 0.88/1.10 - 1 = -0.2
    assert metrics.max_drawdown(r) == pytest.approx(-0.2)
    assert metrics.equity_curve(r)[-1] == pytest.approx(0.924)
    mean, sd = r.mean(), r.std(ddof=1)
    assert metrics.sharpe(r) == pytest.approx(mean / sd * math.sqrt(252))
    assert metrics.cagr(r) == pytest.approx(0.924 ** (252 / 3) - 1)
    assert metrics.annual_volatility(r) == pytest.approx(sd * math.sqrt(252))


def test_drawdown_counts_initial_peak_and_rf():
    assert metrics.max_drawdown(np.array([-0.1, 0.05])) == pytest.approx(-0.1)
    assert metrics.max_drawdown(np.array([0.01, 0.02])) == 0.0
    r = np.array([0.01, 0.02, 0.0, 0.01])
    assert metrics.sharpe(r, risk_free=0.0252) == pytest.approx((r - 0.0001).mean() / r.std(ddof=1) * math.sqrt(252))
    assert math.isnan(metrics.sharpe(np.array([0.01, 0.01])))


def test_max_drawdown_difference_has_a_paired_bootstrap_interval():
    from ml.metrics import bootstrap_max_drawdowns, max_drawdown, metrics_table, stationary_bootstrap_indices

    rng = np.random.default_rng(3)
    n = 750
    spy = rng.normal(0.0004, 0.012, n)
    calm = 0.5 * spy + rng.normal(0.0002, 0.002, n)  # half the exposure: a much shallower drawdown
    dates = np.datetime64("2020-01-01") + np.arange(n)
    table = metrics_table({"ppo": calm, "spy_buy_hold": spy}, dates).row(0, named=True)
    assert table["mdd_diff_spy_buy_hold"] == pytest.approx(max_drawdown(calm) - max_drawdown(spy), abs=1e-15)
    assert 0 < table["mdd_diff_spy_buy_hold_ci_low"] < table["mdd_diff_spy_buy_hold"] < table["mdd_diff_spy_buy_hold_ci_high"]
    assert table["mdd_diff_equal_weight"] is None  # benchmark absent
    # each resample's max drawdown is the drawdown of that resampled path
    idx = stationary_bootstrap_indices(n, 5, seed=1)
    boot = bootstrap_max_drawdowns(np.stack([calm, spy]), idx)
    assert boot.shape == (2, 5)
    assert boot[1, 2] == pytest.approx(max_drawdown(spy[idx[2]]), abs=1e-15)
