"""The look-ahead checker catches planted leaks and passes the real features."""
from __future__ import annotations

import functools
from datetime import timedelta

import polars as pl
import pytest

from benchmarks._data import load_real_bars, load_real_index_bars, synthetic_bars, synthetic_index_bars
from ml.features import (
    FEATURE_NAMES,
    FeatureConfig,
    compute_features,
    context_features,
    momentum_features,
    trend_features,
    volatility_features,
    volume_features,
)
from ml.labels import compute_labels
from ml.lookahead import LookaheadReport, check_lookahead, plan_cutoffs

N_DAYS = 900


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return synthetic_bars(n_tickers=6, n_days=N_DAYS, seed=11)


@pytest.fixture(scope="module")
def index_bars() -> pl.DataFrame:
    return synthetic_index_bars(n_days=N_DAYS, seed=5)


def _with_control(bars: pl.DataFrame, leak: pl.Expr) -> pl.DataFrame:
    """Output with the planted leak plus an honest control column computed the causal way."""
    c = pl.col("close")
    return bars.select(
        "ticker",
        "date",
        leak.alias("leak"),
        (c / c.rolling_mean(5) - 1).over("ticker").alias("control"),
    )


c = pl.col("close")
PLANTED = {
    "shift_minus_1": (c.shift(-1) / c - 1).over("ticker"),
    "centered_rolling": c.rolling_mean(11, center=True).over("ticker"),
    "full_sample_zscore": ((c - c.mean()) / c.std()).over("ticker"),
    "full_sample_rank": (c.rank() / c.len()).over("ticker"),
    "full_sample_quantile": (c > c.quantile(0.8)).cast(pl.Float64).over("ticker"),
    "backward_fill": (c / c.shift(20) - 1).backward_fill().over("ticker"),
    "cross_sectional_future_mean": c.pct_change().over("ticker").mean(),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_leak_is_caught(bars, name):
    report = check_lookahead(lambda b: _with_control(b, PLANTED[name]), bars, k=6)
    assert not report.passed
    assert report.failed_features == ["leak"], name
    leak = report["leak"]
    assert leak.n_mismatches > 0 and leak.first_offending_date is not None
    assert leak.first_offending_date <= leak.first_offending_cutoff
    assert leak.first_offending_ticker is not None
    assert report["control"].passed and report["control"].max_abs_diff == 0.0


def _vix_frame(index_bars: pl.DataFrame) -> pl.DataFrame:
    return index_bars.filter(pl.col("symbol") == "VIX").sort("date").select("date", "close")


def vix_next_row_leak(bars: pl.DataFrame, index_bars: pl.DataFrame) -> pl.DataFrame:
    """VIX of the next VIX row joined onto t (the 'joined on the next day's date' bug)."""
    vix = _vix_frame(index_bars).select("date", pl.col("close").shift(-1).alias("leak"))
    honest = _vix_frame(index_bars).rename({"close": "control"})
    return bars.select("ticker", "date").join(vix, on="date", how="left").join(honest, on="date", how="left")


def vix_next_date_leak(bars: pl.DataFrame, index_bars: pl.DataFrame) -> pl.DataFrame:
    """VIX rows re-dated one calendar day earlier, then joined as-of: t sees the close of t+1."""
    vix = _vix_frame(index_bars).with_columns(pl.col("date") - timedelta(days=1)).rename({"close": "leak"})
    honest = _vix_frame(index_bars).rename({"close": "control"})
    out = bars.select("ticker", "date").sort("date").join_asof(vix, on="date")
    return out.join(honest, on="date", how="left").sort("ticker", "date")


@pytest.mark.parametrize("fn", [vix_next_row_leak, vix_next_date_leak])
def test_vix_joined_on_next_day_is_caught(bars, index_bars, fn):
    report = check_lookahead(fn, bars, index_bars, k=6)
    assert report.failed_features == ["leak"]
    assert report["control"].passed


def test_leak_inside_full_feature_set_is_isolated(bars, index_bars):
    def leaky_features(b, ix):
        f = compute_features(b, ix)
        fwd = (pl.col("close").shift(-5) / pl.col("close") - 1).over("ticker").alias("fwd")
        ahead = b.select("ticker", "date", fwd)
        return f.join(ahead, on=["ticker", "date"], how="left")

    report = check_lookahead(leaky_features, bars, index_bars, k=4)
    assert report.failed_features == ["fwd"]
    assert "**LEAK**" in report.to_markdown()
    with pytest.raises(AssertionError, match="FAILED"):
        report.raise_if_failed()


def test_labels_are_flagged_as_lookahead(bars):
    """Labels look forward by construction: the checker must flag every label column."""
    report = check_lookahead(compute_labels, bars, k=4)
    assert set(report.failed_features) == set(compute_labels(bars.head(30)).columns[2:])


def test_small_leak_beyond_tolerance_is_caught(bars):
    """Tolerance (rtol 1e-9) is far below any real leak: a 1e-6 dose of the future fails."""
    tiny = (c + 1e-6 * c.shift(-1)).over("ticker")
    report = check_lookahead(lambda b: _with_control(b, tiny), bars, k=4)
    assert report.failed_features == ["leak"]
    noise_free = (c + 0.0 * c.rolling_mean(3)).over("ticker")
    assert check_lookahead(lambda b: _with_control(b, noise_free), bars, k=4).passed


@pytest.mark.parametrize("lag", [0, 1])
def test_real_features_pass_on_synthetic(bars, index_bars, lag):
    fn = functools.partial(compute_features, config=FeatureConfig(vix_lag_days=lag))
    report = check_lookahead(fn, bars, index_bars, k=8, seed=lag)
    assert report.passed, report.to_markdown()
    assert [ch.feature for ch in report.checks] == list(FEATURE_NAMES)
    assert len(report.cutoffs) == 8
    # causal kernels recompute (nearly) bit-identically on prefixes: at most ulp-level differences
    assert max(ch.max_abs_diff or 0.0 for ch in report.checks) < 1e-13


@pytest.mark.parametrize("fn", [momentum_features, volatility_features, trend_features, volume_features])
def test_each_family_passes(bars, fn):
    assert check_lookahead(fn, bars, k=5).passed


def test_context_family_passes_both_lags(bars, index_bars):
    for lag in (0, 1):
        fn = functools.partial(context_features, config=FeatureConfig(vix_lag_days=lag))
        assert check_lookahead(fn, bars, index_bars, k=5).passed


def test_vix_lag_zero_sees_same_day_vix_lag_one_does_not(bars, index_bars):
    """Garbage on the cutoff's *next* VIX row never matters; with lag 1 neither does the cutoff's own."""
    cal = bars["date"].unique().sort()
    cut = cal[500]
    poisoned = index_bars.with_columns(
        pl.when(pl.col("date") == cut).then(pl.col("close") * 3).otherwise(pl.col("close")).alias("close")
    )
    for lag, changes in ((0, True), (1, False)):
        cfg = FeatureConfig(vix_lag_days=lag)
        a = compute_features(bars, index_bars, cfg).filter(pl.col("date") == cut)
        b = compute_features(bars, poisoned, cfg).filter(pl.col("date") == cut)
        assert (not a.equals(b)) == changes


def test_report_frame_and_markdown(bars):
    report = check_lookahead(momentum_features, bars, k=3)
    assert isinstance(report, LookaheadReport)
    frame = report.to_frame()
    assert frame.columns[:3] == ["feature", "passed", "n_cutoffs"]
    assert frame.height == 13 and frame["passed"].all()  # the momentum family
    assert frame.schema["first_offending_date"] == pl.Date
    md = report.to_markdown()
    assert md.startswith("**Look-ahead check PASSED") and "| rsi_14 | pass |" in md


def test_cutoff_choice_covers_warmup_and_end():
    dates = list(range(1000))
    cuts = list(plan_cutoffs(dates, first_valid=[5, 200, 60], k=8, seed=0).dates)
    assert len(cuts) == 8 and cuts == sorted(set(cuts))
    assert 4 in cuts  # last warm-up date before any feature exists (catches back-fills)
    assert 200 in cuts  # right after the longest warm-up
    assert 998 in cuts  # near the end
    assert all(0 <= d <= 998 for d in cuts)
    assert list(plan_cutoffs(dates[:3], [1], k=8).dates) == [0, 1]


def test_columns_argument_and_errors(bars):
    report = check_lookahead(momentum_features, bars, k=2, columns=["rsi_14"])
    assert [ch.feature for ch in report.checks] == ["rsi_14"]
    with pytest.raises(ValueError, match="not in the feature output"):
        check_lookahead(momentum_features, bars, k=2, columns=["nope"])


@pytest.mark.slow
@pytest.mark.real_data
def test_real_snapshot_passes():
    tickers = ["SPY", "QQQ", "TLT", "XLK", "XLRE", "AAPL", "META", "UBER", "KLAC", "LMT"]
    bars = load_real_bars(tickers)
    index_bars = load_real_index_bars()
    if bars is None or index_bars is None:
        pytest.skip("shared market snapshot not available")
    report = check_lookahead(compute_features, bars, index_bars, mode="full")  # what the prepare job runs
    assert report.passed, report.to_markdown()
    assert len(report.cutoffs) == 96 and len(report.classes_covered) == len(report.classes_available) >= 14


def test_feature_with_no_rows_before_a_cutoff_does_not_crash():
    """A function whose output is empty on a short prefix is compared, not a TypeError."""
    import numpy as np
    import polars as pl

    from ml.lookahead import check_lookahead

    dates = pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 12, 31), "1d", eager=True)
    bars = pl.DataFrame({"ticker": "A", "date": dates, "close": np.linspace(1, 2, len(dates))})

    def late_start(b: pl.DataFrame) -> pl.DataFrame:  # emits rows only from its 50th input row on
        return b.slice(50).select("ticker", "date", pl.col("close").alias("f"))

    report = check_lookahead(late_start, bars, cutoffs=[dates[10], dates[200]])
    assert report.passed
