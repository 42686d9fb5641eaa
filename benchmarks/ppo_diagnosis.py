"""Why does the PPO allocation policy barely leave uniform weights? A diagnosis on TRAIN / VALIDATION data only.

Usage: python benchmarks/ppo_diagnosis.py [--data DIR] [--seeds 0 1] [--out benchmarks/results/ppo_diagnosis.md]
       [--configs baseline,log_std_-2.5,...] [--total-steps N]

Data: the real snapshot read by the project's own code (``CsvMarketSource`` -> ``ml.features.compute_features``
-> ``ml.dataset.allocation_panel``), SPY/QQQ/TLT/GLD + cash. Bars are cut at ``VAL_END`` (2019-12-31) *before*
the features are computed, so nothing from 2020 on (the seed fold's test window) is ever read. PPO trains on
earned days 2008-01-01 .. 2017-12-31 (``ml.agents.ppo.train_ppo``, default ``PPOConfig`` / ``EnvConfig`` unless
a configuration overrides them, no checkpoint selection: the last weights), every configuration is judged on
the validation slice 2018-01-01 .. 2019-12-31 (``evaluate_policy``, deterministic ``softmax(mean logits)``,
5 bps, next-open fills, ``ml.metrics``).

What it measures for every (configuration, seed):

1. actor sensitivity on the training rows (deterministic rollout over the train window, the observations the
   policy actually sees): mean |d w_j / d z_i| with z the *normalised* input (per 1 train-sd move of input i),
   via ``torch.autograd``; the std over days of each weight; mean over days of max_j |w_j - 0.2|;
2. the reward terms of ``step_reward`` (vix_shaped) over stochastic training rollouts (actions sampled as in
   training: mean logits + exp(log_std) * noise): the net-return term, ``vix_lambda*|net|*vix/20``,
   ``vix_penalty*fear*equity_weight*1e-3`` and the cost ``cost_rate*turnover`` (already inside net) - mean,
   mean |.| and std per step - and how much of the reward's variance the *action* explains: for each visited
   state, ``N_ALT`` extra actions are drawn from the same policy and scored on the same day (within-state std
   vs total std of the per-step reward);
3. the learned ``policy.log_std`` vs its init, the spread of the mean logits (std across the 5 logits per day,
   std over days per logit) vs the action noise std;
4. the critic's ``explained_variance`` (``TrainResult.curve``: first iteration, last 5, max).

Then it compares configurations (reward, reward normalisation, init log-std, gamma, entropy bonus, observation
variant, ...) on the validation slice: Sharpe, max drawdown, mean max |w - 0.2|, per-sleeve weight ranges.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._data import market_dir  # noqa: E402
from ml import metrics  # noqa: E402
from ml.agents import ppo as ppo_module  # noqa: E402
from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo  # noqa: E402
from ml.backtest import backtest  # noqa: E402
from ml.costs import rebalance  # noqa: E402
from ml.data.csv_source import CsvMarketSource  # noqa: E402
from ml.data.universe import ALLOCATION_ASSETS, Universe  # noqa: E402
from ml.dataset import OBSERVATION_VARIANTS, allocation_panel  # noqa: E402
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, step_reward  # noqa: E402
from ml.features import compute_features  # noqa: E402

TRAIN = (date(2008, 1, 1), date(2017, 12, 31))
VAL = (date(2018, 1, 1), date(2019, 12, 31))
VAL_END = VAL[1]  # nothing after this date is loaded
SLEEVES = (*ALLOCATION_ASSETS, "cash")
N_ENVS, N_STEPS, N_ALT = 128, 256, 8  # stochastic training rollouts for the reward terms

#: name -> (EnvConfig overrides, PPOConfig overrides, observation variant, subtract the equal-weight return from
#: the reward). The last is a benchmark-local change (``ExcessRewardEnv``), not an EnvConfig option: an
#: action-independent baseline that removes the day's common market move from every reward.
CONFIGS: dict[str, tuple[dict, dict, str, bool]] = {
    "baseline": ({}, {}, "base", False),
    "reward_net": ({"reward": "net"}, {}, "base", False),
    "no_reward_norm": ({}, {"normalize_rewards": False}, "base", False),
    "log_std_-1.5": ({}, {"init_log_std": -1.5}, "base", False),
    "log_std_-2.5": ({}, {"init_log_std": -2.5}, "base", False),
    "gamma_0": ({}, {"gamma": 0.0}, "base", False),
    "ent_0.01": ({}, {"ent_coef": 0.01}, "base", False),
    "obs_term": ({}, {}, "term", False),
    "excess_ew": ({}, {}, "base", True),
    "gamma_0+excess_ew": ({}, {"gamma": 0.0}, "base", True),
}


class ExcessRewardEnv(BatchedPortfolioEnv):
    """The environment with ``reward - ew_{t+1}``, ew = the day's return of 1/(A+1) in every sleeve (cash 0,
    close to close): independent of the action, so the optimal policy is unchanged, the advantage noise is not."""

    def __init__(self, panel, *args, **kwargs):
        super().__init__(panel, *args, **kwargs)
        ew = panel.returns.sum(1) / (panel.n_assets + 1)
        self._ew = torch.as_tensor(ew, dtype=self.dtype).to(self.device)

    def step_t(self, logits_t):
        ew = self._ew.index_select(0, self.t + 1)
        obs, reward, term, trunc, info = super().step_t(logits_t)
        return obs, reward - ew, term, trunc, info


def load_features(data: Path) -> pl.DataFrame:
    market = CsvMarketSource(data).load(Universe(include_stocks=False, sector_etfs=[]), on_progress=lambda _: None)
    cut = pl.col("date").cast(pl.Date) <= VAL_END
    return compute_features(market.bars.filter(cut), market.index_bars.filter(cut))


def det_rollout(policy, panel, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Deterministic rollout over rows [lo, hi] recording the raw observations (as ``evaluate_policy``)."""
    n = hi - lo
    cfg = policy.env_config.model_copy(update={"episode_length": n, "terminate_below": None, "dtype": "float64"})
    env = BatchedPortfolioEnv(panel, cfg, lo, hi, num_envs=1)
    obs_out, w_out, net_out = np.empty((n, env.obs_dim)), np.empty((n, env.n_assets + 1)), np.empty(n)
    with torch.inference_mode():
        obs = env.reset(starts=[lo])
        for i in range(n):
            obs_out[i] = obs[0].numpy()
            obs, _r, _te, _tr, info = env.step_t(policy.act_t(obs))
            w_out[i], net_out[i] = info["weights"][0].numpy(), float(info["net"][0])
    return {"obs": obs_out, "weights": w_out, "net": net_out}


def sensitivity(policy, obs: np.ndarray) -> dict[str, np.ndarray]:
    """mean |dw_j/dz_i| and mean |dlogit_j/dz_i| ``[K, D]`` over rows, z = the normalised observation."""
    z = policy.normalize(torch.as_tensor(obs, dtype=torch.float32)).detach().requires_grad_(True)
    logits = policy.actor(z)
    w = torch.softmax(logits, -1)
    k = w.shape[1]
    dw = [torch.autograd.grad(w[:, j].sum(), z, retain_graph=True)[0].abs().mean(0) for j in range(k)]
    dl = [torch.autograd.grad(logits[:, j].sum(), z, retain_graph=True)[0].abs().mean(0) for j in range(k)]
    return {"dw": torch.stack(dw).numpy(), "dlogit": torch.stack(dl).numpy(), "z_std": z.detach().std(0).numpy(),
            "logits": logits.detach().numpy()}


def reward_terms(policy, panel, env_cfg: EnvConfig, lo: int, hi: int, seed: int) -> dict[str, float]:
    """Per-step reward terms over stochastic training rollouts, and the action-explained share of the reward."""
    env = BatchedPortfolioEnv(panel, env_cfg, lo, hi, num_envs=N_ENVS, seed=10_000 + seed)
    gen = torch.Generator().manual_seed(20_000 + seed)
    std = float(policy.log_std.exp().mean())
    std_vec = policy.log_std.detach().exp()[None, :]
    eq = np.array([a in env_cfg.equity_assets for a in SLEEVES], dtype=float)
    gaps_all = panel.gaps_for(env_cfg.execution)
    rec = {k: [] for k in ("net", "vix_term", "fear_term", "cost", "reward", "excess", "within_std", "within_std_net",
                           "w_noise_std")}
    with torch.inference_mode():
        obs = env.reset()
        for _ in range(N_STEPS):
            t = env.t.numpy().copy()
            w_old = env.weights.numpy().astype(np.float64).copy()
            mean = policy.mean_logits(obs)  # [E, K]
            act = mean + std_vec * torch.randn(mean.shape, generator=gen)
            vix = panel.vix[t]
            obs, reward, _te, _tr, info = env.step(act)
            net, w = info["net"].numpy().astype(np.float64), info["weights"].numpy().astype(np.float64)
            fear = np.maximum(vix - env_cfg.vix_threshold, 0.0) / env_cfg.vix_threshold
            rec["net"].append(net)
            rec["vix_term"].append(env_cfg.vix_lambda * np.abs(net) * vix / 20.0)
            rec["fear_term"].append(env_cfg.vix_penalty * fear * (w @ eq) * 1e-3)
            rec["cost"].append(env_cfg.cost_rate * info["turnover"].numpy().astype(np.float64))
            rec["reward"].append(reward.numpy().astype(np.float64))
            rec["excess"].append(rec["reward"][-1] - panel.returns[t + 1].sum(1) / len(SLEEVES))
            # N_ALT more actions from the same policy on the same states and days
            alt = (mean[None] + std_vec * torch.randn((N_ALT, *mean.shape), generator=gen)).numpy().astype(np.float64)
            w_alt = np.exp(alt - alt.max(-1, keepdims=True))
            w_alt /= w_alt.sum(-1, keepdims=True)  # [N_ALT, E, K]
            gap = None if gaps_all is None else np.broadcast_to(gaps_all[t + 1], (N_ALT, *gaps_all[t + 1].shape))
            r_next = np.broadcast_to(panel.returns[t + 1], (N_ALT, *panel.returns[t + 1].shape))
            res = rebalance(w_alt, np.broadcast_to(w_old, w_alt.shape), r_next, env_cfg.cost_rate,
                            execution=env_cfg.execution, gap_returns=gap)
            r_alt = step_reward(env_cfg, res.net, res.turnover, vix[None], w_alt @ eq)
            rec["within_std"].append(r_alt.std(0, ddof=1))
            rec["within_std_net"].append(res.net.std(0, ddof=1))
            rec["w_noise_std"].append(w_alt.std(0, ddof=1).mean(-1))
    a = {k: np.concatenate(v) for k, v in rec.items()}
    recon = a["net"] - a["vix_term"] - a["fear_term"] if env_cfg.reward == "vix_shaped" else a["net"]
    out = {"action_std": std, "reconstruction_err": float(np.abs(recon - a["reward"]).max())}
    for k in ("net", "vix_term", "fear_term", "cost", "reward", "excess"):
        out |= {f"{k}_mean": float(a[k].mean()), f"{k}_absmean": float(np.abs(a[k]).mean()), f"{k}_std": float(a[k].std())}
    out |= {"within_std": float(np.sqrt((a["within_std"] ** 2).mean())),
            "within_std_net": float(np.sqrt((a["within_std_net"] ** 2).mean())),
            "w_noise_std": float(a["w_noise_std"].mean())}
    out["action_share_var"] = out["within_std"] ** 2 / out["reward_std"] ** 2
    out["action_share_var_excess"] = out["within_std"] ** 2 / out["excess_std"] ** 2
    return out


def predictability(panel, lo: int, hi: int, vlo: int, vhi: int) -> list[dict]:
    """How much of the next-day return (each asset; each sleeve's excess over the 1/5 portfolio) a linear map of
    the observed features explains: OLS fitted on the training decisions (rows lo..hi-1, standardised with
    train stats), R2 in sample and out of sample on the validation decisions (vs the train-mean forecast)."""
    f = panel.features
    mu, sd = f[lo:hi].mean(0), f[lo:hi].std(0) + 1e-12
    x = np.column_stack([np.ones(len(f)), (f - mu) / sd])
    r = np.column_stack([panel.returns, np.zeros(len(f))])
    targets = {**{a: r[:, j] for j, a in enumerate(ALLOCATION_ASSETS)},
               **{f"{s}-ew": r[:, j] - r.mean(1) for j, s in enumerate(SLEEVES[:-1])}}
    out = []
    for name, y in targets.items():
        ytr, yva = y[lo + 1 : hi + 1], y[vlo + 1 : vhi + 1]
        beta = np.linalg.lstsq(x[lo:hi], ytr, rcond=None)[0]
        r2 = lambda yy, xx: 1.0 - ((yy - xx @ beta) ** 2).sum() / ((yy - ytr.mean()) ** 2).sum()  # noqa: E731
        out.append({"target": name, "r2_train": float(r2(ytr, x[lo:hi])), "r2_val": float(r2(yva, x[vlo:vhi])),
                    "daily_std": float(ytr.std())})
    return out


def weight_stats(w: np.ndarray) -> dict[str, float]:
    dev = np.abs(w - 1.0 / w.shape[1]).max(1)
    out = {"mean_max_dev": float(dev.mean()), "p95_max_dev": float(np.quantile(dev, 0.95))}
    for j, s in enumerate(SLEEVES):
        out |= {f"{s}_mean": float(w[:, j].mean()), f"{s}_min": float(w[:, j].min()), f"{s}_max": float(w[:, j].max()),
                f"{s}_std": float(w[:, j].std())}
    return out


def run_one(name: str, seed: int, panels: dict, total_steps: int | None) -> dict:
    env_upd, ppo_upd, variant, excess = CONFIGS[name]
    panel, (lo, hi), (vlo, vhi) = panels[variant]
    env_cfg = EnvConfig(observation=OBSERVATION_VARIANTS[variant], **env_upd)
    upd = {"seed": seed, "num_threads": 1, "rollout_threads": 1, "device": "cpu", **ppo_upd}
    if total_steps:
        upd["total_steps"] = total_steps
    cfg = PPOConfig(**upd)
    t0 = time.perf_counter()
    if excess:
        with mock.patch.object(ppo_module, "BatchedPortfolioEnv", ExcessRewardEnv):
            res = train_ppo(panel, lo, hi, env_cfg, cfg)
    else:
        res = train_ppo(panel, lo, hi, env_cfg, cfg)
    train_s = time.perf_counter() - t0
    pol = res.policy
    torch.set_num_threads(1)
    # 1. sensitivities + weight spread on the training rows
    tr = det_rollout(pol, panel, lo, hi)
    sens = sensitivity(pol, tr["obs"])
    # 3. log-std and logit spread
    log_std = pol.log_std.detach().numpy()
    logits = sens["logits"]
    # 2. reward terms (always measured under the vix_shaped reward, with the policy's own sampling noise)
    terms = reward_terms(pol, panel, env_cfg.model_copy(update={"reward": "vix_shaped"}), lo, hi, seed)
    # 4. critic
    ev = np.array([r["explained_variance"] for r in res.curve])
    # validation
    val = evaluate_policy(pol, panel, vlo, vhi)
    vs = metrics.summary(val.net_returns)
    eq_val = val.weights[:, :2].sum(1)
    vix_val = panel.vix[vlo:vhi]
    row = {
        "config": name, "seed": seed, "train_s": train_s,
        "val_sharpe": vs["sharpe"], "val_max_dd": vs["max_drawdown"], "val_cagr": vs["cagr"],
        "val_corr_eq_vix": float(np.corrcoef(eq_val, vix_val)[0, 1]) if eq_val.std() > 0 else float("nan"),
        "train_sharpe": metrics.sharpe(tr["net"]),
        "log_std_init": cfg.init_log_std, "log_std_end": float(log_std.mean()), "log_std_end_min": float(log_std.min()),
        "log_std_end_max": float(log_std.max()), "action_std": float(np.exp(log_std).mean()),
        "logit_xspread": float(logits.std(1).mean()),  # std across the 5 logits, mean over days
        "logit_tspread": float(logits.std(0).mean()),  # std over days per logit, mean over logits
        "ev_first": float(ev[0]), "ev_last5": float(np.nanmean(ev[-5:])), "ev_max": float(np.nanmax(ev)),
        "entropy_last": res.curve[-1]["entropy"], "approx_kl_last": res.curve[-1]["approx_kl"],
        "clip_frac_last": res.curve[-1]["clip_frac"],
        "approx_kl_mean": float(np.mean([r["approx_kl"] for r in res.curve])),
        "clip_frac_mean": float(np.mean([r["clip_frac"] for r in res.curve])),
        **{f"train_{k}": v for k, v in weight_stats(tr["weights"]).items()},
        **{f"val_{k}": v for k, v in weight_stats(val.weights).items()},
        **{f"rt_{k}": v for k, v in terms.items()},
    }
    row["_dw"], row["_dlogit"], row["_obs_names"] = sens["dw"], sens["dlogit"], pol.obs_names
    row["_curve"] = [(r["iteration"], r["explained_variance"], r["action_std"], r["mean_reward"]) for r in res.curve]
    print(f"  {name:<15} seed {seed}: val Sharpe {row['val_sharpe']:+.2f}, maxDD {row['val_max_dd']:+.1%}, "
          f"val mean max|w-0.2| {row['val_mean_max_dev']:.3f}, train {row['train_mean_max_dev']:.3f}, "
          f"log_std {row['log_std_end']:+.2f}, logit spread {row['logit_xspread']:.3f} vs noise {row['action_std']:.3f}, "
          f"EV last5 {row['ev_last5']:+.2f}, action share of reward var {row['rt_action_share_var']:.3f} "
          f"({train_s:.0f} s train, {time.perf_counter() - t0:.0f} s total)", flush=True)
    return row


def fmt(x: float, spec: str) -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, spec)


def report(rows: list[dict], baselines: dict, pred: list[dict], args, wall: float) -> str:
    df = pl.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    names = list(dict.fromkeys(df["config"]))
    L = ["# PPO diagnosis: why the allocations stay near uniform (train / validation only)", "",
         f"Train {TRAIN[0]}..{TRAIN[1]}, validation {VAL[0]}..{VAL[1]} (no data after {VAL_END} is loaded). "
         f"Seeds {args.seeds}; PPOConfig defaults ({PPOConfig().total_steps:,} env steps"
         f"{'' if not args.total_steps else f', overridden to {args.total_steps:,}'}), 1 torch thread, last checkpoint "
         f"(no validation selection); EnvConfig defaults (vix_shaped, 5 bps, next_open). Generated by "
         f"`benchmarks/ppo_diagnosis.py` in {wall / 60:.0f} min.", ""]
    base = [r for r in rows if r["config"] == "baseline"]
    if base:
        b = pl.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in base]).mean().row(0, named=True)
        L += ["## 1. Baseline diagnosis (mean over seeds)", "",
              "### Weights (deterministic policy)", "",
              "| sleeve | train mean | train std over days | train min..max | val mean | val min..max |", "|---|---|---|---|---|---|"]
        for s in SLEEVES:
            L.append(f"| {s} | {b[f'train_{s}_mean']:.3f} | {b[f'train_{s}_std']:.4f} "
                     f"| {b[f'train_{s}_min']:.3f}..{b[f'train_{s}_max']:.3f} "
                     f"| {b[f'val_{s}_mean']:.3f} | {b[f'val_{s}_min']:.3f}..{b[f'val_{s}_max']:.3f} |")
        L += ["", f"Mean over days of max_j |w_j - 0.2|: train {b['train_mean_max_dev']:.4f} "
              f"(95th pct {b['train_p95_max_dev']:.4f}), "
              f"validation {b['val_mean_max_dev']:.4f}.", ""]
        dw = np.mean([r["_dw"] for r in base], 0)
        dl = np.mean([r["_dlogit"] for r in base], 0)
        obs_names = base[0]["_obs_names"]
        L += ["### Actor sensitivity on the training rows", "",
              "mean over training days of |d w_j / d z_i| (z = normalised input, i.e. weight change per 1 train-sd move "
              "of input i); last column: mean |d logit / d z_i| summed over the 5 logits.", "",
              "| input | " + " | ".join(f"dw_{s}" for s in SLEEVES) + " | Σ_j dw | Σ_j dlogit |",
              "|---" * (len(SLEEVES) + 3) + "|"]
        order = np.argsort(-dw.sum(0))
        for i in order:
            L.append(f"| {obs_names[i]} | " + " | ".join(f"{dw[j, i]:.4f}" for j in range(len(SLEEVES)))
                     + f" | {dw[:, i].sum():.4f} | {dl[:, i].sum():.3f} |")
        nf = len(obs_names) - len(SLEEVES)
        L += ["", f"Σ over inputs and sleeves: market features {dw[:, :nf].sum():.3f}, held weights {dw[:, nf:].sum():.3f} "
              f"(weight change per 1-sd move of every input at once, upper bound).", "",
              "### Reward terms over stochastic training rollouts (per step, vix_shaped)", "",
              f"{N_ENVS} envs x {N_STEPS} steps from random training starts, actions sampled as in training "
              f"(action std {b['rt_action_std']:.3f}); cost is already inside net.", "",
              "| term | mean | mean abs | std | mean abs / mean abs(net) |", "|---|---|---|---|---|"]
        for k, lab in (("net", "net return"), ("vix_term", "vix_lambda*|net|*vix/20"),
                       ("fear_term", "vix_penalty*fear*eq_w*1e-3"), ("cost", "cost_rate*turnover"), ("reward", "reward"),
                       ("excess", "reward − equal-weight return (excess_ew)")):
            L.append(f"| {lab} | {b[f'rt_{k}_mean']:+.2e} | {b[f'rt_{k}_absmean']:.2e} | {b[f'rt_{k}_std']:.2e} | "
                     f"{b[f'rt_{k}_absmean'] / b['rt_net_absmean']:.3f} |")
        L += ["", f"Action-induced spread of the reward (std over {N_ALT} policy actions on the same state and day, "
              f"rms over states): {b['rt_within_std']:.2e} (net return only: {b['rt_within_std_net']:.2e}) vs total "
              f"per-step reward std {b['rt_reward_std']:.2e} → the action explains {b['rt_action_share_var']:.2%} of "
              f"the per-step reward variance ({b['rt_action_share_var_excess']:.1%} of the excess-over-equal-weight "
              f"reward's). Sampled weights move ±{b['rt_w_noise_std']:.3f} (std per sleeve) around "
              f"the policy mean. Reconstruction |reward − (net − terms)| max {b['rt_reconstruction_err']:.1e}.", "",
              "### Exploration noise vs signal, critic", "",
              f"- log_std: init {b['log_std_init']:+.2f} → end {b['log_std_end']:+.3f} (range {b['log_std_end_min']:+.3f}.."
              f"{b['log_std_end_max']:+.3f}); action std {b['action_std']:.3f}.",
              f"- mean logits: std across the 5 logits {b['logit_xspread']:.4f} (mean over training days), std over days per "
              f"logit {b['logit_tspread']:.4f} → noise / cross-logit signal ≈ {b['action_std'] / b['logit_xspread']:.0f}x, "
              f"noise / time-variation ≈ {b['action_std'] / b['logit_tspread']:.0f}x.",
              f"- explained variance: first iteration {b['ev_first']:+.3f}, mean of the last 5 {b['ev_last5']:+.3f}, "
              f"max {b['ev_max']:+.3f}; approx_kl mean over iterations {b['approx_kl_mean']:.5f} "
              f"(last {b['approx_kl_last']:.5f}), "
              f"clip_frac mean {b['clip_frac_mean']:.4f} (clip_coef {PPOConfig().clip_coef}): the trust region never binds.", "",
              "Training curve (seed " + str(base[0]["seed"]) + "): iteration: explained_variance / action_std / mean raw reward", "",
              "`" + "  ".join(f"{int(i)}: {e:+.2f}/{s:.3f}/{m:+.1e}" for i, e, s, m in base[0]["_curve"][::3]) + "`", ""]
    if pred:
        L += ["### How predictable is tomorrow's return from the observation?", "",
              "OLS of the next-day return on the standardised features (rows of the base observation; fitted on the "
              "training decisions; validation R² out of sample vs the train-mean forecast).", "",
              "| target | daily std (train) | R² train (in sample) | R² validation (out of sample) |", "|---|---|---|---|"]
        L += [f"| {r['target']} | {r['daily_std']:.4f} | {r['r2_train']:.4f} | {r['r2_val']:+.4f} |" for r in pred]
        L.append("")
    # comparison table
    agg = df.group_by("config", maintain_order=True).agg(
        *[pl.col(c).mean().alias(c) for c in df.columns if c not in ("config", "seed")],
        *[pl.col(c).std().alias(f"{c}__sd") for c in ("val_sharpe", "val_max_dd")],
        pl.col("val_sharpe").alias("val_sharpe__all"))
    L += ["## 2. Configurations on the validation slice (mean over seeds; per-seed Sharpe in brackets)", "",
          "| config | val Sharpe | val max DD | val mean max\\|w−0.2\\| | train mean max\\|w−0.2\\| | action std end | "
          "logit spread | EV last 5 | approx_kl (mean) | action share of reward var | corr(eq w, VIX) |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in agg.iter_rows(named=True):
        seeds = ", ".join(f"{x:+.2f}" for x in r["val_sharpe__all"])
        L.append(f"| {r['config']} | {r['val_sharpe']:+.2f} [{seeds}] | {r['val_max_dd']:+.1%} | {r['val_mean_max_dev']:.3f} "
                 f"| {r['train_mean_max_dev']:.3f} | {r['action_std']:.3f} | {r['logit_xspread']:.3f} | {fmt(r['ev_last5'], '+.2f')} "
                 f"| {r['approx_kl_mean']:.4f} | {r['rt_action_share_var']:.3f} | {fmt(r['val_corr_eq_vix'], '+.2f')} |")
    for k, v in baselines.items():
        L.append(f"| {k} (baseline) | {v['sharpe']:+.2f} | {v['max_drawdown']:+.1%} | {v['dev']:.3f} |" + " – |" * 7)
    L += ["", "Validation weight ranges per sleeve (min..max over days, mean over seeds):", "",
          "| config | " + " | ".join(SLEEVES) + " |", "|---" * (len(SLEEVES) + 1) + "|"]
    for r in agg.iter_rows(named=True):
        L.append(f"| {r['config']} | " + " | ".join(f"{r[f'val_{s}_min']:.2f}..{r[f'val_{s}_max']:.2f} "
                                                  f"(μ {r[f'val_{s}_mean']:.2f})"
                                                  for s in SLEEVES) + " |")
    L += ["", "Configurations (EnvConfig / PPOConfig overrides, observation variant):", ""]
    L += [f"- `{n}`: env {CONFIGS[n][0] or '{}'}, ppo {CONFIGS[n][1] or '{}'}, observation `{CONFIGS[n][2]}`"
          + (", reward minus the day's equal-weight return (benchmark-local `ExcessRewardEnv`)" if CONFIGS[n][3] else "")
          for n in names]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=market_dir())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--total-steps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "ppo_diagnosis.md")
    args = ap.parse_args(argv)
    if args.data is None:
        sys.exit("no real snapshot found: pass --data DIR")
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    features = load_features(args.data)
    names = [c for c in args.configs.split(",") if c]
    panels = {}
    for variant in dict.fromkeys(CONFIGS[n][2] for n in names):
        panel = allocation_panel(features, OBSERVATION_VARIANTS[variant], ALLOCATION_ASSETS, end=VAL_END)
        assert panel.dates[-1] <= np.datetime64(VAL_END, "D")
        panels[variant] = (panel, panel.index_range(*TRAIN), panel.index_range(*VAL))
    panel, (lo, hi), (vlo, vhi) = panels[CONFIGS[names[0]][2]]
    print(f"features {features.height:,} rows; panel {panel.dates[0]}..{panel.dates[-1]}; train earned "
          f"{panel.dates[lo + 1]}..{panel.dates[hi]} ({hi - lo} days), validation {panel.dates[vlo + 1]}..{panel.dates[vhi]} "
          f"({vhi - vlo} days) ({time.perf_counter() - t_all:.0f} s)", flush=True)
    cost = EnvConfig().cost_rate
    baselines = {}
    for label, w in (("equal_weight_20", np.full(5, 0.2)), ("equal_weight_25_no_cash", np.array([.25, .25, .25, .25, 0.]))):
        bt = backtest(w, panel, vlo, vhi, cost, rebalance="daily", execution=EnvConfig().execution)
        s = metrics.summary(bt.net_returns)
        baselines[label] = {"sharpe": s["sharpe"], "max_drawdown": s["max_drawdown"], "dev": float(np.abs(w - 0.2).max())}
    rows = []
    base_panel, (blo, bhi), (bvlo, bvhi) = panels["base"] if "base" in panels else panels[CONFIGS[names[0]][2]]
    pred = predictability(base_panel, blo, bhi, bvlo, bvhi)
    print("next-day return predictability (OLS on the features): " + ", ".join(
        f"{r['target']} R2 train {r['r2_train']:.4f} val {r['r2_val']:+.4f}" for r in pred), flush=True)
    for name in names:
        for seed in args.seeds:
            rows.append(run_one(name, seed, panels, args.total_steps))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report(rows, baselines, pred, args, time.perf_counter() - t_all))
    text = report(rows, baselines, pred, args, time.perf_counter() - t_all)
    args.out.write_text(text)
    print("\n" + text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
