"""Drift statistics (the ``monitoring/drift`` asset, invoked directly with in-memory inputs), the sensors that
read them, the run-failure sensor and the schedule, with Dagster's public test contexts.

Each drift test controls exactly one condition: a market whose last 126 sessions become a crisis (feature
drift), hand-made live HMM states whose recent mix turns to Bear (regime shift), a paper track that trails
its baseline (decay)."""
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets.decisions import drift_statistics
from infra.io_managers import FoldModels, LoadedModel
from infra.resources import MonitoringResource, PolicyResource, WarehouseResource
from ml.agents.ppo import PPOPolicy
from ml.data.synthetic import generate_market
from ml.data.universe import ALLOCATION_ASSETS, Universe
from ml.dataset import allocation_panel
from ml.envs.portfolio import EnvConfig
from ml.features import compute_features
from ml.folds import fold_from_frame, folds_frame, pipeline_folds
from ml.regimes.vix import vix_regimes
from orchestration.jobs import NIGHTLY_RUN_CONFIG
from orchestration.schedules import nightly_schedule
from orchestration.sensors import drift_sensor, new_fold_sensor, run_failure_recorder
from warehouse import ingest as wi
from warehouse.catalog import ARTIFACTS, MAIN, AssetStorage, storage, write_asset
from warehouse.ops import read_run_failures

SECTORS = ["Materials", "Energy", "Financials", "Industrials", "Information Technology"]


@pytest.fixture(scope="module")
def market():
    universe = Universe(include_stocks=False, sector_etfs=["XLB", "XLE", "XLF", "XLI", "XLK"],
                        history_start=date(2008, 1, 1))
    return generate_market(universe, seed=5, end=date(2015, 12, 31))


def _shocked(market, sessions: int):
    """The last ``sessions`` sessions become a crisis: VIX x2.5, daily returns x4 with a -0.2%/day drift."""
    start = sorted(market.bars["date"].unique())[-sessions]
    idx = market.index_bars.with_columns(
        [pl.when(pl.col("date") >= start).then(pl.col(c) * 2.5).otherwise(pl.col(c)).alias(c)
         for c in ("open", "high", "low", "close")])
    frames = []
    for _, g in market.bars.sort("date").group_by("ticker", maintain_order=True):
        r = g["close"].pct_change().fill_null(0.0).to_numpy()
        r = np.where((g["date"] >= start).to_numpy(), 4 * r - 0.002, r)
        close = g["close"][0] * np.cumprod(1 + r)
        frames.append(g.with_columns([pl.Series(c, close) for c in ("open", "high", "low", "close", "adj_close")]))
    return type(market)(pl.concat(frames), idx, market.sectors, market.source, market.description)


def _decision_row(day, paper, baseline, fold="2015"):
    return {"decision_date": day, "decided_at": datetime(2016, 1, 1), "run_id": "r", "catch_up": False,
            "source": "synthetic", "code_version": "test", "fold": fold, "policy_kind": "ppo",
            "checkpoint_path": "-", "checkpoint_sha256": "-", "policy_data_hash": "-",
            "assets": ["SPY", "QQQ", "TLT", "GLD", "cash"], "obs_names": ["x"], "observation": [0.0],
            "held_weights": [0.2] * 5, "policy_weights": [0.2] * 5, "target_weights": [0.2] * 5, "turnover": 0.0,
            "vix": 20.0, "breaker_enabled": True, "breaker_active": False, "breaker_reason": "",
            "breaker_config": "{}", "trailing_drawdown": 0.0, "paper_return": paper, "baseline_return": baseline,
            "paper_equity": 1.0}


def drift_inputs(market, *, recent_states: str | None = None, paper: float | None = None, paper_days: int = 63):
    """In-memory inputs of ``monitoring/drift``: features, VIX regimes, folds, an (untrained) deployed policy
    for fold 2015, live HMM states (random mix; the last 126 sessions ``recent_states``), a paper track."""
    features = compute_features(market.bars.filter(pl.col("ticker").is_in(list(ALLOCATION_ASSETS))),
                                market.index_bars).with_columns(pl.lit("synthetic").alias("source"))
    calendar = market.bars.filter(pl.col("ticker") == "SPY")["date"].sort()
    folds = folds_frame(pipeline_folds(calendar))
    fold = fold_from_frame(folds, "2015")
    env = EnvConfig()
    names = env.obs_names(allocation_panel(features, env.observation))
    policy = PPOPolicy(len(names), len(ALLOCATION_ASSETS) + 1, env_config=env, obs_names=names,
                       assets=ALLOCATION_ASSETS)
    days = calendar.filter(calendar >= fold.train_start)
    mix = np.random.default_rng(0).choice(["Bull", "Sideways", "Bear"], size=(days.len(), len(SECTORS)),
                                          p=[0.5, 0.3, 0.2])
    if recent_states is not None:
        mix[-126:] = recent_states
    live = pl.DataFrame({"fold": "2015", "sector": np.repeat(SECTORS, days.len()),
                         "date": pl.concat([days] * len(SECTORS)), "state": mix.T.ravel()})
    track = days.tail(paper_days).to_list() if paper is not None else []
    decisions = pl.DataFrame([_decision_row(d, paper, 0.0005) for d in track]) if track else pl.DataFrame()
    return {"features": features, "vix": vix_regimes(market.index_bars, calendar), "folds": folds,
            "policies": FoldModels.of({"2015": LoadedModel(policy, "2015", "2015/policy_ppo-test.pt", "0" * 64, {})}),
            "sac_policies": FoldModels.of({}), "td3_policies": FoldModels.of({}), "ensemble_policies": FoldModels.of({}),
            "prescreen": FoldModels.of({}), "live_states": live, "decisions": decisions, "policy": PolicyResource()}


def _stats_row(market, **kwargs) -> pl.DataFrame:
    """The drift asset, invoked directly: its one output row (what the IO manager appends to ops.drift_checks)."""
    row = drift_statistics(dg.build_asset_context(), monitoring=MonitoringResource(), **drift_inputs(market, **kwargs))
    assert row.height == 1
    return row


def _statistics(market, **kwargs) -> dict:
    out = _stats_row(market, **kwargs).row(0, named=True)
    return {**out, "details": json.loads(out["details"])}


def test_drift_statistics_stay_quiet_on_an_unchanged_market(market):
    stats = _statistics(market, paper=0.0005)
    assert stats["fold"] == "2015" and stats["fired"] == [] and "no retrain" in stats["summary"]
    assert set(stats["details"]) == {"feature_drift", "regime_shift", "paper_decay"}
    assert not any(d["fired"] for d in stats["details"].values())
    assert "feature PSI" in stats["summary"] and "equal-weight" in stats["summary"]
    assert stats["data_through"] == date(2015, 12, 31)


def test_drift_statistics_fire_on_feature_drift(market):
    stats = _statistics(_shocked(market, 126))
    assert "feature_drift" in stats["fired"] and stats["details"]["feature_drift"]["share"] >= 0.5
    assert any("paper decay not tested (0/63" in n for n in stats["notes"])


def test_drift_statistics_fire_on_a_sector_regime_shift(market):
    stats = _statistics(market, recent_states="Bear")
    assert stats["fired"] == ["regime_shift"] and stats["details"]["regime_shift"]["shifted"] == len(SECTORS)


def test_paper_decay_fires_only_with_a_full_window(market):
    short = _statistics(market, paper=-0.003, paper_days=40)
    assert short["fired"] == [] and "paper decay not tested (40/63" in short["summary"]
    full = _statistics(market, paper=-0.003)
    assert full["fired"] == ["paper_decay"]
    decay = full["details"]["paper_decay"]
    assert decay["days"] == 63 and decay["excess_return"] < -0.05


def test_drift_statistics_without_a_policy_explain_themselves(market):
    inputs = {**drift_inputs(market), "policies": FoldModels.of({})}
    with pytest.raises(dg.Failure, match="no trained ppo policy yet"):
        drift_statistics(dg.build_asset_context(), monitoring=MonitoringResource(), **inputs)


# ----------------------------------------------------------------------------------------------- sensor
def sensor_warehouse(tmp_path, market, rows: list[pl.DataFrame]) -> WarehouseResource:
    """A published snapshot holding the calendar and the drift asset's ``ops.drift_checks`` rows, in order."""
    res = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    wh = res.get()
    wi.ingest_market(wh, market, run_id="t")
    wi.rebuild_trading_calendar(wh, "SPY")
    for row in rows:
        write_asset(wh, storage(("monitoring", "drift")), {"main": row})
    wh.publish_snapshot()
    return res


def _sense(res, cursor=None, **thresholds):
    ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor,
                                  resources={"warehouse": res, "monitoring": MonitoringResource(**thresholds)})
    return drift_sensor(ctx), json.loads(ctx.cursor) if ctx.cursor else {}


def test_drift_sensor_requests_a_retrain_of_the_deployed_fold_when_the_statistics_fired(tmp_path, market):
    res = sensor_warehouse(tmp_path, market, [_stats_row(market, recent_states="Bear")])
    result, cursor = _sense(res)
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2015"
    assert result.tags["regimeflow/trigger"] == "drift" and result.tags["regimeflow/reason"] == "regime_shift"
    assert "sector HMM state mix" in result.tags["regimeflow/detail"] and result.run_key == "drift-2015-2015-12-31"
    assert cursor["last_request"] == "2015-12-31" and cursor["fired"] == ["regime_shift"]


def test_drift_sensor_is_quiet_when_nothing_fired(tmp_path, market):
    res = sensor_warehouse(tmp_path, market, [_stats_row(market, paper=0.0005)])
    result, cursor = _sense(res)
    assert isinstance(result, dg.SkipReason) and "no retrain" in result.skip_message
    assert cursor["fold"] == "2015" and cursor["fired"] == []


def test_drift_sensor_reads_only_the_newest_statistics(tmp_path, market):
    res = sensor_warehouse(tmp_path, market, [_stats_row(market, recent_states="Bear"),
                                              _stats_row(market, paper=0.0005)])
    result, _ = _sense(res)
    assert isinstance(result, dg.SkipReason)


def test_drift_sensor_cooldown_suppresses_repeated_requests(tmp_path, market):
    res = sensor_warehouse(tmp_path, market, [_stats_row(market, recent_states="Bear")])
    first, cursor = _sense(res)
    assert isinstance(first, dg.RunRequest)
    again, cursor2 = _sense(res, cursor=json.dumps(cursor))
    assert isinstance(again, dg.SkipReason) and "suppressed" in again.skip_message
    assert cursor2["last_request"] == cursor["last_request"]
    later, _ = _sense(res, cursor=json.dumps({**cursor, "last_request": "2015-06-30"}))
    assert isinstance(later, dg.RunRequest)  # 126 sessions later the cooldown is over


def test_drift_sensor_without_statistics_explains_itself(tmp_path, market):
    res = sensor_warehouse(tmp_path, market, [])
    result, _ = _sense(res)
    assert isinstance(result, dg.SkipReason) and "no drift statistics yet" in result.skip_message


def test_run_failure_sensor_records_the_failure(tmp_path, market):
    from orchestration.definitions import definitions_with

    res = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    wi.ingest_market(res.get(), market, run_id="t")
    instance = dg.DagsterInstance.ephemeral()
    job = definitions_with(warehouse=res).resolve_job_def("decide")
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags={"regimeflow/trigger": "test"})
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_recorder", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(), resources={"warehouse": res}).for_run_failure()
    run_failure_recorder(ctx)
    rows = read_run_failures(res.get())
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert row["run_id"] == result.run_id and row["job_name"] == "decide" and row["trigger"] == "test"
    assert row["failed_steps"]
    run_failure_recorder(ctx)  # a retried tick does not duplicate the record
    assert read_run_failures(res.get()).height == 1
    snap = res.get().snapshot_reader()  # published at once: analysts see the failure
    assert read_run_failures(snap).height == 1


def test_nightly_schedule_runs_weekdays_after_the_close_in_new_york():
    assert nightly_schedule.cron_schedule == "30 18 * * 1-5"
    assert nightly_schedule.execution_timezone == "America/New_York"
    tick = datetime(2026, 11, 20, 18, 30, tzinfo=ZoneInfo("America/New_York"))
    request = nightly_schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick)).run_requests[0]
    assert request.run_key == "nightly-2026-11-20" and request.run_config == NIGHTLY_RUN_CONFIG
    assert request.tags["regimeflow/trigger"] == "schedule"


def test_schedule_cron_is_configurable(monkeypatch):
    import importlib

    import orchestration.schedules as schedules

    monkeypatch.setenv("REGIMEFLOW_NIGHTLY_CRON", "0 21 * * 1-5")
    monkeypatch.setenv("REGIMEFLOW_AUTOMATION", "on")
    try:
        reloaded = importlib.reload(schedules)
        assert reloaded.nightly_schedule.cron_schedule == "0 21 * * 1-5"
        assert reloaded.nightly_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    finally:
        monkeypatch.delenv("REGIMEFLOW_NIGHTLY_CRON")
        monkeypatch.delenv("REGIMEFLOW_AUTOMATION")
        importlib.reload(schedules)
    assert nightly_schedule.default_status == dg.DefaultScheduleStatus.STOPPED


# ----------------------------------------------------------------------------------------------- new folds
def fold_sensor_warehouse(tmp_path, last: date, trained: list[str], evaluated: dict[str, date]) -> WarehouseResource:
    """A published snapshot with a (synthetic) trading calendar through ``last``, a trained PPO policy record
    per fold of ``trained`` and fold metrics whose last earned day is ``evaluated[fold]``: all the new-fold
    sensor reads."""
    from ml.data.market import trading_calendar_frame
    from ml.data.synthetic import trading_calendar

    res = WarehouseResource(path=str(tmp_path / f"wh-{last}.duckdb"))
    wh = res.get()
    days = trading_calendar(date(2008, 1, 2), last)
    write_asset(wh, storage(("ref", "trading_calendar")), {"main": trading_calendar_frame(
        pl.DataFrame({"ticker": "SPY", "date": pl.Series(days).cast(pl.Date), "source": "synthetic"}), "SPY")})
    records = pl.DataFrame({"fold": trained, "kind": "policy_ppo", "path": [f"{k}/policy_ppo-0.pt" for k in trained],
                            "sha256": "0" * 64, "meta": "{}"})
    write_asset(wh, AssetStorage({MAIN: ARTIFACTS}), {"main": records})
    for fold, end in evaluated.items():
        write_asset(wh, storage(("eval", "fold")), {"metrics": pl.DataFrame(
            {"strategy": ["ppo"], "cost_multiplier": [1.0], "end_date": [end], "partial": [True]})}, fold=fold)
    wh.publish_snapshot()
    return res


def _sense_folds(res, cursor=None):
    ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor, resources={"warehouse": res})
    return new_fold_sensor(ctx), json.loads(ctx.cursor) if ctx.cursor else {}


def test_new_fold_sensor_adds_the_year_s_fold_on_its_first_session(tmp_path):
    before, cursor = _sense_folds(fold_sensor_warehouse(tmp_path, date(2014, 12, 31), ["2013", "2014"],
                                                        {"2014": date(2014, 12, 31)}))
    assert isinstance(before, dg.SkipReason)
    assert "fold 2015 is added on the first session of 2015" in before.skip_message and cursor["new_folds"] == []
    res = fold_sensor_warehouse(tmp_path, date(2015, 1, 2), ["2013", "2014"], {"2014": date(2014, 12, 31)})
    result, cursor = _sense_folds(res)
    assert [r.partition_key for r in result.run_requests] == ["2015"]
    request = result.run_requests[0]
    assert request.run_key == "new-fold-2015" and request.asset_selection is None  # the whole fold job
    assert request.tags["regimeflow/trigger"] == "new_fold" and request.tags["regimeflow/reason"] == "new_fold"
    assert "first session of 2015 (2015-01-02)" in request.tags["regimeflow/detail"]
    assert "partial (through 2015-01-02)" in request.tags["regimeflow/detail"]
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["2015"]]
    assert cursor["new_folds"] == cursor["partial_folds"] == ["2015"] and "adding and training" in cursor["why"]
    again, _ = _sense_folds(res, json.dumps(cursor))  # the next tick: same run key, so the daemon runs it once
    assert [r.run_key for r in again.run_requests] == ["new-fold-2015"]


def test_new_fold_sensor_adds_a_missed_complete_year_and_the_partial_one(tmp_path):
    result, cursor = _sense_folds(fold_sensor_warehouse(tmp_path, date(2015, 1, 2), ["2013"], {}))
    assert [r.partition_key for r in result.run_requests] == ["2014", "2015"]
    assert "test year 2014 complete" in result.run_requests[0].tags["regimeflow/detail"]
    assert cursor["partial_folds"] == ["2015"]


def test_new_fold_sensor_re_evaluates_a_partial_fold_as_its_year_goes_on(tmp_path):
    recent, cursor = _sense_folds(fold_sensor_warehouse(tmp_path, date(2015, 3, 31), ["2014", "2015"],
                                                        {"2015": date(2015, 3, 20)}))
    assert isinstance(recent, dg.SkipReason)
    assert "fold 2015 is partial (evaluated through 2015-03-20" in recent.skip_message
    stale, cursor = _sense_folds(fold_sensor_warehouse(tmp_path, date(2015, 3, 31), ["2014", "2015"],
                                                       {"2015": date(2015, 1, 2)}))
    assert isinstance(stale, dg.RunRequest) and stale.partition_key == "2015"
    # evaluation only (the funnel ranks the new days with the fold's prescreen scores); the models stay
    assert stale.asset_selection == [dg.AssetKey(["eval", "fold"]), dg.AssetKey(["eval", "sector_book"]),
                                     dg.AssetKey(["models", "stock_funnel"]), dg.AssetKey(["eval", "stock_book"])]
    assert stale.run_key == "refresh-eval-2015-2015-03-31"
    assert stale.tags["regimeflow/trigger"] == "partial_fold_eval" and cursor["evaluated_through"] == "2015-01-02"
    # the year completed since the last evaluation: one final re-evaluation, whatever the lag
    done, _ = _sense_folds(fold_sensor_warehouse(tmp_path, date(2015, 12, 31), ["2014", "2015"],
                                                 {"2015": date(2015, 12, 28)}))
    assert isinstance(done, dg.RunRequest) and done.run_key == "refresh-eval-2015-2015-12-31"
    assert "the year is complete" in done.tags["regimeflow/detail"]
    quiet, _ = _sense_folds(fold_sensor_warehouse(tmp_path, date(2015, 12, 31), ["2014", "2015"],
                                                  {"2015": date(2015, 12, 31)}))
    assert isinstance(quiet, dg.SkipReason) and "fold 2016 is added on the first session of 2016" in quiet.skip_message
