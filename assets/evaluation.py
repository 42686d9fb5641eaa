"""Group ``evaluation``: per-fold out-of-sample backtests vs baselines, and the stitched walk-forward track."""
from dataclasses import replace
from datetime import timedelta

import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets.keys import (
    EVAL_FOLD,
    EVAL_WALK_FORWARD,
    MODELS_QLEARNING,
    POLICY_KEYS,
    REF_FOLDS,
    REF_TRADING_CALENDAR,
    REGIMES_VIX,
)
from assets.policies import FOLD_PANEL_INPUTS, PANEL_INPUTS
from infra.automation import eager_when_checks_pass
from infra.io_managers import LoadedModel
from infra.partitions import folds_partitions
from infra.resources import PolicyResource, RegimeResource, RiskResource, WarehouseResource
from ml.agents.qlearning import BOOK_STRATEGIES, book_exposures, rows_at, state_frame
from ml.dataset import policy_panel
from ml.evaluation import evaluate_fold, stitch_walk_forward, stressed_returns, walk_forward_metrics
from ml.folds import Fold, fold_from_frame, yearly_keys
from ml.regimes.vix import vix_buckets
from ml.reports.analysis import cost_stress
from ml.reports.html import ReportContext, render_report, save_charts, write_report
from ml.strategies.vix_switcher import SwitchConfig, switch_mask
from infra.version import code_version

SHOWN = ["strategy", "total_return", "cagr", "ann_vol", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
         "max_drawdown", "calmar", "avg_turnover"]


def _vix_window(vix: pl.DataFrame, start, end) -> pl.DataFrame:
    """``regimes.vix`` rows over [start − 10 days, end]: the decision closes of the window (and a margin)."""
    return vix.filter(pl.col("date").is_between(start - timedelta(days=10), end))


def _stress(daily: pl.DataFrame) -> pl.DataFrame:
    return cost_stress({m: {s: stressed_returns(daily.filter(pl.col("strategy") == s), m)["net_return"].to_numpy()
                            for s in daily["strategy"].unique(maintain_order=True)} for m in (1.0, 2.0, 3.0)})


@dg.asset(key=EVAL_FOLD, partitions_def=folds_partitions, group_name="evaluation", kinds={"duckdb", "html"},
          ins={**{f"policy_{k}": dg.AssetIn(key) for k, key in POLICY_KEYS.items()}, **PANEL_INPUTS,
               **FOLD_PANEL_INPUTS, "qlearning": dg.AssetIn(MODELS_QLEARNING)})
def fold_evaluation(context: dg.AssetExecutionContext, policy: PolicyResource, regimes: RegimeResource,
                    risk: RiskResource, warehouse: WarehouseResource, policy_ppo: LoadedModel, policy_sac: LoadedModel,
                    policy_td3: LoadedModel, policy_ensemble: LoadedModel, features: pl.DataFrame, vix: pl.DataFrame,
                    folds: pl.DataFrame, sector_probabilities: pl.DataFrame,
                    prescreen: LoadedModel, qlearning: LoadedModel) -> dict[str, pl.DataFrame]:
    """The fold's trained policies - PPO, SAC, TD3 and their ensemble (deterministic) -, the Q-learning book
    (best single member, model of models, E.L., with / without the VIX switcher; levered SPY exposures with
    financing), PPO under the VIX switcher, and every baseline over the test window, same days and costs, at
    1×/2×/3× costs: ``eval.daily_returns``, ``eval.allocations``, ``eval.fold_metrics`` and the HTML report.

    A ``partial`` fold (its test year has begun, not ended) is evaluated on its test window so far; its
    metrics rows say ``partial`` and ``end_date`` (the last earned day). The new-fold sensor re-evaluates it
    as the year goes on (every few weeks and once the year is complete)."""
    fold = fold_from_frame(folds, context.partition_key)
    policies = {"ppo": policy_ppo.model, "sac": policy_sac.model, "td3": policy_td3.model,
                "ensemble": policy_ensemble.model}
    ppo = policies["ppo"]
    panel = policy_panel(features, ppo.env_config.observation, sector_probabilities=sector_probabilities,
                         prescreen=prescreen.model, vix_regimes=vix, end=fold.test_end)
    lo, hi = panel.index_range(fold.test_start, fold.test_end)
    breaker = risk.breaker_config() if risk.research_enabled else None
    book = qlearning.model
    switch = SwitchConfig(**book.switch)
    switched = switch_mask(panel.vix, switch)[lo:hi]
    exposures = book_exposures(book, rows_at(state_frame(features, "SPY"), panel.dates[lo:hi]), switched)
    context.log.info(f"fold {fold.key}: VIX switcher (window {switch.window}, threshold {switch.threshold:g}) on "
                     f"{int(switched.sum())} of {switched.size} test days; Q-learning mean exposure "
                     + ", ".join(f"{k} {v.mean():.2f}" for k, v in exposures.items()))
    ev = evaluate_fold(policies, panel, lo, hi, policy.cost_rate, breaker=breaker, switched=switched,
                       switch_default=switch.default, exposures=exposures, financing=policy.financing())
    if breaker is not None:
        context.log.info(f"research circuit breaker on: {ev.breaker_activations.height} activation days "
                         "(strategy ppo_breaker)")
        for row in ev.breaker_activations.head(20).iter_rows(named=True):
            context.log.info(f"  breaker {row['date']}: {row['reason']}")
    vix_cfg = regimes.vix_config()
    buckets = vix_buckets(ev.allocations["vix"].to_numpy(), vix_cfg)
    allocations = ev.allocations.with_columns(pl.Series("vix_bucket", buckets, dtype=pl.Utf8))
    fold_metrics = ev.metrics.with_columns(pl.lit(fold.partial).alias("partial"))
    base = fold_metrics.filter(pl.col("cost_multiplier") == 1.0)
    if fold.partial:
        context.log.info(f"fold {fold.label}: partial test window {fold.test_start}..{fold.test_end} "
                         f"({ev.daily['date'].n_unique()} earned day(s) so far)")
    ctx = ReportContext(
        source=features["source"][0], code_version=code_version(), folds=[fold], cost_bps=policy.cost_rate * 1e4,
        seeds=ppo.seed, metrics=base.drop("partial"), daily=ev.daily, allocations=allocations,
        vix=_vix_window(vix, fold.test_start, fold.test_end), cost_stress=_stress(ev.daily), vix_config=vix_cfg,
    ).with_derived()
    path = write_report(warehouse.report_dir() / f"fold_{fold.key}.html",
                        render_report(f"regimeflow — fold {fold.label} (test {fold.test_start} … {fold.test_end})", ctx))
    rows = {name: base.filter(pl.col("strategy") == name).row(0, named=True) for name in policies}
    for name, row in rows.items():
        context.log.info(f"fold {fold.key} test {fold.test_start}..{fold.test_end}: {name} Sharpe {row['sharpe']:.2f} "
                         f"[{row['sharpe_ci_low']:.2f}, {row['sharpe_ci_high']:.2f}], "
                         f"MDD {row['max_drawdown']:.1%}, CAGR {row['cagr']:.1%}")
    ppo_row = rows["ppo"]
    context.add_output_metadata({
        "fold": fold.key,
        "partial": fold.partial,
        "report": dg.MetadataValue.path(str(path)),
        "test_window": f"{fold.test_start} .. {fold.test_end}" + (" (partial)" if fold.partial else ""),
        "cost_bps": policy.cost_rate * 1e4,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "ppo_sharpe": ppo_row["sharpe"],
        "ppo_max_drawdown": ppo_row["max_drawdown"],
        **{f"{k}_sharpe": rows[k]["sharpe"] for k in ("sac", "td3", "ensemble")},
        **{f"{k}_sharpe": base.filter(pl.col("strategy") == k)["sharpe"][0] for k in (*BOOK_STRATEGIES, "ppo_switch")},
        "vix_switch_days": int(switched.sum()),
        "ensemble_weights": dg.MetadataValue.json(policies["ensemble"].member_weights),
        "research_circuit_breaker": breaker is not None,
        "breaker_activation_days": ev.breaker_activations.height if breaker is not None else 0,
        "dagster/row_count": ev.daily.height,
    })
    return {"main": ev.daily, "allocations": allocations, "metrics": fold_metrics}


def _track_folds(folds: pl.DataFrame, daily: pl.DataFrame, keys: list[str]) -> list[Fold]:
    """The track's folds in time order, each as far as it was evaluated: a fold whose evaluation ends before
    its test window does (a partial fold, or one whose year completed since) is partial through that day."""
    through = dict(daily.filter(pl.col("fold").is_in(keys)).group_by("fold").agg(pl.col("date").max()).iter_rows())
    out = []
    for row in folds.filter(pl.col("key").is_in(keys)).sort("test_start").iter_rows(named=True):
        f = Fold.from_dict(row)
        if f.partial or through[f.key] < f.test_end:
            f = replace(f, test_end=through[f.key], partial=True)
        out.append(f)
    return out


@dg.asset(key=EVAL_WALK_FORWARD, group_name="evaluation", kinds={"duckdb", "html"},
          ins={"evaluations": dg.AssetIn(EVAL_FOLD), "folds": dg.AssetIn(REF_FOLDS), "vix": dg.AssetIn(REGIMES_VIX),
               "calendar": dg.AssetIn(REF_TRADING_CALENDAR)},
          automation_condition=eager_when_checks_pass())
def walk_forward(context: dg.AssetExecutionContext, policy: PolicyResource, regimes: RegimeResource,
                 warehouse: WarehouseResource, evaluations: dict[str, pl.DataFrame], folds: pl.DataFrame,
                 vix: pl.DataFrame, calendar: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Stitch the yearly folds' test windows into one out-of-sample track (2012 → the newest evaluated fold),
    with metrics (Sharpe CIs, cost stress), the behaviour tables, the HTML report and the ``analytics.*`` views.

    The newest fold may be partial (its year so far, as far as it was evaluated): the track includes it, its
    rows say ``partial``, the report labels it "YYYY (partial, through <last earned day>)" and the track's
    metrics rows say ``partial`` (they cover a year in progress)."""
    daily = evaluations["main"]
    yearly = yearly_keys(folds)
    keys = [k for k in yearly if daily.height and k in set(daily["fold"])]
    missing = sorted(set(yearly) - set(keys))
    if not keys:
        raise dg.Failure("no evaluated yearly fold yet: materialize eval/fold for the fold partitions first")
    if missing:
        context.log.warning(f"walk-forward track without folds {missing} (not evaluated yet)")
    per_fold = daily.filter(pl.col("fold").is_in(keys)).group_by("fold").agg(pl.col("strategy").unique())
    common = set.intersection(*(set(s) for s in per_fold["strategy"]))
    partial = sorted(set(daily.filter(pl.col("fold").is_in(keys))["strategy"]) - common)
    if partial:  # e.g. folds evaluated before a learner existed: the track needs every strategy on every day
        context.log.warning(f"strategies {partial} are missing from some evaluated folds and are left out of the "
                            "track: re-materialize eval/fold (and the policies) for every fold to include them")
        daily = daily.filter(pl.col("strategy").is_in(sorted(common)))
    track_folds = _track_folds(folds, daily, keys)
    partial_folds = [f for f in track_folds if f.partial]
    if partial_folds:
        context.log.info(f"the track includes partial fold(s) {[f.label for f in partial_folds]}")
    track = stitch_walk_forward(daily, keys).with_columns(
        pl.col("fold").is_in([f.key for f in partial_folds]).alias("partial"))
    wf_metrics = walk_forward_metrics(track, seed=policy.ppo_config().seed).with_columns(
        pl.lit(bool(partial_folds)).alias("partial"))
    base = wf_metrics.filter(pl.col("cost_multiplier") == 1.0)
    labels = {f.key: f.label for f in track_folds}
    per_fold = (evaluations["metrics"].filter((pl.col("cost_multiplier") == 1.0) & pl.col("fold").is_in(keys))
                .drop("partial", strict=False).with_columns(pl.col("fold").replace(labels)))
    ctx = ReportContext(
        source=calendar["source"][0], code_version=code_version(), folds=track_folds,
        cost_bps=policy.cost_rate * 1e4, seeds=policy.ppo_config().seed, metrics=base.drop("partial"),
        daily=track.drop("partial"), allocations=evaluations["allocations"].filter(pl.col("fold").is_in(keys)),
        vix=_vix_window(vix, track["date"].min(), track["date"].max()),
        per_fold=per_fold, cost_stress=_stress(track), vix_config=regimes.vix_config(),
    ).with_derived()
    out = warehouse.report_dir()
    shown = f"{len(keys)} folds" + "".join(f", {f.label}" for f in partial_folds)
    path = write_report(out / "walk_forward.html", render_report(
        f"regimeflow — walk-forward {track['date'].min()} … {track['date'].max()} ({shown})", ctx))
    save_charts(out / "walk_forward_charts", ctx.charts or {})
    context.log.info(f"walk-forward report: {path}")
    buckets = ctx.vix_buckets
    context.add_output_metadata({
        "report": dg.MetadataValue.path(str(path)),
        "folds": keys,
        "partial_folds": [f.label for f in partial_folds],
        "missing_folds": missing,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "vix_buckets": dg.MetadataValue.md(md_table(buckets)) if buckets is not None else "",
        "dagster/row_count": track.height,
    })
    return {"main": track, "metrics": wf_metrics}
