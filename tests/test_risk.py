"""Circuit breaker: trips exactly at its thresholds, keeps weights on the simplex, says why."""
import numpy as np
import pytest

from ml.metrics import drawdown
from ml.risk import BreakerTracker, CircuitBreakerConfig, apply_circuit_breaker, trailing_drawdown

ASSETS = ("SPY", "QQQ", "TLT", "GLD")
W = np.array([0.4, 0.3, 0.1, 0.1, 0.1])  # equity 0.7


def test_vix_trigger_trips_at_the_threshold_not_below():
    cfg = CircuitBreakerConfig(vix_threshold=30.0, drawdown_limit=None, max_equity_weight=0.25)
    below = apply_circuit_breaker(W, ASSETS, 29.999, 0.0, cfg)
    at = apply_circuit_breaker(W, ASSETS, 30.0, 0.0, cfg)
    assert not below.active and np.array_equal(below.weights, W)
    assert at.active and at.vix_tripped and not at.drawdown_tripped
    np.testing.assert_allclose(at.weights[:2].sum(), 0.25)
    np.testing.assert_allclose(at.weights[:2] / at.weights[:2].sum(), W[:2] / W[:2].sum())  # pro rata
    np.testing.assert_allclose(at.weights[4], 0.1 + 0.45)  # moved weight goes to cash
    np.testing.assert_allclose(at.weights[2:4], W[2:4])
    reason = at.reason(30.0, 0.0, cfg)
    assert "VIX 30.00 >= 30.00" in reason and "SPY+QQQ 0.700 -> 0.250, 0.450 to cash" in reason


def test_drawdown_trigger_trips_at_the_limit_not_above():
    cfg = CircuitBreakerConfig(vix_threshold=None, drawdown_limit=0.15)
    assert not apply_circuit_breaker(W, ASSETS, 80.0, -0.1499, cfg).active  # VIX trigger switched off
    at = apply_circuit_breaker(W, ASSETS, 12.0, -0.15, cfg)
    assert at.active and at.drawdown_tripped and not at.vix_tripped
    assert "trailing drawdown -15.0% <= -15.0% (252 sessions)" in at.reason(12.0, -0.15, cfg)


def test_defensive_destination_and_no_move_when_already_below_cap():
    cfg = CircuitBreakerConfig(destination="defensive", max_equity_weight=0.3)
    out = apply_circuit_breaker(W, ASSETS, 40.0, 0.0, cfg)
    np.testing.assert_allclose(out.weights, [0.4 * 3 / 7, 0.3 * 3 / 7, 0.1 + 0.2, 0.1 + 0.2, 0.1])
    low = np.array([0.1, 0.1, 0.3, 0.3, 0.2])
    same = apply_circuit_breaker(low, ASSETS, 40.0, 0.0, cfg)
    assert same.active and np.array_equal(same.weights, low) and float(same.moved) == 0.0
    assert "already <= 0.300" in same.reason(40.0, 0.0, cfg)


@pytest.mark.parametrize("destination", ["cash", "defensive"])
def test_weights_stay_on_the_simplex_for_random_batches(destination):
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5), size=(200, 3))  # [200, 3, A+1]
    vix = rng.uniform(10, 60, size=(200, 3))
    dd = -rng.uniform(0, 0.4, size=(200, 3))
    cfg = CircuitBreakerConfig(destination=destination)
    out = apply_circuit_breaker(w, ASSETS, vix, dd, cfg)
    assert out.weights.shape == w.shape and (out.weights >= 0).all()
    np.testing.assert_allclose(out.weights.sum(-1), 1.0, atol=1e-12)
    active = out.active
    assert active.any() and (~active).any()
    assert (out.weights[..., :2].sum(-1)[active] <= cfg.max_equity_weight + 1e-12).all()
    np.testing.assert_array_equal(out.weights[~active], w[~active])
    np.testing.assert_array_equal(active, (vix >= 30.0) | (dd <= -0.15))


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="not among the assets"):
        apply_circuit_breaker(np.full(3, 1 / 3), ("TLT", "GLD"), 40.0, 0.0, CircuitBreakerConfig())
    with pytest.raises(ValueError, match="both an equity asset and a defensive"):
        CircuitBreakerConfig(destination="defensive", defensive_assets=("SPY", "TLT"))


def test_trailing_drawdown_and_tracker():
    e = np.array([1.0, 1.2, 0.9, 1.0, 1.1])
    np.testing.assert_allclose(drawdown(e, start_peak=None, window=10), [0, 0, -0.25, 1 / 1.2 - 1, 1.1 / 1.2 - 1])
    np.testing.assert_allclose(drawdown(e, start_peak=None, window=2), [0, 0, -0.25, 0, 0])
    assert trailing_drawdown(e, 10) == pytest.approx(1.1 / 1.2 - 1) and trailing_drawdown(e, 2) == 0.0
    assert trailing_drawdown(e[:3], 2) == pytest.approx(-0.25)
    np.testing.assert_allclose(drawdown(np.array([0.9, 1.1, 1.0])), [-0.1, 0.0, 1 / 1.1 - 1])  # start 1.0 = a peak
    vix = np.array([20.0, 35.0, 20.0])
    tracker = BreakerTracker(CircuitBreakerConfig(drawdown_limit=0.2, drawdown_window=5), ASSETS, vix)
    assert np.array_equal(tracker.adjust(0, W), W)
    tracker.observe(0.01)
    assert tracker.adjust(1, W)[:2].sum() == pytest.approx(0.25)  # VIX 35
    tracker.observe(-0.3)  # drawdown below -20%
    assert tracker.adjust(2, W)[:2].sum() == pytest.approx(0.25)
    assert [r for r, _ in tracker.activations] == [1, 2] and "drawdown" in tracker.activations[1][1]
