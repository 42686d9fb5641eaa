"""Data-quality suites (warehouse.quality): one failing frame per rule, waivers, warnings, real data."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks._data import load_real_bars, load_real_index_bars
from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA
from warehouse import quality
from warehouse.quality import (
    BARS_RULES,
    INDEX_RULES,
    OHLC_REL_TOL,
    QualityReport,
    load_known_anomalies,
    validate_bars,
    validate_index_bars,
)

NO_WAIVERS = pl.DataFrame(schema={"ticker": pl.Utf8, "date": pl.Date, "rule": pl.Utf8, "reason": pl.Utf8})

# Weekdays of March-April 2015 minus Good Friday: a small stand-in for the NYSE calendar.
CAL = [d for d in (date(2015, 3, 2) + timedelta(days=i) for i in range(61))
       if d.weekday() < 5 and d != date(2015, 4, 3)]
START, END = date(2015, 1, 1), date(2015, 12, 31)


def make_bars(tickers: tuple[str, ...] = ("AAA", "KLAC"), cal: list[date] = CAL) -> pl.DataFrame:
    """Consistent OHLC bars for ``tickers`` on every calendar day."""
    frames = []
    for k, t in enumerate(tickers):
        close = 50.0 + 10 * k + 0.25 * np.arange(len(cal))
        frames.append(pl.DataFrame({
            "ticker": t, "date": cal, "open": close - 0.2, "high": close + 1.0,
            "low": close - 1.2, "close": close, "adj_close": close, "volume": 1e6,
        }))
    return pl.concat(frames).select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])


def make_index(cal: list[date] = CAL) -> pl.DataFrame:
    frames = []
    for s, base in (("VIX", 15.0), ("VIX3M", 18.0)):
        close = base + np.sin(np.arange(len(cal)))
        frames.append(pl.DataFrame({"symbol": s, "date": cal, "open": close + 0.1,
                                    "high": close + 0.5, "low": close - 0.5, "close": close}))
    return pl.concat(frames).select([pl.col(c).cast(t) for c, t in INDEX_BARS_SCHEMA.items()])


def edit(df: pl.DataFrame, key: str, d: date, keycol: str = "ticker", **values) -> pl.DataFrame:
    """Set column values on the (key, date) row."""
    hit = (pl.col(keycol) == key) & (pl.col("date") == d)
    return df.with_columns([pl.when(hit).then(pl.lit(v, dtype=df.schema[c])).otherwise(pl.col(c)).alias(c)
                            for c, v in values.items()])


def check_bars(df: pl.DataFrame, cal=CAL, waivers=NO_WAIVERS, start=START, end=END) -> QualityReport:
    return validate_bars(df, cal, history_start=start, history_end=end, waivers=waivers)


def check_index(df: pl.DataFrame, cal=CAL, start=START, end=END, **kw) -> QualityReport:
    return validate_index_bars(df, cal, history_start=start, history_end=end, **kw)


def failing(report: QualityReport) -> set[str]:
    return {r.rule for r in report.results if not r.passed}


def only_failure(report: QualityReport, rule: str) -> None:
    """``rule`` is the only failing/flagged rule of ``report``."""
    assert failing(report) == {rule}, report.to_markdown()


def example_keys(report: QualityReport, rule: str, key: str = "ticker") -> list[tuple[str, str]]:
    return [(e[key], e["date"]) for e in report[rule].examples]


# ----------------------------------------------------------------------------------------------
# declarations, clean data
# ----------------------------------------------------------------------------------------------
def test_rule_declarations_are_stable_snake_case() -> None:
    names = [n for n, _, _ in BARS_RULES + INDEX_RULES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"(bars|index)_[a-z0-9_]+", n) for n in names)
    assert {s for _, s, _ in BARS_RULES + INDEX_RULES} == {"error", "warn"}
    assert dict((n, s) for n, s, _ in BARS_RULES)["bars_extreme_returns"] == "warn"
    for must in ("bars_required_columns", "bars_ohlc_not_null", "bars_prices_positive",
                 "bars_high_ge_open_close", "bars_low_le_open_close", "bars_unique_ticker_date",
                 "bars_dates_in_range", "bars_no_long_gaps", "bars_extreme_returns",
                 "index_vix_range", "index_vix3m_present"):
        assert must in names
    assert all(d for _, _, d in BARS_RULES + INDEX_RULES)


def test_import_does_not_load_great_expectations() -> None:
    code = ("import sys, warehouse.quality as q; assert q.BARS_RULES and q.INDEX_RULES; "
            "assert 'great_expectations' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_clean_bars_pass() -> None:
    report = check_bars(make_bars().sample(fraction=1.0, shuffle=True, seed=1))  # order-insensitive
    assert report.passed and not failing(report), report.to_markdown()
    assert [r.rule for r in report.results] == [n for n, _, _ in BARS_RULES]
    assert report["bars_ohlc_not_null"].n_checked == 2 * len(CAL)
    assert "passed" in report.summary_line()
    md = report.to_markdown()
    assert "| bars_no_long_gaps | error | pass |" in md


def test_clean_index_pass() -> None:
    report = check_index(make_index())
    assert report.passed and not failing(report), report.to_markdown()
    assert [r.rule for r in report.results] == [n for n, _, _ in INDEX_RULES]
    assert report["index_vix3m_present"].n_checked == len(CAL)


# ----------------------------------------------------------------------------------------------
# one failing frame per bars rule
# ----------------------------------------------------------------------------------------------
def test_bars_required_columns() -> None:
    report = check_bars(make_bars().drop("volume"))
    r = report["bars_required_columns"]
    assert not r.passed and not report.passed and r.n_failed == 1
    assert r.examples[0]["column"] == "volume"
    assert report["bars_volume_non_negative"].note.startswith("not evaluated")
    assert report["bars_high_ge_open_close"].passed  # other rules still run


def test_bars_column_types() -> None:
    report = check_bars(make_bars().with_columns(pl.col("volume").cast(pl.Int64)))
    r = report["bars_column_types"]
    assert not r.passed and not report.passed
    assert [e["column"] for e in r.examples] == ["volume"]
    assert "volume: int64" in r.summary_line()


def test_bars_ohlc_not_null() -> None:
    d = CAL[5]
    report = check_bars(edit(make_bars(), "KLAC", d, close=None, adj_close=None))
    only_failure(report, "bars_ohlc_not_null")
    assert example_keys(report, "bars_ohlc_not_null") == [("KLAC", d.isoformat())]
    assert "close null" in report.summary_line()


def test_bars_prices_positive() -> None:
    d = CAL[3]
    report = check_bars(edit(make_bars(), "AAA", d, low=0.0))
    only_failure(report, "bars_prices_positive")
    assert example_keys(report, "bars_prices_positive") == [("AAA", d.isoformat())]
    assert report["bars_prices_positive"].examples[0]["low"] == 0.0


def test_bars_volume_non_negative_allows_zero() -> None:
    df = edit(edit(make_bars(), "AAA", CAL[1], volume=0.0), "AAA", CAL[2], volume=-5.0)
    report = check_bars(df)
    only_failure(report, "bars_volume_non_negative")
    assert example_keys(report, "bars_volume_non_negative") == [("AAA", CAL[2].isoformat())]


def test_bars_high_ge_open_close() -> None:
    d = CAL[7]
    df = make_bars()
    row = df.filter((pl.col("ticker") == "AAA") & (pl.col("date") == d))
    report = check_bars(edit(df, "AAA", d, high=row["close"][0] * 0.99))
    only_failure(report, "bars_high_ge_open_close")
    r = report["bars_high_ge_open_close"]
    assert example_keys(report, "bars_high_ge_open_close") == [("AAA", d.isoformat())]
    assert r.examples[0]["high_excess"] == pytest.approx(1 / 0.99 - 1)
    assert f"AAA {d.isoformat()} (high " in r.summary_line() and "< close" in r.summary_line()


def test_bars_ohlc_float_noise_is_tolerated() -> None:
    d = CAL[7]
    df = make_bars()
    close = df.filter((pl.col("ticker") == "AAA") & (pl.col("date") == d))["close"][0]
    noisy = edit(df, "AAA", d, high=close * (1 - 3e-16), low=close * (1 + OHLC_REL_TOL / 10), open=close)
    assert not failing(check_bars(noisy))


def test_bars_low_le_open_close_summary() -> None:
    d = date(2015, 3, 30)
    df = edit(make_bars(), "KLAC", d, open=57.27, low=57.87, high=58.64, close=58.19, adj_close=58.19)
    report = check_bars(df)
    only_failure(report, "bars_low_le_open_close")
    r = report["bars_low_le_open_close"]
    assert (r.n_failed, r.n_waived) == (1, 0) and not report.passed
    assert r.examples[0] == {**r.examples[0], "ticker": "KLAC", "date": "2015-03-30",
                             "open": 57.27, "low": 57.87}
    assert r.summary_line() == ("rule bars_low_le_open_close failed for 1 row: "
                                "KLAC 2015-03-30 (low 57.87 > open 57.27)")
    assert report.failures() == [r]


def test_bars_unique_ticker_date() -> None:
    df = make_bars()
    dup = df.filter((pl.col("ticker") == "KLAC") & (pl.col("date") == CAL[4]))
    report = check_bars(pl.concat([df, dup]))
    only_failure(report, "bars_unique_ticker_date")
    assert example_keys(report, "bars_unique_ticker_date") == [("KLAC", CAL[4].isoformat())] * 2


def test_bars_dates_in_range() -> None:
    report = check_bars(make_bars(), start=CAL[2])
    only_failure(report, "bars_dates_in_range")
    assert set(example_keys(report, "bars_dates_in_range")) == {
        (t, d.isoformat()) for t in ("AAA", "KLAC") for d in CAL[:2]}


def test_bars_dates_in_range_defaults_to_today() -> None:
    future = date.today() + timedelta(days=30)
    df = make_bars()
    extra = df.filter(pl.col("date") == CAL[-1]).with_columns(pl.lit(future).alias("date"))
    report = check_bars(pl.concat([df, extra]), end=None)
    r = report["bars_dates_in_range"]
    assert not r.passed and {d for _, d in example_keys(report, "bars_dates_in_range")} == {future.isoformat()}


def test_bars_no_long_gaps() -> None:
    df = make_bars()
    six = df.filter(~((pl.col("ticker") == "AAA") & pl.col("date").is_in(CAL[10:16])))
    report = check_bars(six)
    only_failure(report, "bars_no_long_gaps")
    r = report["bars_no_long_gaps"]
    assert example_keys(report, "bars_no_long_gaps") == [("AAA", CAL[16].isoformat())]
    assert r.examples[0]["gap_days"] == 6 and r.examples[0]["prev_date"] == CAL[9].isoformat()
    # five missing days are fine, and nothing is checked before the first / after the last bar
    five = df.filter(~((pl.col("ticker") == "AAA") & pl.col("date").is_in(CAL[10:15])))
    late = five.filter(~((pl.col("ticker") == "KLAC") & pl.col("date").is_in(CAL[:20])))
    assert not failing(check_bars(late))


def test_bars_dates_on_calendar_is_a_warning() -> None:
    saturday = date(2015, 3, 14)
    df = make_bars()
    extra = df.filter((pl.col("ticker") == "AAA") & (pl.col("date") == CAL[9])).with_columns(
        pl.lit(saturday).alias("date"))
    report = check_bars(pl.concat([df, extra]))
    only_failure(report, "bars_dates_on_calendar")
    assert report.passed and report["bars_dates_on_calendar"].severity == "warn"


def test_bars_extreme_returns_warns_but_passes() -> None:
    d = CAL[20]
    df = make_bars()
    close = df.filter((pl.col("ticker") == "AAA") & (pl.col("date") == d))["close"][0]
    jump = close * 2.5  # +150%, then -60% back the next day
    report = check_bars(edit(df, "AAA", d, open=jump, high=jump + 1, low=jump - 1, close=jump, adj_close=jump))
    r = report["bars_extreme_returns"]
    assert failing(report) == {"bars_extreme_returns"}
    assert report.passed and r.severity == "warn" and not r.passed
    # the jump up and the fall back the next day
    assert example_keys(report, "bars_extreme_returns") == [("AAA", d.isoformat()), ("AAA", CAL[21].isoformat())]
    assert r.examples[0]["return"] == pytest.approx(jump / (close - 0.25) - 1)
    assert report.failures() == [] and report.failures(include_warnings=True) == [r]
    assert "flagged" in report.summary_line() and "| warn |" in report.to_markdown()


# ----------------------------------------------------------------------------------------------
# waivers
# ----------------------------------------------------------------------------------------------
def test_known_anomalies_file() -> None:
    known = load_known_anomalies()
    assert {"ticker", "date", "rule", "handling", "reason"} <= set(known.columns)
    klac = known.filter((pl.col("ticker") == "KLAC") & (pl.col("date") == date(2015, 3, 30)))
    assert klac["rule"].to_list() == ["bars_low_le_open_close"] and klac["handling"][0] == "waived"
    rule_names = {n for n, _, _ in BARS_RULES + INDEX_RULES}
    waived = known.filter(pl.col("handling") == "waived")
    assert set(waived["rule"]) <= rule_names and waived["date"].null_count() == 0
    assert all(known["reason"].str.len_chars() > 10)


def test_waivers_default_to_known_anomalies() -> None:
    d = date(2015, 3, 30)
    df = edit(make_bars(), "KLAC", d, open=57.27, low=57.87, high=58.64, close=58.19, adj_close=58.19)
    report = validate_bars(df, CAL, history_start=START, history_end=END)  # waivers=None
    r = report["bars_low_le_open_close"]
    assert report.passed and r.passed and (r.n_failed, r.n_waived) == (0, 1)
    assert r.waived[0]["ticker"] == "KLAC" and "Yahoo" in r.waived[0]["waiver_reason"]
    assert "1 waived" in r.summary_line()


def test_custom_waivers_only_cover_their_rule_and_rows() -> None:
    d1, d2 = CAL[3], CAL[4]
    df = make_bars()
    for d in (d1, d2):
        close = df.filter((pl.col("ticker") == "AAA") & (pl.col("date") == d))["close"][0]
        df = edit(df, "AAA", d, high=close * 0.98)
    waivers = pl.DataFrame({"ticker": ["AAA", "AAA"], "date": [d1.isoformat(), d2.isoformat()],
                            "rule": ["bars_high_ge_open_close", "bars_low_le_open_close"],
                            "reason": ["vendor glitch", "wrong rule"]})
    r = check_bars(df, waivers=waivers)["bars_high_ge_open_close"]
    assert (r.n_failed, r.n_waived) == (1, 1) and not r.passed
    assert r.examples[0]["date"] == d2.isoformat() and r.waived[0]["date"] == d1.isoformat()


def test_index_waivers_match_symbol() -> None:
    df = edit(make_index(), "VIX", CAL[2], keycol="symbol", open=2.58)
    assert not check_index(df, waivers=NO_WAIVERS).passed
    waivers = pl.DataFrame({"symbol": ["VIX"], "date": [CAL[2]], "rule": ["index_vix_range"],
                            "reason": ["early CBOE open quirk"]})
    r = check_index(df, waivers=waivers)["index_vix_range"]
    assert r.passed and r.n_waived == 1


# ----------------------------------------------------------------------------------------------
# index rules
# ----------------------------------------------------------------------------------------------
def test_index_required_columns_and_types() -> None:
    report = check_index(make_index().drop("low"))
    assert not report.passed and report["index_required_columns"].examples[0]["column"] == "low"
    report = check_index(make_index().with_columns(pl.col("date").cast(pl.Utf8)))
    assert [e["column"] for e in report["index_column_types"].examples] == ["date"]


def test_index_ohlc_not_null_and_positive() -> None:
    report = check_index(edit(make_index(), "VIX3M", CAL[6], keycol="symbol", open=None))
    only_failure(report, "index_ohlc_not_null")
    assert example_keys(report, "index_ohlc_not_null", "symbol") == [("VIX3M", CAL[6].isoformat())]
    report = check_index(edit(make_index(), "VIX3M", CAL[6], keycol="symbol", low=-1.0))
    only_failure(report, "index_prices_positive")
    assert example_keys(report, "index_prices_positive", "symbol") == [("VIX3M", CAL[6].isoformat())]


def test_index_unique_symbol_date() -> None:
    df = make_index()
    report = check_index(pl.concat([df, df.filter((pl.col("symbol") == "VIX") & (pl.col("date") == CAL[1]))]))
    only_failure(report, "index_unique_symbol_date")
    assert example_keys(report, "index_unique_symbol_date", "symbol") == [("VIX", CAL[1].isoformat())] * 2


def test_index_symbols_present() -> None:
    report = check_index(make_index().filter(pl.col("symbol") == "VIX"))
    assert failing(report) == {"index_symbols_present"}
    assert "VIX3M" in report.summary_line()


def test_index_dates_in_range() -> None:
    report = check_index(make_index(), end=CAL[-2])
    only_failure(report, "index_dates_in_range")
    assert set(example_keys(report, "index_dates_in_range", "symbol")) == {
        ("VIX", CAL[-1].isoformat()), ("VIX3M", CAL[-1].isoformat())}


def test_index_no_long_gaps() -> None:
    df = make_index().filter(~((pl.col("symbol") == "VIX") & pl.col("date").is_in(CAL[5:12])))
    report = check_index(df)
    only_failure(report, "index_no_long_gaps")
    assert example_keys(report, "index_no_long_gaps", "symbol") == [("VIX", CAL[12].isoformat())]
    assert report["index_no_long_gaps"].examples[0]["gap_days"] == 7


def test_index_vix_range() -> None:
    df = edit(edit(make_index(), "VIX", CAL[8], keycol="symbol", high=151.0),
              "VIX3M", CAL[8], keycol="symbol", high=170.0)  # VIX3M is not range-checked
    report = check_index(df)
    only_failure(report, "index_vix_range")
    r = report["index_vix_range"]
    assert example_keys(report, "index_vix_range", "symbol") == [("VIX", CAL[8].isoformat())]
    assert "high 151 outside [5, 150]" in r.summary_line()
    low = check_index(edit(make_index(), "VIX", CAL[9], keycol="symbol", low=4.5))
    assert example_keys(low, "index_vix_range", "symbol") == [("VIX", CAL[9].isoformat())]


def test_index_vix3m_present() -> None:
    df = make_index()
    missing = df.filter(~((pl.col("symbol") == "VIX3M") & (pl.col("date") == CAL[11])))
    report = check_index(missing)
    only_failure(report, "index_vix3m_present")
    r = report["index_vix3m_present"]
    assert example_keys(report, "index_vix3m_present", "symbol") == [("VIX3M", CAL[11].isoformat())]
    assert r.n_checked == len(CAL)
    # VIX3M starting later than VIX is fine: coverage starts at its own first date
    late = df.filter(~((pl.col("symbol") == "VIX3M") & (pl.col("date") < CAL[15])))
    assert check_index(late)["index_vix3m_present"].n_checked == len(CAL) - 15
    assert check_index(late).passed


def test_index_allows_holiday_rows_and_ohlc_quirks() -> None:
    df = make_index()
    holiday = df.filter((pl.col("symbol") == "VIX") & (pl.col("date") == CAL[0])).with_columns(
        pl.lit(date(2015, 4, 3)).alias("date"))  # Good Friday: NYSE closed
    quirky = edit(pl.concat([df, holiday]), "VIX", CAL[4], keycol="symbol", open=40.0)  # open > high
    report = check_index(quirky)
    assert report.passed and not failing(report), report.to_markdown()


# ----------------------------------------------------------------------------------------------
# reporting, scale, real snapshot
# ----------------------------------------------------------------------------------------------
def test_report_summary_lists_every_failing_rule() -> None:
    df = edit(make_bars(), "AAA", CAL[3], low=0.0)
    df = pl.concat([df, df.head(1)])
    report = check_bars(df)
    line = report.summary_line()
    assert "rule bars_prices_positive failed for 1 row: AAA" in line
    assert "rule bars_unique_ticker_date failed for 2 rows" in line
    assert {r.rule for r in report.failures()} == {"bars_prices_positive", "bars_unique_ticker_date"}
    md = report.to_markdown()
    assert md.startswith("**bars**: FAILED") and "| bars_prices_positive | error | FAIL |" in md


@pytest.mark.slow
def test_many_failures_at_full_snapshot_scale() -> None:
    """~1.1M rows (the full snapshot's size) with 100k failing rows: counts exact, examples capped."""
    cal = [date(1990, 1, 1) + timedelta(days=i) for i in range(11_000)]
    n_t = 100
    bars = pl.DataFrame({
        "ticker": np.repeat([f"T{i:03d}" for i in range(n_t)], len(cal)),
        "date": np.tile(np.array(cal, dtype="datetime64[D]"), n_t),
        "close": 100 + np.random.default_rng(0).normal(0, 1, n_t * len(cal)).cumsum() * 0.01,
    }).with_columns(pl.col("date").cast(pl.Date))
    bars = bars.with_columns(open=pl.col("close"), high=pl.col("close") * 1.01, low=pl.col("close") * 0.99,
                             adj_close=pl.col("close"), volume=pl.lit(1e6))
    bars = bars.select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])
    bars = bars.with_columns(pl.when(pl.int_range(pl.len()) % 11 == 0).then(-1.0)
                             .otherwise(pl.col("volume")).alias("volume"))
    validate_bars(bars.head(100), cal, history_start=None, history_end=None)  # warm GX up
    t0 = time.perf_counter()
    report = validate_bars(bars, cal, history_start=None, history_end=None)
    took = time.perf_counter() - t0
    assert report["bars_volume_non_negative"].n_failed == len(range(0, bars.height, 11))
    assert len(report["bars_volume_non_negative"].examples) == 20
    print(f"\n{bars.height:,} synthetic rows, 100k failing: {took:.2f}s")


@pytest.mark.slow
@pytest.mark.real_data
def test_real_snapshot_passes(real_data_dir) -> None:
    start, end = date(2005, 1, 1), date(2025, 12, 31)
    in_range = pl.col("date").is_between(start, end)
    bars, index = load_real_bars(root=real_data_dir).filter(in_range), load_real_index_bars(real_data_dir).filter(in_range)
    calendar = bars.filter(pl.col("ticker") == "SPY")["date"]
    t0 = time.perf_counter()
    quality._gx()  # one-off GX import + ephemeral context (cached per process)
    t1 = time.perf_counter()
    report = validate_bars(bars, calendar, history_start=start, history_end=end)
    t2 = time.perf_counter()
    index_report = validate_index_bars(index, calendar, history_start=start, history_end=end)
    t3 = time.perf_counter()
    print(f"\nreal snapshot: GX setup {t1 - t0:.2f}s, {bars.height:,} bars {t2 - t1:.2f}s, "
          f"{index.height:,} index rows {t3 - t2:.2f}s")
    assert report.passed, report.summary_line()
    assert index_report.passed, index_report.summary_line()
    assert not report.failures(include_warnings=True), report.to_markdown()  # >50% moves are waived
    klac = report["bars_low_le_open_close"]
    assert klac.n_waived == 1 and klac.waived[0]["ticker"] == "KLAC" and klac.waived[0]["date"] == "2015-03-30"
    assert report["bars_extreme_returns"].n_waived == 5
