"""Freshness: stale inputs are flagged, never presented as current, and stale allocation inputs block the decision.

Unit tests of ``ml.freshness`` and the live sector-HMM cut, then a forward-night test on the nightly pipeline:
the vendor stops publishing the sector ETFs (as in a real forward night where they ended four months early),
then QQQ; the first night decides with the sector states as of their last bar, the second refuses to decide,
and the third (QQQ back) catches up.
"""
from datetime import date

import polars as pl
import pytest

from ml.data.market import MarketData
from ml.freshness import as_of_dates, input_freshness, last_rows, reference_sessions, stale_lines
from test_nightly import CUTOFF, SECTOR_ETFS, Pipeline, _logs

D = [date(2026, 6, d) for d in (1, 2, 3, 4, 5)]


def _bars(rows: dict[str, list[date]]) -> pl.DataFrame:
    return pl.DataFrame([{"ticker": t, "date": d} for t, ds in rows.items() for d in ds],
                        schema={"ticker": pl.Utf8, "date": pl.Date})


def test_sessions_behind_and_roles():
    bars = _bars({"SPY": D, "QQQ": D[:3], "XLK": D[:1], "AAPL": D})
    index = pl.DataFrame({"symbol": ["VIX"] * 5 + ["VIX3M"] * 4, "date": D + D[:4], "close": [20.0] * 9})
    frame = input_freshness(last_rows(bars, index), reference_sessions(D, bars),
                            {"SPY": "allocation", "QQQ": "allocation", "XLK": "sector", "VIX": "index",
                             "VIX3M": "index"}, blocking=["SPY", "QQQ", "VIX"])
    rows = {r["input"]: r for r in frame.iter_rows(named=True)}
    assert rows["XLK"]["sessions_behind"] == 4 and rows["XLK"]["stale"] and not rows["XLK"]["blocks_decision"]
    assert rows["QQQ"]["sessions_behind"] == 2 and rows["QQQ"]["blocks_decision"]
    assert rows["VIX3M"]["sessions_behind"] == 1 and not rows["VIX3M"]["blocks_decision"]
    assert rows["AAPL"]["role"] == "stock" and not rows["AAPL"]["stale"]
    assert not rows["SPY"]["stale"] and not rows["VIX"]["stale"]
    assert frame["input"].to_list()[:3] == ["XLK", "QQQ", "VIX3M"]  # stale first, most behind first
    assert stale_lines(frame)[0] == "XLK (sector): last row 2026-06-01, 4 session(s) behind 2026-06-05"
    assert as_of_dates(frame, ["QQQ", "VIX"]) == {"QQQ": "2026-06-03", "VIX": "2026-06-05"}
    lenient = input_freshness(last_rows(bars, index), reference_sessions(D, bars), {}, [], max_lag_sessions=2)
    assert lenient.filter("stale")["input"].to_list() == ["XLK"]


def test_a_reference_ticker_that_stops_is_itself_flagged():
    """The calendar is SPY's sessions; when SPY stops but most tickers go on, SPY is stale, not the others."""
    bars = _bars({"SPY": D[:2], "QQQ": D, "TLT": D, "GLD": D})
    frame = input_freshness(last_rows(bars), reference_sessions(D[:2], bars), {}, ["SPY"])
    assert frame.filter("stale")["input"].to_list() == ["SPY"] and frame["reference_date"][0] == D[-1]


def test_live_sector_states_stop_at_the_sector_etfs_last_bar():
    from ml.data.synthetic import generate_market
    from ml.data.universe import Universe
    from ml.regimes.hmm import HmmConfig, SectorHmms, fit_sector_hmms, sector_observations

    market = generate_market(Universe(include_stocks=False, history_start=date(2012, 1, 1)), seed=3,
                             end=date(2016, 6, 30))
    stop = date(2016, 2, 29)
    bars = market.bars.filter(~((pl.col("ticker") == "XLK") & (pl.col("date") > stop)))
    cfg = HmmConfig(restarts=1)
    obs = sector_observations(bars, market.sectors, cfg)
    hmms = SectorHmms(fit_sector_hmms(obs, date(2012, 1, 1), date(2015, 12, 31), cfg), cfg)
    live = hmms.live_probabilities(bars, market.sectors)
    it = live.filter(pl.col("sector") == "Information Technology")
    assert it["date"].max() == stop and (it["as_of"] == stop).all()
    other = live.filter(pl.col("sector") == "Financials")
    assert other["date"].max() == bars["date"].max() == other["as_of"].max()
    full = hmms.probabilities(bars, market.sectors)  # without the cut the filter would carry XLK forward
    assert full.filter(pl.col("sector") == "Information Technology")["date"].max() == bars["date"].max()
    both = live.join(full, on=["sector", "date"], suffix="_full")
    assert (both["p_bull"] - both["p_bull_full"]).abs().max() == 0.0


# ------------------------------------------------------------------------------------------- forward nights
@pytest.fixture(scope="module")
def forward(tmp_path_factory):
    p = Pipeline(tmp_path_factory.mktemp("freshness"))
    p.publish(CUTOFF)
    p.run("prepare")
    p.run("fold", partition_key="2014")
    return p


def _without(market: MarketData, tickers: list[str], after: date) -> MarketData:
    bars = market.bars.filter(~(pl.col("ticker").is_in(tickers) & (pl.col("date") > after)))
    return MarketData(bars, market.index_bars, market.sectors, market.source, market.description)


@pytest.mark.slow
def test_forward_nights_flag_stale_inputs_and_block_only_on_allocation_assets(forward):
    from warehouse.decisions import read_decisions
    from warehouse.ops import stale_inputs
    from warehouse.tables import read_table

    pipe = forward
    days = pipe.new_days
    stopped = SECTOR_ETFS[:3]  # the vendor stops publishing three sector ETFs after the cutoff
    pipe.publish(days[2], _without(pipe.market, stopped, CUTOFF))
    result = pipe.run("nightly")
    logs = _logs(pipe, result)
    stale = stale_inputs(pipe.wh)
    assert sorted(stale["input"].to_list()) == sorted(stopped)
    assert (stale["sessions_behind"] == 3).all() and not stale["blocks_decision"].any()
    assert "3 stale input(s)" in logs and f"{stopped[0]} (sector): last row {CUTOFF}" in logs
    checks = [e for e in result.get_asset_check_evaluations() if e.check_name == "inputs_fresh"]
    assert len(checks) == 1 and not checks[0].passed and checks[0].severity.value == "WARN"

    # no live output is dated after its input's last bar
    live = read_table(pipe.wh, "regimes.sector_hmm_live")
    sectors = read_table(pipe.wh, "ref.sectors")
    stopped_sectors = sectors.filter(pl.col("ticker").is_in(stopped))["gics_sector"].to_list()
    late = live.filter(pl.col("sector").is_in(stopped_sectors))
    assert late["date"].max() == CUTOFF and (late["as_of"] == CUTOFF).all()
    assert live.filter(~pl.col("sector").is_in(stopped_sectors))["date"].max() == days[2]
    feats = read_table(pipe.wh, "features.daily", "WHERE ticker IN (SELECT unnest(?))", [stopped])
    assert feats["date"].max() == CUTOFF

    # the decision (an empty log starts at the newest session) records each input's as-of date and the stale ones
    rows = read_decisions(pipe.wh)
    assert rows["decision_date"].to_list() == [days[2]]
    import json

    as_of = json.loads(rows["inputs_as_of"][-1])
    assert as_of["SPY"] == as_of["QQQ"] == as_of["VIX"] == days[2].isoformat()
    assert all(as_of[f"sector:{s}"] == CUTOFF.isoformat() for s in stopped_sectors)
    assert sorted(rows["stale_inputs"][-1].to_list()) == sorted(stopped)
    states = json.loads(rows["sector_states"][-1])
    assert not set(stopped_sectors) & set(states)  # no state "on" today for a sector that did not trade

    # QQQ (an allocation asset) stops too: the decision refuses, nothing is written
    pipe.publish(days[3], _without(_without(pipe.market, stopped, CUTOFF), ["QQQ"], days[2]))
    failed = pipe.defs.resolve_job_def("nightly").execute_in_process(instance=pipe.instance, raise_on_error=False)
    assert not failed.success
    failures = [e for e in failed.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["decisions__daily"]
    logs = failures[0].step_failure_data.error.message
    assert "stale decision inputs" in logs and f"QQQ (allocation, blocks the decision): last row {days[2]}" in logs
    assert read_decisions(pipe.wh)["decision_date"].max() == days[2]
    assert stale_inputs(pipe.wh).filter("blocks_decision")["input"].to_list() == ["QQQ"]

    # QQQ is back the next night: the missed session is caught up, in order
    pipe.publish(days[4], _without(pipe.market, stopped, CUTOFF))
    pipe.run("nightly")
    assert read_decisions(pipe.wh)["decision_date"].to_list()[-2:] == [days[3], days[4]]
