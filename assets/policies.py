"""Group ``policies``: PPO allocation policies (SPY, QQQ, TLT, GLD + cash), one per fold partition."""
import dagster as dg
import polars as pl

from assets.keys import MODELS_POLICY_PPO, RAW_BARS, RAW_INDEX_BARS, REF_FOLDS
from assets._metadata import md_table
from ml import metrics
from ml.agents.checkpoint import save_checkpoint
from ml.agents.ppo import evaluate_policy, train_ppo
from ml.data.universe import ALLOCATION_ASSETS
from ml.envs.market_panel import build_panel
from orchestration.partitions import folds_partitions
from orchestration.resources import PolicyResource, WarehouseResource
from warehouse import ingest as wi
from warehouse.artifacts import record_artifact
from warehouse.features import warehouse_source
from warehouse.folds import resolve_fold
from warehouse.tables import write_fold_rows

LOG_EVERY = 5


@dg.asset(key=MODELS_POLICY_PPO, deps=[RAW_BARS, RAW_INDEX_BARS, REF_FOLDS], partitions_def=folds_partitions,
          group_name="policies", kinds={"pytorch", "duckdb"})
def policy_ppo(context: dg.AssetExecutionContext, policy: PolicyResource, warehouse: WarehouseResource):
    """Train PPO on the fold's train window (decisions at the close of t earn t→t+1, net of costs);
    checkpoint under the artifacts folder, training curve in ``models.ppo_training``."""
    wh = warehouse.get()
    fold = resolve_fold(wh, context.partition_key)
    bars = wi.read_bars(wh, list(ALLOCATION_ASSETS))
    panel = build_panel(bars, wi.read_index_bars(wh), ALLOCATION_ASSETS, end=fold.test_end)
    lo, hi = panel.index_range(fold.train_start, fold.train_end)
    env_cfg, ppo_cfg = policy.env_config(), policy.ppo_config()
    context.log.info(f"fold {fold.key}: PPO on {fold.train_start}..{fold.train_end} ({hi - lo} decision days), "
                     f"{ppo_cfg.total_steps:,} env steps, {ppo_cfg.num_envs} envs, reward {env_cfg.reward}")

    def progress(row: dict) -> None:
        if row["iteration"] == 1 or row["iteration"] % LOG_EVERY == 0:
            context.log.info(
                f"iter {int(row['iteration'])}: {int(row['env_steps']):,} steps, {row['env_steps_per_s']:,.0f} steps/s, "
                f"mean reward {row['mean_reward']:+.2e}, entropy {row['entropy']:.3f}, approx KL {row['approx_kl']:.4f}")

    result = train_ppo(panel, lo, hi, env_cfg, ppo_cfg, on_iteration=progress)
    path = warehouse.artifact_dir(fold.key) / "policy_ppo.pt"
    save_checkpoint(path, result.policy, meta={"fold": fold.to_dict(), "source": warehouse_source(wh)})
    from ml.prescreen import file_sha256

    sha = file_sha256(path)
    record_artifact(wh, fold.key, "policy_ppo", path, sha,
                    {"data_hash": result.data_hash, "env_steps": result.env_steps, "wall_s": round(result.wall_s, 1)})
    curve = pl.DataFrame(result.curve).with_columns(pl.col("iteration").cast(pl.Int64))
    write_fold_rows(wh, "models.ppo_training", curve, fold.key, ["iteration"],
                    "PPO training curve per fold and iteration: env steps/s, reward, entropy, approx KL, losses.")
    in_sample = metrics.summary(evaluate_policy(result.policy, panel, lo, hi).net_returns)
    tlo, thi = panel.index_range(fold.test_start, fold.test_end)
    test = metrics.summary(evaluate_policy(result.policy, panel, tlo, thi).net_returns)
    context.log.info(f"fold {fold.key}: in-sample Sharpe {in_sample['sharpe']:.2f} MDD {in_sample['max_drawdown']:.1%}; "
                     f"test Sharpe {test['sharpe']:.2f} MDD {test['max_drawdown']:.1%} (deterministic policy)")
    table = pl.DataFrame([{"window": "train (in-sample)", **in_sample}, {"window": "test", **test}])
    return dg.MaterializeResult(metadata={
        "fold": fold.key,
        "checkpoint": dg.MetadataValue.path(str(path)),
        "sha256": sha,
        "data_hash": result.data_hash,
        "env_steps": result.env_steps,
        "train_wall_s": round(result.wall_s, 1),
        "env_steps_per_s": round(result.env_steps / max(result.wall_s, 1e-9)),
        "training_curve": dg.MetadataValue.md(md_table(curve.select(
            "iteration", "env_steps", "env_steps_per_s", "mean_reward", "entropy", "approx_kl"))),
        "performance": dg.MetadataValue.md(md_table(table)),
        "test_sharpe": test["sharpe"],
        "test_max_drawdown": test["max_drawdown"],
    })
