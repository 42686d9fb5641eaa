"""QR-DQN pair-trading throughput (a script, not a test).

    python benchmarks/qrdqn.py                    # CPU: env + learner rates
    python benchmarks/qrdqn.py --train            # and one default-config training run (the per-fold budget)
    python benchmarks/qrdqn.py --device cuda

On a synthetic pair panel of production shape (``--pairs`` x ``--dates``, F = 26 state columns, AR(1)
spreads, 60 warm-up rows of NaN states), measures:

(a) :class:`~ml.envs.pair_trading.BatchedPairEnv` env-steps/s (transitions) with uniform random actions,
    E = 32 and E = 1024;
(b) learner gradient-steps/s at the default :class:`~ml.agents.qrdqn.QRDQNConfig` (batch 64, 51 quantiles,
    28 -> 128 -> 128 -> 153 MLP) sampling a full 100k prioritized buffer: sample, target, quantile Huber
    loss, Adam step, priority update; wall and CPU (user+sys) time, as the machine may be shared;
(c) with ``--train``: :func:`~ml.agents.qrdqn.train_qrdqn` at the default config end to end (wall time of
    one fold's training).

Torch threads: ``--threads`` (default 1, the config's). Results also go to ``benchmarks/results/qrdqn.json``
(git-ignored) or ``--json PATH``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml.agents.common import resolve_device  # noqa: E402
from ml.agents.qrdqn import (  # noqa: E402
    POSITIONS, PrioritizedReplay, QRDQNConfig, QuantileNetwork, _update, quantile_taus, train_qrdqn)
from ml.envs.pair_trading import BatchedPairEnv, PairEnvConfig  # noqa: E402

N_FEATURES = 26


def synthetic_pairs(n_pairs: int, n_dates: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``states [T, P, 26]`` (the spread's z-score + 25 noise columns, NaN for the first 60 rows) and
    ``spread_returns [T, P]`` of AR(1) spreads (phi 0.9, 1 % daily noise)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n_dates, n_pairs))
    for t in range(1, n_dates):
        x[t] = 0.9 * x[t - 1] + rng.normal(0.0, 0.01, n_pairs)
    ret = np.full((n_dates, n_pairs), np.nan)
    ret[1:] = x[1:] - x[:-1]
    states = rng.normal(size=(n_dates, n_pairs, N_FEATURES))
    states[..., 0] = x / x.std()
    states[:60] = np.nan
    return states, ret


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_env(states: np.ndarray, ret: np.ndarray, n_envs: int, device: torch.device, min_time: float) -> float:
    env = BatchedPairEnv(states, ret, PairEnvConfig(), num_envs=n_envs, device=device, seed=0)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    with torch.inference_mode():
        env.reset()
        for _ in range(20):
            env.step(torch.randint(0, 3, (n_envs,), generator=gen, device=device))
        _sync(device)
        steps, t0 = 0, time.perf_counter()
        while True:
            for _ in range(50):
                env.step(torch.randint(0, 3, (n_envs,), generator=gen, device=device))
            steps += 50
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= min_time:
                return steps * n_envs / dt


def bench_learner(device: torch.device, min_time: float) -> dict:
    cfg = QRDQNConfig(device=str(device))
    obs_dim, n = N_FEATURES + 2, cfg.buffer_size
    torch.manual_seed(0)
    net = QuantileNetwork(obs_dim, len(POSITIONS), cfg.n_quantiles, cfg.hidden).to(device)
    target = QuantileNetwork(obs_dim, len(POSITIONS), cfg.n_quantiles, cfg.hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=True)
    buf = PrioritizedReplay(n, obs_dim, device, cfg.per_alpha, cfg.per_eps)
    buf.add(torch.randn(n, obs_dim, device=device), torch.randint(0, 3, (n,), device=device),
            torch.randn(n, device=device), torch.full((n,), cfg.gamma ** cfg.n_step, device=device),
            torch.randn(n, obs_dim, device=device))
    buf.update_priorities(torch.arange(n, device=device), torch.rand(n, device=device))
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    taus, rows = quantile_taus(cfg.n_quantiles, device), torch.arange(cfg.batch_size, device=device)
    for _ in range(30):
        _update(net, target, opt, buf, taus, rows, cfg, 0.5, gen)
    _sync(device)
    steps, t0, c0 = 0, time.perf_counter(), _cpu()
    while True:
        for _ in range(50):
            _update(net, target, opt, buf, taus, rows, cfg, 0.5, gen)
        steps += 50
        _sync(device)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return {"grad_steps_per_s": steps / dt, "cpu_ms_per_step": 1e3 * (_cpu() - c0) / steps}


def bench_train(states: np.ndarray, ret: np.ndarray, device: torch.device) -> dict:
    cfg = QRDQNConfig(device=str(device))
    env = BatchedPairEnv(states, ret, PairEnvConfig(), num_envs=cfg.num_envs, device=device, seed=0)
    c0 = _cpu()
    res = train_qrdqn(env, cfg, log=lambda line: print("   ", line, flush=True))
    return {"total_steps": res.env_steps, "grad_steps": res.grad_steps, "wall_s": res.wall_s,
            "cpu_s": _cpu() - c0, "final_reward_per_step": res.curve[-1]["reward_per_step"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help='"cpu", "cuda" or "auto"')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--dates", type=int, default=3000)
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--train", action="store_true", help="also time one default-config training run")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "qrdqn.json")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    states, ret = synthetic_pairs(args.pairs, args.dates)
    out: dict = {"device": str(device), "torch": str(torch.__version__), "cpu_count": os.cpu_count(),
                 "threads": args.threads, "pairs": args.pairs, "dates": args.dates,
                 "loadavg_start": os.getloadavg(), "env_steps_per_s": {}}
    print(f"QR-DQN benchmark: {args.pairs} pairs x {args.dates} dates x {N_FEATURES} states; device {device}; "
          f"torch threads {args.threads}; load average {out['loadavg_start'][0]:.2f}", flush=True)
    for e in (32, 1024):
        sps = bench_env(states, ret, e, device, args.min_time)
        out["env_steps_per_s"][str(e)] = sps
        print(f"(a) env, random actions, E={e:5d}: {sps:>14,.0f} env-steps/s", flush=True)
    out["learner"] = bench_learner(device, args.min_time)
    print(f"(b) learner, batch 64, full 100k PER: {out['learner']['grad_steps_per_s']:>10,.0f} gradient-steps/s "
          f"({out['learner']['cpu_ms_per_step']:.2f} ms CPU each)", flush=True)
    if args.train:
        out["train"] = bench_train(states, ret, device)
        t = out["train"]
        print(f"(c) default training: {t['total_steps']:,} transitions, {t['grad_steps']:,} gradient steps in "
              f"{t['wall_s']:.1f} s wall ({t['cpu_s']:.1f} s CPU)", flush=True)
    out["loadavg_end"] = os.getloadavg()
    print(f"load average start {out['loadavg_start'][0]:.2f} end {out['loadavg_end'][0]:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
