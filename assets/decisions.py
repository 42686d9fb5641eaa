"""Group ``decisions``: today's target weights from the deployed policy, appended to the audit log.

The deployed policy is the newest fold's (latest training window with a checkpoint in models.artifacts).
Every session after the last logged decision gets one, in order, so a missed night catches up and a night
without a new session (holiday) writes nothing. See ``ml.decisions`` for timing and the paper track.
"""
import json
from datetime import date, datetime, timezone
from typing import Optional

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets._models import load_fold_policy, load_fold_prescreen
from assets.keys import (
    DECISIONS_DAILY,
    FEATURES_DAILY,
    MODELS_POLICY_PPO,
    MODELS_PRESCREEN,
    RAW_BARS,
    RAW_INDEX_BARS,
    REGIMES_SECTOR_HMM_LIVE,
    REGIMES_VIX,
)
from ml.decisions import PaperState, decide_sessions
from ml.envs.market_panel import build_panel
from ml.prescreen import score_prescreen
from ml.risk import CircuitBreakerConfig
from orchestration.resources import PolicyResource, RiskResource, WarehouseResource
from orchestration.version import code_version
from warehouse import ingest as wi
from warehouse.artifacts import newest_fold_with
from warehouse.decisions import append_decisions, last_decision_date, recent_decisions
from warehouse.features import FEATURES_TABLE, warehouse_source
from warehouse.folds import resolve_fold
from warehouse.regimes_live import sector_states_on
from warehouse.tables import read_table


class DecisionConfig(dg.Config):
    """Where an empty decision log starts."""

    first_date: Optional[str] = Field(
        default=None, description="ISO date of the first decision when the log is empty (a paper track from "
        "then on, marked catch_up). Default: the newest session only. Must be after the policy's training window.")


def paper_state(wh, window: int) -> PaperState:
    """The state the last logged decisions hand to the next one (``window`` = drawdown window)."""
    log = recent_decisions(wh, window)
    if log.is_empty():
        return PaperState()
    last = log.row(log.height - 1, named=True)
    return PaperState(last["decision_date"], np.asarray(last["held_weights"], dtype=np.float64),
                      np.asarray(last["target_weights"], dtype=np.float64), tuple(log["paper_equity"].to_list()))


def _decision_rows(context, panel, last: Optional[date], first_date: Optional[str], fold) -> list[int]:
    """Panel rows to decide: every session after the last logged decision (or the newest session / the
    sessions from ``first_date`` for an empty log), never one inside the policy's training window."""
    dates = panel.dates.astype("datetime64[D]")
    if last is not None:
        rows = np.nonzero(dates > np.datetime64(last, "D"))[0]
        inside = rows[dates[rows] <= np.datetime64(fold.train_end, "D")]
        if inside.size:  # the log stopped long ago and the deployed fold has since trained on those days
            context.log.warning(f"{inside.size} missed session(s) {panel.date_of(int(inside[0]))} .. "
                                f"{panel.date_of(int(inside[-1]))} lie inside fold {fold.key}'s training window: "
                                "not decided (that would be in-sample); the paper track holds through them")
        return [int(i) for i in rows if dates[i] > np.datetime64(fold.train_end, "D")]
    if first_date is None:
        return [panel.n_dates - 1]
    start = date.fromisoformat(first_date)
    if start <= fold.train_end:
        raise dg.Failure(f"first_date {start} is inside the training window of fold {fold.key} (ends {fold.train_end}): "
                         "a policy never decides on days it was trained on")
    return [int(i) for i in np.nonzero(dates >= np.datetime64(start, "D"))[0]]


def _prescreen_context(context, wh, fold_key: str, days: list[date], tickers: list[str], vix: pl.DataFrame) -> dict:
    """{date: {ticker: {regime, buy_probability, sell_probability}}} from the fold's prescreen models;
    ``vix``: the ``regimes.vix`` rows of ``days`` (they route each day to its regime's model)."""
    try:
        models = load_fold_prescreen(wh, fold_key)
    except dg.Failure as exc:  # context only: the decision does not depend on it
        context.log.warning(f"no usable prescreen models for fold {fold_key} ({exc.description}); "
                            "decisions log no prescreen scores")
        return {}
    feats = read_table(wh, FEATURES_TABLE, "WHERE date IN (SELECT unnest(?)) AND ticker IN (SELECT unnest(?))",
                       [days, tickers])
    scores = score_prescreen(models, feats, vix)
    out: dict = {}
    for r in scores.iter_rows(named=True):
        out.setdefault(r["date"], {})[r["ticker"]] = {
            "regime": r["regime"], "buy_probability": r["buy_probability"], "sell_probability": r["sell_probability"]}
    return out


@dg.asset(key=DECISIONS_DAILY,
          deps=[RAW_BARS, RAW_INDEX_BARS, FEATURES_DAILY, REGIMES_VIX, REGIMES_SECTOR_HMM_LIVE, MODELS_POLICY_PPO,
                MODELS_PRESCREEN],
          group_name="decisions", kinds={"pytorch", "duckdb"})
def daily_decisions(context: dg.AssetExecutionContext, config: DecisionConfig, policy: PolicyResource,
                    risk: RiskResource, warehouse: WarehouseResource):
    """Target weights (SPY, QQQ, TLT, GLD, cash) for the next session, decided at the close of each new
    session by the deployed policy with the circuit breaker above it; appended to ``decisions.daily`` with
    the observation, regime context, prescreen scores, identifiers and code version (replayable)."""
    wh = warehouse.get()
    fold_key = newest_fold_with(wh, "policy_ppo")
    if fold_key is None:
        raise dg.Failure("no trained policy yet: run the fold job (models/policy_ppo) for at least one fold")
    fold = resolve_fold(wh, fold_key)
    ppo, rec = load_fold_policy(wh, fold_key)
    assets = list(ppo.assets)
    bars = wi.read_bars(wh, assets)
    panel = build_panel(bars, wi.read_index_bars(wh), assets)
    breaker = risk.breaker_config() if risk.daily_enabled else None
    window = (breaker or CircuitBreakerConfig()).drawdown_window
    last = last_decision_date(wh)
    rows = _decision_rows(context, panel, last, config.first_date, fold)
    newest = panel.date_of(panel.n_dates - 1)
    if not rows:
        context.log.info(f"no new session since the last decision ({last}; newest data {newest}): "
                         "nothing to decide (holiday, weekend or no new bars)")
        return dg.MaterializeResult(metadata={"new_decisions": 0, "last_decision": str(last), "fold": fold_key})
    if len(rows) > 1:
        context.log.info(f"catching up {len(rows)} sessions: {panel.date_of(rows[0])} .. {panel.date_of(rows[-1])}")
    decisions, _ = decide_sessions(ppo, panel, rows, paper_state(wh, window), policy.cost_bps / 1e4, breaker)
    days = [d.date for d in decisions]
    vix = read_table(wh, "regimes.vix", "WHERE date IN (SELECT unnest(?))", [days])
    vix_ctx = {r["date"]: r for r in vix.iter_rows(named=True)}
    hmm_fold, states, probs = sector_states_on(wh, days)
    scores = _prescreen_context(context, wh, fold_key, days, assets, vix)
    source, version = warehouse_source(wh), code_version()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    breaker_json = json.dumps((breaker or CircuitBreakerConfig()).model_dump(mode="json"))
    frame = pl.DataFrame([{
        "decision_date": d.date, "decided_at": now, "run_id": context.run.run_id, "catch_up": d.date < newest, "source": source, "code_version": version, "fold": fold_key,
        "policy_kind": "ppo", "checkpoint_path": rec["path"], "checkpoint_sha256": rec["sha256"],
        "policy_data_hash": ppo.data_hash, "assets": [*assets, "cash"], "obs_names": d.obs_names,
        "observation": d.observation.tolist(), "held_weights": d.held_weights.tolist(),
        "policy_weights": d.policy_weights.tolist(), "target_weights": d.target_weights.tolist(),
        "turnover": d.turnover, "vix": d.vix, "vix_band": vix_ctx.get(d.date, {}).get("band"),
        "vix_bucket": vix_ctx.get(d.date, {}).get("bucket"), "hmm_fold": hmm_fold,
        "sector_states": json.dumps(states.get(d.date)) if d.date in states else None,
        "sector_probabilities": json.dumps(probs.get(d.date)) if d.date in probs else None,
        "prescreen_fold": fold_key if scores else None,
        "prescreen_scores": json.dumps(scores[d.date]) if d.date in scores else None,
        "breaker_enabled": breaker is not None, "breaker_active": d.breaker_active,
        "breaker_reason": d.breaker_reason, "breaker_config": breaker_json,
        "trailing_drawdown": d.trailing_drawdown, "paper_return": d.paper_return,
        "baseline_return": d.baseline_return, "paper_equity": d.paper_equity,
    } for d in decisions])
    append_decisions(wh, frame)
    for d in decisions:
        weights = "  ".join(f"{a} {w:.3f}" for a, w in zip([*assets, "cash"], d.target_weights))
        context.log.info(f"decision {d.date} (fold {fold_key}): {weights}")
        if d.breaker_active:
            context.log.warning(f"circuit breaker on {d.date}: {d.breaker_reason}")
    if source == "synthetic":
        context.log.warning("SYNTHETIC DATA: these decisions are a demo, not based on real prices")
    latest = frame.row(frame.height - 1, named=True)
    table = pl.DataFrame({"asset": latest["assets"], "policy": latest["policy_weights"],
                          "decision": latest["target_weights"]})
    return dg.MaterializeResult(metadata={
        "new_decisions": len(decisions),
        "first_new": str(days[0]), "last_new": str(days[-1]),
        "fold": fold_key, "source": source,
        "breaker_activations": sum(d.breaker_active for d in decisions),
        "latest_weights": dg.MetadataValue.md(md_table(table)),
        "latest_breaker_reason": latest["breaker_reason"] or "not active",
        "paper_equity": float(latest["paper_equity"]),
        **({"WARNING": "SYNTHETIC DATA — not real market prices"} if source == "synthetic" else {}),
    })
