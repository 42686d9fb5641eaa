"""Group ``policies``: allocation policies (SPY, QQQ, TLT, GLD + cash), one per learner and fold partition -
PPO, SAC, TD3 - and their composite-weighted ensemble.

A policy observes dataset columns (``ml.dataset``): feature-store columns, and - for the observation
variants that use them - its fold's sector-HMM probabilities and prescreen scores, all received here by
lineage from the same fold partition. Each learner fits on the fold's train window before its validation
slice (``ref.folds.validation_start``), keeps the checkpoint with the best validation Sharpe, and the
ensemble weighs the members by their validation composite score; the test window is never touched."""
import math

import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets.keys import (
    FEATURES_DAILY,
    MODELS_POLICY_ENSEMBLE,
    MODELS_POLICY_PPO,
    MODELS_POLICY_SAC,
    MODELS_POLICY_TD3,
    MODELS_PRESCREEN,
    REF_FOLDS,
    REGIMES_SECTOR_HMM,
    REGIMES_VIX,
)
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.queues import rl_step_tags
from infra.resources import PolicyResource
from ml import metrics
from ml.agents.ensemble import EnsemblePolicy, composite_ensemble
from ml.agents.ppo import train_ppo
from ml.agents.rollout import evaluate_policy
from ml.agents.sac import train_sac
from ml.agents.td3 import train_td3
from ml.data.universe import ALLOCATION_ASSETS
from ml.dataset import policy_panel
from ml.folds import fold_from_frame

LOG_EVERY = 10  # training-curve rows between progress lines (each line is a stored Dagster event)

#: The inputs every consumer of an allocation policy's panel receives (policy, evaluation, decision, drift).
PANEL_INPUTS = {
    "features": dg.AssetIn(FEATURES_DAILY, metadata={"tickers": list(ALLOCATION_ASSETS)}),
    "vix": dg.AssetIn(REGIMES_VIX),
    "folds": dg.AssetIn(REF_FOLDS),
}
#: The same fold's regime and prescreen outputs (read when the observation spec uses them).
FOLD_PANEL_INPUTS = {
    "sector_probabilities": dg.AssetIn(REGIMES_SECTOR_HMM, metadata={"part": "main"}),
    "prescreen": dg.AssetIn(MODELS_PRESCREEN),
}


TRAINERS = {"ppo": train_ppo, "sac": train_sac, "td3": train_td3}
LABELS = {"ppo": "PPO", "sac": "SAC", "td3": "TD3"}
BENCHMARK = "SPY"  # the composite score's reference (validation return of SPY buy-and-hold)


def _fold_panel(policy: PolicyResource, fold, features, vix, sector_probabilities, prescreen: LoadedModel):
    env_cfg = policy.env_config()
    return env_cfg, policy_panel(features, env_cfg.observation, sector_probabilities=sector_probabilities,
                                 prescreen=prescreen.model, vix_regimes=vix, end=fold.test_end)


def _progress(context: dg.AssetExecutionContext, label: str, seed: int):
    """Training-curve rows -> log lines (every ``LOG_EVERY``-th row, the first and any with a validation score)."""
    count = [0]

    def log(row: dict) -> None:
        count[0] += 1
        val = row.get("val_sharpe", float("nan"))
        if count[0] == 1 or count[0] % LOG_EVERY == 0 or not math.isnan(val):
            extra = "" if math.isnan(val) else f", validation Sharpe {val:.2f}"
            context.log.info(f"{label} seed {seed}: {int(row['env_steps']):,} steps, "
                             f"{row['env_steps_per_s']:,.0f} steps/s, mean reward {row['mean_reward']:+.2e}{extra}")
    return log


def train_fold_policy(context: dg.AssetExecutionContext, policy: PolicyResource, kind: str, features: pl.DataFrame,
                      vix: pl.DataFrame, folds: pl.DataFrame, sector_probabilities: pl.DataFrame,
                      prescreen: LoadedModel) -> FoldModel:
    """Train learner ``kind`` for the fold partition (``policy.seeds`` seeds; more than one = an equal-weight
    seed ensemble), keeping each seed's best checkpoint on the validation slice; the training curves are
    the asset's table, the test-window numbers go to the metadata only (never used for any choice)."""
    fold = fold_from_frame(folds, context.partition_key)
    env_cfg, panel = _fold_panel(policy, fold, features, vix, sector_probabilities, prescreen)
    cfg = policy.agent_config(kind)
    (fit_start, fit_end), val = policy.windows(fold)
    lo, hi = panel.index_range(fit_start, fit_end)
    vwin = panel.index_range(*val) if val else None
    label = LABELS[kind]
    context.log.info(f"fold {fold.key}: {label} fits on {fit_start}..{fit_end} ({hi - lo} decision days), "
                     + (f"selects on {val[0]}..{val[1]} ({vwin[1] - vwin[0]} days)" if vwin else "no validation slice")
                     + f"; {cfg.total_steps:,} env steps, {cfg.num_envs} envs, {policy.seeds} seed(s), reward "
                     f"{env_cfg.reward}, {len(panel.feature_names)} observed columns: {', '.join(panel.feature_names)}")
    results, curves = [], []
    for i in range(policy.seeds):
        seed_cfg = cfg.model_copy(update={"seed": cfg.seed + i})
        res = TRAINERS[kind](panel, lo, hi, env_cfg, seed_cfg, on_iteration=_progress(context, label, seed_cfg.seed),
                             validation=vwin)
        results.append(res)
        curves.append(pl.DataFrame(res.curve).with_columns(pl.col("iteration").cast(pl.Int64),
                                                           pl.lit(seed_cfg.seed, pl.Int64).alias("seed")))
        sel = res.selection
        if vwin:
            context.log.info(f"{label} seed {seed_cfg.seed}: kept the checkpoint after {sel['best_step']:,} steps "
                             f"(validation Sharpe {sel['best_val_sharpe']:.2f}, {sel['evaluations']} evaluations), "
                             f"{res.wall_s:.1f} s")
    model = results[0].policy if len(results) == 1 else EnsemblePolicy(
        [r.policy for r in results], [1.0] * len(results), [f"seed{cfg.seed + i}" for i in range(len(results))])
    windows = [("fit (in-sample)", lo, hi)] + ([("validation", *vwin)] if vwin else [])
    windows.append(("test", *panel.index_range(fold.test_start, fold.test_end)))
    perf = {name: metrics.summary(evaluate_policy(model, panel, a, b).net_returns) for name, a, b in windows}
    context.log.info(f"fold {fold.key} {label}: " + "; ".join(
        f"{n} Sharpe {m['sharpe']:.2f} MDD {m['max_drawdown']:.1%}" for n, m in perf.items()) + " (deterministic)")
    curve = pl.concat(curves, how="diagonal_relaxed")
    wall = sum(r.wall_s for r in results)
    env_steps = sum(r.env_steps for r in results)
    context.add_output_metadata({
        "fold": fold.key,
        "learner": kind,
        "seeds": policy.seeds,
        "data_hash": results[0].data_hash,
        "fit_window": f"{fit_start} .. {fit_end}",
        "validation_window": f"{val[0]} .. {val[1]}" if val else "none",
        "selection": dg.MetadataValue.json([r.selection for r in results]),
        "observation": dg.MetadataValue.json(env_cfg.observation.model_dump()),
        "env_steps": env_steps,
        "train_wall_s": round(wall, 1),
        "env_steps_per_s": round(env_steps / max(wall, 1e-9)),
        "training_curve": dg.MetadataValue.md(md_table(curve.select(
            [c for c in ("seed", "iteration", "env_steps", "env_steps_per_s", "mean_reward", "val_sharpe")
             if c in curve.columns]))),
        "performance": dg.MetadataValue.md(md_table(pl.DataFrame([{"window": n, **m} for n, m in perf.items()]))),
        **({"validation_sharpe": perf["validation"]["sharpe"]} if vwin else {}),
        "test_sharpe": perf["test"]["sharpe"],
        "test_max_drawdown": perf["test"]["max_drawdown"],
    })
    meta = {"fold": fold.to_dict(), "source": features["source"][0] if "source" in features.columns else "unknown",
            "learner": kind, "data_hash": results[0].data_hash, "env_steps": env_steps, "wall_s": round(wall, 1),
            "selection": [r.selection for r in results]}
    return FoldModel(model, {"main": curve}, meta)


def _policy_asset(kind: str, key: dg.AssetKey):
    @dg.asset(key=key, partitions_def=folds_partitions, group_name="policies",
              kinds={"pytorch", "duckdb"}, io_manager_key="model_io_manager", op_tags=rl_step_tags(),
              ins={**PANEL_INPUTS, **FOLD_PANEL_INPUTS},
              description=f"{LABELS[kind]} allocation policy of the fold partition: fitted on the train window "
              "before the validation slice, best checkpoint by validation Sharpe (decisions at the close of t earn "
              f"t→t+1, net of costs); the checkpoint is the fold's policy_{kind} artifact, the training curve "
              f"models.{kind}_training.")
    def _asset(context: dg.AssetExecutionContext, policy: PolicyResource, features: pl.DataFrame, vix: pl.DataFrame,
               folds: pl.DataFrame, sector_probabilities: pl.DataFrame, prescreen: LoadedModel) -> FoldModel:
        return train_fold_policy(context, policy, kind, features, vix, folds, sector_probabilities, prescreen)

    return _asset


policy_ppo = _policy_asset("ppo", MODELS_POLICY_PPO)
policy_sac = _policy_asset("sac", MODELS_POLICY_SAC)
policy_td3 = _policy_asset("td3", MODELS_POLICY_TD3)
MEMBER_INPUTS = {"ppo": dg.AssetIn(MODELS_POLICY_PPO), "sac": dg.AssetIn(MODELS_POLICY_SAC),
                 "td3": dg.AssetIn(MODELS_POLICY_TD3)}


@dg.asset(key=MODELS_POLICY_ENSEMBLE, partitions_def=folds_partitions, group_name="policies",
          kinds={"pytorch", "duckdb"}, io_manager_key="model_io_manager",
          ins={**MEMBER_INPUTS, **PANEL_INPUTS, **FOLD_PANEL_INPUTS})
def policy_ensemble(context: dg.AssetExecutionContext, policy: PolicyResource, ppo: LoadedModel, sac: LoadedModel,
                    td3: LoadedModel, features: pl.DataFrame, vix: pl.DataFrame, folds: pl.DataFrame,
                    sector_probabilities: pl.DataFrame, prescreen: LoadedModel) -> FoldModel:
    """PPO + SAC + TD3 of the fold, weighted by their composite score on the validation slice:
    ``(return - SPY's return) x min(Sortino, 3)`` (Sortino floored at 0), weight ∝ max(composite, 0), equal
    weights when no member scores above 0; daily weights = the weighted average of the members' weights
    (``ml.agents.ensemble``). The table ``models.ensemble_weights`` holds every member's numbers."""
    fold = fold_from_frame(folds, context.partition_key)
    members = {"ppo": ppo.model, "sac": sac.model, "td3": td3.model}
    _, panel = _fold_panel(policy, fold, features, vix, sector_probabilities, prescreen)
    _, val = policy.windows(fold)
    try:
        ens = composite_ensemble(members, panel, panel.index_range(*val) if val else None, BENCHMARK)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    weights, fell_back = ens.weights, ens.fell_back
    if val is None:
        context.log.warning(f"fold {fold.key}: no validation slice (validation off or train window too short): "
                            "equal ensemble weights")
    elif fell_back:
        context.log.warning(f"fold {fold.key}: no member beats {BENCHMARK} on the validation slice {val[0]}..{val[1]} "
                            "(every composite <= 0): equal ensemble weights")
    table = pl.DataFrame(ens.table_rows(), schema_overrides={k: pl.Float64 for k in (
        "val_return", "spy_val_return", "excess", "sortino", "composite")})
    context.log.info(f"fold {fold.key} ensemble: " + ", ".join(
        f"{r['member'].upper()} composite {r['composite'] if r['composite'] is not None else float('nan'):+.3f} "
        f"-> {r['weight']:.0%}" for r in table.iter_rows(named=True)))
    model = ens.policy
    context.add_output_metadata({
        "fold": fold.key,
        "validation_window": f"{val[0]} .. {val[1]}" if val else "none",
        "weights": dg.MetadataValue.json({k: round(v, 4) for k, v in weights.items()}),
        "fallback_equal_weights": fell_back,
        "composites": dg.MetadataValue.md(md_table(table)),
    })
    meta = {"fold": fold.to_dict(), "weights": weights, "fallback_equal": fell_back,
            "members": {k: {"path": m.path, "sha256": m.sha256} for k, m in
                        {"ppo": ppo, "sac": sac, "td3": td3}.items()}}
    return FoldModel(model, {"main": table}, meta)
