"""Thesis-convention metrics (daily log returns) against hand-computed values."""
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from ml import metrics

SPY_CSV = Path(__file__).resolve().parents[2] / "shared/data/market/ohlcv/SPY.csv"


def test_log_total_return():
    # 0.01 - 0.02 + 0.03 = 0.02 (2 log points)
    assert metrics.log_total_return(np.array([0.01, -0.02, 0.03])) == pytest.approx(0.02)
    assert metrics.log_total_return(np.array([])) == 0.0


def test_log_volatility():
    # mean = 0.02 / 3; deviations = 1/300, -8/300, 7/300
    # sum of squares = (1 + 64 + 49) / 90000 = 114 / 90000; / (n - 1 = 2) -> 57 / 90000
    # std = sqrt(57) / 300 = 0.0251661; annual = std * sqrt(252) = sqrt(14364) / 300 = 0.399500
    r = np.array([0.01, -0.02, 0.03])
    assert metrics.log_volatility(r) == pytest.approx(math.sqrt(14364) / 300)
    assert metrics.log_volatility(r) == pytest.approx(0.399500, abs=1e-6)
    assert math.isnan(metrics.log_volatility(np.array([0.01])))


def test_log_max_drawdown_rise_fall_recover():
    # cumulative: 0.10, 0.15, -0.05, -0.10, 0.20; peak 0.15 -> trough -0.10: drawdown -0.25 (25 log points)
    r = np.array([0.10, 0.05, -0.20, -0.05, 0.30])
    assert metrics.log_max_drawdown(r) == pytest.approx(-0.25)


def test_log_max_drawdown_only_rises():
    assert metrics.log_max_drawdown(np.array([0.01, 0.02, 0.0, 0.03])) == 0.0
    assert metrics.log_max_drawdown(np.array([])) == 0.0


def test_log_max_drawdown_from_zero_start():
    # cumulative: -0.03, -0.02, -0.04, 0.01; the 0.0 start is the peak -> drawdown -0.04
    r = np.array([-0.03, 0.01, -0.02, 0.05])
    assert metrics.log_max_drawdown(r) == pytest.approx(-0.04)


def test_sr_annual_and_full_period():
    # 504 days (2 years) alternating 0.002, 0.0: mean = 0.001 -> average yearly return 0.252
    # deviations are +-0.001: std(ddof=1) = 0.001 * sqrt(504 / 503) = 0.00100099
    # volatility = 0.00100099 * sqrt(252) = 0.0158903; sr_annual = (0.252 - 0.02) / 0.0158903 = 14.6001
    r = np.tile([0.002, 0.0], 252)
    vol = 0.001 * math.sqrt(504 / 503) * math.sqrt(252)
    assert metrics.sr_annual(r) == pytest.approx(0.232 / vol)
    assert metrics.sr_annual(r) == pytest.approx(14.6001, abs=1e-3)
    # years = 504 / 252 = 2 -> sr_full = sr_annual * sqrt(2) = 20.6479
    assert metrics.sr_full_period(r) == pytest.approx(0.232 / vol * math.sqrt(2))
    assert metrics.sr_full_period(r) == pytest.approx(20.6479, abs=1e-3)
    # risk-free 0: 0.252 / 0.0158903
    assert metrics.sr_annual(r, risk_free=0.0) == pytest.approx(0.252 / vol)
    assert math.isnan(metrics.sr_annual(np.full(10, 0.25)))  # exactly constant: volatility 0


def test_sortino_log():
    # rf = 0.0252 -> rf/252 = 0.0001; r - 0.0001 = 0.0099, -0.0201, 0.0299, -0.0101
    # downside squares: 0.0201^2 = 4.0401e-4, 0.0101^2 = 1.0201e-4; mean over 4 days = 1.26505e-4
    # downside deviation = sqrt(1.26505e-4) = 0.0112475
    # numerator: mean 0.0025 * 252 - 0.0252 = 0.6048; sortino = 0.6048 / (0.0112475 * sqrt(252)) = 3.38733
    r = np.array([0.01, -0.02, 0.03, -0.01])
    expected = 0.6048 / (math.sqrt(5.0602e-4 / 4) * math.sqrt(252))
    assert metrics.sortino_log(r, risk_free=0.0252) == pytest.approx(expected)
    assert metrics.sortino_log(r, risk_free=0.0252) == pytest.approx(3.38733, abs=1e-4)
    assert math.isnan(metrics.sortino_log(np.array([0.01, 0.02]), risk_free=0.0))


def test_information_ratio():
    # active = 0.01, 0.01, 0.02, -0.02; mean 0.005; deviations 0.005, 0.005, 0.015, -0.025
    # squares sum = (25 + 25 + 225 + 625)e-6 = 900e-6; / 3 = 3e-4; std = 0.0173205
    # IR = 0.005 * 252 / (0.0173205 * sqrt(252)) = 4.58258
    r = np.array([0.01, 0.02, 0.03, 0.00])
    b = np.array([0.00, 0.01, 0.01, 0.02])
    assert metrics.information_ratio(r, b) == pytest.approx(0.005 * 252 / (math.sqrt(3e-4) * math.sqrt(252)))
    assert metrics.information_ratio(r, b) == pytest.approx(4.58258, abs=1e-4)
    # exactly constant active return (0.25 each day): std 0
    assert math.isnan(metrics.information_ratio(np.array([0.5, 0.75, 1.0]), np.array([0.25, 0.5, 0.75])))
    with pytest.raises(ValueError):
        metrics.information_ratio(r, b[:3])


def test_mann_whitney_p():
    a = np.linspace(-0.02, 0.02, 30)
    assert metrics.mann_whitney_p(a, a.copy()) == pytest.approx(1.0)
    assert metrics.mann_whitney_p(a, a + 0.1) < 0.01


def test_thesis_summary_keys():
    r = np.array([0.01, -0.02, 0.03, -0.01])
    s = metrics.thesis_summary(r)
    assert set(s) == {"total_log_return", "std", "max_drawdown_log", "sr_annual", "sr_full", "sortino", "days"}
    assert s["days"] == 4
    assert s["total_log_return"] == pytest.approx(0.01)
    # cumulative: 0.01, -0.01, 0.02, 0.01; peak 0.01 -> drawdown -0.02
    assert s["max_drawdown_log"] == pytest.approx(-0.02)
    sb = metrics.thesis_summary(r, np.array([0.0, 0.01, 0.01, 0.02]))
    assert set(sb) == set(s) | {"information_ratio", "mann_whitney_p"}


def test_kde_monte_carlo_shape_and_seed():
    r = np.random.default_rng(1).normal(0.0005, 0.01, 300)
    out = metrics.kde_monte_carlo(r, n_paths=500, horizon=30, seed=7)
    assert out["quantiles"] == (0.05, 0.5, 0.95)
    assert out["bands"].shape == (3, 30)
    assert out["terminal"].shape == (500,)
    again = metrics.kde_monte_carlo(r, n_paths=500, horizon=30, seed=7)
    np.testing.assert_array_equal(out["bands"], again["bands"])
    np.testing.assert_array_equal(out["terminal"], again["terminal"])
    other = metrics.kde_monte_carlo(r, n_paths=500, horizon=30, seed=8)
    assert not np.array_equal(out["terminal"], other["terminal"])
    b = out["bands"]
    assert np.all(b[0] <= b[1]) and np.all(b[1] <= b[2])
    # the last band column is the quantiles of the terminal values
    np.testing.assert_allclose(b[:, -1], np.quantile(out["terminal"], [0.05, 0.5, 0.95]))


def test_kde_monte_carlo_median_terminal():
    r = np.random.default_rng(0).normal(0.0005, 0.01, 2000)
    out = metrics.kde_monte_carlo(r, n_paths=10_000, horizon=252, seed=0)
    assert abs(np.median(out["terminal"]) - 252 * r.mean()) < 0.05
    assert out["bands"].shape == (3, 252)


def test_spy_snapshot_2015_2023():
    if not SPY_CSV.exists():
        pytest.skip(f"no snapshot at {SPY_CSV}")
    import polars as pl

    df = pl.read_csv(SPY_CSV, try_parse_dates=True).select("date", "close").sort("date")
    df = df.with_columns(lr=pl.col("close").log().diff())  # 2015-01-02's return is vs 2014-12-31's close
    r = df.filter((pl.col("date") >= date(2015, 1, 1)) & (pl.col("date") <= date(2023, 12, 31)))["lr"].to_numpy()
    assert round(100 * metrics.log_total_return(r), 2) == 99.98
    assert round(100 * metrics.log_volatility(r), 2) == 18.16
    assert round(100 * metrics.log_max_drawdown(r), 2) == -41.12
    assert abs(metrics.sr_full_period(r) - 1.51) < 0.05
