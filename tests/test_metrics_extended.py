"""Extended metrics against hand-computed values; bootstrap intervals, PSR and the metrics table."""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml import metrics

D = np.array(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04", "2021-03-05"], dtype="datetime64[D]")


def test_total_return_sortino_calmar_turnover_hit_worst_by_hand():
    r = np.array([0.10, -0.20, 0.05])
    assert metrics.total_return(r) == pytest.approx(-0.076, abs=1e-15)  # 1.1 * 0.8 * 1.05 = 0.924
    assert metrics.calmar(r) == pytest.approx((0.924 ** 84 - 1.0) / 0.2)  # CAGR over 3 days / |-20%|

    r = np.array([0.02, -0.01, 0.03, -0.02])
    # mean 0.005; downside squares 1e-4 and 4e-4 over all 4 days -> DD = sqrt(1.25e-4)
    assert metrics.sortino(r) == pytest.approx(0.005 / math.sqrt(1.25e-4) * math.sqrt(252), rel=1e-12)
    assert metrics.sortino(r) == pytest.approx(7.0992957, rel=1e-7)
    # rf 2.52% a year = 1e-4 a day: x = [0.0199, -0.0101, 0.0299, -0.0201]
    assert metrics.sortino(r, risk_free=0.0252) == pytest.approx(
        0.0049 / math.sqrt((0.0101**2 + 0.0201**2) / 4) * math.sqrt(252), rel=1e-12
    )
    assert math.isnan(metrics.sortino(np.array([0.01, 0.02])))  # no downside day

    assert metrics.average_turnover(np.array([0.0, 2.0, 0.5, 0.1])) == pytest.approx(0.65)
    assert metrics.hit_rate(np.array([0.01, 0.0, -0.01, 0.02])) == 0.5  # a flat day is not a hit
    assert metrics.worst_day(np.array([0.01, 0.0, -0.01, 0.02])) == -0.01
    assert math.isnan(metrics.calmar(np.array([0.01, 0.02])))


def test_existing_metrics_unchanged():
    r = np.array([0.10, -0.20, 0.05])
    assert metrics.max_drawdown(r) == pytest.approx(-0.2)
    s = metrics.summary(r)
    assert set(s) == {"days", "sharpe", "risk_free", "cagr", "ann_vol", "max_drawdown", "total_return"}
    assert s["total_return"] == pytest.approx(metrics.total_return(r))


def test_drawdown_dates_and_recovery():
    # equity 1.1, 0.88, 0.924, 1.155, 1.0395: peak Mar 1, trough Mar 2 (-20%), back above 1.1 on Mar 4
    info = metrics.drawdown_info(np.array([0.10, -0.20, 0.05, 0.25, -0.10]), D)
    assert info.max_drawdown == pytest.approx(-0.2)
    assert (info.peak_date, info.trough_date, info.recovery_date) == (date(2021, 3, 1), date(2021, 3, 2), date(2021, 3, 4))
    assert info.recovery_days == 2
    assert (info.peak_idx, info.trough_idx, info.recovery_idx) == (0, 1, 3)

    # not recovered
    info = metrics.drawdown_info(np.array([0.10, -0.20, 0.05]), D[:3])
    assert info.trough_date == date(2021, 3, 2) and info.recovery_date is None and info.recovery_days is None

    # peak = the starting capital: dated start_date (the decision close before the first earned day)
    info = metrics.drawdown_info(np.array([-0.10, 0.05]), D[:2], start_date=date(2021, 2, 26))
    assert info.max_drawdown == pytest.approx(-0.1)
    assert (info.peak_date, info.trough_date, info.peak_idx) == (date(2021, 2, 26), date(2021, 3, 1), -1)
    assert info.recovery_days is None

    # a flat day at the peak: the drawdown starts after the LAST day at the peak
    info = metrics.drawdown_info(np.array([0.10, 0.0, -0.10, 0.2]), D[:4])
    assert info.peak_date == date(2021, 3, 2) and info.trough_date == date(2021, 3, 3)
    assert info.recovery_date == date(2021, 3, 4) and info.recovery_days == 1

    # no drawdown
    info = metrics.drawdown_info(np.array([0.01, 0.02]), D[:2])
    assert info.max_drawdown == 0.0 and info.peak_date is None and info.recovery_days == 0


def test_var_cvar_known_sample():
    rng = np.random.default_rng(0)
    r = rng.permutation((np.arange(1, 101) - 50) / 1000.0)  # -0.049 .. 0.050, shuffled
    var, cvar = metrics.var_cvar(r)  # k = ceil(0.05 * 100) = 5 worst days: -0.049 .. -0.045
    assert var == pytest.approx(0.045, abs=1e-15)
    assert cvar == pytest.approx(0.047, abs=1e-15)
    var, cvar = metrics.var_cvar(r[:20] * 0 + np.arange(20) / 100 - 0.05)  # k = 1: the worst day
    assert (var, cvar) == pytest.approx((0.05, 0.05))
    var, cvar = metrics.var_cvar(np.array([0.01, -0.03, 0.0, -0.01] * 5 + [0.02] * 10))  # N = 30, k = 2
    assert (var, cvar) == pytest.approx((0.03, 0.03))
    var, cvar = metrics.var_cvar(np.array([-0.04, -0.02] + [0.01] * 28))
    assert (var, cvar) == pytest.approx((0.02, 0.03))
    var, cvar = metrics.var_cvar(np.array([-0.04, -0.02, 0.0, 0.01]), level=0.5)  # k = 2
    assert (var, cvar) == pytest.approx((0.02, 0.03))


def test_probabilistic_sharpe_ratio_known_values():
    # two-point symmetric sample: skew 0, kurtosis 1; SR = 0.01 / (0.01 sqrt(4/3)) = sqrt(3)/2, n - 1 = 3
    # z = sqrt(3)/2 * sqrt(3) / sqrt(1 + 0 + 0) = 1.5 -> Phi(1.5)
    r = np.array([0.02, 0.0, 0.02, 0.0])
    assert metrics.probabilistic_sharpe_ratio(r) == pytest.approx(0.9331927987311419, abs=1e-12)
    # [0.03, 0, 0]: SR = 1/sqrt(3), skew = 1/sqrt(2), kurtosis = 1.5, n - 1 = 2
    # z = sqrt(2/3) / sqrt(1 - 1/sqrt(6) + 0.5/4 * 1/3)
    r = np.array([0.03, 0.0, 0.0])
    z = math.sqrt(2 / 3) / math.sqrt(1 - 1 / math.sqrt(6) + 1 / 24)
    assert metrics.probabilistic_sharpe_ratio(r) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), abs=1e-12)
    assert metrics.probabilistic_sharpe_ratio(r) == pytest.approx(0.84754, abs=1e-4)
    # SR == SR* -> 0.5 (benchmark given annualised, like sharpe())
    x = np.random.default_rng(1).normal(0.0005, 0.01, 500)
    assert metrics.probabilistic_sharpe_ratio(x, sr_benchmark=metrics.sharpe(x)) == pytest.approx(0.5, abs=1e-12)
    assert metrics.probabilistic_sharpe_ratio(x, sr_benchmark=metrics.sharpe(x) + 1) < 0.5
    assert metrics.probabilistic_sharpe_ratio(x, risk_free=0.0252) < metrics.probabilistic_sharpe_ratio(x)


def test_stationary_bootstrap_indices():
    idx = metrics.stationary_bootstrap_indices(500, n_boot=200, mean_block=20.0, seed=3)
    assert idx.shape == (200, 500) and idx.min() >= 0 and idx.max() < 500
    np.testing.assert_array_equal(idx, metrics.stationary_bootstrap_indices(500, 200, 20.0, seed=3))
    assert not np.array_equal(idx, metrics.stationary_bootstrap_indices(500, 200, 20.0, seed=4))
    # blocks: a new block starts where the index does not continue (i+1 mod n); mean length ~ 20
    breaks = (np.diff(idx, axis=1) % 500) != 1
    assert 1 / breaks.mean() == pytest.approx(20.0, rel=0.1)
    assert (metrics.stationary_bootstrap_indices(50, 10, mean_block=1.0, seed=0) >= 0).all()


def test_sharpe_ci_contains_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(11)
    long = rng.normal(0.0004, 0.01, 4000)
    short = long[:400]
    for x in (short, long):
        lo, hi = metrics.sharpe_ci(x, n_boot=500, seed=1)
        assert lo < metrics.sharpe(x) < hi
    w_short = np.subtract(*reversed(metrics.sharpe_ci(short, n_boot=500, seed=1)))
    w_long = np.subtract(*reversed(metrics.sharpe_ci(long, n_boot=500, seed=1)))
    assert w_long < 0.5 * w_short  # ~ 1/sqrt(10)
    assert metrics.sharpe_ci(short, seed=5) == metrics.sharpe_ci(short, seed=5)


def test_sharpe_difference_ci():
    rng = np.random.default_rng(12)
    a = rng.normal(0.0004, 0.01, 1000)
    assert metrics.sharpe_diff_ci(a, a) == (0.0, 0.0, 0.0)
    b = 0.8 * a + rng.normal(0.0, 0.004, 1000)
    diff, lo, hi = metrics.sharpe_diff_ci(a, b, n_boot=500)
    assert diff == pytest.approx(metrics.sharpe(a) - metrics.sharpe(b))
    assert lo < diff < hi
    # paired: the CI of a difference of correlated series is much narrower than either Sharpe's CI
    la, ha = metrics.sharpe_ci(a, n_boot=500)
    assert hi - lo < 0.5 * (ha - la)
    with pytest.raises(ValueError, match="aligned"):
        metrics.sharpe_diff_ci(a, b[:-1])


def test_metrics_table_rows_columns_and_values():
    rng = np.random.default_rng(13)
    n = 300
    dates = np.busday_offset(np.datetime64("2020-01-02"), np.arange(n), roll="forward")
    rets = {
        "ppo": rng.normal(0.0006, 0.01, n),
        "spy_buy_hold": rng.normal(0.0004, 0.012, n),
        "equal_weight": rng.normal(0.0003, 0.006, n),
    }
    tos = {"ppo": np.full(n, 0.1), "spy_buy_hold": np.r_[2.0, np.zeros(n - 1)]}
    df = metrics.metrics_table(rets, dates, tos, risk_free=0.01, n_boot=300)
    assert df.height == 3 and df["strategy"].to_list() == ["ppo", "spy_buy_hold", "equal_weight"]
    for col in ("sharpe_ci_low", "sharpe_ci_high", "psr", "risk_free", "max_drawdown", "mdd_peak_date",
                "mdd_trough_date", "recovery_days", "var_5", "cvar_5", "sortino", "calmar", "hit_rate",
                "sharpe_diff_spy_buy_hold", "sharpe_diff_spy_buy_hold_ci_low", "sharpe_diff_equal_weight_ci_high"):
        assert col in df.columns
    assert df.schema["mdd_peak_date"] == pl.Date and df.schema["recovery_days"] == pl.Int64
    row = df.row(0, named=True)
    x = rets["ppo"]
    assert row["sharpe"] == pytest.approx(metrics.sharpe(x, 0.01))
    assert row["sortino"] == pytest.approx(metrics.sortino(x, 0.01))
    assert row["total_return"] == pytest.approx(metrics.total_return(x))
    assert row["max_drawdown"] == pytest.approx(metrics.max_drawdown(x))
    assert row["psr"] == pytest.approx(metrics.probabilistic_sharpe_ratio(x, 0.0, 0.01))
    assert row["avg_turnover"] == pytest.approx(0.1) and row["risk_free"] == 0.01
    assert row["sharpe_ci_low"] < row["sharpe"] < row["sharpe_ci_high"]
    assert row["start_date"] == date(2020, 1, 2) and row["days"] == n
    assert row["sharpe_diff_spy_buy_hold"] == pytest.approx(metrics.sharpe(x, 0.01) - metrics.sharpe(rets["spy_buy_hold"], 0.01))
    assert df.row(2, named=True)["avg_turnover"] is None
    bench = df.row(1, named=True)
    assert (bench["sharpe_diff_spy_buy_hold"], bench["sharpe_diff_spy_buy_hold_ci_low"], bench["sharpe_diff_spy_buy_hold_ci_high"]) == (0.0, 0.0, 0.0)
    # same bootstrap rows for every column -> reproducible; missing benchmark -> null columns
    df2 = metrics.metrics_table({"ppo": x}, dates, risk_free=0.01, n_boot=300, benchmark_names=("spy_buy_hold",))
    assert df2["sharpe_diff_spy_buy_hold"].to_list() == [None]
    assert df2["sharpe_ci_low"][0] == df["sharpe_ci_low"][0]


def test_metrics_table_seven_strategies_1500_days():
    rng = np.random.default_rng(14)
    names = ["ppo", "spy_buy_hold", "equal_weight", "sixty_forty", "vix_rule", "vix_switch", "sac"]
    rets = {k: rng.normal(0.0003, 0.01, 1500) for k in names}
    dates = np.busday_offset(np.datetime64("2015-01-02"), np.arange(1500), roll="forward")
    df = metrics.metrics_table(rets, dates)  # speed: benchmarks/evaluation.py
    assert df["strategy"].to_list() == names
