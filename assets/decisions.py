"""Group ``decisions``: today's target weights from the deployed policy, appended to the audit log, and the
drift / decay statistics of the deployed fold (``monitoring/drift``; the drift sensor only reads them).

The deployed policy is the newest fold's (latest training window with a policy artifact), received by
lineage with the fold's prescreen models. Every session after the last logged decision gets one, in
order, so a missed night catches up and a night without a new session (holiday) writes nothing. See
``ml.decisions`` for timing and the paper track.
"""
from datetime import date, datetime, timezone
from typing import Optional

import dagster as dg
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets.keys import (
    DECISIONS_DAILY,
    MODELS_POLICY_ENSEMBLE,
    MODELS_POLICY_PPO,
    MODELS_POLICY_SAC,
    MODELS_POLICY_TD3,
    MODELS_PRESCREEN,
    MONITORING_DRIFT,
    OPS_INPUT_FRESHNESS,
    REGIMES_SECTOR_HMM_LIVE,
)
from assets.policies import PANEL_INPUTS
from infra.io_managers import FoldModels
from infra.resources import MonitoringResource, PolicyResource, RiskResource, WarehouseResource
from infra.version import code_version
from ml.decisions import Provenance, decide_sessions, decision_frame, paper_state, rows_to_decide
from ml.dataset import policy_panel
from ml.folds import deployed_fold
from ml.freshness import as_of_dates, stale_lines
from ml.monitoring import evaluate_drift
from ml.prescreen import score_prescreen
from ml.risk import CircuitBreakerConfig
from warehouse.decisions import last_decision_date, recent_decisions

DEPLOYED_INPUTS = {**PANEL_INPUTS, "policies": dg.AssetIn(MODELS_POLICY_PPO), "prescreen": dg.AssetIn(MODELS_PRESCREEN),
                   "live_states": dg.AssetIn(REGIMES_SECTOR_HMM_LIVE)}
#: The other deployable policies (``PolicyResource.deploy``); ``policies`` above is PPO.
DEPLOYABLE_INPUTS = {"sac_policies": dg.AssetIn(MODELS_POLICY_SAC), "td3_policies": dg.AssetIn(MODELS_POLICY_TD3),
                     "ensemble_policies": dg.AssetIn(MODELS_POLICY_ENSEMBLE)}


class DecisionConfig(dg.Config):
    """Where an empty decision log starts."""

    first_date: Optional[str] = Field(
        default=None, description="ISO date of the first decision when the log is empty (a paper track from "
        "then on, marked catch_up). Default: the newest session only. Must be after the policy's training window.")


def _deployed(policies: FoldModels, folds: pl.DataFrame, kind: str = "ppo"):
    fold = deployed_fold(folds, list(policies))
    if fold is None:
        raise dg.Failure(f"no trained {kind} policy yet: run the fold job (models/policy_{kind}) for at least one fold")
    return fold, policies[fold.key]


def _deployed_policy(policy: PolicyResource, folds: pl.DataFrame, ppo: FoldModels, sac: FoldModels,
                     td3: FoldModels, ensemble: FoldModels):
    """``(fold, LoadedModel)`` of the policy ``policy.deploy`` names, from the newest fold that has one."""
    candidates = {"ppo": ppo, "sac": sac, "td3": td3, "ensemble": ensemble}
    if policy.deploy not in candidates:
        raise dg.Failure(f"policy.deploy={policy.deploy!r}: choose one of {sorted(candidates)}")
    return _deployed(candidates[policy.deploy], folds, policy.deploy)


def _deployed_panel(policy, fold, features, vix, live_states, prescreen: FoldModels):
    """The deployed policy's panel up to the newest bar (live sector states; the fold's prescreen models)."""
    spec = policy.env_config.observation
    models = prescreen[fold.key].model if spec.prescreen else None
    return policy_panel(features, spec, policy.assets, sector_probabilities=live_states, prescreen=models,
                        vix_regimes=vix)


def _inputs_as_of(freshness: pl.DataFrame, assets, live_states: pl.DataFrame) -> tuple[dict[str, str], list[str]]:
    """``({input: as-of ISO date}, [stale inputs])`` at decision time: the policy's assets, VIX / VIX3M, each
    sector's live HMM state (``sector:<name>``); stale = every stale input of ``ops.input_freshness``."""
    as_of = as_of_dates(freshness, [*assets, "VIX", "VIX3M"])
    if live_states is not None and live_states.height and "as_of" in live_states.columns:
        for sector, d in live_states.group_by("sector").agg(pl.col("as_of").max()).sort("sector").iter_rows():
            as_of[f"sector:{sector}"] = d.isoformat()
    return as_of, freshness.filter(pl.col("stale"))["input"].to_list()


@dg.asset(key=DECISIONS_DAILY, group_name="decisions", kinds={"pytorch", "duckdb"},
          ins={**DEPLOYED_INPUTS, **DEPLOYABLE_INPUTS, "freshness": dg.AssetIn(OPS_INPUT_FRESHNESS)})
def daily_decisions(context: dg.AssetExecutionContext, config: DecisionConfig, policy: PolicyResource,
                    risk: RiskResource, warehouse: WarehouseResource, features: pl.DataFrame, vix: pl.DataFrame,
                    folds: pl.DataFrame, policies: FoldModels, sac_policies: FoldModels, td3_policies: FoldModels,
                    ensemble_policies: FoldModels, prescreen: FoldModels, live_states: pl.DataFrame,
                    freshness: pl.DataFrame):
    """Target weights (SPY, QQQ, TLT, GLD, cash) for the next session, decided at the close of each new
    session by the deployed policy (``PolicyResource.deploy``: PPO by default, or SAC, TD3, the ensemble)
    with the circuit breaker above it; appended to ``decisions.daily`` with the observation, regime
    context, prescreen scores, identifiers and code version (replayable), and the as-of date of every input.
    Refuses to decide (fails, nothing written) while an allocation asset or the VIX is stale
    (``ops.input_freshness``); the next run catches the missed sessions up."""
    kind = policy.deploy
    fold, loaded = _deployed_policy(policy, folds, policies, sac_policies, td3_policies, ensemble_policies)
    context.log.info(f"deploying the {kind} policy of fold {fold.label} ({loaded.path}; trained through "
                     f"{fold.train_end})")
    ppo = loaded.model
    blocking = freshness.filter(pl.col("stale") & pl.col("input").is_in([*ppo.assets, "VIX"]))
    if blocking.height:
        raise dg.Failure(
            "stale decision inputs - no decision until the source publishes them (the next run catches up every "
            "missed session):\n" + "\n".join(stale_lines(blocking)),
            metadata={"stale_inputs": dg.MetadataValue.json(blocking["input"].to_list())})
    warn = stale_lines(freshness)
    if warn:
        context.log.warning("stale context inputs (the decision goes ahead; their live outputs stop at their "
                            "last row):\n" + "\n".join(warn[:20]) + (f"\n… {len(warn) - 20} more" if len(warn) > 20
                                                                       else ""))
    as_of, stale = _inputs_as_of(freshness, ppo.assets, live_states)
    panel = _deployed_panel(ppo, fold, features, vix, live_states, prescreen)
    breaker = risk.breaker_config() if risk.daily_enabled else None
    window = (breaker or CircuitBreakerConfig()).drawdown_window
    wh = warehouse.get()
    last = last_decision_date(wh)
    first = date.fromisoformat(config.first_date) if config.first_date else None
    try:
        # never decide on a day the policy trained on (its window can run through the embargo)
        # (nor on one its checkpoint or ensemble weights were chosen on: the validation slice)
        trained = date.fromisoformat(ppo.train_window[1]) if ppo.train_window[1] else fold.train_end
        _, val = policy.windows(fold)
        trained_through = max(fold.train_end, trained, val[1] if val else fold.train_end)
        rows, skipped = rows_to_decide(panel.dates, last, first, trained_through)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    if skipped:
        context.log.warning(f"{len(skipped)} missed session(s) {panel.date_of(skipped[0])} .. {panel.date_of(skipped[-1])}"
                            f" lie inside fold {fold.key}'s training window: not decided (that would be in-sample); "
                            "the paper track holds through them")
    newest = panel.date_of(panel.n_dates - 1)
    if not rows:
        context.log.info(f"no new session since the last decision ({last}; newest data {newest}): "
                         "nothing to decide (holiday, weekend or no new bars)")
        return dg.Output(None, metadata={"new_decisions": 0, "last_decision": str(last), "fold": fold.key})
    if len(rows) > 1:
        context.log.info(f"catching up {len(rows)} sessions: {panel.date_of(rows[0])} .. {panel.date_of(rows[-1])}")
    decisions, _ = decide_sessions(ppo, panel, rows, paper_state(recent_decisions(wh, window)), policy.cost_rate, breaker)
    days = [d.date for d in decisions]
    scores = None
    if fold.key in prescreen:  # context only (unless the policy observes them): never blocks a decision
        scores = score_prescreen(prescreen[fold.key].model, features.filter(pl.col("ticker").is_in(list(ppo.assets))),
                                 vix, days)
    else:
        context.log.warning(f"fold {fold.key} has no prescreen models: decisions log no prescreen scores")
    source = features["source"][0]
    provenance = Provenance(run_id=context.op_execution_context.run_id, source=source, code_version=code_version(), fold=fold.key,
                            policy_kind=kind, checkpoint_path=loaded.path, checkpoint_sha256=loaded.sha256,
                            policy_data_hash=ppo.data_hash, decided_at=datetime.now(timezone.utc).replace(tzinfo=None))
    frame = decision_frame(decisions, provenance, ppo.assets, newest, breaker, vix, live_states, scores,
                           inputs_as_of=as_of, stale_inputs=stale)
    for d in decisions:
        weights = "  ".join(f"{a} {w:.3f}" for a, w in zip([*ppo.assets, "cash"], d.target_weights))
        context.log.info(f"decision {d.date} (fold {fold.key}): {weights}")
        if d.breaker_active:
            context.log.warning(f"circuit breaker on {d.date}: {d.breaker_reason}")
    if source == "synthetic":
        context.log.warning("SYNTHETIC DATA: these decisions are a demo, not based on real prices")
    latest = frame.row(frame.height - 1, named=True)
    table = pl.DataFrame({"asset": latest["assets"], "policy": latest["policy_weights"],
                          "decision": latest["target_weights"]})
    return dg.Output(frame, metadata={
        "new_decisions": len(decisions),
        "first_new": str(days[0]), "last_new": str(days[-1]),
        "fold": fold.key, "source": source,
        "breaker_activations": sum(d.breaker_active for d in decisions),
        "latest_weights": dg.MetadataValue.md(md_table(table)),
        "latest_breaker_reason": latest["breaker_reason"] or "not active",
        "paper_equity": float(latest["paper_equity"]),
        "inputs_as_of": dg.MetadataValue.json(as_of),
        "stale_inputs": dg.MetadataValue.json(stale),
        **({"WARNING": "SYNTHETIC DATA — not real market prices"} if source == "synthetic" else {}),
    })


@dg.asset(key=MONITORING_DRIFT, group_name="decisions", kinds={"duckdb"},
          ins={**DEPLOYED_INPUTS, **DEPLOYABLE_INPUTS, "decisions": dg.AssetIn(DECISIONS_DAILY)})
def drift_statistics(context: dg.AssetExecutionContext, monitoring: MonitoringResource, policy: PolicyResource,
                     features: pl.DataFrame, vix: pl.DataFrame, folds: pl.DataFrame, policies: FoldModels,
                     sac_policies: FoldModels, td3_policies: FoldModels, ensemble_policies: FoldModels,
                     prescreen: FoldModels, live_states: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Drift and decay of the deployed fold (the one ``policy.deploy`` deploys) at the newest close
    (``ml.monitoring.evaluate_drift``): PSI of the policy's inputs recent vs train window, the sector-HMM
    state mix, the paper track vs equal weight. One row appended to ``ops.drift_checks`` per evaluation;
    the drift sensor reads the newest row."""
    fold, loaded = _deployed_policy(policy, folds, policies, sac_policies, td3_policies, ensemble_policies)
    panel = _deployed_panel(loaded.model, fold, features, vix, live_states, prescreen)
    cfg = monitoring.config()
    report = evaluate_drift(fold.key, fold.train_start, fold.train_end, panel.dates, panel.features,
                            panel.feature_names, live_states, decisions, cfg)
    context.log.info(report.summary())
    context.add_output_metadata({"fold": fold.key, "data_through": str(report.last_date),
                                 "fired": report.fired, "summary": report.summary()})
    return report.to_frame(cfg)
