"""Group ``policies``: PPO allocation policies (SPY, QQQ, TLT, GLD + cash), one per fold partition.

A policy observes dataset columns (``ml.dataset``): feature-store columns, and - for the observation
variants that use them - its fold's sector-HMM probabilities and prescreen scores, all received here by
lineage from the same fold partition."""
import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets.keys import FEATURES_DAILY, MODELS_POLICY_PPO, MODELS_PRESCREEN, REF_FOLDS, REGIMES_SECTOR_HMM, REGIMES_VIX
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.resources import PolicyResource
from ml import metrics
from ml.agents.ppo import evaluate_policy, train_ppo
from ml.data.universe import ALLOCATION_ASSETS
from ml.dataset import policy_panel
from ml.folds import fold_from_frame

LOG_EVERY = 10  # iterations between progress lines (each line is a stored Dagster event)

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


@dg.asset(key=MODELS_POLICY_PPO, partitions_def=folds_partitions, group_name="policies", kinds={"pytorch", "duckdb"},
          io_manager_key="model_io_manager", ins={**PANEL_INPUTS, **FOLD_PANEL_INPUTS})
def policy_ppo(context: dg.AssetExecutionContext, policy: PolicyResource, features: pl.DataFrame, vix: pl.DataFrame,
               folds: pl.DataFrame, sector_probabilities: pl.DataFrame, prescreen: LoadedModel) -> FoldModel:
    """Train PPO on the fold's train window (decisions at the close of t earn t→t+1, net of costs);
    the checkpoint is the fold's ``policy_ppo`` artifact, the training curve ``models.ppo_training``."""
    fold = fold_from_frame(folds, context.partition_key)
    env_cfg, ppo_cfg = policy.env_config(), policy.ppo_config()
    panel = policy_panel(features, env_cfg.observation, sector_probabilities=sector_probabilities,
                         prescreen=prescreen.model, vix_regimes=vix, end=fold.test_end)
    train_start, train_end = policy.train_window(fold)
    lo, hi = panel.index_range(train_start, train_end)
    context.log.info(f"fold {fold.key}: PPO on {train_start}..{train_end} ({hi - lo} decision days), "
                     f"{ppo_cfg.total_steps:,} env steps, {ppo_cfg.num_envs} envs, reward {env_cfg.reward}, "
                     f"{len(panel.feature_names)} observed columns: {', '.join(panel.feature_names)}")

    def progress(row: dict) -> None:
        if row["iteration"] == 1 or row["iteration"] % LOG_EVERY == 0:
            context.log.info(
                f"iter {int(row['iteration'])}: {int(row['env_steps']):,} steps, {row['env_steps_per_s']:,.0f} steps/s, "
                f"mean reward {row['mean_reward']:+.2e}, entropy {row['entropy']:.3f}, approx KL {row['approx_kl']:.4f}")

    result = train_ppo(panel, lo, hi, env_cfg, ppo_cfg, on_iteration=progress)
    curve = pl.DataFrame(result.curve).with_columns(pl.col("iteration").cast(pl.Int64))
    in_sample = metrics.summary(evaluate_policy(result.policy, panel, lo, hi).net_returns)
    tlo, thi = panel.index_range(fold.test_start, fold.test_end)
    test = metrics.summary(evaluate_policy(result.policy, panel, tlo, thi).net_returns)
    context.log.info(f"fold {fold.key}: in-sample Sharpe {in_sample['sharpe']:.2f} MDD {in_sample['max_drawdown']:.1%}; "
                     f"test Sharpe {test['sharpe']:.2f} MDD {test['max_drawdown']:.1%} (deterministic policy)")
    table = pl.DataFrame([{"window": "train (in-sample)", **in_sample}, {"window": "test", **test}])
    context.add_output_metadata({
        "fold": fold.key,
        "data_hash": result.data_hash,
        "observation": dg.MetadataValue.json(env_cfg.observation.model_dump()),
        "env_steps": result.env_steps,
        "train_wall_s": round(result.wall_s, 1),
        "env_steps_per_s": round(result.env_steps / max(result.wall_s, 1e-9)),
        "training_curve": dg.MetadataValue.md(md_table(curve.select(
            "iteration", "env_steps", "env_steps_per_s", "mean_reward", "entropy", "approx_kl"))),
        "performance": dg.MetadataValue.md(md_table(table)),
        "test_sharpe": test["sharpe"],
        "test_max_drawdown": test["max_drawdown"],
    })
    meta = {"fold": fold.to_dict(), "source": features["source"][0] if "source" in features.columns else "unknown",
            "data_hash": result.data_hash, "env_steps": result.env_steps, "wall_s": round(result.wall_s, 1)}
    return FoldModel(result.policy, {"main": curve}, meta)
