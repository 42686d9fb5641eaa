"""Yahoo source against a recorded-looking fake of ``yfinance.download``; never touches the network."""
from __future__ import annotations

import socket
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
import yfinance

from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA, SECTORS_SCHEMA, DataSourceError, SourceUnavailableError
from ml.data.universe import SECTOR_ETFS, Universe
from ml.data.yahoo_source import YahooMarketSource

FIELDS = ["Open", "High", "Low", "Close", "Volume"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection or unpatched yfinance download fails the test loudly."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in tests")

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("yfinance.download called without a fake")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(yfinance, "download", no_download)


def fake_yahoo_frame(tickers: list[str], start: str, end: str, empty: tuple[str, ...] = ()) -> pd.DataFrame:
    """What ``yf.download(group_by="ticker", auto_adjust=True)`` returns: columns (Ticker, Price),
    business days in [start, end), all-NaN columns for symbols Yahoo has no data for."""
    dates = pd.bdate_range(start, pd.Timestamp(end) - pd.Timedelta(days=1), name="Date")
    blocks = {}
    for k, t in enumerate(tickers):
        base = 100.0 + 10 * k + np.arange(len(dates), dtype=float)
        block = pd.DataFrame(
            {"Open": base, "High": base + 2, "Low": base - 2, "Close": base + 1, "Volume": 1e6 + k},
            index=dates,
        )
        if t.startswith("^"):
            block["Volume"] = 0.0
        if t in empty:
            block[:] = np.nan
        blocks[t] = block
    frame = pd.concat(blocks, axis=1)
    frame.columns = frame.columns.set_names(["Ticker", "Price"])
    return frame


class FakeDownload:
    """Records calls; answers like yfinance for the requested tickers and dates."""

    def __init__(self, empty: tuple[str, ...] = (), nan_row: str | None = None, extra_day: bool = False):
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.empty, self.nan_row, self.extra_day = empty, nan_row, extra_day

    def __call__(self, tickers: list[str], **kwargs: Any) -> pd.DataFrame:
        self.calls.append((list(tickers), kwargs))
        end = pd.Timestamp(kwargs["end"]) + pd.Timedelta(days=3 if self.extra_day else 0)
        frame = fake_yahoo_frame(list(tickers), kwargs["start"], str(end.date()), self.empty)
        if self.nan_row:
            frame.loc[pd.Timestamp(self.nan_row), (slice(None), slice(None))] = np.nan
        return frame


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(YahooMarketSource, "is_reachable", staticmethod(lambda timeout=3.0: True))


def _universe(**kw: Any) -> Universe:
    base = dict(allocation=["SPY", "QQQ"], sector_etfs=["XLK"], include_stocks=False,
                history_start=date(2024, 1, 2), history_end=date(2024, 1, 31))
    return Universe(**{**base, **kw})


def test_load_converts_to_canonical_frames(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload(nan_row="2024-01-15")
    monkeypatch.setattr(yfinance, "download", fake)
    m = YahooMarketSource().load(_universe())
    assert m.source == "yahoo" and m.warnings == ()
    assert dict(m.bars.schema) == BARS_SCHEMA
    assert dict(m.index_bars.schema) == INDEX_BARS_SCHEMA
    assert dict(m.sectors.schema) == SECTORS_SCHEMA
    (tickers, kwargs), = fake.calls
    assert tickers == ["SPY", "QQQ", "XLK", "^VIX", "^VIX3M"]
    assert kwargs["auto_adjust"] is True and kwargs["group_by"] == "ticker" and kwargs["progress"] is False
    assert sorted(m.bars["ticker"].unique()) == ["QQQ", "SPY", "XLK"]
    assert sorted(m.index_bars["symbol"].unique()) == ["VIX", "VIX3M"]
    assert m.bars.equals(m.bars.sort("ticker", "date"))
    assert (m.bars["adj_close"] == m.bars["close"]).all()
    # all-NaN rows (2024-01-15 here) are dropped, nothing else is
    assert date(2024, 1, 15) not in m.bars["date"].to_list()
    assert m.bars.filter(pl.col("ticker") == "SPY").height == len(pd.bdate_range("2024-01-02", "2024-01-31")) - 1
    spy0 = m.bars.filter(pl.col("ticker") == "SPY").row(0, named=True)
    assert spy0 == {"ticker": "SPY", "date": date(2024, 1, 2), "open": 100.0, "high": 102.0, "low": 98.0,
                    "close": 101.0, "adj_close": 101.0, "volume": 1e6}
    vix0 = m.index_bars.filter(pl.col("symbol") == "VIX").row(0, named=True)
    assert vix0 == {"symbol": "VIX", "date": date(2024, 1, 2), "open": 130.0, "high": 132.0, "low": 128.0,
                    "close": 131.0}
    sectors = dict(zip(m.sectors["ticker"], m.sectors["name"]))
    assert set(sectors) == set(SECTOR_ETFS) and all(k == v for k, v in sectors.items())


def test_end_date_is_exclusive_in_yfinance(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload(extra_day=True)  # a source that returns a few days past `end`
    monkeypatch.setattr(yfinance, "download", fake)
    m = YahooMarketSource().load(_universe(history_end=date(2024, 1, 31)))
    kwargs = fake.calls[0][1]
    assert kwargs["start"] == "2024-01-02" and kwargs["end"] == "2024-02-01"
    assert m.bars["date"].max() == date(2024, 1, 31)  # the requested last day is included
    assert m.index_bars["date"].max() == date(2024, 1, 31)  # and nothing later leaks in
    assert m.bars["date"].min() == date(2024, 1, 2)


def test_offline_raises_clear_error_without_downloading(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(yfinance, "download", fake)
    assert YahooMarketSource.is_reachable(timeout=0.1) is False  # the guard refuses sockets
    with pytest.raises(SourceUnavailableError) as err:
        YahooMarketSource().load(_universe())
    msg = str(err.value)
    assert "query1.finance.yahoo.com:443" in msg and "not reachable" in msg
    assert "REGIMEFLOW_SOURCE=csv" in msg and "REGIMEFLOW_DATA_DIR" in msg and "synthetic" in msg
    assert fake.calls == []


def test_is_reachable_opens_a_tcp_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class Conn:
        def __enter__(self) -> "Conn":
            return self

        def __exit__(self, *exc: Any) -> None:
            seen.append("closed")

    def fake_connect(address: tuple[str, int], timeout: float) -> Conn:
        seen.append((address, timeout))
        return Conn()

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    assert YahooMarketSource.is_reachable(timeout=1.5) is True
    assert seen == [(("query1.finance.yahoo.com", 443), 1.5), "closed"]


def test_empty_ticker_raises_naming_it(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yfinance, "download", FakeDownload(empty=("XLK", "^VIX3M")))
    with pytest.raises(SourceUnavailableError, match=r"no data for XLK, VIX3M"):
        YahooMarketSource().load(_universe())


def test_ticker_missing_from_result_raises(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def partial(tickers: list[str], **kwargs: Any) -> pd.DataFrame:
        return fake_yahoo_frame([t for t in tickers if t != "QQQ"], kwargs["start"], kwargs["end"])

    monkeypatch.setattr(yfinance, "download", partial)
    with pytest.raises(SourceUnavailableError, match="QQQ"):
        YahooMarketSource().load(_universe())


def test_download_exception_becomes_source_unavailable(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("rate limited")

    monkeypatch.setattr(yfinance, "download", boom)
    with pytest.raises(SourceUnavailableError, match="rate limited"):
        YahooMarketSource().load(_universe())


def test_stocks_from_sectors_file(online: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sectors_file = tmp_path / "sectors.csv"
    sectors_file.write_text(
        "ticker,name,gics_sector\nAAPL,Apple Inc.,Information Technology\n"
        "BRK-B,Berkshire Hathaway,Financials\nXLK,XLK,Information Technology\n"
    )
    fake = FakeDownload()
    monkeypatch.setattr(yfinance, "download", fake)
    m = YahooMarketSource().load(_universe(include_stocks=True), sectors_file=sectors_file)
    assert fake.calls[0][0] == ["SPY", "QQQ", "XLK", "AAPL", "BRK-B", "^VIX", "^VIX3M"]
    assert sorted(m.bars["ticker"].unique()) == ["AAPL", "BRK-B", "QQQ", "SPY", "XLK"]
    rows = {r["ticker"]: r for r in m.sectors.iter_rows(named=True)}
    assert rows["AAPL"]["name"] == "Apple Inc." and rows["BRK-B"]["gics_sector"] == "Financials"
    assert rows["XLK"]["name"] == "XLK" and set(rows) == set(SECTOR_ETFS) | {"AAPL", "BRK-B"}
    assert m.warnings == ()


def test_explicit_stocks_keep_their_spelling(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(yfinance, "download", fake)
    m = YahooMarketSource().load(_universe(include_stocks=True, stocks=["BRK.B"], indices=["VIX"]))
    assert fake.calls[0][0] == ["SPY", "QQQ", "XLK", "BRK-B", "^VIX"]
    assert "BRK.B" in m.bars["ticker"].to_list()
    assert m.index_bars["symbol"].unique().to_list() == ["VIX"]


def test_no_stock_list_loads_etfs_with_warning(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload()
    monkeypatch.setattr(yfinance, "download", fake)
    m = YahooMarketSource().load(_universe(include_stocks=True))
    assert sorted(m.bars["ticker"].unique()) == ["QQQ", "SPY", "XLK"]
    assert len(m.warnings) == 1 and "only ETFs" in m.warnings[0]


def test_malformed_sectors_file(online: None, tmp_path: Path) -> None:
    bad = tmp_path / "sectors.csv"
    bad.write_text("ticker,sector\nAAPL,IT\n")
    with pytest.raises(DataSourceError, match="sectors.csv.*missing column"):
        YahooMarketSource().load(_universe(include_stocks=True), sectors_file=bad)


def test_module_imports_yfinance_lazily() -> None:
    code = "import sys, ml.data.yahoo_source; print('yfinance' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"
