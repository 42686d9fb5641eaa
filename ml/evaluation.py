"""Out-of-sample evaluation of one fold: the policy and every baseline on the same days and costs.

Timing: weights chosen at the close of t earn t→t+1 net of ``cost_rate`` × turnover (``ml.backtest``), the
order filling at the close of t, the open of t+1 or the close of t+1 per the execution model (``ml.costs``).
The policy acts deterministically (softmax of its mean logits); its weights go through the same
backtester as the baselines, so all strategies share dates, costs and arithmetic.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import polars as pl

from ml import metrics
from ml.agents.rollout import evaluate_policy
from ml.backtest import BacktestResult, backtest
from ml.backtest.baselines import BaselineConfig, run_baselines
from ml.backtest.exposure import Financing, backtest_exposure, exposure_weights
from ml.costs import Execution
from ml.envs.market_panel import MarketPanel
from ml.reports.analysis import equity_curves
from ml.risk import BreakerTracker, CircuitBreakerConfig
from ml.strategies.vix_switcher import apply_switch

POLICY = "ppo"
POLICY_BREAKER = "ppo_breaker"  # the same policy with the circuit breaker in the loop (research option)
POLICY_SWITCH = "ppo_switch"  # the same policy under the VIX regime switcher


@dataclass(frozen=True)
class FoldEvaluation:
    """``daily``: strategy, date, net_return, gross_return, turnover, cost, equity (cost × 1);
    ``allocations``: strategy, date (day earned), w_<asset>…, w_cash, vix (at the decision close);
    ``metrics``: one row per strategy and cost multiplier (``metrics.metrics_table`` columns)."""

    daily: pl.DataFrame
    allocations: pl.DataFrame
    metrics: pl.DataFrame
    breaker_activations: pl.DataFrame | None = None  # date (decision close), reason; research breaker only


def _daily_frame(name: str, res: BacktestResult) -> pl.DataFrame:
    return pl.DataFrame({
        "strategy": name,
        "date": pl.Series(res.dates).cast(pl.Date),
        "net_return": res.net_returns,
        "gross_return": res.gross_returns,
        "turnover": res.turnover,
        "cost": res.costs,
        "equity": res.equity,
    })


def _alloc_frame(name: str, res: BacktestResult, vix: np.ndarray) -> pl.DataFrame:
    cols = {f"w_{a}": res.weights_held[:, j] for j, a in enumerate([*res.assets, "cash"])}
    return pl.DataFrame({"strategy": name, "date": pl.Series(res.dates).cast(pl.Date), **cols, "vix": vix})


def evaluate_window(
    policy_weights: np.ndarray | dict[str, np.ndarray] | None,
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    cost_rate: float,
    baseline_config: BaselineConfig | None = None,
    cost_multipliers: Sequence[float] = (1.0, 2.0, 3.0),
    risk_free: float = 0.0,
    seed: int = 0,
    execution: Execution = "close",
    exposures: Mapping[str, np.ndarray] | None = None,
    financing: Financing | None = None,
) -> FoldEvaluation:
    """Backtest ``policy_weights`` (``[n, A+1]`` chosen at rows ``start_idx..end_idx-1``, named ``ppo``; or a
    ``{strategy: weights}`` dict; None = baselines only) and every baseline over the window, at each cost
    multiplier, every order filling per ``execution`` (``ml.costs``); metrics per strategy.
    ``exposures``: ``{strategy: [n]}`` SPY exposures that may be levered or short (the Q-learning book),
    backtested by :func:`ml.backtest.exposure.backtest_exposure` with ``financing`` on the same days."""
    vix_at_decision = panel.vix[start_idx:end_idx]
    if isinstance(policy_weights, np.ndarray):
        policy_weights = {POLICY: policy_weights}
    daily, allocs, tables = [], [], []
    for mult in cost_multipliers:
        cfg = (baseline_config or BaselineConfig()).model_copy(update={"cost_multiplier": mult})
        results = dict(run_baselines(panel, start_idx, end_idx, cost_rate, cfg, execution=execution))
        if policy_weights:
            results = {**{name: backtest(w, panel, start_idx, end_idx, cost_rate, cost_multiplier=mult,
                                         execution=execution)
                          for name, w in policy_weights.items()}, **results}
        for name, x in (exposures or {}).items():
            results[name] = backtest_exposure(x, panel, start_idx, end_idx, cost_rate, cost_multiplier=mult,
                                              financing=financing, execution=execution)
        first = next(iter(results.values()))
        table = metrics.metrics_table(
            {k: r.net_returns for k, r in results.items()}, first.dates,
            {k: r.turnover for k, r in results.items()}, risk_free=risk_free, seed=seed,
            start_date=panel.dates[start_idx].astype("datetime64[D]").astype(date),
        )
        tables.append(table.with_columns(pl.lit(float(mult)).alias("cost_multiplier")))
        if mult == 1.0:
            daily = [_daily_frame(k, r) for k, r in results.items()]
            allocs = [_alloc_frame(k, r, vix_at_decision) for k, r in results.items()]
    return FoldEvaluation(pl.concat(daily), pl.concat(allocs), pl.concat(tables))


def evaluate_fold(policy, panel: MarketPanel, start_idx: int, end_idx: int, cost_rate: float,
                  breaker: CircuitBreakerConfig | None = None, switched: np.ndarray | None = None,
                  switch_default: float = 0.5, **kwargs) -> FoldEvaluation:
    """Deterministic rollout of ``policy`` - one policy (strategy ``ppo``) or ``{strategy: policy}`` (PPO,
    SAC, TD3, the ensemble; the first is the primary) - over the window, then :func:`evaluate_window`.
    With ``breaker``, a second rollout of the primary policy with the circuit breaker in the loop is
    evaluated as ``ppo_breaker`` (its activations in ``FoldEvaluation.breaker_activations``). Orders fill
    per the primary policy's ``env_config.execution`` (the execution model it was trained under), for every
    policy and the baselines alike. With ``switched`` (``[n]`` bool, the VIX switcher's days), the primary
    policy is also evaluated under the switcher as ``ppo_switch``: on those days it holds ``switch_default``
    in SPY and the rest in cash (:mod:`ml.strategies.vix_switcher`)."""
    policies = policy if isinstance(policy, Mapping) else {POLICY: policy}
    policy = next(iter(policies.values()))
    execution = kwargs.setdefault("execution", policy.env_config.execution)
    weights = {}
    for name, pol in policies.items():
        if pol.env_config.execution != execution:
            raise ValueError(f"policy {name!r} trained with execution {pol.env_config.execution!r}, "
                             f"the fold evaluates {execution!r}")
        weights[name] = evaluate_policy(pol, panel, start_idx, end_idx).weights
    if switched is not None:
        default = exposure_weights(np.array([switch_default]), panel.n_assets, panel.assets.index("SPY"))[0]
        weights[POLICY_SWITCH] = apply_switch(weights[next(iter(weights))], switched, default)
    activations: list[tuple[int, str]] = []
    if breaker is not None:
        tracker = BreakerTracker(breaker, panel.assets, panel.vix)
        weights[POLICY_BREAKER] = evaluate_policy(policy, panel, start_idx, end_idx, overlay=tracker).weights
        activations = tracker.activations
    ev = evaluate_window(weights, panel, start_idx, end_idx, cost_rate, **kwargs)
    rows = [{"date": panel.date_of(r), "reason": why} for r, why in activations]
    return replace(ev, breaker_activations=pl.DataFrame(rows, schema={"date": pl.Date, "reason": pl.Utf8}))


def stitch_walk_forward(daily: pl.DataFrame, fold_order: Sequence[str]) -> pl.DataFrame:
    """Concatenate the test windows of ``fold_order`` (non-overlapping, in time order) per strategy into
    one out-of-sample track: ``strategy, date, fold, net_return, gross_return, turnover, cost, equity,
    drawdown`` with equity compounded across folds from 1.0."""
    order = {k: i for i, k in enumerate(fold_order)}
    track = (daily.filter(pl.col("fold").is_in(list(fold_order)))
             .with_columns(pl.col("fold").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
             .sort("strategy", "_order", "date").drop("_order"))
    dup = track.select(pl.struct("strategy", "date").is_duplicated().any()).item()
    if dup:
        raise ValueError("walk-forward folds overlap: a (strategy, date) appears twice")
    # the per-fold equity restarts at 1.0 in every fold: recompute it across the stitched track
    return equity_curves(track.drop("equity", strict=False))


def stressed_returns(track: pl.DataFrame, multiplier: float) -> pl.DataFrame:
    """Net returns at ``multiplier`` × costs: gross − multiplier × cost. Exact, because turnover does not
    depend on costs (weights drift with gross returns, see ``ml.costs``)."""
    return track.with_columns((pl.col("gross_return") - multiplier * pl.col("cost")).alias("net_return"))


def walk_forward_metrics(track: pl.DataFrame, cost_multipliers: Sequence[float] = (1.0, 2.0, 3.0),
                         risk_free: float = 0.0, seed: int = 0) -> pl.DataFrame:
    """``metrics.metrics_table`` of the stitched track per strategy, at each cost multiplier; the Sharpe and
    drawdown differences (with CIs) are taken against SPY, equal weight and - when it is in the track - PPO."""
    tables = []
    names = track["strategy"].unique(maintain_order=True).to_list()
    benchmarks = [b for b in ("spy_buy_hold", "equal_weight", POLICY) if b in names]
    for mult in cost_multipliers:
        t = stressed_returns(track, mult)
        series = {s: t.filter(pl.col("strategy") == s) for s in names}
        dates = series[names[0]]["date"].to_numpy()
        if any(len(f) != len(dates) for f in series.values()):
            raise ValueError("strategies of the walk-forward track do not share the same days")
        table = metrics.metrics_table({s: f["net_return"].to_numpy() for s, f in series.items()}, dates,
                                      {s: f["turnover"].to_numpy() for s, f in series.items()},
                                      risk_free=risk_free, benchmark_names=benchmarks, seed=seed)
        tables.append(table.with_columns(pl.lit(float(mult)).alias("cost_multiplier")))
    return pl.concat(tables)
