"""Sensors and the schedule, evaluated with Dagster's public test contexts on small warehouses.

The drift sensor's warehouse is built directly (synthetic bars, folds, an untrained policy checkpoint,
hand-made live HMM states and paper track) so that each test controls exactly one condition.
"""
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml.agents.checkpoint import save_checkpoint
from ml.agents.ppo import PPOPolicy
from ml.data.synthetic import generate_market
from ml.data.universe import ALLOCATION_ASSETS, Universe
from ml.envs.market_panel import build_panel
from ml.envs.portfolio import EnvConfig
from ml.folds import folds_frame, pipeline_folds
from ml.prescreen import file_sha256
from orchestration.jobs import NIGHTLY_RUN_CONFIG
from orchestration.resources import MonitoringResource, WarehouseResource
from orchestration.schedules import nightly_schedule
from orchestration.sensors import drift_sensor, run_failure_recorder
from warehouse import ingest as wi
from warehouse.artifacts import record_artifact
from warehouse.decisions import append_decisions
from warehouse.folds import read_fold, write_folds
from warehouse.ops import read_run_failures
from warehouse.tables import write_replacing

SECTOR_ETFS = ["XLB", "XLE", "XLF", "XLI", "XLK"]
SECTORS = ["Materials", "Energy", "Financials", "Industrials", "Information Technology"]


@pytest.fixture(scope="module")
def market():
    universe = Universe(include_stocks=False, sector_etfs=SECTOR_ETFS, history_start=date(2008, 1, 1))
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


def build_warehouse(tmp_path, market, *, recent_states: str | None = None, paper: float | None = None,
                    paper_days: int = 63) -> WarehouseResource:
    """Bars, calendar, folds, an (untrained) policy for fold 2015, live HMM states, a paper track."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    res = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    wh = res.get()
    wi.ingest_market(wh, market, run_id="test")
    wi.rebuild_trading_calendar(wh, "SPY")
    calendar = wi.read_calendar(wh)
    write_folds(wh, folds_frame(pipeline_folds(calendar)))
    fold = read_fold(wh, "2015")
    panel = build_panel(market.bars.filter(pl.col("ticker").is_in(list(ALLOCATION_ASSETS))), market.index_bars)
    env = EnvConfig()
    names = env.obs_names(panel)
    policy = PPOPolicy(len(names), panel.n_assets + 1, env_config=env, obs_names=names, assets=panel.assets)
    path = save_checkpoint(tmp_path / "policy_ppo.pt", policy)
    record_artifact(wh, "2015", "policy_ppo", path, file_sha256(path))
    days = calendar.filter(calendar >= fold.train_start)
    rng = np.random.default_rng(0)
    mix = rng.choice(["Bull", "Sideways", "Bear"], size=(days.len(), len(SECTORS)), p=[0.5, 0.3, 0.2])
    if recent_states is not None:
        mix[-126:] = recent_states
    live = pl.DataFrame({"fold": "2015", "sector": np.repeat(SECTORS, days.len()),
                         "date": pl.concat([days] * len(SECTORS)), "state": mix.T.ravel()})
    write_replacing(wh, "regimes.sector_hmm_live", live, ["sector", "date"])
    if paper is not None:
        track = days.tail(paper_days).to_list()
        append_decisions(wh, pl.DataFrame([_decision_row(d, paper, 0.0005) for d in track]))
    return res


def _evaluate(res, cursor=None, **thresholds):
    instance = dg.DagsterInstance.ephemeral()
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"warehouse": res, "monitoring": MonitoringResource(**thresholds)})
    return drift_sensor(ctx), json.loads(ctx.cursor)


def test_drift_sensor_does_not_fire_on_an_unchanged_market(tmp_path, market):
    res = build_warehouse(tmp_path, market, paper=0.0005)
    result, cursor = _evaluate(res)
    assert isinstance(result, dg.SkipReason), result
    assert "no retrain" in result.skip_message and cursor["fold"] == "2015" and cursor["fired"] == []
    assert set(cursor["details"]) == {"feature_drift", "regime_shift", "paper_decay"}
    assert not any(d["fired"] for d in cursor["details"].values())
    assert "feature PSI" in cursor["why"] and "equal-weight" in cursor["why"]


def test_drift_sensor_fires_on_feature_drift(tmp_path, market):
    res = build_warehouse(tmp_path, _shocked(market, 126))
    result, cursor = _evaluate(res)
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2015"
    assert result.tags["regimeflow/trigger"] == "drift"
    assert "feature_drift" in result.tags["regimeflow/reason"].split(",")
    assert "feature PSI" in result.tags["regimeflow/detail"] and result.run_key.startswith("drift-2015-")
    assert cursor["details"]["feature_drift"]["share"] >= 0.5 and cursor["last_request"] == "2015-12-31"
    assert "paper decay not tested (0/63" in " ".join(cursor["notes"])


def test_drift_sensor_fires_on_a_sector_regime_shift(tmp_path, market):
    res = build_warehouse(tmp_path, market, recent_states="Bear")
    result, cursor = _evaluate(res)
    assert isinstance(result, dg.RunRequest) and result.tags["regimeflow/reason"] == "regime_shift"
    assert cursor["details"]["regime_shift"]["shifted"] == len(SECTORS)


def test_drift_sensor_fires_on_paper_decay_only_with_a_full_window(tmp_path, market):
    short = build_warehouse(tmp_path / "short", market, paper=-0.003, paper_days=40)
    result, cursor = _evaluate(short)
    assert isinstance(result, dg.SkipReason) and "paper decay not tested (40/63" in result.skip_message
    full = build_warehouse(tmp_path / "full", market, paper=-0.003)
    result, cursor = _evaluate(full)
    assert isinstance(result, dg.RunRequest) and result.tags["regimeflow/reason"] == "paper_decay"
    decay = cursor["details"]["paper_decay"]
    assert decay["days"] == 63 and decay["excess_return"] < -0.05


def test_drift_sensor_cooldown_suppresses_repeated_requests(tmp_path, market):
    res = build_warehouse(tmp_path, market, recent_states="Bear")
    first, cursor = _evaluate(res)
    assert isinstance(first, dg.RunRequest)
    again, cursor2 = _evaluate(res, cursor=json.dumps(cursor))
    assert isinstance(again, dg.SkipReason) and "suppressed" in again.skip_message
    assert cursor2["last_request"] == cursor["last_request"]
    later, _ = _evaluate(res, cursor=json.dumps({**cursor, "last_request": "2015-06-30"}))
    assert isinstance(later, dg.RunRequest)  # 126 sessions later the cooldown is over


def test_drift_sensor_without_a_policy_explains_itself(tmp_path, market):
    res = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    wi.ingest_market(res.get(), market, run_id="t")
    result, cursor = _evaluate(res)
    assert isinstance(result, dg.SkipReason) and "no trained policy yet" in result.skip_message


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
    assert row["failed_steps"] == ["decisions__daily"]
    assert "no trained policy yet" in row["message"]
    run_failure_recorder(ctx)  # a retried tick does not duplicate the record
    assert read_run_failures(res.get()).height == 1


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
