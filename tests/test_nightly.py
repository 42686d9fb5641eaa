"""Nightly automation end to end on a CSV fixture that gains one trading day per night.

prepare (data through 2014-12-31) → fold 2014 trained → nights append 2015 sessions one by one. The night of
2015's first session, the new-fold sensor adds fold 2015 (partial: its train window is complete, its test
window is the year so far), its run trains it and the next night's decision deploys it. A holiday night adds
nothing, a missed night is caught up, a revised bar inside the overlap is re-ingested; fold 2015's test window
grows with the calendar, its evaluation is refreshed and the walk-forward track labels it partial.
"""
import json
from datetime import date

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml.data.csv_source import write_csv_dir
from ml.data.market import MarketData
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from orchestration.audit import replay_log
from orchestration.jobs import NIGHTLY_RUN_CONFIG
from orchestration.definitions import definitions_with
from infra.partitions import FOLDS
from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    WarehouseResource,
)
from assets.keys import EVAL_FOLD, EVAL_SECTOR_BOOK, EVAL_STOCK_BOOK, MODELS_STOCK_FUNNEL
from orchestration import sensors
from orchestration.sensors import new_fold_sensor
from warehouse.decisions import AppendOnlyViolation, append_decisions, read_decisions
from warehouse.tables import read_table

pytestmark = pytest.mark.slow
CUTOFF = date(2014, 12, 31)
SECTOR_ETFS = ["XLB", "XLE", "XLF", "XLI", "XLK", "XLP", "XLU", "XLV", "XLY"]  # XLRE/XLC list only from 2015/2018


def _market_until(market: MarketData, last: date) -> MarketData:
    return MarketData(market.bars.filter(pl.col("date") <= last), market.index_bars.filter(pl.col("date") <= last),
                      market.sectors, market.source, market.description)


class Pipeline:
    """The project's Definitions with small, fast resources on a temporary warehouse and CSV directory."""

    def __init__(self, tmp):
        self.csv = tmp / "market"
        self.market = generate_market(Universe(include_stocks=False, sector_etfs=SECTOR_ETFS,
                                                    history_start=date(2008, 1, 1)), seed=21,
                                      end=date(2016, 1, 29))
        self.new_days = sorted(d for d in self.market.bars["date"].unique().to_list() if d > CUTOFF)
        self.warehouse = WarehouseResource(path=str(tmp / "wh" / "regimeflow.duckdb"),
                                           reports_dir=str(tmp / "reports"))
        self.wh = self.warehouse.get()
        self.instance = dg.DagsterInstance.ephemeral()
        self.defs = definitions_with(
            warehouse=self.warehouse,
            market=MarketDataResource(source="csv", data_dir=str(self.csv), include_stocks=False,
                                      sector_etfs=SECTOR_ETFS, history_start="2008-01-01"),
            features=FeatureStoreResource(lookahead_cutoffs=2),
            regimes=RegimeResource(hmm_restarts=1),
            prescreen=PrescreenResource(cv_splits=2, n_jobs=1),
            policy=PolicyResource(total_steps=4096, num_envs=16, episode_length=128, offpolicy_total_steps=2048,
                                           offpolicy_num_envs=16, qlearning_epochs_scale=0.02),
        )

    def publish(self, last: date, market: MarketData | None = None) -> None:
        """What the vendor has published by tonight: the CSV directory rewritten through ``last``."""
        write_csv_dir(_market_until(market or self.market, last), self.csv)

    def run(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_job_def(job).execute_in_process(instance=self.instance, raise_on_error=False,
                                                                   **kwargs)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result

    def counts(self) -> dict:
        with self.wh.read() as con:
            return {t: con.execute(f"SELECT count(*), count(DISTINCT ({k})) FROM {t}").fetchall()[0]
                    for t, k in (("raw.bars", "ticker, date"), ("features.daily", "ticker, date"),
                                 ("labels.forward", "ticker, date"), ("decisions.daily", "decision_date"))}


def _logs(pipe, result) -> str:
    """Everything the run logged (context.log lines included), as the UI's run log shows it."""
    return "\n".join(e.user_message or "" for e in pipe.instance.all_logs(result.run_id))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    p = Pipeline(tmp_path_factory.mktemp("nightly"))
    p.publish(CUTOFF)
    p.run("prepare")
    assert p.instance.get_dynamic_partitions(FOLDS) == ["2012", "2013", "2014"]
    p.run("fold", partition_key="2014")
    return p


def _sense(pipe, cursor=None):
    ctx = dg.build_sensor_context(instance=pipe.instance, cursor=cursor, resources={"warehouse": pipe.warehouse})
    return new_fold_sensor(ctx), ctx.cursor


def _first_session_of_the_year(pipe) -> dict:
    """After the night of 2015's first session: fold 2015 as ref/folds wrote it, the new-fold sensor's request,
    the fold run it requests (what the daemon would launch), and the sensor's next tick."""
    out = {"folds": read_table(pipe.wh, "ref.folds", "WHERE key = '2015'"),
           "partitions": pipe.instance.get_dynamic_partitions(FOLDS)}
    out["request"], cursor = _sense(pipe)
    pipe.instance.add_dynamic_partitions(FOLDS, out["request"].dynamic_partitions_requests[0].partition_keys)
    request = out["request"].run_requests[0]
    out["run"] = pipe.run("fold", partition_key=request.partition_key, tags=request.tags)
    out["after"], _ = _sense(pipe, cursor)
    return out


@pytest.fixture(scope="module")
def nights(pipe):
    """Three consecutive nights (after the first, 2015's first session, fold 2015 is added and trained), a
    holiday, a missed night, then a night with a revised bar."""
    days, out = pipe.new_days, {}
    for i in range(3):
        before = pipe.counts()
        pipe.publish(days[i])
        out[f"night{i + 1}"] = (before, pipe.run("nightly"), pipe.counts())
        if i == 0:
            out["new_year"] = _first_session_of_the_year(pipe)
    before = pipe.counts()
    out["holiday"] = (before, pipe.run("nightly"), pipe.counts())
    pipe.publish(days[4])  # nobody ran the night of days[3]
    out["missed"] = (before, pipe.run("nightly"), pipe.counts())
    bars = pipe.market.bars
    revised = bars.with_columns([pl.when((pl.col("ticker") == "SPY") & (pl.col("date") == days[4]))
                                 .then(pl.col(c) * 1.01).otherwise(pl.col(c)).alias(c)
                                 for c in ("open", "high", "low", "close", "adj_close")])
    pipe.publish(days[5], MarketData(revised, pipe.market.index_bars, pipe.market.sectors, "synthetic"))
    before = pipe.counts()
    out["revision"] = (before, pipe.run("nightly"), pipe.counts())
    return out


def test_three_consecutive_nights_add_rows_and_one_decision_each(pipe, nights):
    tickers = pipe.market.bars["ticker"].n_unique()
    for i in range(3):
        before, result, after = nights[f"night{i + 1}"]
        day = pipe.new_days[i]
        assert after["raw.bars"][0] - before["raw.bars"][0] == tickers
        assert after["features.daily"][0] - before["features.daily"][0] == tickers
        assert after["decisions.daily"][0] - before["decisions.daily"][0] == 1
        assert all(n == distinct for n, distinct in after.values())  # no duplicate keys anywhere
        assert read_table(pipe.wh, "raw.bars", "WHERE date = ?", [day]).height == tickers
        assert read_table(pipe.wh, "features.daily", "WHERE date = ?", [day])["rsi_14"].null_count() == 0
        # the first session of 2015 is decided by fold 2014; fold 2015 trains that night and decides from then on
        assert f"decision {day} (fold {2014 if i == 0 else 2015})" in _logs(pipe, result)
    log = read_decisions(pipe.wh)
    assert log["decision_date"].to_list()[:3] == pipe.new_days[:3]
    assert log["paper_return"][0] is None and log["paper_return"][1:3].is_not_null().all()


def test_decision_rows_carry_context_and_identifiers(pipe, nights):
    row = read_decisions(pipe.wh).row(0, named=True)
    assert row["fold"] == "2014" and row["policy_kind"] == "ppo" and row["code_version"]
    assert len(row["checkpoint_sha256"]) == 64 and row["checkpoint_path"].startswith("2014/policy_ppo-")
    assert (pipe.warehouse.artifact_root() / row["checkpoint_path"]).is_file()  # relative to the artifact root
    assert row["assets"] == ["SPY", "QQQ", "TLT", "GLD", "cash"] and len(row["observation"]) == len(row["obs_names"])
    assert np.isclose(sum(row["target_weights"]), 1.0) and min(row["target_weights"]) >= 0
    assert row["vix_bucket"] in {"calm", "normal", "elevated", "stress", "panic"} and row["vix"] > 0
    states = json.loads(row["sector_states"])
    assert len(states) >= 8 and set(states.values()) <= {"Bull", "Sideways", "Bear"} and row["hmm_fold"] == "2014"
    scores = json.loads(row["prescreen_scores"])
    assert set(scores) == {"SPY", "QQQ", "TLT", "GLD"} and 0 <= scores["SPY"]["buy_probability"] <= 1
    assert row["breaker_enabled"] and json.loads(row["breaker_config"])["vix_threshold"] == 30.0
    assert row["source"] == "csv" and row["catch_up"] is False


def test_live_sector_states_equal_the_fold_filter_where_both_exist(pipe, nights):
    live = read_table(pipe.wh, "regimes.sector_hmm_live")
    fold = read_table(pipe.wh, "regimes.sector_hmm", "WHERE fold = '2015'")  # the deployed fold
    assert set(live["fold"]) == {"2015"} and live["date"].max() == pipe.new_days[5]
    both = fold.join(live, on=["sector", "date"], suffix="_live")
    assert both.height == fold.height  # every (sector, date) of the fold's own filter is in the live table
    for col in ("p_bull", "p_sideways", "p_bear"):
        np.testing.assert_allclose(both[col].to_numpy(), both[f"{col}_live"].to_numpy(), rtol=0, atol=1e-12)


def test_holiday_night_is_a_clean_no_op(pipe, nights):
    before, result, after = nights["holiday"]
    assert after == before
    logs = _logs(pipe, result)
    assert "nothing new to ingest" in logs and "nothing to decide" in logs
    assert "no bar changed since the last run" in logs


def test_missed_night_is_caught_up_without_gaps(pipe, nights):
    before, result, after = nights["missed"]
    assert after["decisions.daily"][0] - before["decisions.daily"][0] == 2
    assert "catching up 2 sessions" in _logs(pipe, result)
    log = read_decisions(pipe.wh)
    assert log["decision_date"].to_list()[:5] == pipe.new_days[:5]
    assert log["catch_up"].to_list()[3:5] == [True, False]
    assert read_table(pipe.wh, "features.daily", "WHERE date = ?", [pipe.new_days[3]]).height > 0


def test_revised_bar_inside_the_overlap_is_reingested_and_the_log_is_not_rewritten(pipe, nights):
    before, result, after = nights["revision"]
    meta = result.asset_materializations_for_node("market_data")[0].metadata
    assert meta["rows_updated"].value == 1  # SPY on days[4], re-read thanks to the overlap
    spy = read_table(pipe.wh, "raw.bars", "WHERE ticker = 'SPY' AND date = ?", [pipe.new_days[4]])
    original = pipe.market.bars.filter((pl.col("ticker") == "SPY") & (pl.col("date") == pipe.new_days[4]))
    assert spy["close"][0] == pytest.approx(original["close"][0] * 1.01)
    feats = read_table(pipe.wh, "features.daily", "WHERE ticker = 'SPY' AND date = ?", [pipe.new_days[4]])
    assert feats["computed_at"][0] > read_decisions(pipe.wh)["decided_at"][4]  # recomputed after the revision
    log = read_decisions(pipe.wh)
    assert log.height == 6 and log["decision_date"].is_unique().all()


def test_audit_replay_matches_every_logged_decision(pipe, nights):
    report = replay_log(pipe.wh, pipe.warehouse.artifact_root())
    assert report.ok and report.rows.height == 6, report.to_string()
    assert float(report.rows["max_abs_diff_target"].max()) == 0.0


def test_decision_log_is_append_only(pipe, nights):
    first = read_decisions(pipe.wh).head(1)
    with pytest.raises(AppendOnlyViolation, match="append-only"):
        append_decisions(pipe.wh, first)
    assert read_decisions(pipe.wh).height == 6


def test_the_decision_deploys_the_ensemble_when_configured_and_the_audit_replays_it(pipe, nights):
    pipe.publish(pipe.new_days[6])
    result = pipe.run("nightly", run_config={**NIGHTLY_RUN_CONFIG,
                                             "resources": {"policy": {"config": {"deploy": "ensemble"}}}})
    assert "deploying the ensemble policy of fold 2015 (partial, through" in _logs(pipe, result)
    row = read_decisions(pipe.wh).tail(1).row(0, named=True)
    assert row["decision_date"] == pipe.new_days[6] and row["policy_kind"] == "ensemble"
    assert row["checkpoint_path"].startswith("2015/policy_ensemble-")
    report = replay_log(pipe.wh, pipe.warehouse.artifact_root())
    assert report.ok and report.rows.height == 7 and float(report.rows["max_abs_diff_target"].max()) == 0.0


def test_the_first_session_of_a_year_adds_its_fold_which_trains_and_the_next_decision_deploys(pipe, nights):
    """The calendar-year acceptance test: data through 2014-12-31 with fold 2014 trained; on 2015's first
    session the new-fold sensor adds fold 2015, its run trains it, and the next decision deploys it."""
    first, new = pipe.new_days[0], nights["new_year"]
    fold = new["folds"].row(0, named=True)  # ref/folds of the first session's nightly run
    assert fold["partial"] and fold["test_start"] == fold["test_end"] == first
    calendar = read_table(pipe.wh, "ref.trading_calendar")["date"].to_list()
    assert fold["train_end"] == calendar[calendar.index(first) - fold["embargo_days"] - 1] < CUTOFF
    assert "2015" in new["partitions"]  # the nightly's ref/folds registered the partition already
    result = new["request"]
    assert [r.partition_key for r in result.run_requests] == ["2015"]
    request = result.run_requests[0]
    assert request.run_key == "new-fold-2015" and request.tags["regimeflow/trigger"] == "new_fold"
    assert f"first session of 2015 ({first})" in request.tags["regimeflow/detail"]
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["2015"]]
    assert new["run"].success
    after = new["after"]  # trained: the sensor does not fire again
    assert isinstance(after, dg.SkipReason) and f"fold 2015 is partial (evaluated through {first}" in after.skip_message
    metrics = read_table(pipe.wh, "eval.fold_metrics",
                         "WHERE fold = '2015' AND strategy = 'ppo' AND cost_multiplier = 1.0").row(0, named=True)
    assert metrics["partial"] and metrics["end_date"] == first and metrics["days"] == 1  # one earned day so far
    log = read_decisions(pipe.wh)
    assert log.row(0, named=True)["decision_date"] == first and log.row(0, named=True)["fold"] == "2014"
    deployed = log.row(1, named=True)  # the next decision
    assert deployed["decision_date"] == pipe.new_days[1] and deployed["fold"] == "2015"
    assert deployed["checkpoint_path"].startswith("2015/policy_ppo-") and deployed["hmm_fold"] == "2015"
    assert set(log["fold"][1:]) == {"2015"}


def test_a_partial_fold_grows_is_re_evaluated_and_labelled_in_the_walk_forward_track(pipe, nights, monkeypatch):
    import duckdb

    then = nights["new_year"]["folds"].row(0, named=True)
    now = read_table(pipe.wh, "ref.folds", "WHERE key = '2015'").row(0, named=True)
    newest = read_table(pipe.wh, "ref.trading_calendar")["date"].max()
    assert now["partial"] and now["test_end"] == newest > then["test_end"]
    same = ("train_start", "train_end", "validation_start", "embargo_days", "test_start")
    assert {k: now[k] for k in same} == {k: then[k] for k in same}  # the trained model stays valid
    monkeypatch.setattr(sensors, "PARTIAL_EVAL_REFRESH_SESSIONS", 3)  # (21 by default)
    refresh, _ = _sense(pipe)
    assert isinstance(refresh, dg.RunRequest)
    assert refresh.asset_selection == [EVAL_FOLD, EVAL_SECTOR_BOOK, MODELS_STOCK_FUNNEL, EVAL_STOCK_BOOK]
    assert refresh.partition_key == "2015" and refresh.tags["regimeflow/trigger"] == "partial_fold_eval"
    pipe.run("fold", partition_key="2015", asset_selection=refresh.asset_selection, tags=refresh.tags)
    metrics = read_table(pipe.wh, "eval.fold_metrics", "WHERE fold = '2015' AND cost_multiplier = 1.0")
    assert metrics["partial"].all() and metrics["end_date"].max() == newest
    result = pipe.run("report")
    meta = result.asset_materializations_for_node("eval__walk_forward")[0].metadata
    label = f"2015 (partial, through {newest})"
    assert meta["folds"].value == ["2014", "2015"] and meta["partial_folds"].value == [label]
    assert label in open(meta["report"].value).read()
    track = read_table(pipe.wh, "eval.walk_forward_daily", "WHERE strategy = 'ppo'")
    assert track.filter(pl.col("partial"))["fold"].unique().to_list() == ["2015"]
    assert track.filter(~pl.col("partial"))["fold"].unique().to_list() == ["2014"]
    assert read_table(pipe.wh, "eval.walk_forward_metrics")["partial"].all()
    con = duckdb.connect(str(pipe.wh.snapshot_path), read_only=True)  # what analysts open
    try:
        rows = con.execute("SELECT DISTINCT fold, partial, evaluated_through FROM analytics.fold_performance "
                           "ORDER BY fold").fetchall()
    finally:
        con.close()
    assert rows == [("2014", False, date(2014, 12, 31)), ("2015", True, newest)]
