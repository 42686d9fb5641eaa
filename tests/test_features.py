"""Feature values vs independent NumPy/loop references, isolation, warm-ups, registry, labels, VIX timing."""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from benchmarks._data import load_real_bars, load_real_index_bars, synthetic_bars, synthetic_index_bars
from ml.features import (
    FEATURE_NAMES,
    FeatureConfig,
    compute_features,
    context_features,
    feature_registry,
    feature_specs,
    momentum_features,
    trend_features,
    volatility_features,
    volume_features,
)
from ml.labels import LABEL_HORIZONS, MAX_LABEL_HORIZON, LabelConfig, compute_labels, label_columns, label_horizon

RTOL = 1e-9
N_DAYS = 700


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return synthetic_bars(n_tickers=4, n_days=N_DAYS, seed=7)


@pytest.fixture(scope="module")
def index_bars() -> pl.DataFrame:
    return synthetic_index_bars(n_days=N_DAYS, seed=3)


@pytest.fixture(scope="module")
def feats(bars, index_bars) -> pl.DataFrame:
    return compute_features(bars, index_bars)


# ---------------------------------------------------------------- independent references
def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Recursive EMA seeded with the first non-NaN value (loop)."""
    out = np.full(len(x), np.nan)
    prev = None
    for i, v in enumerate(x):
        if np.isnan(v):
            if prev is not None:
                raise AssertionError("gap inside EMA input")
            continue
        prev = v if prev is None else alpha * v + (1 - alpha) * prev
        out[i] = prev
    return out


def rsi_ref(c: np.ndarray, n: int = 14) -> np.ndarray:
    d = np.full(len(c), np.nan)
    d[1:] = np.diff(c)
    g = ema(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), 1 / n)
    l = ema(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), 1 / n)
    return 100 * g / (g + l)


def macd_ref(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = ema(c, 2 / 13) / ema(c, 2 / 27) - 1
    sig = ema(line, 2 / 10)
    return line, sig, line - sig


def true_range_ref(h, l, c) -> np.ndarray:
    tr = np.empty(len(c))
    tr[0] = h[0] - l[0]
    for i in range(1, len(c)):
        tr[i] = max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1]))
    return tr


def adx_ref(h, l, c, n: int = 14):
    atr = ema(true_range_ref(h, l, c), 1 / n)
    pdm = np.full(len(c), np.nan)
    mdm = np.full(len(c), np.nan)
    for i in range(1, len(c)):
        up, dn = h[i] - h[i - 1], l[i - 1] - l[i]
        pdm[i] = up if (up > dn and up > 0) else 0.0
        mdm[i] = dn if (dn > up and dn > 0) else 0.0
    pdi = 100 * ema(pdm, 1 / n) / atr
    mdi = 100 * ema(mdm, 1 / n) / atr
    dx = np.full(len(c), np.nan)
    for i in range(1, len(c)):
        s = pdi[i] + mdi[i]
        dx[i] = 100 * abs(pdi[i] - mdi[i]) / s if s > 0 else 0.0
    return ema(dx, 1 / n), pdi, mdi


def bollinger_ref(c, w: int = 20, k: float = 2.0):
    pctb = np.full(len(c), np.nan)
    width = np.full(len(c), np.nan)
    for i in range(w - 1, len(c)):
        win = c[i - w + 1 : i + 1]
        m, sd = win.mean(), win.std()
        pctb[i] = (c[i] - (m - k * sd)) / (2 * k * sd)
        width[i] = 2 * k * sd / m
    return pctb, width


def obv_slope_ref(c, v, n: int = 21):
    obv = np.zeros(len(c))
    for i in range(1, len(c)):
        obv[i] = obv[i - 1] + np.sign(c[i] - c[i - 1]) * v[i]
    out = np.full(len(c), np.nan)
    x = np.arange(n, dtype=float)
    for i in range(n - 1, len(c)):
        slope = np.polyfit(x, obv[i - n + 1 : i + 1], 1)[0]
        out[i] = slope / v[i - 19 : i + 1].mean()
    return out


def rolling_ref(x, w, fn):
    out = np.full(len(x), np.nan)
    for i in range(w - 1, len(x)):
        win = x[i - w + 1 : i + 1]
        if not np.isnan(win).any():
            out[i] = fn(win)
    return out


def _ticker(frame: pl.DataFrame, t: str) -> pl.DataFrame:
    return frame.filter(pl.col("ticker") == t).sort("date")


def assert_matches(got: pl.Series, ref: np.ndarray, warmup: int, rtol: float = RTOL, atol: float = 1e-12) -> None:
    g = got.to_numpy().astype(float)  # nulls -> nan
    assert np.isnan(g[:warmup]).all(), f"{got.name}: warm-up rows must be null"
    np.testing.assert_allclose(g[warmup:], ref[warmup:], rtol=rtol, atol=atol, err_msg=got.name)


def _spec(name: str):
    return next(s for s in feature_specs() if s.name == name)


TICKERS_UNDER_TEST = ["SPY", "T0000", "T0001"]


@pytest.mark.parametrize("ticker", TICKERS_UNDER_TEST)
def test_rsi_macd_match_reference(feats, bars, ticker):
    b, f = _ticker(bars, ticker), _ticker(feats, ticker)
    c = b["close"].to_numpy()
    assert_matches(f["rsi_14"], rsi_ref(c), _spec("rsi_14").warmup)
    line, sig, hist = macd_ref(c)
    assert_matches(f["macd_line"], line, _spec("macd_line").warmup)
    assert_matches(f["macd_signal"], sig, _spec("macd_signal").warmup)
    assert_matches(f["macd_hist"], hist, _spec("macd_hist").warmup, atol=1e-15)


@pytest.mark.parametrize("ticker", TICKERS_UNDER_TEST)
def test_atr_adx_match_reference(feats, bars, ticker):
    b, f = _ticker(bars, ticker), _ticker(feats, ticker)
    h, l, c = (b[x].to_numpy() for x in ("high", "low", "close"))
    atr = ema(true_range_ref(h, l, c), 1 / 14)
    assert_matches(f["atr_14"], atr, _spec("atr_14").warmup)
    assert_matches(f["atr_pct_14"], atr / c, _spec("atr_pct_14").warmup)
    adx, pdi, mdi = adx_ref(h, l, c)
    assert_matches(f["adx_14"], adx, _spec("adx_14").warmup)
    assert_matches(f["plus_di_14"], pdi, _spec("plus_di_14").warmup)
    assert_matches(f["minus_di_14"], mdi, _spec("minus_di_14").warmup)


@pytest.mark.parametrize("ticker", TICKERS_UNDER_TEST)
def test_bollinger_obv_volume_match_reference(feats, bars, ticker):
    b, f = _ticker(bars, ticker), _ticker(feats, ticker)
    h, l, c, v = (b[x].to_numpy() for x in ("high", "low", "close", "volume"))
    pctb, width = bollinger_ref(c)
    assert_matches(f["bb_pctb_20"], pctb, 19)
    assert_matches(f["bb_width_20"], width, 19)
    assert_matches(f["obv_slope_21"], obv_slope_ref(c, v), 20, rtol=1e-8, atol=1e-10)
    assert_matches(f["rel_volume_20"], v / rolling_ref(v, 20, np.mean), 19)
    tp = (h + l + c) / 3
    vwap = rolling_ref(tp * v, 20, np.sum) / rolling_ref(v, 20, np.sum)
    assert_matches(f["vwap_dist_20"], c / vwap - 1, 19)


@pytest.mark.parametrize("ticker", TICKERS_UNDER_TEST)
def test_returns_vol_trend_match_reference(feats, bars, ticker):
    b, f = _ticker(bars, ticker), _ticker(feats, ticker)
    o, h, l, c = (b[x].to_numpy() for x in ("open", "high", "low", "close"))
    lc = np.log(c)
    for hz in (1, 5, 21, 63, 126, 252):
        ref = np.full(len(c), np.nan)
        ref[hz:] = lc[hz:] - lc[:-hz]
        assert_matches(f[f"ret_{hz}d"], ref, hz)
    roc = np.full(len(c), np.nan)
    roc[10:] = c[10:] / c[:-10] - 1
    assert_matches(f["roc_10"], roc, 10)
    r = np.full(len(c), np.nan)
    r[1:] = np.diff(lc)
    rv21 = rolling_ref(r, 21, lambda w: w.std(ddof=1))
    assert_matches(f["rv_21d"], rv21, 21)
    assert_matches(f["rv_63d_ann"], rolling_ref(r, 63, lambda w: w.std(ddof=1)) * math.sqrt(252), 63)
    assert_matches(f["vol_of_vol_21"], rolling_ref(rv21 * math.sqrt(252), 21, lambda w: w.std(ddof=1)), 41, rtol=1e-8)
    hl2 = np.log(h / l) ** 2
    assert_matches(f["parkinson_vol_21"], np.sqrt(rolling_ref(hl2, 21, np.mean) * 252 / (4 * math.log(2))), 20)
    gk = rolling_ref(0.5 * hl2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2, 21, np.mean)
    assert_matches(f["gk_vol_21"], np.sqrt(np.maximum(gk, 0) * 252), 20)
    for n in (20, 50, 200):
        assert_matches(f[f"close_to_sma_{n}"], c / rolling_ref(c, n, np.mean) - 1, n - 1)
    s50, s200 = rolling_ref(c, 50, np.mean), rolling_ref(c, 200, np.mean)
    state = np.where(np.isnan(s200), np.nan, np.where(s50 > s200, 1.0, -1.0))
    days = np.full(len(c), np.nan)
    last = None
    for i in range(199, len(c)):
        if last is None or state[i] != state[i - 1]:
            last = i
        days[i] = i - last
    assert_matches(f["sma_cross_50_200"], state, 199)
    assert_matches(f["days_since_cross_50_200"], days, 199)


def test_market_relative_features_match_reference(feats, bars):
    spy = _ticker(bars, "SPY").select("date", pl.col("close").alias("m"))
    for t in ("T0000", "T0001", "SPY"):
        b = _ticker(bars, t).join(spy, on="date", how="left")
        f = _ticker(feats, t)
        x = np.diff(np.log(b["close"].to_numpy()), prepend=np.nan)
        y = np.diff(np.log(b["m"].to_numpy()), prepend=np.nan)
        beta = np.full(len(x), np.nan)
        corr = np.full(len(x), np.nan)
        for i in range(63, len(x)):
            xs, ys = x[i - 62 : i + 1], y[i - 62 : i + 1]
            cov = np.cov(xs, ys)
            beta[i] = cov[0, 1] / cov[1, 1]
            corr[i] = np.corrcoef(xs, ys)[0, 1]
        assert_matches(f["beta_spy_63"], beta, 63, rtol=1e-7)
        assert_matches(f["corr_spy_63"], corr, 63, rtol=1e-7)
        lc, lm = np.log(b["close"].to_numpy()), np.log(b["m"].to_numpy())
        rs = np.full(len(x), np.nan)
        rs[21:] = (lc[21:] - lc[:-21]) - (lm[21:] - lm[:-21])
        assert_matches(f["rs_spy_21"], rs, 21)
    spy_f = _ticker(feats, "SPY")
    assert spy_f["beta_spy_63"].drop_nulls().is_between(1 - 1e-9, 1 + 1e-9).all()


# ---------------------------------------------------------------- structure
def test_output_shape_sorted_float64(feats, bars):
    assert feats.height == bars.height
    assert feats.columns == ["ticker", "date", *FEATURE_NAMES]
    assert all(feats.schema[c] == pl.Float64 for c in FEATURE_NAMES)
    assert feats.select(["ticker", "date"]).equals(bars.sort("ticker", "date").select(["ticker", "date"]))
    # unsorted input gives the same (sorted) output
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=1)
    assert compute_features(shuffled, synthetic_index_bars(N_DAYS, seed=3)).equals(feats)


def test_duplicate_rows_rejected(bars):
    with pytest.raises(ValueError, match="duplicate"):
        compute_features(pl.concat([bars, bars.head(3)]), None)


def test_registry_covers_every_column(feats):
    reg = feature_registry()
    assert reg.height >= 40
    assert reg["name"].to_list() == feats.columns[2:]
    assert reg["name"].is_unique().all()
    assert set(reg["family"]) == {"momentum", "volatility", "trend", "volume", "context"}
    assert reg.select(pl.col("description").str.len_chars().min()).item() > 5
    assert reg["unit"].null_count() == 0 and reg["warmup_rows"].null_count() == 0
    lagged = feature_registry(vix_lag_days=1)
    assert lagged.filter(pl.col("name") == "vix_chg_5d")["warmup_rows"].item() == 6


def test_family_functions_match_pipeline(feats, bars, index_bars):
    for fn in (momentum_features, volatility_features, trend_features, volume_features):
        part = fn(bars)
        assert part.equals(feats.select(part.columns)), fn.__name__
    ctx = context_features(bars, index_bars)
    assert ctx.equals(feats.select(ctx.columns))


def test_ticker_isolation(bars, index_bars, feats):
    """Features of a ticker do not change when another ticker is added or removed."""
    without = compute_features(bars.filter(pl.col("ticker") != "T0001"), index_bars)
    for t in ("SPY", "T0000", "T0002"):
        assert _ticker(without, t).equals(_ticker(feats, t)), t
    extra = synthetic_bars(n_tickers=3, n_days=N_DAYS, seed=99, market_ticker=None).with_columns(
        pl.concat_str(pl.lit("X"), pl.col("ticker")).alias("ticker")
    )
    more = compute_features(pl.concat([bars, extra]), index_bars)
    for t in ("SPY", "T0000", "T0001", "T0002"):
        assert _ticker(more, t).equals(_ticker(feats, t)), t
    # per-ticker families do not even depend on the market ticker
    alone = momentum_features(bars.filter(pl.col("ticker") == "T0000"))
    assert alone.equals(_ticker(feats, "T0000").select(alone.columns))


def test_warmup_rows_null_then_defined(feats):
    """Registry warm-ups are exact: rows < warmup null, row == warmup defined (synthetic data)."""
    per_row = feats.with_columns(pl.int_range(pl.len()).over("ticker").alias("_r"))
    for spec in feature_specs():
        if spec.warmup_basis != "ticker_rows":
            continue
        col = pl.col(spec.name)
        before = per_row.filter(pl.col("_r") < spec.warmup).select(col.is_not_null().sum()).item()
        assert before == 0, f"{spec.name}: {before} non-null warm-up rows"
        at = per_row.filter(pl.col("_r") == spec.warmup).select(col.is_null().sum()).item()
        assert at == 0, f"{spec.name}: null right after its warm-up ({spec.warmup})"


@pytest.mark.parametrize("lag", [0, 1])
def test_vix_warmups_on_calendar_rows(bars, index_bars, lag):
    f = compute_features(bars, index_bars, FeatureConfig(vix_lag_days=lag))
    cal = f.group_by("date").agg(pl.all().exclude("ticker").first()).sort("date")
    vix3m_first = index_bars.filter(pl.col("symbol") == "VIX3M")["date"].min()
    for spec in feature_specs(lag):
        if spec.warmup_basis != "calendar_rows":
            continue
        col = cal[spec.name]
        start = 0 if "VIX3M" not in spec.inputs else cal["date"].search_sorted(vix3m_first)
        assert col[start : start + spec.warmup].null_count() == spec.warmup, spec.name
        assert col[start + spec.warmup :].null_count() == 0, spec.name


# ---------------------------------------------------------------- VIX timing and CBOE holiday rows
def _vix_trading(index_bars: pl.DataFrame, trading: pl.Series) -> pl.DataFrame:
    return (
        index_bars.filter((pl.col("symbol") == "VIX") & pl.col("date").is_in(trading.implode()))
        .sort("date")
        .select("date", "close")
    )


def test_vix_lag_zero_and_one(bars, index_bars):
    cal = bars["date"].unique().sort()
    vix = _vix_trading(index_bars, cal)
    assert vix.height == cal.len()
    f0 = compute_features(bars, index_bars, FeatureConfig(vix_lag_days=0))
    f1 = compute_features(bars, index_bars, FeatureConfig(vix_lag_days=1))
    spy0, spy1 = _ticker(f0, "SPY"), _ticker(f1, "SPY")
    assert spy0["date"].equals(vix["date"])
    np.testing.assert_array_equal(spy0["vix_level"].to_numpy(), vix["close"].to_numpy())
    lagged = np.concatenate([[np.nan], vix["close"].to_numpy()[:-1]])
    np.testing.assert_array_equal(spy1["vix_level"].to_numpy(), lagged)
    v = vix["close"].to_numpy()
    ref = np.full(len(v), np.nan)
    ref[5:] = v[5:] - v[:-5]
    np.testing.assert_allclose(spy0["vix_chg_5d"].to_numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(spy0["vix_centered"].to_numpy(), (v - 20) / 10, rtol=1e-12)
    np.testing.assert_allclose(spy0["vix_rel_21"].to_numpy(), v / rolling_ref(v, 21, np.mean) - 1, rtol=1e-10)
    q80 = rolling_ref(v, 63, lambda w: np.percentile(w, 80))
    high = np.where(np.isnan(q80), np.nan, (v > q80).astype(float))
    np.testing.assert_array_equal(spy0["vix_high_63"].to_numpy(), high)
    # every ticker sees the same VIX values on a date
    assert f0.group_by("date").agg(pl.col("vix_level").n_unique()).select(pl.col("vix_level").max()).item() == 1


def test_cboe_holiday_rows_dropped(bars, index_bars):
    cal = set(bars["date"].to_list())
    holidays = index_bars.filter((pl.col("symbol") == "VIX") & ~pl.col("date").is_in(list(cal)))
    assert holidays.height > 5  # the synthetic VIX has CBOE-style holiday rows
    # make holiday values absurd: no output may change
    poisoned = index_bars.with_columns(
        pl.when(pl.col("date").is_in(holidays["date"].implode())).then(999.0).otherwise(pl.col("close")).alias("close")
    )
    for lag in (0, 1):
        cfg = FeatureConfig(vix_lag_days=lag)
        a = compute_features(bars, index_bars, cfg)
        b = compute_features(bars, poisoned, cfg)
        assert a.equals(b)
        assert not set(a["date"].to_list()) - cal
        assert a["vix_level"].max() < 999
    # vix_chg_5d counts trading days, not VIX rows
    no_hol = index_bars.filter(pl.col("date").is_in(list(cal)))
    assert compute_features(bars, no_hol).equals(compute_features(bars, index_bars))


def test_vix_asof_and_staleness(bars, index_bars):
    cal = bars["date"].unique().sort()
    vix = _vix_trading(index_bars, cal)
    d_missing = cal[300]
    gap = cal[400:410]  # 10 trading days (> 5 calendar days) without VIX
    thinned = index_bars.filter(
        ~((pl.col("symbol") == "VIX") & pl.col("date").is_in(pl.concat([pl.Series([d_missing]), gap]).implode()))
    )
    f = _ticker(compute_features(bars, thinned), "SPY")
    level = dict(zip(f["date"].to_list(), f["vix_level"].to_list()))
    vals = dict(zip(vix["date"].to_list(), vix["close"].to_list()))
    assert level[d_missing] == vals[cal[299]]  # as-of: last VIX close dated <= t
    assert level[gap[0]] == vals[cal[399]]  # one day old: carried
    assert level[gap[-1]] is None  # > 5 calendar days old: null, never carried further
    assert level[cal[410]] == vals[cal[410]]


def test_vix_features_null_without_index_bars(bars):
    f = compute_features(bars, None)
    for name in ("vix_level", "vix_term", "vix_high_63"):
        assert f[name].null_count() == f.height
    assert f["beta_spy_63"].null_count() < f.height


def test_vix_term_null_before_vix3m(feats, index_bars):
    first = index_bars.filter(pl.col("symbol") == "VIX3M")["date"].min()
    assert feats.filter(pl.col("date") < first)["vix_term"].null_count() == feats.filter(pl.col("date") < first).height
    assert feats.filter(pl.col("date") >= first)["vix_term"].null_count() == 0


def test_zero_volume_gives_null_not_inf(bars):
    b = bars.with_columns(
        pl.when((pl.col("ticker") == "T0000") & (pl.int_range(pl.len()).over("ticker").is_between(100, 130)))
        .then(0.0)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    f = compute_features(b, None)
    for c in FEATURE_NAMES:
        assert f[c].is_infinite().sum() == 0 and f[c].is_nan().sum() == 0, c
    assert _ticker(f, "T0000")["rel_volume_20"][125] is None


# ---------------------------------------------------------------- labels
def test_labels_forward_returns_and_nulls(bars):
    lab = compute_labels(bars)
    assert lab.columns == ["ticker", "date", *label_columns()]
    assert MAX_LABEL_HORIZON == max(LABEL_HORIZONS) == 21
    for t in ("SPY", "T0000"):
        c = _ticker(bars, t)["close"].to_numpy()
        lt = _ticker(lab, t)
        for h in LABEL_HORIZONS:
            ref = np.full(len(c), np.nan)
            ref[:-h] = c[h:] / c[:-h] - 1
            np.testing.assert_allclose(lt[f"fwd_ret_{h}d"].to_numpy().astype(float), ref, rtol=1e-12)
            for name in (f"fwd_ret_{h}d", f"buy_{h}d", f"sell_{h}d"):
                assert lt[name][-h:].null_count() == h, name  # last h rows null, not 0
                assert lt[name][:-h].null_count() == 0, name
                assert label_horizon(name) == h
            theta = LabelConfig().thresholds[h]
            fwd = lt[f"fwd_ret_{h}d"]
            assert (lt[f"buy_{h}d"] == (fwd > theta).cast(pl.Int8)).drop_nulls().all()
            assert (lt[f"sell_{h}d"] == (fwd < -theta).cast(pl.Int8)).drop_nulls().all()
            assert not ((lt[f"buy_{h}d"] == 1) & (lt[f"sell_{h}d"] == 1)).drop_nulls().any()


def test_label_thresholds_configurable(bars):
    cfg = LabelConfig(horizons=(5,), thresholds={5: 0.0})
    lab = compute_labels(bars, cfg)
    assert lab.columns == ["ticker", "date", "fwd_ret_5d", "buy_5d", "sell_5d"]
    valid = lab.drop_nulls()
    assert (valid["buy_5d"] + valid["sell_5d"] == 1).mean() > 0.99
    with pytest.raises(ValueError):
        LabelConfig(horizons=(10,))


# ---------------------------------------------------------------- real snapshot (optional)
@pytest.mark.real_data
def test_real_snapshot_features_sane():
    bars = load_real_bars(["SPY", "QQQ", "AAPL", "XLK", "KLAC"])
    index_bars = load_real_index_bars()
    if bars is None or index_bars is None:
        pytest.skip("shared market snapshot not available")
    f = compute_features(bars, index_bars)
    assert f.height == bars.height
    spy = _ticker(f, "SPY")
    row = spy.filter(pl.col("date") == date(2020, 3, 16))
    assert row["vix_level"].item() == pytest.approx(82.69)
    assert row["vix_term"].item() == pytest.approx(82.69 / 67.70, rel=1e-6)
    assert row["vix_high_63"].item() == 1.0
    # CBOE holiday rows (e.g. 2022-05-30) never appear as feature dates
    assert f.filter(pl.col("date") == date(2022, 5, 30)).height == 0
    spy_only = bars.filter(pl.col("ticker") == "SPY")
    lag1 = _ticker(compute_features(spy_only, index_bars, FeatureConfig(vix_lag_days=1)), "SPY")
    after_holiday = lag1.filter(pl.col("date") == date(2022, 5, 31))["vix_level"].item()
    vix = index_bars.filter(pl.col("symbol") == "VIX")
    assert after_holiday == vix.filter(pl.col("date") == date(2022, 5, 27))["close"].item()
    assert f.filter(pl.col("date") < date(1990, 1, 2))["vix_level"].null_count() == f.filter(
        pl.col("date") < date(1990, 1, 2)
    ).height
    assert spy["corr_spy_63"].drop_nulls().min() > 0.999999
    assert f["rsi_14"].drop_nulls().is_between(0, 100).all()


def test_seed_article_feature_definitions():
    """rv_21d_simple: 21-day std (ddof=1) of simple returns, not annualised; vix_pct_chg_5d: VIX_t / VIX_(t-5) - 1."""
    from datetime import date

    import numpy as np
    import polars as pl

    from ml.data.synthetic import generate_market
    from ml.data.universe import Universe
    from ml.features import compute_features

    m = generate_market(Universe(include_stocks=False, sector_etfs=[], history_start=date(2015, 1, 1),
                                 history_end=date(2015, 12, 31)), seed=5)
    f = compute_features(m.bars, m.index_bars).filter(pl.col("ticker") == "QQQ").sort("date")
    close = m.bars.filter(pl.col("ticker") == "QQQ").sort("date")["close"].to_numpy()
    simple = close[1:] / close[:-1] - 1
    t = 100
    assert f["rv_21d_simple"][t] == pytest.approx(np.std(simple[t - 21:t], ddof=1), rel=1e-10)
    vix = f["vix_level"].to_numpy()
    assert f["vix_pct_chg_5d"][t] == pytest.approx(vix[t] / vix[t - 5] - 1, rel=1e-12)
    assert f["ret_intraday"][t] == pytest.approx(
        np.log(close[t] / m.bars.filter(pl.col("ticker") == "QQQ").sort("date")["open"][t]), rel=1e-12)
