"""Synthetic market generator: schemas, determinism, OHLC sanity and the stylised facts it promises."""
from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA, SECTORS_SCHEMA, MarketData
from ml.data.synthetic import generate_market, trading_calendar
from ml.data.universe import SECTOR_ETFS, Universe


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(Universe(), seed=7)


def _close(m: MarketData, ticker: str) -> pl.DataFrame:
    return m.bars.filter(pl.col("ticker") == ticker).select("date", pl.col("close").alias(ticker))


def _joined(m: MarketData) -> pl.DataFrame:
    """date, VIX close and SPY/TLT closes on common days, sorted by date."""
    vix = m.index_bars.filter(pl.col("symbol") == "VIX").select("date", pl.col("close").alias("VIX"))
    return vix.join(_close(m, "SPY"), on="date").join(_close(m, "TLT"), on="date").sort("date")


def test_schemas_sorting_and_source(market: MarketData) -> None:
    assert dict(market.bars.schema) == BARS_SCHEMA
    assert dict(market.index_bars.schema) == INDEX_BARS_SCHEMA
    assert dict(market.sectors.schema) == SECTORS_SCHEMA
    assert market.source == "synthetic" and market.is_synthetic
    assert "seed=7" in market.description
    assert market.bars.equals(market.bars.sort("ticker", "date"))
    assert market.index_bars.equals(market.index_bars.sort("symbol", "date"))
    assert market.bars.select("ticker", "date").is_duplicated().sum() == 0


def test_tickers_sectors_and_indices(market: MarketData) -> None:
    tickers = set(market.bars["ticker"].unique())
    universe = Universe()
    stocks = {t for t in tickers if t.startswith("SYN_")}
    assert set(universe.etf_tickers()) <= tickers
    assert len(stocks) == 33 and {"SYN_IT1", "SYN_FIN2"} <= stocks
    assert tickers == set(universe.etf_tickers()) | stocks
    sectors = dict(zip(market.sectors["ticker"], market.sectors["gics_sector"]))
    assert set(sectors) == stocks | set(SECTOR_ETFS)
    assert all(sectors[etf] == s for etf, s in SECTOR_ETFS.items())
    assert sectors["SYN_IT1"] == "Information Technology"
    assert "Synthetic IT stock 1" in market.sectors["name"].to_list()
    assert set(market.index_bars["symbol"].unique()) == {"VIX", "VIX3M"}


def test_deterministic_per_seed(market: MarketData) -> None:
    again = generate_market(Universe(), seed=7)
    other = generate_market(Universe(), seed=8)
    for name in ("bars", "index_bars", "sectors"):
        assert getattr(again, name).equals(getattr(market, name))
    assert not other.bars.equals(market.bars)
    assert not other.index_bars.equals(market.index_bars)


def test_ohlcv_consistency(market: MarketData) -> None:
    b = market.bars
    bad = b.filter(
        (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("low") <= 0)
        | (pl.col("volume") <= 0)
        | (pl.col("volume") != pl.col("volume").round(0))
        | (pl.col("adj_close") != pl.col("close"))
    )
    assert bad.height == 0
    assert b.null_count().sum_horizontal().item() == 0
    rets = b.select((pl.col("close") / pl.col("close").shift(1).over("ticker") - 1).abs().max()).item()
    assert rets < 0.5
    gaps = b.select((pl.col("open") / pl.col("close").shift(1).over("ticker") - 1).abs().max()).item()
    assert gaps < 0.3  # open is near the previous close
    first = b.filter(pl.col("ticker") == "SPY")["close"][0]
    assert 50 < first < 200
    ix = market.index_bars
    assert ix.filter(
        (pl.col("high") < pl.max_horizontal("open", "close")) | (pl.col("low") > pl.min_horizontal("open", "close"))
    ).height == 0


def test_volume_higher_on_volatile_days(market: MarketData) -> None:
    spy = market.bars.filter(pl.col("ticker") == "SPY").sort("date")
    r = np.abs(np.diff(np.log(spy["close"].to_numpy())))
    vol = spy["volume"].to_numpy()[1:]
    assert vol[r > np.quantile(r, 0.9)].mean() > 1.3 * vol[r < np.quantile(r, 0.5)].mean()


def test_calendar_gaps_and_listing_dates(market: MarketData) -> None:
    spy_days = market.bars.filter(pl.col("ticker") == "SPY")["date"]
    assert spy_days.min() == date(2005, 1, 3) and spy_days.max() == date(2025, 12, 31)
    assert spy_days.diff().dt.total_days().max() <= 5
    assert all(d.weekday() < 5 for d in spy_days.to_list())
    assert date(2010, 12, 24) in spy_days.to_list() and date(2010, 12, 27) in spy_days.to_list()
    assert date(2015, 12, 25) not in spy_days.to_list() and date(2019, 7, 4) not in spy_days.to_list()
    first = market.bars.group_by("ticker").agg(pl.col("date").min())
    first = dict(zip(first["ticker"], first["date"]))
    assert first["XLRE"] == date(2015, 10, 8) and first["XLC"] == date(2018, 6, 19)
    assert first["SPY"] == date(2005, 1, 3)
    assert market.index_bars.filter(pl.col("symbol") == "VIX3M")["date"].min() == date(2006, 7, 17)
    # all tickers trade on the same calendar
    assert market.bars.group_by("date").len()["len"].max() == market.bars["ticker"].n_unique()


def test_trading_calendar_holidays() -> None:
    days = {d.astype(object) for d in trading_calendar(date(2024, 1, 1), date(2024, 12, 31))}
    for holiday in (date(2024, 1, 1), date(2024, 1, 15), date(2024, 5, 27), date(2024, 7, 4),
                    date(2024, 9, 2), date(2024, 11, 28), date(2024, 12, 25)):
        assert holiday not in days
    assert date(2024, 1, 2) in days and 245 <= len(days) <= 256


def test_history_bounds_are_respected() -> None:
    u = Universe(history_start=date(2010, 3, 1), history_end=date(2012, 6, 30), include_stocks=False)
    m = generate_market(u, seed=1)
    assert m.bars["date"].min() >= date(2010, 3, 1) and m.bars["date"].max() <= date(2012, 6, 30)
    assert not m.bars["ticker"].str.starts_with("SYN_").any()
    assert "XLRE" not in m.bars["ticker"].to_list()  # listed after the window
    assert m.index_bars["date"].min() >= date(2010, 3, 1)


def test_explicit_stocks_round_robin() -> None:
    u = Universe(stocks=["AAA", "BBB", "CCC"], history_start=date(2020, 1, 1), history_end=date(2020, 12, 31))
    m = generate_market(u, seed=3)
    sectors = dict(zip(m.sectors["ticker"], m.sectors["gics_sector"]))
    assert [sectors[t] for t in ("AAA", "BBB", "CCC")] == list(SECTOR_ETFS.values())[:3]
    assert {"AAA", "BBB", "CCC"} <= set(m.bars["ticker"].unique())


def test_vix_level_mean_reversion_and_clustering(market: MarketData) -> None:
    vix = market.index_bars.filter(pl.col("symbol") == "VIX")
    assert vix["low"].min() >= 9 and vix["high"].max() <= 120
    close = vix["close"].to_numpy()
    assert 12 <= close.mean() <= 30 and 12 <= np.median(close) <= 25
    assert close.max() >= 40  # spikes happen
    lv = np.log(close)
    assert np.corrcoef(lv[1:], lv[:-1])[0, 1] < 0.995  # mean-reverting, not a random walk
    d = np.abs(np.diff(lv))
    assert np.corrcoef(d[1:], d[:-1])[0, 1] > 0.02  # volatility of VIX clusters
    # contango most of the time, inverted in spikes
    w = market.index_bars.pivot(on="symbol", index="date", values="close").drop_nulls()
    ratio = (w["VIX3M"] / w["VIX"]).to_numpy()
    assert (ratio > 1).mean() > 0.7
    assert (ratio[w["VIX"].to_numpy() > 35] < 1).mean() > 0.5
    assert np.std(np.diff(np.log(w["VIX3M"].to_numpy()))) < np.std(np.diff(np.log(w["VIX"].to_numpy())))


def test_equity_vol_and_correlations_depend_on_vix(market: MarketData) -> None:
    j = _joined(market)
    vix = j["VIX"].to_numpy()
    r_spy = np.diff(np.log(j["SPY"].to_numpy()))
    r_tlt = np.diff(np.log(j["TLT"].to_numpy()))
    prev_vix = vix[:-1]  # regime known at the close of t-1
    high, calm = prev_vix > 25, prev_vix < 16
    assert high.sum() > 100 and calm.sum() > 100
    assert r_spy[high].std() > 1.8 * r_spy[calm].std()
    assert np.corrcoef(np.diff(vix), r_spy)[0, 1] < -0.3
    corr_high = np.corrcoef(r_spy[high], r_tlt[high])[0, 1]
    corr_calm = np.corrcoef(r_spy[calm], r_tlt[calm])[0, 1]
    assert corr_high < -0.2 and corr_high < corr_calm - 0.3
    ann_vol = r_spy.std() * np.sqrt(252)
    assert 0.10 < ann_vol < 0.30


def test_qqq_beta_above_spy(market: MarketData) -> None:
    w = _close(market, "SPY").join(_close(market, "QQQ"), on="date").join(_close(market, "XLU"), on="date").sort("date")
    r = {t: np.diff(np.log(w[t].to_numpy())) for t in ("SPY", "QQQ", "XLU")}
    beta = {t: np.cov(r[t], r["SPY"])[0, 1] / r["SPY"].var() for t in ("QQQ", "XLU")}
    assert beta["QQQ"] > 1.1 and beta["XLU"] < 0.8
