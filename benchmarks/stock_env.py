"""Stock environment throughput and stock-learner wall time (a script, not a test).

On a synthetic :class:`~ml.envs.stock_panel.StockPanel` (``--dates`` 3,000 rows x ``--stocks`` 100 x
``--features`` 12, float32):

(a) :class:`~ml.envs.stock_env.BatchedStockEnv` env-steps/s at ``--envs`` 1,024 with uniform random actions
    in [-1, 1], torch threads 1 and 2 (CPU);
(b) the same with a :class:`~ml.agents.stock_policy.StockActor` choosing the actions (policy in the loop:
    normalise, compact to the candidates, equivariant net, scatter back);
(c) the wall time of ``--trainer`` (``train_stock_ppo`` / ``train_stock_sac`` / ``train_stock_td3`` at their
    default configs, 2 threads) on rows [0, 2500] with the validation slice (2500, 2750), i.e. one fold.

Usage: ``python benchmarks/stock_env.py [--device cpu|cuda|auto] [--envs 1024] [--steps 100]``
       ``[--trainer ppo|sac|td3|all|none] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.agents.common import resolve_device  # noqa: E402
from ml.agents.stock_offpolicy import StockOffPolicyConfig, train_stock_sac, train_stock_td3  # noqa: E402
from ml.agents.stock_policy import StockActor  # noqa: E402
from ml.agents.stock_ppo import StockPPOConfig, train_stock_ppo  # noqa: E402
from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig  # noqa: E402
from ml.envs.stock_panel import StockPanel  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_throughput(panel: StockPanel, device: torch.device, num_envs: int, steps: int, policy: bool) -> float:
    """Env-steps/s over ``steps`` vector steps after 5 warm-up steps (random actions or a StockActor's)."""
    env = BatchedStockEnv(panel, StockEnvConfig(), 0, panel.n_dates - 1, num_envs=num_envs, device=device, seed=0)
    actor = None
    if policy:
        torch.manual_seed(0)
        actor = StockActor(env.x_dim, env.g_dim, "td3").to(device)
        actor.set_stats(env)
        with torch.no_grad():  # spread the actions so the books trade (an untrained actor sits in the HOLD band)
            actor.net.psi_out[-1].weight.mul_(100.0)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.inference_mode():
        obs = env.reset()
        for i in range(steps + 5):
            if i == 5:
                _sync(device)
                t0 = time.perf_counter()
            if actor is None:
                a = torch.rand(num_envs, panel.n_stocks, generator=gen, device=device) * 2.0 - 1.0
            else:
                a = actor.act(obs)
            obs, *_ = env.step(a)
        _sync(device)
    return num_envs * steps / (time.perf_counter() - t0)


def trainer_wall(panel: StockPanel, name: str, device: str) -> dict[str, float]:
    if name == "ppo":
        res = train_stock_ppo(panel, 0, 2500, None, StockPPOConfig(device=device), validation=(2500, 2750))
    else:
        fn = train_stock_sac if name == "sac" else train_stock_td3
        res = fn(panel, 0, 2500, None, StockOffPolicyConfig(device=device), validation=(2500, 2750))
    return {"wall_s": res.wall_s, "env_steps": float(res.env_steps), "best_val_sharpe": res.selection["best_val_sharpe"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--envs", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--dates", type=int, default=3000)
    ap.add_argument("--stocks", type=int, default=100)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--trainer", default="ppo", choices=["ppo", "sac", "td3", "all", "none"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    panel = StockPanel.synthetic(n_dates=args.dates, n_stocks=args.stocks, n_features=args.features, seed=0)
    rows: list[tuple[str, str, float]] = []
    threads = (1, 2) if device.type == "cpu" else (torch.get_num_threads(),)
    for n in threads:
        torch.set_num_threads(n)
        rows.append((f"env, random actions, E={args.envs}", f"{device.type} {n} thr",
                     env_throughput(panel, device, args.envs, args.steps, policy=False)))
        rows.append((f"env + StockActor.act, E={args.envs}", f"{device.type} {n} thr",
                     env_throughput(panel, device, args.envs, args.steps, policy=True)))
    trainers = {"all": ["ppo", "sac", "td3"], "none": []}.get(args.trainer, [args.trainer])
    walls = {t: trainer_wall(panel, t, str(device)) for t in trainers}
    print(f"synthetic panel {args.dates} x {args.stocks} stocks x {args.features} features, float32")
    print(f"{'measurement':<34} {'where':<12} {'env-steps/s':>12}")
    for what, where, v in rows:
        print(f"{what:<34} {where:<12} {v:>12,.0f}")
    for t, w in walls.items():
        print(f"train_stock_{t} (default config, one fold): {w['wall_s']:.1f} s for {w['env_steps']:,.0f} env steps "
              f"(best validation Sharpe {w['best_val_sharpe']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": [{"what": a, "where": b, "env_steps_per_s": c} for a, b, c in rows],
                                               "trainers": walls}, indent=2))


if __name__ == "__main__":
    main()
