"""Train PPO on the real-snapshot fold ``seed-2008-2019`` and report in-sample / test metrics.

Fold: train 2008-01-01 .. 2019-12-31 (earned days), test 2020-01-01 .. 2025-12-31. Default
:class:`~ml.envs.portfolio.EnvConfig` and :class:`~ml.agents.ppo.PPOConfig` unless overridden.
Metrics on daily *net* returns (after 5 bps costs): Sharpe = mean/std x sqrt(252), CAGR, annualised vol,
max drawdown of the compounded equity curve, mean daily turnover, mean weights; with static baselines
(SPY buy-and-hold, daily-rebalanced 60/40 SPY/TLT and equal weight incl. cash) through the same
:func:`ml.backtest.costs.rebalance` arithmetic.

Usage: ``python benchmarks/seed_fold_ppo.py [--data DIR] [--total-steps N] [--seed S] [--device auto]
[--out checkpoint.pt] [--json results.json]``
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.agents.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo  # noqa: E402
from ml.backtest.costs import rebalance  # noqa: E402
from ml.data.csv_source import CsvMarketSource  # noqa: E402
from ml.data.universe import Universe  # noqa: E402
from ml.envs.market_panel import MarketPanel, build_panel  # noqa: E402
from ml.envs.portfolio import EnvConfig  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"
TRAIN = ("2008-01-01", "2019-12-31")
TEST = ("2020-01-01", "2025-12-31")


def metrics(net: np.ndarray, weights: np.ndarray | None = None, turnover: np.ndarray | None = None) -> dict:
    eq = np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    out = {
        "days": int(net.size),
        "sharpe": float(net.mean() / net.std(ddof=1) * np.sqrt(252.0)),
        "cagr": float(eq[-1] ** (252.0 / net.size) - 1.0),
        "ann_vol": float(net.std(ddof=1) * np.sqrt(252.0)),
        "max_drawdown": float((eq / peak - 1.0).min()),
        "total_return": float(eq[-1] - 1.0),
    }
    if turnover is not None:
        out["mean_daily_turnover"] = float(turnover.mean())
    if weights is not None:
        out["mean_weights"] = [round(float(x), 4) for x in weights.mean(0)]
    return out


def static_baseline(panel: MarketPanel, lo: int, hi: int, target: np.ndarray, cost: float) -> np.ndarray:
    """Daily rebalance to ``target`` (weights incl. cash), starting from cash, same cost arithmetic."""
    w_old = np.zeros_like(target)
    w_old[-1] = 1.0
    nets = np.empty(hi - lo)
    for i, t in enumerate(range(lo, hi)):
        res = rebalance(target, w_old, panel.returns[t + 1], cost)
        nets[i], w_old = res.net, res.drifted
    return nets


def policy_turnover(weights: np.ndarray, panel: MarketPanel, lo: int, cost: float) -> np.ndarray:
    w_old = np.zeros(weights.shape[1])
    w_old[-1] = 1.0
    out = np.empty(len(weights))
    for i, w in enumerate(weights):
        res = rebalance(w, w_old, panel.returns[lo + i + 1], cost)
        out[i], w_old = res.turnover, res.drifted
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--total-steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reward", default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/regimeflow_seed_fold/ppo_seed-2008-2019.pt"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--ppo", default=None, help='JSON overrides of PPOConfig, e.g. \'{"update_epochs": 4}\'')
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    market = CsvMarketSource(args.data).load(Universe(include_stocks=False), on_progress=lambda _: None)
    panel = build_panel(market.bars, market.index_bars)
    lo, hi = panel.index_range(*TRAIN)
    tlo, thi = panel.index_range(*TEST)
    t_data = time.perf_counter() - t0

    env_cfg = EnvConfig() if args.reward is None else EnvConfig(reward=args.reward)
    kw: dict = {"seed": args.seed, "device": args.device}
    if args.total_steps:
        kw["total_steps"] = args.total_steps
    if args.ppo:
        kw.update(json.loads(args.ppo))
    cfg = PPOConfig(**kw)

    def log(row: dict) -> None:
        if not args.quiet and (row["iteration"] % 5 == 0 or row["iteration"] == 1):
            print(
                f"it {int(row['iteration']):4d} steps {int(row['env_steps']):>9,d} {row['env_steps_per_s']:>9,.0f}/s "
                f"reward {row['mean_reward']:+.2e} net {row['mean_net']:+.2e} kl {row['approx_kl']:.4f} "
                f"clip {row['clip_frac']:.3f} vloss {row['value_loss']:.3f} std {row['action_std']:.3f}",
                flush=True,
            )

    t1 = time.perf_counter()
    result = train_ppo(panel, lo, hi, env_cfg, cfg, on_iteration=log)
    t_train = time.perf_counter() - t1
    save_checkpoint(args.out, result.policy, meta={"fold": "seed-2008-2019"})
    policy = load_checkpoint(args.out, expected_env_config=env_cfg, expected_data_hash=panel.data_hash(lo, hi))

    report: dict = {
        "fold": "seed-2008-2019",
        "train_rows": [lo, hi, str(panel.dates[lo + 1]), str(panel.dates[hi])],
        "test_rows": [tlo, thi, str(panel.dates[tlo + 1]), str(panel.dates[thi])],
        "env_config": env_cfg.model_dump(mode="json"),
        "ppo_config": cfg.model_dump(mode="json"),
        "env_steps": result.env_steps,
        "wall_s": {"data": round(t_data, 2), "train": round(t_train, 2)},
        "train_env_steps_per_s": result.env_steps / t_train,
        "checkpoint": str(args.out),
    }
    c = env_cfg.cost_rate
    for name, (a, b) in {"in_sample": (lo, hi), "test": (tlo, thi)}.items():
        t2 = time.perf_counter()
        w, net, _dates = evaluate_policy(policy, panel, a, b)
        report.setdefault("wall_s", {})[f"eval_{name}"] = round(time.perf_counter() - t2, 2)
        block = {"ppo": metrics(net, w, policy_turnover(w, panel, a, c))}
        n = panel.n_assets
        targets = {
            "spy_buy_hold": None,
            "60_40_spy_tlt": np.array([0.6, 0.0, 0.4, 0.0, 0.0]),
            "equal_weight_incl_cash": np.full(n + 1, 1.0 / (n + 1)),
        }
        for bname, tgt in targets.items():
            if tgt is None:  # buy and hold SPY: one entry trade, then drift (= hold)
                nets = panel.returns[a + 1 : b + 1, panel.assets.index("SPY")].copy()
                nets[0] -= c * 2.0
            else:
                nets = static_baseline(panel, a, b, tgt, c)
            block[bname] = metrics(nets)
        report[name] = block
    report["wall_s"]["total"] = round(time.perf_counter() - t0, 2)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
