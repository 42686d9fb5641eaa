"""CSV-directory source: round trip, real snapshot, and every bad-input case names file, line and problem."""
from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from ml.data.csv_source import CsvMarketSource
from ml.data.market import BARS_SCHEMA, DataSourceError


def _load(csv_dir, universe):
    return CsvMarketSource(csv_dir).load(universe, on_progress=lambda _: None)


def test_round_trip_matches_generated_market(csv_dir, small_universe, small_market):
    market = _load(csv_dir, small_universe)
    assert market.source == "csv"
    assert dict(market.bars.schema) == BARS_SCHEMA
    expected = small_market.bars.filter(pl.col("ticker").is_in(market.bars["ticker"].unique().implode()))
    assert market.bars.height == expected.height
    diff = (market.bars["close"] - expected["close"]).abs().max()
    assert diff < 1e-9  # CSV text round trip of float64 values
    assert set(market.index_bars["symbol"]) == {"VIX", "VIX3M"}
    assert set(market.sectors["ticker"]) == set(market.bars["ticker"]) & set(market.sectors["ticker"])


def test_history_bounds_are_applied(csv_dir, small_universe):
    u = small_universe.model_copy(update={"history_start": __import__("datetime").date(2020, 1, 1)})
    market = _load(csv_dir, u)
    assert market.bars["date"].min() >= u.history_start


def test_progress_is_reported_per_ticker(csv_dir, small_universe):
    lines: list[str] = []
    CsvMarketSource(csv_dir).load(small_universe, on_progress=lines.append)
    assert any("SPY" in line and "bars" in line for line in lines)
    assert sum("read " in line and "(" in line for line in lines) >= 9


def _expect_error(csv_dir, universe, *fragments):
    with pytest.raises(DataSourceError) as err:
        _load(csv_dir, universe)
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in error:\n{text}"
    assert "nothing was written" in text or "sectors.csv" in text or "unknown ticker" in text
    return text


def _rewrite(path: Path, transform) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(transform(lines)) + "\n")


def test_missing_column(csv_dir, small_universe):
    p = csv_dir / "ohlcv" / "SPY.csv"
    frame = pl.read_csv(p).drop("volume")
    frame.write_csv(p)
    _expect_error(csv_dir, small_universe, "SPY.csv:1", "missing column", "volume")


def test_non_numeric_price(csv_dir, small_universe):
    p = csv_dir / "ohlcv" / "QQQ.csv"
    _rewrite(p, lambda ls: ls[:5] + [ls[5].replace(ls[5].split(",")[4], "abc", 1)] + ls[6:])
    _expect_error(csv_dir, small_universe, "QQQ.csv:6", "non-numeric", "close", "'abc'")


def test_bad_date(csv_dir, small_universe):
    p = csv_dir / "ohlcv" / "TLT.csv"
    _rewrite(p, lambda ls: ls[:3] + ["2019-13-45" + ls[3][10:]] + ls[4:])
    _expect_error(csv_dir, small_universe, "TLT.csv:4", "bad date", "2019-13-45")


def test_empty_file(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "GLD.csv").write_text("")
    _expect_error(csv_dir, small_universe, "GLD.csv", "empty")


def test_header_only_file(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "GLD.csv").write_text("date,open,high,low,close,adj_close,volume\n")
    _expect_error(csv_dir, small_universe, "GLD.csv", "no data rows")


def test_duplicated_header(csv_dir, small_universe):
    p = csv_dir / "ohlcv" / "XLK.csv"
    _rewrite(p, lambda ls: ls[:10] + [ls[0]] + ls[10:])
    _expect_error(csv_dir, small_universe, "XLK.csv:11", "duplicated header")


def test_duplicate_and_unsorted_dates(csv_dir, small_universe):
    p = csv_dir / "ohlcv" / "XLF.csv"
    _rewrite(p, lambda ls: ls[:8] + [ls[7]] + ls[8:])
    _expect_error(csv_dir, small_universe, "XLF.csv:9", "duplicate date")


def test_unknown_ticker(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "SPYY.csv").write_text((csv_dir / "ohlcv" / "SPY.csv").read_text())
    _expect_error(csv_dir, small_universe, "SPYY.csv", "unknown ticker 'SPYY'")


def test_missing_ticker_file(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "XLE.csv").unlink()
    _expect_error(csv_dir, small_universe, "no file for ticker(s) ['XLE']")


def test_corrupt_gzip(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "AAA.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    _expect_error(csv_dir, small_universe, "AAA.csv.gz")


def test_all_problems_reported_together(csv_dir, small_universe):
    (csv_dir / "ohlcv" / "GLD.csv").write_text("")
    p = csv_dir / "ohlcv" / "TLT.csv"
    _rewrite(p, lambda ls: ls[:3] + ["notadate" + ls[3][10:]] + ls[4:])
    text = _expect_error(csv_dir, small_universe, "GLD.csv", "TLT.csv:4")
    assert "2 file(s) with problems" in text


def test_gzip_stock_is_read(csv_dir, small_universe):
    with gzip.open(csv_dir / "ohlcv" / "AAA.csv.gz", "rt") as fh:
        n = sum(1 for _ in fh) - 1
    market = _load(csv_dir, small_universe)
    assert market.bars.filter(pl.col("ticker") == "AAA").height == n


@pytest.mark.real_data
def test_real_snapshot_loads(real_data_dir):
    from ml.data.universe import Universe

    market = CsvMarketSource(real_data_dir).load(Universe(), on_progress=lambda _: None)
    assert market.bars["ticker"].n_unique() == 115
    assert market.bars["date"].min().isoformat() >= "2005-01-01"
    spy = market.bars.filter(pl.col("ticker") == "SPY")
    assert spy.height > 5000
    vix = market.index_bars.filter(pl.col("symbol") == "VIX")
    assert vix.filter(pl.col("date") == pl.date(2020, 3, 16))["close"].item() == pytest.approx(82.69)
