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
