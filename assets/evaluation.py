"""Group ``evaluation``: per-fold out-of-sample backtests vs baselines, and the stitched walk-forward track."""
from datetime import timedelta

import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets._models import load_fold_policy
from assets.keys import (
    EVAL_FOLD,
    EVAL_WALK_FORWARD,
    MODELS_POLICY_PPO,
    RAW_BARS,
    RAW_INDEX_BARS,
    REF_FOLDS,
    REGIMES_VIX,
)
from ml.data.universe import ALLOCATION_ASSETS
from ml.envs.market_panel import build_panel
from ml.evaluation import evaluate_fold, stitch_walk_forward, stressed_returns, walk_forward_metrics
from ml.folds import Fold
from ml.regimes.vix import vix_buckets
from ml.reports.analysis import cost_stress
from ml.reports.html import ReportContext, render_report, save_charts, write_report
from orchestration.partitions import folds_partitions
from orchestration.automation import eager_when_checks_pass
from orchestration.resources import PolicyResource, RegimeResource, RiskResource, WarehouseResource
from orchestration.version import code_version
from warehouse import ingest as wi
from warehouse.evaluation import ALLOCATIONS, DAILY, FOLD_METRICS, write_fold_evaluation, write_walk_forward
from warehouse.features import warehouse_source
from warehouse.folds import FOLDS_TABLE, resolve_fold
from warehouse.tables import read_table

SHOWN = ["strategy", "total_return", "cagr", "ann_vol", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
         "max_drawdown", "calmar", "avg_turnover"]


def _vix_window(wh, start, end) -> pl.DataFrame:
    """``regimes.vix`` over [start − 10 days, end]: the decision closes of the window (and a margin)."""
    return read_table(wh, "regimes.vix", "WHERE date BETWEEN ? AND ?", [start - timedelta(days=10), end])


@dg.asset(key=EVAL_FOLD, deps=[MODELS_POLICY_PPO, RAW_BARS, RAW_INDEX_BARS, REF_FOLDS, REGIMES_VIX],
          partitions_def=folds_partitions, group_name="evaluation", kinds={"duckdb"})
def fold_evaluation(context: dg.AssetExecutionContext, policy: PolicyResource, regimes: RegimeResource,
                    risk: RiskResource, warehouse: WarehouseResource):
    """The fold's trained policy (deterministic) and every baseline over the test window, same days and
    costs, at 1×/2×/3× costs: ``eval.daily_returns``, ``eval.allocations``, ``eval.fold_metrics``."""
    wh = warehouse.get()
    fold = resolve_fold(wh, context.partition_key)
    ppo, _ = load_fold_policy(wh, fold.key)
    bars = wi.read_bars(wh, list(ALLOCATION_ASSETS))
    panel = build_panel(bars, wi.read_index_bars(wh), ALLOCATION_ASSETS, end=fold.test_end)
    lo, hi = panel.index_range(fold.test_start, fold.test_end)
    cost_rate = policy.cost_bps / 1e4
    breaker = risk.breaker_config() if risk.research_enabled else None
    ev = evaluate_fold(ppo, panel, lo, hi, cost_rate, breaker=breaker)
    if breaker is not None:
        context.log.info(f"research circuit breaker on: {ev.breaker_activations.height} activation days "
                         "(strategy ppo_breaker)")
        for row in ev.breaker_activations.head(20).iter_rows(named=True):
            context.log.info(f"  breaker {row['date']}: {row['reason']}")
    buckets = vix_buckets(ev.allocations["vix"].to_numpy(), regimes.vix_config())
    allocations = ev.allocations.with_columns(pl.Series("vix_bucket", buckets, dtype=pl.Utf8))
    write_fold_evaluation(wh, fold.key, ev.daily, allocations, ev.metrics)
    base = ev.metrics.filter(pl.col("cost_multiplier") == 1.0)
    stress = {m: {s: stressed_returns(ev.daily.filter(pl.col("strategy") == s), m)["net_return"].to_numpy()
                  for s in ev.daily["strategy"].unique(maintain_order=True)} for m in (1.0, 2.0, 3.0)}
    ctx = ReportContext(
        source=warehouse_source(wh), code_version=code_version(), folds=[fold], cost_bps=policy.cost_bps,
        seeds=policy.seed, metrics=base, daily=ev.daily, allocations=allocations,
        vix=_vix_window(wh, fold.test_start, fold.test_end), cost_stress=cost_stress(stress),
    ).with_derived()
    path = write_report(warehouse.report_dir() / f"fold_{fold.key}.html",
                        render_report(f"regimeflow — fold {fold.key} (test {fold.test_start} … {fold.test_end})", ctx))
    ppo_row = base.filter(pl.col("strategy") == "ppo").row(0, named=True)
    context.log.info(f"fold {fold.key} test {fold.test_start}..{fold.test_end}: PPO Sharpe {ppo_row['sharpe']:.2f} "
                     f"[{ppo_row['sharpe_ci_low']:.2f}, {ppo_row['sharpe_ci_high']:.2f}], "
                     f"MDD {ppo_row['max_drawdown']:.1%}, CAGR {ppo_row['cagr']:.1%}")
    return dg.MaterializeResult(metadata={
        "fold": fold.key,
        "report": dg.MetadataValue.path(str(path)),
        "test_window": f"{fold.test_start} .. {fold.test_end}",
        "cost_bps": policy.cost_bps,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "ppo_sharpe": ppo_row["sharpe"],
        "ppo_max_drawdown": ppo_row["max_drawdown"],
        "research_circuit_breaker": breaker is not None,
        "breaker_activation_days": ev.breaker_activations.height if breaker is not None else 0,
        "dagster/row_count": ev.daily.height,
    })


def _yearly_folds(folds: pl.DataFrame) -> list[str]:
    """The default yearly folds (key = test year) in time order: the walk-forward track's pieces."""
    return folds.filter(pl.col("key").str.contains(r"^\d{4}$")).sort("test_start")["key"].to_list()


@dg.asset(key=EVAL_WALK_FORWARD, deps=[EVAL_FOLD], group_name="evaluation", kinds={"duckdb", "html"},
          automation_condition=eager_when_checks_pass())
def walk_forward(context: dg.AssetExecutionContext, policy: PolicyResource, regimes: RegimeResource,
                 warehouse: WarehouseResource):
    """Stitch the yearly folds' test windows into one out-of-sample track (2012 → last complete year), with
    metrics (Sharpe CIs, cost stress), the behaviour tables, the HTML report and the ``analytics.*`` views."""
    wh = warehouse.get()
    folds = read_table(wh, FOLDS_TABLE)
    daily = read_table(wh, DAILY)
    keys = [k for k in _yearly_folds(folds) if k in set(daily["fold"])]
    missing = sorted(set(_yearly_folds(folds)) - set(keys))
    if not keys:
        raise dg.Failure("no evaluated yearly fold yet: materialize eval/fold for the fold partitions first")
    if missing:
        context.log.warning(f"walk-forward track without folds {missing} (not evaluated yet)")
    track = stitch_walk_forward(daily, keys)
    wf_metrics = walk_forward_metrics(track, seed=policy.seed)
    write_walk_forward(wh, track, wf_metrics)
    allocations = read_table(wh, ALLOCATIONS, "WHERE fold IN (SELECT unnest(?))", [keys])
    per_fold = read_table(wh, FOLD_METRICS, "WHERE cost_multiplier = 1.0 AND fold IN (SELECT unnest(?))", [keys])
    base = wf_metrics.filter(pl.col("cost_multiplier") == 1.0)
    stress = {m: {s: stressed_returns(track.filter(pl.col("strategy") == s), m)["net_return"].to_numpy()
                  for s in track["strategy"].unique(maintain_order=True)} for m in (1.0, 2.0, 3.0)}
    ctx = ReportContext(
        source=warehouse_source(wh), code_version=code_version(),
        folds=[Fold.from_dict(r) for r in folds.filter(pl.col("key").is_in(keys)).sort("test_start").iter_rows(named=True)],
        cost_bps=policy.cost_bps, seeds=policy.seed, metrics=base, daily=track, allocations=allocations,
        vix=_vix_window(wh, track["date"].min(), track["date"].max()), per_fold=per_fold,
        cost_stress=cost_stress(stress),
    ).with_derived()
    out = warehouse.report_dir()
    path = write_report(out / "walk_forward.html", render_report(
        f"regimeflow — walk-forward {track['date'].min()} … {track['date'].max()} ({len(keys)} folds)", ctx))
    save_charts(out / "walk_forward_charts", ctx.charts or {})
    context.log.info(f"walk-forward report: {path}")
    buckets = ctx.vix_buckets
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(path)),
        "folds": keys,
        "missing_folds": missing,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "vix_buckets": dg.MetadataValue.md(md_table(buckets)) if buckets is not None else "",
        "dagster/row_count": track.height,
    })
