"""Regimes: VIX bands, sector HMMs (causal filter, stable labels, convergence), clustering."""
from __future__ import annotations

import json
import logging
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.lookahead import check_lookahead
from ml.regimes.clustering import assign, fit_clusters
from ml.regimes.hmm import (
    OBS_COLUMNS,
    HmmConfig,
    fit_sector_hmm,
    fit_sector_hmms,
    forward_filter,
    hmm_observations,
    hmm_report,
    hmm_report_frames,
    prob_columns,
    sector_filtered_probabilities,
    sector_groups,
)
from ml.regimes.vix import (
    VixRegimeConfig,
    vix_band,
    vix_bucket,
    vix_regimes,
    vol_regime_expr,
    vol_regime_for_model,
)


# ----------------------------------------------------------------------------- VIX
def _index(dates, values, symbol="VIX") -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": symbol, "date": dates, "open": values, "high": values, "low": values, "close": values},
        schema={"symbol": pl.Utf8, "date": pl.Date, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64},
    )


def test_vix_thresholds():
    levels = [10.0, 14.99, 15.0, 19.99, 20.0, 24.9, 25.0, 29.99, 30.0, 34.9, 35.0, 80.0]
    assert [vix_band(v) for v in levels] == [
        "low", "low", "moderate", "moderate", "high", "high", "high", "high", "extreme", "extreme", "extreme", "extreme"
    ]
    assert [vix_bucket(v) for v in levels] == [
        "calm", "calm", "normal", "normal", "elevated", "elevated", "stress", "stress", "stress", "stress", "panic", "panic"
    ]
    cfg = VixRegimeConfig(band_edges=(12.0, 18.0, 25.0))
    assert vix_band(13.0, cfg) == "moderate" and vix_band(26.0, cfg) == "extreme"
    with pytest.raises(ValueError):
        VixRegimeConfig(band_edges=(20.0, 15.0, 30.0))
    assert [vol_regime_for_model(b) for b in ("low", "moderate", "high", "extreme", None)] == [
        "low", "moderate", "high", "high", None
    ]
    with pytest.raises(ValueError):
        vol_regime_for_model("panic")
    s = pl.DataFrame({"band": ["extreme", None, "low"]}).select(vol_regime_expr())
    assert s.to_series().to_list() == ["high", None, "low"]


def test_vix_regimes_calendar_and_lag():
    vix_dates = [date(2022, 5, 26), date(2022, 5, 27), date(2022, 5, 30), date(2022, 5, 31), date(2022, 6, 1)]
    idx = pl.concat([_index(vix_dates, [14.0, 16.0, 31.0, 22.0, 40.0]), _index(vix_dates[:2], [1.0, 1.0], "VIX3M")])
    raw = vix_regimes(idx)  # every CBOE row, holiday included
    assert raw.height == 5 and raw.columns == ["date", "vix", "band", "bucket"]
    cal = [date(2022, 5, 26), date(2022, 5, 27), date(2022, 5, 31), date(2022, 6, 1), date(2022, 6, 2)]
    out = vix_regimes(idx, pl.Series(cal))
    assert out.get_column("date").to_list() == cal  # 2022-05-30 (Memorial Day) dropped
    assert out.get_column("vix").to_list() == [14.0, 16.0, 22.0, 40.0, 40.0]  # 06-02: as-of, 1 day stale
    assert out.get_column("band").to_list() == ["low", "moderate", "high", "extreme", "extreme"]
    assert out.get_column("bucket").to_list() == ["calm", "normal", "elevated", "panic", "panic"]
    assert vix_regimes(idx, np.array(cal, dtype="datetime64[D]")).equals(out)
    assert vix_regimes(idx, pl.DataFrame({"date": cal})).equals(out)
    lagged = vix_regimes(idx, cal, VixRegimeConfig(vix_lag_days=1))
    assert lagged.get_column("vix").to_list() == [None, 14.0, 16.0, 22.0, 40.0]
    assert lagged.get_column("band").to_list()[0] is None
    stale = vix_regimes(idx, [date(2022, 6, 20)])
    assert stale.get_column("vix").to_list() == [None]  # older than max_staleness_days


@pytest.mark.real_data
def test_vix_regimes_real(real_data_dir):
    vix = pl.read_csv(real_data_dir / "index" / "VIX.csv").with_columns(
        pl.lit("VIX").alias("symbol"), pl.col("date").str.to_date()
    )
    spy = pl.read_csv(real_data_dir / "ohlcv" / "SPY.csv", columns=["date"]).with_columns(pl.col("date").str.to_date())
    cal = spy.get_column("date").filter(spy.get_column("date") >= date(2020, 1, 1))
    out = vix_regimes(vix, cal)
    assert out.height == cal.len()
    row = out.filter(pl.col("date") == date(2020, 3, 16)).row(0, named=True)
    assert row["vix"] == pytest.approx(82.69) and row["band"] == "extreme" and row["bucket"] == "panic"
    assert out.filter(pl.col("date") == date(2022, 5, 30)).height == 0


# ----------------------------------------------------------------------------- HMM data
@pytest.fixture(scope="module")
def market():
    u = Universe(sector_etfs=["XLK", "XLF", "XLE"], history_start=date(2008, 1, 1), history_end=date(2013, 12, 31))
    return generate_market(u, seed=5)


@pytest.fixture(scope="module")
def etf_obs(market):
    return hmm_observations(market.bars, sector_groups(market.bars, market.sectors, "etf"))


@pytest.fixture(scope="module")
def fitted(etf_obs):
    return fit_sector_hmms(etf_obs, date(2008, 1, 1), date(2011, 12, 31), HmmConfig(restarts=3))


def _wide_returns(bars: pl.DataFrame, tickers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    w = bars.filter(pl.col("ticker").is_in(tickers)).pivot(on="ticker", index="date", values="close").sort("date")
    c = w.select(tickers).to_numpy()
    r = np.full(c.shape, np.nan)
    r[1:] = c[1:] / c[:-1] - 1
    return w.get_column("date").to_numpy(), r


def test_sector_groups(market):
    etf = sector_groups(market.bars, market.sectors, "etf")
    assert dict(etf.iter_rows()) == {"Energy": "XLE", "Financials": "XLF", "Information Technology": "XLK"}
    basket = sector_groups(market.bars, market.sectors, "basket")
    assert basket.filter(pl.col("sector") == "Energy").get_column("ticker").to_list() == ["SYN_EN1", "SYN_EN2", "SYN_EN3"]
    assert not basket.get_column("ticker").is_in(["XLE", "XLF", "XLK"]).any()
    with pytest.raises(ValueError):
        sector_groups(market.bars, market.sectors, "nope")


def test_hmm_observations_match_numpy(market, etf_obs):
    w = 20
    assert etf_obs.columns == ["sector", "date", *OBS_COLUMNS]
    # single ETF: mean/std of its returns, correlation to SPY
    _, r = _wide_returns(market.bars, ["XLE", "SPY"])
    e = etf_obs.filter(pl.col("sector") == "Energy").sort("date")
    assert e.head(w).get_column("ret_mean").null_count() == w  # warm-up: 20 returns need 21 closes
    for i in (w, 300, e.height - 1):
        win = r[i - w + 1 : i + 1]
        row = e.row(i, named=True)
        assert row["ret_mean"] == pytest.approx(win[:, 0].mean(), rel=1e-9)
        assert row["vol"] == pytest.approx(win[:, 0].std(ddof=1), rel=1e-7)
        assert row["corr_mean"] == pytest.approx(np.corrcoef(win[:, 0], win[:, 1])[0, 1], rel=1e-7)
    # basket: equal-weighted return, mean pairwise correlation
    groups = sector_groups(market.bars, market.sectors, "basket").filter(pl.col("sector") == "Energy")
    obs = hmm_observations(market.bars, groups).sort("date")
    tick = groups.get_column("ticker").to_list()
    _, rb = _wide_returns(market.bars, tick)
    i = 400
    win = rb[i - w + 1 : i + 1]
    cm = np.corrcoef(win.T)
    row = obs.row(i, named=True)
    assert row["corr_mean"] == pytest.approx(cm[np.triu_indices(3, 1)].mean(), rel=1e-7)
    assert row["ret_mean"] == pytest.approx(win.mean(axis=1).mean(), rel=1e-9)
    assert row["vol"] == pytest.approx(win.mean(axis=1).std(ddof=1), rel=1e-7)


def _sample_hmm(n: int, seed: int) -> np.ndarray:
    """Three well-separated regimes (bull / sideways / bear) with sticky transitions."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.002, 0.4, 0.008], [0.0, 0.6, 0.012], [-0.003, 0.85, 0.03]])
    sds = np.array([[0.0008, 0.08, 0.002], [0.0008, 0.08, 0.003], [0.0015, 0.05, 0.006]])
    a = np.array([[0.97, 0.02, 0.01], [0.02, 0.96, 0.02], [0.02, 0.03, 0.95]])
    s = np.empty(n, dtype=int)
    s[0] = 1
    for t in range(1, n):
        s[t] = rng.choice(3, p=a[s[t - 1]])
    return means[s] + sds[s] * rng.standard_normal((n, 3)), s


def test_fit_labels_ordered_and_stable():
    x, states = _sample_hmm(1500, 0)
    a = fit_sector_hmm(x, restarts=3, seed=0)
    b = fit_sector_hmm(x, restarts=3, seed=123)
    assert a.state_names == ("Bull", "Sideways", "Bear")
    assert np.all(np.diff(a.means_original()[:, 0]) < 0)  # Bull has the highest mean return
    assert np.allclose(a.transmat.sum(axis=1), 1) and np.isclose(a.startprob.sum(), 1)
    assert a.scaler_mean == pytest.approx(x.mean(axis=0))  # scaler fitted on these rows
    pa, pb = forward_filter(a, x).argmax(1), forward_filter(b, x).argmax(1)
    assert ((pa == 0) == (pb == 0)).mean() >= 0.95 and ((pa == 2) == (pb == 2)).mean() >= 0.95
    assert (pa == states).mean() > 0.9  # recovers the true regimes (true order = Bull, Sideways, Bear)
    assert len(a.restart_converged) == 3 and a.converged


def test_stable_labels_on_market_data(etf_obs):
    for sector in ("Energy", "Financials", "Information Technology"):
        x = etf_obs.filter(pl.col("sector") == sector).drop_nulls().select(OBS_COLUMNS).to_numpy()
        a, b = fit_sector_hmm(x, restarts=5, seed=0), fit_sector_hmm(x, restarts=5, seed=100)
        pa, pb = forward_filter(a, x).argmax(1), forward_filter(b, x).argmax(1)
        assert ((pa == 0) == (pb == 0)).mean() >= 0.95, sector
        assert ((pa == 2) == (pb == 2)).mean() >= 0.95, sector


def test_convergence_reported(caplog):
    x, _ = _sample_hmm(600, 1)
    with caplog.at_level(logging.WARNING, logger="ml.regimes.hmm"):
        f = fit_sector_hmm(x, restarts=2, seed=0, n_iter=2, tol=1e-9)
    assert f.converged is False and f.restart_converged == (False, False)
    assert f.restart_monitor_converged == (True, True)  # hmmlearn counts hitting n_iter as converged
    assert "did not converge" in caplog.text
    assert f.to_dict()["converged"] is False


def test_forward_filter_matches_predict_proba_on_prefixes(fitted, etf_obs):
    f = fitted["Financials"]
    x = etf_obs.filter(pl.col("sector") == "Financials").sort("date").select(OBS_COLUMNS).to_numpy()
    p = forward_filter(f, x)
    first = int(np.isfinite(x).all(axis=1).argmax())
    assert np.isnan(p[:first]).all() and np.allclose(p[first:].sum(axis=1), 1)
    m = f.to_hmmlearn()
    z = f.standardize(x[first:])
    for t in [0, 1, 2, 10, 57, 250, 600, z.shape[0] - 1]:
        smoothed_last = m.predict_proba(z[: t + 1])[-1]  # last row of a prefix = filtered prob
        assert np.abs(smoothed_last - p[first + t]).max() < 1e-8
    # the smoothed probabilities of the full sample differ from the filter (they use the future)
    assert np.abs(m.predict_proba(z) - p[first:]).max() > 1e-3
    # batched filtering over all sectors == single-sector filter
    probs = sector_filtered_probabilities(fitted, etf_obs)
    pb = probs.filter(pl.col("sector") == "Financials").sort("date").select(prob_columns(f.state_names)).to_numpy()
    assert np.allclose(np.nan_to_num(pb, nan=-1), np.nan_to_num(p, nan=-1), atol=1e-12)


def test_filter_passes_lookahead_smoothing_fails(fitted, market):
    groups = sector_groups(market.bars, market.sectors, "etf")

    def filtered(bars: pl.DataFrame) -> pl.DataFrame:
        obs = hmm_observations(bars, groups)
        return sector_filtered_probabilities(fitted, obs).drop("state").rename({"sector": "ticker"})

    def smoothed(bars: pl.DataFrame) -> pl.DataFrame:
        frames = []
        obs = hmm_observations(bars, groups)
        for sector, f in fitted.items():
            s = obs.filter(pl.col("sector") == sector).sort("date")
            x = s.select(OBS_COLUMNS).to_numpy()
            ok = np.isfinite(x).all(axis=1)
            p = np.full((s.height, f.n_states), np.nan)  # warm-up rows: null, like the filter
            if ok.any():
                p[ok] = f.to_hmmlearn().predict_proba(f.standardize(x[ok]))  # smoothed: uses the future
            cols = {c: p[:, j] for j, c in enumerate(prob_columns(f.state_names))}
            frames.append(pl.DataFrame({"ticker": sector, "date": s.get_column("date"), **cols}, nan_to_null=True))
        return pl.concat(frames)

    bars = market.bars.filter(pl.col("ticker").is_in(["SPY", "XLK", "XLF", "XLE"]))
    ok = check_lookahead(filtered, bars, k=4, seed=1)
    assert ok.passed, ok.to_markdown()
    assert all(c.n_compared > 0 for c in ok.checks) and len(ok.cutoffs) == 4
    leak = check_lookahead(smoothed, bars, k=4, seed=1)
    assert not leak.passed
    assert set(leak.failed_features) == {"p_bull", "p_sideways", "p_bear"}


def test_hmm_report(fitted, etf_obs):
    f = fitted["Energy"]
    s = etf_obs.filter(pl.col("sector") == "Energy").sort("date")
    p = forward_filter(f, s.select(OBS_COLUMNS).to_numpy())
    rep = hmm_report(f, p, s.get_column("date"))
    states = rep["states"]
    assert states.get_column("state").to_list() == ["Bull", "Sideways", "Bear"]
    assert states.get_column("share_of_days").sum() == pytest.approx(1.0)
    dur = states.get_column("expected_duration_days").to_numpy()
    assert dur == pytest.approx(1 / (1 - np.diag(f.transmat)))
    assert states.get_column("mean_ret_mean").to_list() == pytest.approx(f.means_original()[:, 0].tolist())
    assert rep["transitions"].height == 9
    assert rep["summary"]["n_filtered_days"] == int(np.isfinite(p).all(axis=1).sum())
    g = type(f).from_dict(json.loads(json.dumps(f.to_dict())))  # JSON round trip for metadata / tables
    assert np.array_equal(forward_filter(g, s.select(OBS_COLUMNS).to_numpy()), p, equal_nan=True)
    probs = sector_filtered_probabilities(fitted, etf_obs)
    frames = hmm_report_frames(fitted, probs, (date(2012, 1, 1), date(2013, 12, 31)))
    assert frames["summary"].height == 3 and frames["states"].height == 9 and frames["transitions"].height == 27
    assert set(probs.get_column("state").drop_nulls().unique()) <= {"Bull", "Sideways", "Bear"}


# ----------------------------------------------------------------------------- clustering
@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_clustering(method):
    rng = np.random.default_rng(0)
    centers = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    lab = rng.integers(0, 3, 600)
    X = centers[lab] * np.array([1.0, 100.0]) + rng.standard_normal((600, 2)) * np.array([0.5, 50.0])
    train, test = X[:400], X[400:]
    m = fit_clusters(train, 3, method, seed=0)
    assert m.scaler_mean == pytest.approx(train.mean(axis=0))  # standardiser from train rows only
    got = assign(m, test)
    # canonical ids follow the ascending first-feature centre: true cluster 0 -> 0, 1 -> 1, 2 -> 2
    assert (got == lab[400:]).mean() > 0.97
    assert np.all(np.diff(m.centers_original()[:, 0]) > 0)
    m2 = fit_clusters(train, 3, method, seed=7)
    assert (assign(m2, test) == got).mean() > 0.97  # ids do not depend on the seed
    bad = test.copy()
    bad[0, 1] = np.nan
    assert assign(m, bad)[0] == -1
    for k in (5, 7, 9):
        assert set(assign(fit_clusters(train, k, method), test)) <= set(range(k))
    with pytest.raises(ValueError):
        fit_clusters(train, 3, "dbscan")


def test_vix_buckets_vectorised_edges():
    import numpy as np

    from ml.regimes.vix import vix_buckets

    assert vix_buckets(np.array([14.99, 15.0, 20.0, 25.0, 35.0, np.nan])) == [
        "calm", "normal", "elevated", "stress", "panic", None]


def test_bucket_edges_left_closed_by_default_right_closed_like_pd_cut():
    """[a, b) (default) vs (a, b] (the seed article's pd.cut) on exactly the boundary values."""
    import numpy as np

    from ml.backtest.baselines import BaselineConfig, vix_rule
    from ml.envs.market_panel import MarketPanel
    from ml.regimes.vix import vix_buckets

    edges = np.array([15.0, 20.0, 25.0, 35.0])
    right = VixRegimeConfig(closed="right")
    assert vix_buckets(edges) == ["normal", "elevated", "stress", "panic"]
    assert vix_buckets(edges, right) == ["calm", "normal", "elevated", "stress"]
    assert vix_buckets(edges + 1e-9, right) == ["normal", "elevated", "stress", "panic"]  # off the edge: same
    assert vix_band(20.0) == "high" and vix_band(20.0, right) == "moderate"
    # the VIX rule baseline routes on the same side of the edge
    vix = np.array([15.0, 20.0, 30.0, 31.0])
    p = MarketPanel.from_arrays(np.zeros((4, 4)), assets=("SPY", "QQQ", "TLT", "GLD"), vix=vix)
    left_eq = vix_rule(p, 0, 3, BaselineConfig()).weights[:, :2].sum(1)
    right_eq = vix_rule(p, 0, 3, BaselineConfig(vix_regime=right)).weights[:, :2].sum(1)
    np.testing.assert_allclose(left_eq, [0.60, 0.35, 0.10])  # 15 moderate, 20 high, 30 extreme
    np.testing.assert_allclose(right_eq, [0.80, 0.60, 0.35])  # 15 low, 20 moderate, 30 high
