"""RL throughput benchmark: batched env, end-to-end PPO, the naive single-env PPO, and training RSS.

Measures, in one run (real snapshot train window 2008-2019 when present, else a synthetic market):

(a) :class:`~ml.envs.portfolio.BatchedPortfolioEnv` steps/s with random logits for E = 1, 64, 1024, 4096;
(b) end-to-end :func:`~ml.agents.ppo.train_ppo` env-steps/s at the default :class:`PPOConfig`
    (a few iterations; steady state = without the first iteration);
(c) the same PPO written the straightforward way - one ``gymnasium`` env (:class:`PortfolioEnv`), a Python
    loop per step with batch-1 policy calls, per-step observation/reward normalisation wrappers as in the
    usual notebook, NumPy GAE - same data, network and hyper-parameters (one full rollout + update);
    and the ratio (b)/(c);
(d) peak RSS (``ru_maxrss``) of a child process that loads the data and runs default-config training;
(e) SAC and TD3 (:func:`~ml.agents.sac.train_sac`, :func:`~ml.agents.td3.train_td3`) at their default configs
    (32 envs, batch 256, one gradient step per vector step) for ``--offpolicy-steps`` env steps: env-steps/s
    and gradient-steps/s after the random-action warm-up (steady state), and the full-budget wall time
    they imply for one fold at the default budget (160k steps).

Usage: ``python benchmarks/rl_throughput.py [--device auto|cpu|cuda] [--threads 1] [--json out.json]``
       ``[--only-offpolicy]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.agents.ppo import PPOConfig, PPOPolicy, resolve_device, train_ppo  # noqa: E402
from ml.agents.sac import SACConfig, train_sac  # noqa: E402
from ml.agents.td3 import TD3Config, train_td3  # noqa: E402
from ml.dataset import allocation_panel  # noqa: E402
from ml.envs.market_panel import MarketPanel  # noqa: E402
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, PortfolioEnv  # noqa: E402
from ml.features import compute_features  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"


def load_panel(data: Path) -> tuple[MarketPanel, int, int, str]:
    from ml.data.universe import Universe

    if (data / "ohlcv").is_dir():
        from ml.data.csv_source import CsvMarketSource

        m = CsvMarketSource(data).load(Universe(include_stocks=False), on_progress=lambda _: None)
        src = f"real snapshot {data}"
    else:
        from ml.data.synthetic import generate_market

        m = generate_market(Universe(include_stocks=False, sector_etfs=[]), seed=0)
        src = "synthetic (seed 0)"
    p = allocation_panel(compute_features(m.bars, m.index_bars))  # the default observation (EnvConfig())
    lo, hi = p.index_range("2008-01-01", "2019-12-31")
    return p, lo, hi, src


# ----------------------------------------------------------------------------------------------------
# (a) batched env
# ----------------------------------------------------------------------------------------------------


def bench_env(panel: MarketPanel, lo: int, hi: int, n_envs: int, device: torch.device, min_time: float = 1.0) -> float:
    env = BatchedPortfolioEnv(panel, EnvConfig(), lo, hi, num_envs=n_envs, device=device, seed=0)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    with torch.inference_mode():
        env.reset()
        for _ in range(20):
            env.step_t(torch.randn(5, n_envs, generator=gen, device=device))
        _sync(device)
        steps, t0 = 0, time.perf_counter()
        while True:
            for _ in range(50):
                env.step_t(torch.randn(5, n_envs, generator=gen, device=device))
            steps += 50
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= min_time:
                return steps * n_envs / dt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------
# (c) the straightforward PPO: one gym env, a Python loop per step
# ----------------------------------------------------------------------------------------------------


class _NumpyRMS:
    def __init__(self, shape: tuple[int, ...]):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, x: np.ndarray) -> None:
        b_mean, b_var, n = x.mean(0), x.var(0), x.shape[0]
        delta, tot = b_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / tot
        self.var = (self.var * self.count + b_var * n + delta**2 * self.count * n / tot) / tot
        self.count = tot


def naive_ppo_iteration(panel: MarketPanel, lo: int, hi: int, cfg: PPOConfig, device: torch.device) -> dict:
    """One PPO iteration (``cfg.batch_size`` transitions + the update) the notebook way. Returns timings."""
    torch.manual_seed(cfg.seed)
    env = PortfolioEnv(panel, EnvConfig(), lo, hi)
    policy = PPOPolicy(env.observation_space.shape[0], 5, cfg.hidden_sizes, cfg.init_log_std).to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
    obs_rms, ret_rms, ret_acc = _NumpyRMS((env.observation_space.shape[0],)), _NumpyRMS(()), 0.0
    n = cfg.batch_size
    obs_l, act_l, logp_l, rew_l, done_l, val_l = [], [], [], [], [], []
    obs, _ = env.reset(seed=cfg.seed)
    t0 = time.perf_counter()
    for _ in range(n):
        obs_rms.update(obs[None].astype(np.float64))  # NormalizeObservation wrapper, per step
        o = np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10)
        x = torch.as_tensor(o, dtype=torch.float32, device=device)[None]
        with torch.no_grad():
            mean = policy.actor(x)
            value = policy.critic(x)
            dist = torch.distributions.Normal(mean, policy.log_std.exp())
            action = dist.sample()
            logp = dist.log_prob(action).sum(-1)
        a = action[0].cpu().numpy()
        obs, r, term, trunc, _ = env.step(a)
        ret_acc = ret_acc * cfg.gamma + r  # NormalizeReward wrapper, per step
        ret_rms.update(np.array([ret_acc]))
        r_n = r / math.sqrt(ret_rms.var + 1e-8)
        if term or trunc:
            ret_acc = 0.0
            obs, _ = env.reset()
        obs_l.append(o)
        act_l.append(a)
        logp_l.append(logp.item())
        rew_l.append(r_n)
        done_l.append(float(term or trunc))
        val_l.append(value.item())
    t_roll = time.perf_counter() - t0
    # GAE in NumPy
    o = np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10)
    with torch.no_grad():
        next_v = policy.critic(torch.as_tensor(o, dtype=torch.float32, device=device)[None]).item()
    vals, rews, dones = np.array(val_l), np.array(rew_l), np.array(done_l)
    adv = np.zeros(n)
    last = 0.0
    for t in reversed(range(n)):
        nv = next_v if t == n - 1 else vals[t + 1]
        nonterm = 1.0 - dones[t]
        delta = rews[t] + cfg.gamma * nv * nonterm - vals[t]
        last = delta + cfg.gamma * cfg.gae_lambda * nonterm * last
        adv[t] = last
    b_obs = torch.as_tensor(np.array(obs_l), dtype=torch.float32, device=device)
    b_act = torch.as_tensor(np.array(act_l), dtype=torch.float32, device=device)
    b_logp = torch.as_tensor(np.array(logp_l), dtype=torch.float32, device=device)
    b_adv = torch.as_tensor(adv, dtype=torch.float32, device=device)
    b_ret = b_adv + torch.as_tensor(vals, dtype=torch.float32, device=device)
    b_val = torch.as_tensor(vals, dtype=torch.float32, device=device)
    mb = n // cfg.num_minibatches
    for _ in range(cfg.update_epochs):
        perm = np.random.permutation(n)
        for s in range(0, n, mb):
            idx = torch.as_tensor(perm[s : s + mb], device=device)
            mean = policy.actor(b_obs[idx])
            dist = torch.distributions.Normal(mean, policy.log_std.exp())
            newlogp = dist.log_prob(b_act[idx]).sum(-1)
            ratio = (newlogp - b_logp[idx]).exp()
            a_mb = (b_adv[idx] - b_adv[idx].mean()) / (b_adv[idx].std() + 1e-8)
            pg = torch.max(-a_mb * ratio, -a_mb * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            newv = policy.critic(b_obs[idx]).squeeze(-1)
            vc = b_val[idx] + (newv - b_val[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
            vl = 0.5 * torch.max((newv - b_ret[idx]) ** 2, (vc - b_ret[idx]) ** 2).mean()
            loss = pg - cfg.ent_coef * dist.entropy().sum(-1).mean() + cfg.vf_coef * vl
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
    _sync(device)
    total = time.perf_counter() - t0
    return {"rollout_steps_per_s": n / t_roll, "update_s": total - t_roll, "env_steps_per_s": n / total}


# ----------------------------------------------------------------------------------------------------
# (d) RSS child
# ----------------------------------------------------------------------------------------------------


def rss_child(data: Path, iterations: int, device: str) -> None:
    panel, lo, hi, _ = load_panel(data)
    cfg = PPOConfig(device=device)
    cfg = cfg.model_copy(update={"total_steps": cfg.batch_size * iterations})
    train_ppo(panel, lo, hi, EnvConfig(), cfg)
    print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def bench_offpolicy(panel: MarketPanel, lo: int, hi: int, device: torch.device, steps: int) -> dict:
    """(e): SAC and TD3 at their default configs for ``steps`` env steps; steady-state rates from the curve
    rows after the warm-up (the first row is dropped)."""
    out = {}
    for name, trainer, config in (("sac", train_sac, SACConfig), ("td3", train_td3, TD3Config)):
        cfg = config(device=str(device), total_steps=steps, log_every=max(steps // 10, 1))
        res = trainer(panel, lo, hi, EnvConfig(), cfg)
        rows = [r for r in res.curve[1:] if r["grad_steps"] > 0] or res.curve
        d_env = rows[-1]["env_steps"] - (res.curve[0]["env_steps"] if len(res.curve) > 1 else 0.0)
        d_grad = rows[-1]["grad_steps"] - (res.curve[0]["grad_steps"] if len(res.curve) > 1 else 0.0)
        d_t = rows[-1]["wall_s"] - (res.curve[0]["wall_s"] if len(res.curve) > 1 else 0.0)
        full = config()
        grads_full = full.vector_steps - min(full.learning_starts, full.total_steps // 4) // full.num_envs
        out[name] = {"config": {k: cfg.model_dump()[k] for k in ("num_envs", "batch_size", "hidden_sizes",
                                                                 "updates_per_step", "num_threads")},
                     "env_steps": res.env_steps, "wall_s": res.wall_s, "env_steps_per_s": d_env / d_t,
                     "grad_steps_per_s": d_grad / d_t,
                     "fold_train_s_estimate": grads_full / (d_grad / d_t)}
        print(f"(e) {name.upper()} default config ({cfg.num_envs} envs, batch {cfg.batch_size}, "
              f"{cfg.updates_per_step} gradient step / vector step, threads {cfg.num_threads}): "
              f"{out[name]['env_steps_per_s']:,.0f} env-steps/s, {out[name]['grad_steps_per_s']:,.0f} gradient-steps/s "
              f"steady; one fold at the default {full.total_steps:,} steps ~ {out[name]['fold_train_s_estimate']:.0f} s",
              flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for (a) and (c)")
    ap.add_argument("--ppo-iterations", type=int, default=6)
    ap.add_argument(
        "--ppo-threads", type=lambda v: [None if x == "default" else int(x) for x in v.split(",")],
        default=[None, 1],
        help="thread settings for (b), comma-separated ('default' = the config's own); the first gives the ratio",
    )
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-iterations", type=int, default=4)
    ap.add_argument("--offpolicy-steps", type=int, default=48_000, help="env steps of each (e) run")
    ap.add_argument("--only-offpolicy", action="store_true", help="run (e) only")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.rss_child:
        rss_child(args.data, args.rss_iterations, str(device))
        return {}
    torch.set_num_threads(args.threads)
    panel, lo, hi, src = load_panel(args.data)
    out: dict = {
        "data": src,
        "device": str(device),
        "torch": str(torch.__version__),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "loadavg_start": os.getloadavg(),
    }
    print(f"data: {src}; train rows {lo}..{hi}; device {device}; torch threads {args.threads}", flush=True)
    if args.only_offpolicy:
        out["offpolicy"] = bench_offpolicy(panel, lo, hi, device, args.offpolicy_steps)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return out

    out["env_steps_per_s"] = {}
    for e in (1, 64, 1024, 4096):
        sps = bench_env(panel, lo, hi, e, device)
        out["env_steps_per_s"][str(e)] = sps
        print(f"(a) batched env, random logits, E={e:5d}: {sps:>14,.0f} steps/s", flush=True)

    out["ppo_batched"] = {}
    for threads in args.ppo_threads:  # None = the default config's own thread settings
        cfg = PPOConfig(device=str(device))
        update = {"total_steps": cfg.batch_size * args.ppo_iterations}
        if threads is not None:
            update.update(num_threads=threads, rollout_threads=threads)
        cfg = cfg.model_copy(update=update)
        threads = "default" if threads is None else threads
        t0 = time.perf_counter()
        res = train_ppo(panel, lo, hi, EnvConfig(), cfg)
        wall = time.perf_counter() - t0
        steady = res.curve[1:]
        n_steady = len(steady) * cfg.batch_size
        t_steady = sum(r["rollout_s"] + r["update_s"] for r in steady)
        ppo = {
            "config": {k: cfg.model_dump()[k] for k in ("num_envs", "num_steps", "num_minibatches", "update_epochs")},
            "threads": threads,
            "iterations": len(res.curve),
            "env_steps_per_s_overall": res.env_steps / wall,
            "env_steps_per_s_steady": n_steady / t_steady,
            "rollout_steps_per_s": n_steady / sum(r["rollout_s"] for r in steady),
            "update_share": sum(r["update_s"] for r in steady) / t_steady,
        }
        out["ppo_batched"][str(threads)] = ppo
        print(
            f"(b) PPO end-to-end, default config ({cfg.num_envs} envs x {cfg.num_steps} steps, "
            f"{cfg.update_epochs} epochs x {cfg.num_minibatches} minibatches), threads {threads} "
            f"(update {cfg.num_threads}, rollout {cfg.rollout_threads}): "
            f"{ppo['env_steps_per_s_steady']:,.0f} env-steps/s steady ({ppo['env_steps_per_s_overall']:,.0f} incl. "
            f"setup), rollout alone {ppo['rollout_steps_per_s']:,.0f}/s, update {ppo['update_share']:.0%} of the time",
            flush=True,
        )
    first = args.ppo_threads[0]
    ppo = out["ppo_batched"]["default" if first is None else str(first)]

    if not args.skip_naive:
        naive = naive_ppo_iteration(panel, lo, hi, PPOConfig(device=str(device)), device)
        out["ppo_naive"] = naive
        out["ratio_b_over_c"] = ppo["env_steps_per_s_steady"] / naive["env_steps_per_s"]
        print(
            f"(c) naive PPO (1 gym env, Python loop per step): {naive['env_steps_per_s']:,.0f} env-steps/s "
            f"(rollout {naive['rollout_steps_per_s']:,.0f}/s, update {naive['update_s']:.1f}s)\n"
            f"    ratio (b)/(c) = {out['ratio_b_over_c']:.1f}x",
            flush=True,
        )

    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", "--data", str(args.data), "--device", str(device),
         "--rss-iterations", str(args.rss_iterations)],
        capture_output=True, text=True, check=True,
    )
    out["train_peak_rss_mb"] = json.loads(child.stdout.strip().splitlines()[-1])["max_rss_mb"]
    print(f"(d) peak RSS of a default training run (data load + {args.rss_iterations} iterations): "
          f"{out['train_peak_rss_mb']:,.0f} MB", flush=True)
    out["offpolicy"] = bench_offpolicy(panel, lo, hi, device, args.offpolicy_steps)
    out["loadavg_end"] = os.getloadavg()
    print(f"load average start {out['loadavg_start']} end {out['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
