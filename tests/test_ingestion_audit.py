"""Write-audit-publish ingestion: a malformed batch - parse-level or rule-level - ends with a clear error naming
the file or ticker and date, and neither the warehouse nor the analyst snapshot changes (row for row);
real-world quirks (CRLF, UTF-8 BOM, extra columns) still ingest."""
import gzip
import shutil

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import ingestion
from infra.resources import MarketDataResource, WarehouseResource
from orchestration.definitions import storage_resources

ASSETS = dg.load_assets_from_modules([ingestion])
TABLES = ("raw.bars", "raw.index_bars", "ref.sectors")


def _edit(path, fn):
    frame = pl.read_csv(path, try_parse_dates=True)
    fn(frame).write_csv(path)


def _day(path, i=60):
    return pl.read_csv(path, try_parse_dates=True)["date"][i]


def _set(path, column, value, i=60):
    d = _day(path, i)
    _edit(path, lambda f: f.with_columns(pl.when(pl.col("date") == d).then(pl.lit(value)).otherwise(pl.col(column))
                                         .alias(column)))
    return d


def _scale_from(path, factor, i=200):
    d = _day(path, i)
    cols = ["open", "high", "low", "close", "adj_close"]
    _edit(path, lambda f: f.with_columns([pl.when(pl.col("date") >= d).then(pl.col(c) * factor).otherwise(pl.col(c))
                                          .alias(c) for c in cols if c in f.columns]))
    return d


def _text(path, fn):
    path.write_text(fn(path.read_text()))


def _bars(root, t):
    return root / "ohlcv" / f"{t}.csv"


def _gz_scale(root):  # the gzipped stock AAA: a 2.5x level shift that never reverts
    p = root / "ohlcv" / "AAA.csv.gz"
    frame = pl.read_csv(gzip.decompress(p.read_bytes()), try_parse_dates=True)
    d = frame["date"][200]
    cols = ["open", "high", "low", "close", "adj_close"]
    frame = frame.with_columns([pl.when(pl.col("date") >= d).then(pl.col(c) * 2.5).otherwise(pl.col(c)).alias(c)
                                for c in cols])
    p.write_bytes(gzip.compress(frame.write_csv().encode()))
    return d


def _truncate(path):
    path.write_bytes(path.read_bytes()[:200])


#: name -> (mutation of the CSV directory returning the bad date or None, text the error must contain)
CASES = {
    "negative_close": (lambda r: _set(_bars(r, "SPY"), "close", -1.0), ["bars_prices_positive", "SPY"]),
    "zero_open": (lambda r: _set(_bars(r, "QQQ"), "open", 0.0), ["bars_prices_positive", "QQQ"]),
    "high_below_low": (lambda r: _edit(_bars(r, "TLT"), lambda f: f.with_columns(
        pl.when(pl.col("date") == f["date"][60]).then(pl.col("low") * 0.9).otherwise(pl.col("high")).alias("high"))),
        ["bars_high_ge_open_close", "TLT"]),
    "vix_zero": (lambda r: _set(r / "index" / "VIX.csv", "close", 0.0), ["index_prices_positive", "VIX"]),
    "vix_out_of_range": (lambda r: _set(r / "index" / "VIX.csv", "close", 400.0), ["index_vix_range", "VIX"]),
    "etf_scale_break": (lambda r: _scale_from(_bars(r, "SPY"), 2.5), ["bars_scale_break", "SPY"]),
    "stock_level_shift": (_gz_scale, ["bars_scale_break", "AAA"]),
    "vix_scale_break": (lambda r: _scale_from(r / "index" / "VIX.csv", 3.0), ["index_scale_break", "VIX"]),
    "low_above_open": (lambda r: _edit(_bars(r, "XLK"), lambda f: f.with_columns(
        pl.when(pl.col("date") == f["date"][60]).then(pl.col("high") * 1.1).otherwise(pl.col("low")).alias("low"))),
        ["bars_low_le_open_close", "XLK"]),
    "negative_volume": (lambda r: _set(_bars(r, "XLF"), "volume", -5.0) and None, ["XLF.csv:62", "negative volume"]),
    "non_numeric_price": (lambda r: _text(_bars(r, "GLD"), lambda t: t.replace("\n", "\n2019-01-01,1,2,x,1,1,5\n", 1)),
                          ["GLD.csv", "non-numeric"]),
    "bad_date": (lambda r: _text(_bars(r, "XLF"), lambda t: t.replace("\n", "\n2019-13-45,1,2,1,1,1,5\n", 1)),
                 ["XLF.csv"]),
    "missing_column": (lambda r: _edit(_bars(r, "XLE"), lambda f: f.drop("low")), ["XLE.csv", "low"]),
    "duplicate_dates": (lambda r: _edit(_bars(r, "SPY"), lambda f: pl.concat([f, f.slice(5, 1)]).sort("date")),
                        ["SPY.csv", "duplicate"]),
    "unordered_dates": (lambda r: _edit(_bars(r, "QQQ"), lambda f: f.reverse()), ["QQQ.csv"]),
    "truncated_gzip": (lambda r: _truncate(r / "ohlcv" / "AAA.csv.gz"), ["AAA.csv.gz"]),
    "empty_file": (lambda r: _bars(r, "GLD").write_text(""), ["GLD.csv"]),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, small_market, small_universe):
    """A warehouse ingested from the clean CSV directory, its tables (primary and analyst snapshot)."""
    from ml.data.csv_source import write_csv_dir

    tmp = tmp_path_factory.mktemp("audit")
    src = write_csv_dir(small_market, tmp / "clean", gzip_tickers=frozenset({"AAA"}))
    wh_res = WarehouseResource(path=str(tmp / "wh" / "regimeflow.duckdb"))
    resources = {**storage_resources(wh_res), "market": MarketDataResource(
        source="csv", data_dir=str(src), sector_etfs=small_universe.sector_etfs, stocks=small_universe.stocks,
        history_start="2019-01-01", history_end="2020-12-31")}
    assert dg.materialize(ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral()).success
    wh = wh_res.get()
    return tmp, src, resources, wh, _state(wh)


def _state(wh) -> dict:
    out = {}
    for label, path in (("primary", wh.path), ("snapshot", wh.snapshot_path)):
        con = duckdb.connect(str(path), read_only=True)
        try:
            for t in TABLES:
                out[(label, t)] = con.execute(f"SELECT count(*), sum(hash(x)) FROM {t} x").fetchall()[0]
        finally:
            con.close()
    return out


def _run(clean, name, mutate):
    tmp, src, resources, wh, before = clean
    root = tmp / name
    shutil.copytree(src, root)
    bad_date = mutate(root)
    market = MarketDataResource(**{**resources["market"].model_dump(), "data_dir": str(root)})
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(ASSETS, resources={**resources, "market": market}, instance=instance,
                            raise_on_error=False)
    return result, bad_date, wh, before


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_malformed_batch_is_rejected_and_nothing_changes(clean, name):
    mutate, expected = CASES[name]
    result, bad_date, wh, before = _run(clean, name, mutate)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "nothing written" in message
    for text in expected:
        assert text in message, (name, text, message)
    if bad_date is not None:
        assert str(bad_date) in message
    assert _state(wh) == before  # primary and analyst snapshot: every data table row for row
    with wh.read() as con:
        logged = con.execute("SELECT message FROM raw.ingest_log WHERE status = 'rejected' ORDER BY finished_at DESC "
                             "LIMIT 1").fetchall()[0][0]
    assert expected[0] in logged


@pytest.mark.slow
@pytest.mark.parametrize("quirk", ["crlf", "bom", "extra_column"])
def test_real_world_quirks_still_ingest(clean, quirk):
    def mutate(root):
        p = _bars(root, "SPY")
        if quirk == "crlf":
            p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
        elif quirk == "bom":
            p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
        else:
            _edit(p, lambda f: f.with_columns(pl.lit("x").alias("dividends")))

    result, _, wh, before = _run(clean, quirk, mutate)
    assert result.success, quirk
    assert _state(wh) == before  # same values: the upsert changes nothing
