"""The allocation dataset (ml.dataset): every panel column is a feature-store column or a fold output, picked by
name; returns compound the feature store's log returns between kept rows; windows and hashes; the fold-output
blocks (sector breadth / probabilities, prescreen) and their neutral fills; the env over a non-base spec."""
from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
import torch

from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.dataset import OBSERVATION_VARIANTS, ObservationSpec, allocation_panel, observation_variant, policy_panel
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, PortfolioEnv
from ml.features import compute_features

ASSETS = ("SPY", "QQQ", "TLT", "GLD")
SECTORS = ("Energy", "Financials")


@pytest.fixture(scope="module")
def market():
    return generate_market(
        Universe(include_stocks=False, sector_etfs=[], history_start=date(2015, 1, 1), history_end=date(2017, 12, 31)),
        seed=7,
    )


@pytest.fixture(scope="module")
def features(market) -> pl.DataFrame:
    return compute_features(market.bars, market.index_bars)


@pytest.fixture(scope="module")
def panel(features) -> MarketPanel:
    return allocation_panel(features, None, ASSETS)


@pytest.fixture(scope="module")
def probs(panel) -> pl.DataFrame:
    """Hand-made sector-HMM probabilities for two sectors on every panel date but the first 10."""
    rng = np.random.default_rng(0)
    days = pl.Series(panel.dates[10:]).cast(pl.Date)
    parts = []
    for s in SECTORS:
        p = rng.dirichlet(np.ones(3), size=len(days))
        parts.append(pl.DataFrame({"sector": s, "date": days, "p_bull": p[:, 0], "p_sideways": p[:, 1],
                                   "p_bear": p[:, 2]}))
    return pl.concat(parts)


def _store(features: pl.DataFrame, ticker: str, column: str, dates: np.ndarray) -> np.ndarray:
    """The feature store's ``column`` of ``ticker`` on ``dates`` (null -> NaN)."""
    rows = features.filter(pl.col("ticker") == ticker).select("date", column)
    on = pl.DataFrame({"date": pl.Series(dates).cast(pl.Date)})
    return on.join(rows, on="date", how="left", maintain_order="left")[column].cast(pl.Float64).to_numpy()


def _on_dates(frame: pl.DataFrame, column: str, dates: np.ndarray) -> np.ndarray:
    on = pl.DataFrame({"date": pl.Series(dates).cast(pl.Date)})
    return on.join(frame.select("date", column), on="date", how="left", maintain_order="left")[column].to_numpy()


# ----------------------------------------------------------------------------------------------------
# feature-store columns, returns, VIX
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["base", "term"])
def test_every_column_is_the_feature_store_column_of_that_name(features, variant):
    spec = OBSERVATION_VARIANTS[variant]
    p = allocation_panel(features, spec, ASSETS)
    names = [f"{a}.{c}" for a in ASSETS for c in spec.asset_features] + list(spec.market_features)
    assert p.feature_names == tuple(names)
    assert len(names) == (16 if variant == "base" else 18)
    for a in ASSETS:
        for c in spec.asset_features:
            np.testing.assert_array_equal(p.column(f"{a}.{c}"), _store(features, a, c, p.dates), err_msg=f"{a}.{c}")
    for c in spec.market_features:  # per date: the same for every ticker
        for a in ASSETS:
            np.testing.assert_array_equal(p.column(c), _store(features, a, c, p.dates), err_msg=f"{a} {c}")
    np.testing.assert_array_equal(p.vix, _store(features, "SPY", "vix_level", p.dates))
    assert np.isfinite(p.features).all()


def test_returns_are_close_to_close_between_panel_rows(market, panel, features):
    closes = np.stack([_on_dates(market.bars.filter(pl.col("ticker") == a), "close", panel.dates) for a in ASSETS], 1)
    np.testing.assert_allclose(panel.returns[1:], closes[1:] / closes[:-1] - 1.0, rtol=0, atol=1e-12)
    # row 0 earns the day from the previous bar (the last warm-up row, dropped)
    spy = market.bars.filter(pl.col("ticker") == "SPY").sort("date")
    k = spy["date"].to_list().index(panel.date_of(0))
    assert panel.returns[0, 0] == pytest.approx(spy["close"][k] / spy["close"][k - 1] - 1.0, abs=1e-12)
    # warm-up rows are dropped: the first row with every column known is row 0's predecessor
    days = np.array(sorted(features["date"].unique().to_list()), dtype="datetime64[D]")
    known = np.stack([_store(features, a, c, days) for a in ASSETS
                      for c in ("ret_5d", "ret_21d", "rv_21d_ann", *ObservationSpec().market_features)])
    first = int(np.flatnonzero(np.isfinite(known).all(0))[0])
    assert first > 60 and panel.dates[0] == days[first + 1]


def test_a_dropped_row_compounds_into_the_next_return(features, panel):
    k = 200
    day = panel.date_of(k)
    holed = features.with_columns(
        pl.when((pl.col("ticker") == "GLD") & (pl.col("date") == day)).then(None).otherwise(pl.col("ret_21d"))
        .alias("ret_21d"))
    p = allocation_panel(holed, None, ASSETS)
    keep = np.r_[0:k, k + 1:panel.n_dates]
    np.testing.assert_array_equal(p.dates, panel.dates[keep])
    np.testing.assert_array_equal(p.features, panel.features[keep])
    expect = panel.returns[keep].copy()
    expect[k] = (1.0 + panel.returns[k]) * (1.0 + panel.returns[k + 1]) - 1.0  # the held day k is not lost
    np.testing.assert_allclose(p.returns, expect, rtol=0, atol=1e-12)


def test_window_is_a_slice_of_the_full_panel_and_hash_tracks_bars(market, features, panel):
    lo, hi = 100, 300
    w = allocation_panel(features, None, ASSETS, start=panel.date_of(lo), end=panel.date_of(hi))
    np.testing.assert_array_equal(w.dates, panel.dates[lo : hi + 1])
    for name in ("returns", "features", "vix"):
        np.testing.assert_array_equal(getattr(w, name), getattr(panel, name)[lo : hi + 1], err_msg=name)
    assert w.data_hash() == panel.data_hash(lo, hi) != panel.data_hash()
    weekend = allocation_panel(features, None, ASSETS, start=date(2016, 1, 2), end=date(2016, 1, 31))  # a Saturday
    assert str(weekend.dates[0]) == "2016-01-04" and str(weekend.dates[-1]) == "2016-01-29"
    bumped = market.bars.with_columns(
        pl.when((pl.col("ticker") == "GLD") & (pl.col("date") == pl.date(2016, 3, 1)))
        .then(pl.col("close") * 1.01).otherwise(pl.col("close")).alias("close"))
    assert allocation_panel(compute_features(bumped, market.index_bars), None, ASSETS).data_hash() != panel.data_hash()


# ----------------------------------------------------------------------------------------------------
# fold outputs: sector regimes, prescreen
# ----------------------------------------------------------------------------------------------------


def test_breadth_is_the_mean_over_sectors_neutral_where_missing(features, panel, probs):
    p = allocation_panel(features, ObservationSpec(sector_regimes="breadth"), ASSETS, sector_probabilities=probs)
    assert p.feature_names == (*panel.feature_names, "sectors.p_bull", "sectors.p_bear")
    np.testing.assert_array_equal(p.dates, panel.dates)
    np.testing.assert_array_equal(p.features[:, :16], panel.features)
    for state in ("bull", "bear"):
        mean = probs.group_by("date").agg(pl.col(f"p_{state}").mean())
        col = p.column(f"sectors.p_{state}")
        np.testing.assert_allclose(col[10:], _on_dates(mean, f"p_{state}", p.dates[10:]), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(col[:10], 1.0 / 3.0)  # no probabilities yet: uninformative


def test_probabilities_mode_has_one_column_per_sector_and_state(features, panel, probs):
    p = allocation_panel(features, ObservationSpec(sector_regimes="probabilities"), ASSETS,
                         sector_probabilities=probs)
    extra = p.feature_names[len(panel.feature_names):]
    assert set(extra) == {f"sector.{s}.p_{k}" for s in SECTORS for k in ("bull", "sideways", "bear")}
    for s in SECTORS:
        for k in ("bull", "sideways", "bear"):
            col = p.column(f"sector.{s}.p_{k}")
            ref = _on_dates(probs.filter(pl.col("sector") == s), f"p_{k}", p.dates[10:])
            np.testing.assert_array_equal(col[10:], ref)
            np.testing.assert_array_equal(col[:10], 1.0 / 3.0)


def test_prescreen_is_buy_minus_sell_zero_where_missing(features, panel):
    days = pl.Series(panel.dates[50:80]).cast(pl.Date)
    rng = np.random.default_rng(1)
    scores = pl.concat([
        pl.DataFrame({"ticker": t, "date": days, "buy_probability": rng.random(30), "sell_probability": rng.random(30)})
        for t in ("SPY", "TLT", "XLE")  # XLE is not an allocation asset: ignored
    ])
    p = allocation_panel(features, ObservationSpec(prescreen=True), ASSETS, prescreen_scores=scores)
    assert p.feature_names == (*panel.feature_names, *(f"{a}.prescreen" for a in ASSETS))
    for a in ASSETS:
        col = p.column(f"{a}.prescreen")
        if a in ("SPY", "TLT"):
            s = scores.filter(pl.col("ticker") == a).with_columns(
                (pl.col("buy_probability") - pl.col("sell_probability")).alias("net"))
            np.testing.assert_allclose(col[50:80], _on_dates(s, "net", p.dates[50:80]), rtol=0, atol=1e-15)
            assert (col[:50] == 0).all() and (col[80:] == 0).all()
        else:
            assert (col == 0).all()


def test_missing_inputs_and_unknown_names_fail_clearly(features, probs):
    with pytest.raises(ValueError, match="sector HMM probabilities"):
        allocation_panel(features, ObservationSpec(sector_regimes="breadth"), ASSETS)
    with pytest.raises(ValueError, match="prescreen scores"):
        allocation_panel(features, ObservationSpec(prescreen=True), ASSETS, sector_probabilities=probs)
    with pytest.raises(ValueError, match="prescreen models"):
        policy_panel(features, OBSERVATION_VARIANTS["all"], ASSETS, sector_probabilities=probs)
    with pytest.raises(ValueError, match=r"features\.registry") as err:
        allocation_panel(features, ObservationSpec(asset_features=("ret_5d", "not_a_feature")), ASSETS)
    assert "not_a_feature" in str(err.value)
    with pytest.raises(ValueError, match=r"features\.registry"):
        allocation_panel(features, ObservationSpec(market_features=("vix_nope",)), ASSETS)
    with pytest.raises(ValueError, match="no feature rows"):
        allocation_panel(features, None, ("SPY", "XYZ"))
    with pytest.raises(ValueError, match="unknown observation variant"):
        observation_variant("nope")
    with pytest.raises(ValueError):
        ObservationSpec(sector_regimes="everything")
    # inputs a spec does not observe are ignored
    assert policy_panel(features, None, ASSETS, sector_probabilities=probs).data_hash() == \
        allocation_panel(features, None, ASSETS).data_hash()


def test_other_feature_store_columns_by_name(features):
    spec = ObservationSpec(asset_features=("ret_63d", "rsi_14"), market_features=("vix_term",))
    p = allocation_panel(features, spec, ("SPY", "TLT"))
    assert p.feature_names == ("SPY.ret_63d", "SPY.rsi_14", "TLT.ret_63d", "TLT.rsi_14", "vix_term")
    np.testing.assert_array_equal(p.column("TLT.rsi_14"), _store(features, "TLT", "rsi_14", p.dates))
    assert EnvConfig(observation=spec).obs_dim(p) == 5 + 3


# ----------------------------------------------------------------------------------------------------
# the environment over the dataset
# ----------------------------------------------------------------------------------------------------


def test_obs_layout_and_both_faces_agree_on_a_non_base_spec(features, panel, probs):
    assert EnvConfig().obs_dim(panel) == 21
    spec = ObservationSpec(market_features=OBSERVATION_VARIANTS["term"].market_features, sector_regimes="breadth")
    p = allocation_panel(features, spec, ASSETS, sector_probabilities=probs)
    cfg = EnvConfig(observation=spec, episode_length=30, terminate_below=0.98, dtype="float64")
    names = cfg.obs_names(p)
    assert cfg.obs_dim(p) == len(names) == 16 + 2 + 2 + 5
    assert names[16:] == ["vix_term", "vix_term_chg_5d", "sectors.p_bull", "sectors.p_bear",
                          "w.SPY", "w.QQQ", "w.TLT", "w.GLD", "w.cash"]
    E, lo, hi = 4, 5, 200
    benv = BatchedPortfolioEnv(p, cfg, lo, hi, num_envs=E, seed=3)
    obs_b = benv.reset()
    envs = [PortfolioEnv(p, cfg, lo, hi) for _ in range(E)]
    obs_g = np.stack([e.reset(options={"start_idx": int(benv.start[i])})[0] for i, e in enumerate(envs)])
    np.testing.assert_array_equal(obs_b.numpy(), obs_g)
    np.testing.assert_array_equal(obs_g[:, :20], p.features[benv.start.numpy()])
    rng = np.random.default_rng(4)
    n_done = 0
    for _ in range(80):
        logits = rng.normal(0, 3.0, size=(E, 5))
        obs_b, r_b, term_b, trunc_b, _ = benv.step(torch.as_tensor(logits))
        for i, env in enumerate(envs):
            o, r, term, trunc, _ = env.step(logits[i])
            assert r == pytest.approx(float(r_b[i]), rel=1e-10, abs=1e-12)
            assert term == bool(term_b[i]) and trunc == bool(trunc_b[i])
            if term or trunc:
                n_done += 1
                o, _ = env.reset(options={"start_idx": int(benv.start[i])})
            np.testing.assert_allclose(obs_b[i].numpy(), o, rtol=0, atol=1e-12)
    assert n_done > 4


@pytest.mark.real_data
@pytest.mark.slow
def test_real_snapshot_panel_is_the_feature_store_and_the_check_covers_every_policy_input(real_data_dir):
    """On the real snapshot: the default policy's panel columns equal the feature-store columns of the same
    name (<= 1e-12), and the blocking look-ahead check verifies every feature-store column the panel reads."""
    from functools import partial

    from ml.data.csv_source import CsvMarketSource
    from ml.features import FeatureConfig
    from ml.lookahead import check_lookahead

    m = CsvMarketSource(real_data_dir).load(Universe(include_stocks=False), on_progress=lambda _: None)
    store = compute_features(m.bars, m.index_bars)  # exactly what the features/daily asset writes
    spec = ObservationSpec()
    panel = allocation_panel(store, spec, ASSETS)
    assert panel.n_dates > 4500 and len(panel.feature_names) == 16
    days = pl.Series("date", panel.dates).cast(pl.Date)
    for name in panel.feature_names:
        ticker, column = name.split(".") if "." in name else ("SPY", name)  # per-date columns: any ticker's row
        expected = (pl.DataFrame({"date": days}).join(store.filter(pl.col("ticker") == ticker), on="date", how="left")
                    .get_column(column).to_numpy())
        np.testing.assert_allclose(panel.column(name), expected, rtol=0, atol=1e-12, err_msg=name)
    report = check_lookahead(partial(compute_features, config=FeatureConfig()), m.bars, m.index_bars, k=3)
    checked = {c.feature for c in report.checks}
    assert set(spec.feature_store_columns()) <= checked, set(spec.feature_store_columns()) - checked
    assert report.passed, report.summary()
