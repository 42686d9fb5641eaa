"""PPO for the daily allocation environment - CleanRL-style, one readable file.

Algorithm (Schulman et al. 2017, following CleanRL's ``ppo_continuous_action.py``):

* actor-critic MLPs (separate actor and critic, 2 x 128 tanh by default, orthogonal init), the actor
  outputs the *mean logits* of a diagonal Gaussian with a learned state-independent log-std; the
  environment turns the sampled logits into weights with ``softmax`` (long-only, fully invested);
* rollouts of ``num_steps`` x ``num_envs`` transitions from :class:`~ml.envs.portfolio.BatchedPortfolioEnv`
  (all tensors on one device, no host copies inside the loop, ``torch.inference_mode``, preallocated buffers);
* GAE(gamma, lambda); truncated episodes (time limit / end of the training window) are bootstrapped with
  ``gamma * V(final observation)``; only terminations (equity below the floor) cut the value;
* clipped surrogate objective, (optionally clipped) value loss, entropy bonus, per-minibatch advantage
  normalisation, ``update_epochs`` passes of ``num_minibatches`` minibatches, global grad-norm clipping,
  optional linear learning-rate annealing and early stop on ``target_kl``;
* observation normalisation with running mean/var (float64), initialised from the training window's
  feature rows and updated with every rollout's observations - i.e. fitted on the train window only -,
  frozen at evaluation and saved inside the policy's ``state_dict`` (``obs_rms.mean/var/count``);
* reward normalisation (optional, on by default): rewards are divided by the running std of the discounted
  return (as gymnasium's ``NormalizeReward``); the raw rewards are what :func:`train_ppo` reports.

Timing: observations are built at the close of t from data <= close t; the action sets the weights held
from close t to close t+1 (see :mod:`ml.envs.portfolio`).

Deterministic evaluation (:func:`evaluate_policy`) uses ``softmax(mean logits)``.

Reproducibility: with the same seed, data, config and thread count on CPU the trained weights are
bitwise identical (global torch seed for the initialisation, dedicated ``torch.Generator`` for the
environment starts, the action noise and the minibatch permutations, ``torch.use_deterministic_algorithms``
and ``torch.set_num_threads(num_threads)`` for the duration of training; both are restored afterwards).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ml.agents.common import Determinism, RunningMeanStd, TrainResult, init_obs_stats, layer, mlp, resolve_device
from ml.agents.rollout import EvalResult, ValidationSelector, evaluate_policy
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig

__all__ = [
    "EvalResult",
    "PPOConfig",
    "PPOPolicy",
    "RunningMeanStd",
    "TrainResult",
    "evaluate_policy",
    "gae",
    "ppo_loss",
    "resolve_device",
    "reward_scale",
    "train_ppo",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class PPOConfig(BaseModel):
    """PPO hyper-parameters (CleanRL names). Defaults are sized for one fold (2008-2019, ~3,000 training
    days) on 2 CPU cores: 512 envs x 64 steps = 32,768 transitions per iteration, 30 iterations (1M env
    steps, i.e. each training day is visited ~330 times from different portfolio states), 2 epochs x 8
    minibatches of 4,096 (16 gradient steps per iteration). The environment is a cheap replay of history,
    so fresh transitions are cheaper than extra epochs over old ones: on the seed fold 2 epochs trained
    ~1.7x faster than 4 epochs x 4 minibatches and generalised better to the test window. 512 envs x 64
    steps (rather than 128 x 256) amortise the per-step Python overhead of the rollout over 4x more envs:
    ~53k vs ~41k env-steps/s end to end on an idle 2-core CPU (``benchmarks/rl_throughput.py``); GAE still
    bootstraps from the value at the rollout end. ``num_threads=2`` for the update (compute-bound matmuls);
    set 1 on a machine shared with other CPU-heavy work. ``device="auto"`` picks CUDA when present."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_steps: int = Field(default=1_000_000, ge=1, description="environment steps (transitions) in total "
                             "(longer overfits on the real snapshot: 4M gave walk-forward Sharpe 0.65 vs 1.02)")
    num_envs: int = Field(default=512, ge=1)
    num_steps: int = Field(default=64, ge=1, description="steps per env per rollout")
    num_minibatches: int = Field(default=8, ge=1)
    update_epochs: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=3e-4, gt=0.0)
    anneal_lr: bool = True
    gamma: float = Field(default=0.99, ge=0.0, le=1.0)
    gae_lambda: float = Field(default=0.95, ge=0.0, le=1.0)
    clip_coef: float = Field(default=0.2, gt=0.0)
    clip_vloss: bool = True
    ent_coef: float = Field(default=0.0, ge=0.0)
    vf_coef: float = Field(default=0.5, ge=0.0)
    max_grad_norm: float = Field(default=0.5, gt=0.0)
    target_kl: float | None = None
    norm_adv: bool = True
    hidden_sizes: tuple[int, ...] = (128, 128)
    shared_body: bool = Field(default=False, description="one tanh body for actor and critic (two linear heads), "
                              "as the seed article; default: separate bodies (CleanRL)")
    init_log_std: float = -0.5
    normalize_obs: bool = True
    normalize_rewards: bool = True
    obs_clip: float = Field(default=10.0, gt=0.0, description="clip of the normalised observation")
    bootstrap_truncated: bool = True
    seed: int = 0
    device: str = Field(default="auto", description='"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1"...')
    num_threads: int | None = Field(
        default=2, ge=1, description="torch CPU threads for the update (None = leave torch's default); use 1 on a "
        "machine shared with other CPU-heavy work"
    )
    rollout_threads: int | None = Field(
        default=1, ge=1, description="torch CPU threads during rollouts (small ops: 1 avoids threading overhead)"
    )
    deterministic: bool = True
    eval_every: int = Field(default=3, ge=1, description="iterations between evaluations on the validation slice "
                            "(when train_ppo gets one): the best checkpoint by validation Sharpe is kept")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_steps // self.batch_size)


# ----------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------


class PPOPolicy(nn.Module):
    """Actor-critic + observation normaliser: everything needed to act, saved in one ``state_dict``.

    ``obs`` below are *raw* environment observations ``[..., obs_dim]`` (the layout of
    ``env_config.obs_names(panel)``); the policy normalises them itself with the frozen train-window stats.
    Metadata (not tensors): ``env_config``, ``ppo_config``, ``obs_names``, ``assets``, ``data_hash``,
    ``train_window`` (first/last earned dates, ISO strings).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: tuple[int, ...] = (128, 128),
        init_log_std: float = -0.5,
        obs_clip: float = 10.0,
        *,
        shared_body: bool = False,
        env_config: EnvConfig | None = None,
        ppo_config: PPOConfig | None = None,
        obs_names: list[str] | None = None,
        assets: tuple[str, ...] = (),
        data_hash: str = "",
        train_window: tuple[str, str] = ("", ""),
    ):
        super().__init__()
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.obs_rms = RunningMeanStd(obs_dim, clip=obs_clip)
        self.shared_body = bool(shared_body)
        self.actor = mlp(obs_dim, self.hidden_sizes, n_actions, 0.01)
        if self.shared_body:  # the critic reuses the actor's body modules (the same parameters), own head
            width = self.hidden_sizes[-1] if self.hidden_sizes else obs_dim
            self.critic = nn.Sequential(*list(self.actor)[:-1], layer(width, 1, 1.0))
        else:
            self.critic = mlp(obs_dim, self.hidden_sizes, 1, 1.0)
        self.log_std = nn.Parameter(torch.full((n_actions,), float(init_log_std)))
        self.env_config = env_config or EnvConfig()
        self.ppo_config = ppo_config or PPOConfig()
        self.obs_names = list(obs_names or [])
        self.assets = tuple(assets)
        self.data_hash = data_hash
        self.train_window = tuple(train_window)

    kind = "ppo"

    @property
    def seed(self) -> int:
        return self.ppo_config.seed

    # -- acting ----------------------------------------------------------------------------------------
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs)

    def act_t(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic logits assets-first ``[A+1, E]`` for raw observations ``[E, D]``."""
        return self._actor_mean_t(self.normalize(obs.to(self.log_std.dtype)))

    def mean_logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean logits ``[..., A+1]`` for raw observations."""
        return self.actor(self.normalize(obs.to(self.log_std.dtype)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value ``[...]`` (in normalised-reward units) for raw observations."""
        return self.critic(self.normalize(obs.to(self.log_std.dtype))).squeeze(-1)

    @torch.no_grad()
    def weights(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic target weights ``softmax(mean logits)`` ``[..., A+1]`` (cash last)."""
        return torch.softmax(self.mean_logits(obs), dim=-1)

    def _actor_mean_t(self, obs_n: torch.Tensor) -> torch.Tensor:
        """Actor on normalised ``[E, D]`` obs, returned assets-first ``[A+1, E]`` (for the batched env)."""
        h = obs_n
        layers = list(self.actor)
        for module in layers[:-1]:
            h = module(h)
        last: nn.Linear = layers[-1]  # type: ignore[assignment]
        return torch.addmm(last.bias[:, None], last.weight, h.t())

    def log_prob(self, obs_n: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi(a|s) [N], entropy [N])`` on normalised observations ``[N, D]`` and actions ``[N, A+1]``."""
        mean = self.actor(obs_n)
        z = (actions - mean) * torch.exp(-self.log_std)
        logp = (-0.5 * z * z).sum(-1) - (self.log_std.sum() + self.n_actions * _LOG_SQRT_2PI)
        ent = (self.log_std + 0.5 + _LOG_SQRT_2PI).sum().expand(obs_n.shape[0])
        return logp, ent

    def architecture(self) -> dict[str, Any]:
        return {
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "hidden_sizes": list(self.hidden_sizes),
            "obs_clip": self.obs_rms.clip,
            "shared_body": self.shared_body,
        }


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


class PPOLossSettings(Protocol):
    """The loss fields :func:`ppo_loss` reads (``PPOConfig`` and the stock learner's config both have them)."""

    clip_coef: float
    norm_adv: bool
    clip_vloss: bool
    ent_coef: float
    vf_coef: float


def reward_scale(rew_buf: torch.Tensor, done_buf: torch.Tensor, ret_acc: torch.Tensor, ret_rms: RunningMeanStd,
                 gamma: float, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward scaling: ``1 / std`` of the running discounted return, fitted on this rollout too. ``rew_buf`` and
    ``done_buf`` ``[N, E]`` (step-major), ``ret_acc`` ``[E]`` float64 (the return carried over from the last
    rollout). Returns ``(scale, ret_acc)``; scale is 1 when ``normalize`` is false."""
    f32 = torch.float32
    if not normalize:
        return torch.ones(1, device=rew_buf.device, dtype=f32), ret_acc
    n, e = rew_buf.shape
    rets = torch.empty(n, e, device=rew_buf.device, dtype=torch.float64)
    for s in range(n):
        ret_acc = ret_acc * gamma + rew_buf[s]
        rets[s] = ret_acc
        ret_acc = ret_acc * (1.0 - done_buf[s])
    ret_rms.update(rets.reshape(-1, 1))
    return (1.0 / torch.sqrt(ret_rms.var + 1e-8)).to(f32), ret_acc


def gae(rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, done_buf: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates ``[N, E]``. ``done_buf[s]`` = the episode ended after step s (the bootstrap
    of truncations is already in ``rewards``); ``next_value`` ``[E]`` = V of the observation after the rollout."""
    n, e = rewards.shape
    adv = torch.zeros(n, e, device=rewards.device, dtype=torch.float32)
    last = torch.zeros(e, device=rewards.device, dtype=torch.float32)
    for s in reversed(range(n)):
        next_v = next_value if s == n - 1 else values[s + 1]
        nonterm = 1.0 - done_buf[s]
        delta = rewards[s] + gamma * next_v * nonterm - values[s]
        last = delta + gamma * lam * nonterm * last
        adv[s] = last
    return adv


class PPOLoss(NamedTuple):
    loss: torch.Tensor
    pg_loss: torch.Tensor
    v_loss: torch.Tensor
    entropy: torch.Tensor  # mean over the minibatch
    approx_kl: torch.Tensor
    clip_frac: torch.Tensor


def ppo_loss(newlogp: torch.Tensor, entropy: torch.Tensor, newv: torch.Tensor, old_logp: torch.Tensor,
             adv: torch.Tensor, ret: torch.Tensor, old_val: torch.Tensor, cfg: PPOLossSettings) -> PPOLoss:
    """Clipped surrogate + (optionally clipped) value loss - entropy bonus on one minibatch, with per-minibatch
    advantage normalisation (``cfg.norm_adv``); ``approx_kl`` and ``clip_frac`` are diagnostics (no grad)."""
    logratio = newlogp - old_logp
    ratio = logratio.exp()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - logratio).mean()
        clip_frac = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
    if cfg.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)).mean()
    if cfg.clip_vloss:
        v_clipped = old_val + torch.clamp(newv - old_val, -cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * torch.max((newv - ret) ** 2, (v_clipped - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((newv - ret) ** 2).mean()
    ent = entropy.mean()
    return PPOLoss(pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss, pg_loss, v_loss, ent, approx_kl, clip_frac)


def train_ppo(
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    env_config: EnvConfig | None = None,
    config: PPOConfig | None = None,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    validation: tuple[int, int] | None = None,
) -> TrainResult:
    """Train a PPO allocation policy on panel rows ``[start_idx, end_idx]`` (the fold's training window:
    decisions at rows ``start_idx .. end_idx-1`` earn ``returns[start_idx+1 .. end_idx]``, see
    :meth:`MarketPanel.index_range`). Nothing outside the window is seen (rollouts, normaliser).

    ``validation``: panel rows ``(lo, hi)`` of the validation slice (after ``end_idx``): every
    ``eval_every`` iterations (and after the last) the deterministic policy is evaluated there and the
    best checkpoint by validation Sharpe is returned (:class:`~ml.agents.rollout.ValidationSelector`);
    the rows gain ``val_sharpe``. None: the last checkpoint.

    ``on_iteration`` receives one dict per iteration: ``iteration``, ``env_steps``, ``env_steps_per_s``,
    ``mean_reward`` (raw env reward per step), ``mean_net`` (daily net return), ``episodes``,
    ``mean_episode_return`` (equity - 1 of finished episodes, NaN if none), ``entropy``, ``approx_kl``,
    ``clip_frac``, ``value_loss``, ``policy_loss``, ``explained_variance``, ``learning_rate``,
    ``action_std``, ``rollout_s``, ``update_s`` (seconds in this iteration), ``wall_s`` (since start).
    The same dicts form ``TrainResult.curve``.
    """
    env_cfg = env_config or EnvConfig()
    cfg = config or PPOConfig()
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    with Determinism(cfg, device):
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        env = BatchedPortfolioEnv(
            panel, env_cfg, start_idx, end_idx, num_envs=cfg.num_envs, device=device,
            seed=cfg.seed + 1, return_final_obs=cfg.bootstrap_truncated,
        )
        dates = panel.dates
        policy = PPOPolicy(
            env.obs_dim, env.n_assets + 1, cfg.hidden_sizes, cfg.init_log_std, cfg.obs_clip,
            shared_body=cfg.shared_body, env_config=env_cfg, ppo_config=cfg, obs_names=env_cfg.obs_names(panel),
            assets=panel.assets,
            data_hash=panel.data_hash(start_idx, end_idx),
            train_window=(str(dates[start_idx + 1]), str(dates[end_idx])),
        ).to(device)
        if cfg.normalize_obs:
            init_obs_stats(policy.obs_rms, env, start_idx, end_idx)
        else:
            policy.obs_rms.clip = float("inf")
        optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + 2)
        selector = ValidationSelector(panel, validation, device)
        curve = _train_loop(policy, env, optimizer, gen, cfg, on_iteration, t_start, selector)
        selector.restore(policy)
    policy = policy.cpu().eval()
    return TrainResult(
        policy=policy, curve=curve, env_steps=cfg.num_iterations * cfg.batch_size,
        wall_s=time.perf_counter() - t_start, data_hash=policy.data_hash, train_window=(start_idx, end_idx),
        selection=selector.summary(),
    )


def _train_loop(
    policy: PPOPolicy,
    env: BatchedPortfolioEnv,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    cfg: PPOConfig,
    on_iteration: Callable[[dict[str, float]], None] | None,
    t_start: float,
    selector: ValidationSelector,
) -> list[dict[str, float]]:
    S, E, D, K = cfg.num_steps, cfg.num_envs, env.obs_dim, env.n_assets + 1
    dev, f32 = env.device, torch.float32
    on_cpu = dev.type == "cpu"
    # preallocated rollout storage (normal tensors, written in place under inference_mode)
    obs_buf = torch.zeros(S, E, D, device=dev, dtype=f32)  # raw observations
    act_buf = torch.zeros(S, K, E, device=dev, dtype=f32)  # sampled logits, assets-first
    logp_buf = torch.zeros(S, E, device=dev, dtype=f32)
    rew_buf = torch.zeros(S, E, device=dev, dtype=f32)  # raw env rewards
    net_buf = torch.zeros(S, E, device=dev, dtype=f32)
    done_buf = torch.zeros(S, E, device=dev, dtype=f32)  # episode ended at this step (term or trunc)
    boot_buf = torch.zeros(S, E, device=dev, dtype=f32)  # V(final obs) where truncated, else 0
    val_buf = torch.zeros(S, E, device=dev, dtype=f32)
    ret_rms = RunningMeanStd(1).to(dev)
    ret_acc = torch.zeros(E, device=dev, dtype=torch.float64)  # discounted return for reward scaling
    ep_sum = torch.zeros((), device=dev, dtype=torch.float64)
    ep_cnt = torch.zeros((), device=dev, dtype=torch.float64)

    with torch.inference_mode():
        obs = env.reset().to(f32)
    curve: list[dict[str, float]] = []
    n_iter = cfg.num_iterations
    mb_size = cfg.batch_size // cfg.num_minibatches
    for it in range(1, n_iter + 1):
        t_it = time.perf_counter()
        lr = cfg.learning_rate * (1.0 - (it - 1.0) / n_iter) if cfg.anneal_lr else cfg.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        boot_buf.zero_()
        ep_sum.zero_()
        ep_cnt.zero_()
        # ---------------- rollout ----------------
        if on_cpu and cfg.rollout_threads is not None:
            torch.set_num_threads(cfg.rollout_threads)
        with torch.inference_mode():
            std = torch.exp(policy.log_std)[:, None]
            const = policy.log_std.sum() + K * _LOG_SQRT_2PI
            norm = policy.obs_rms.frozen(f32)  # normaliser constants for this iteration
            for s in range(S):
                obs_buf[s] = obs
                obs_n = norm(obs)
                mean_t = policy._actor_mean_t(obs_n)  # [K, E]
                val_buf[s] = policy.critic(obs_n).squeeze(-1)
                noise = torch.randn(K, E, generator=gen, device=dev, dtype=f32)
                action_t = mean_t + std * noise
                act_buf[s] = action_t
                logp_buf[s] = (-0.5 * noise * noise).sum(0) - const
                obs, reward, term, trunc, info = env.step_t(action_t)
                obs = obs.to(f32)
                rew_buf[s] = reward
                net_buf[s] = info["net"]
                done = term | trunc
                done_buf[s] = done
                if cfg.bootstrap_truncated:
                    if on_cpu:  # truncations are rare (1 per episode): evaluate only those rows
                        rows = trunc.nonzero().squeeze(-1)
                        if rows.numel():
                            boot_buf[s].index_put_(
                                (rows,), policy.critic(norm(info["final_obs"][rows].to(f32))).squeeze(-1)
                            )
                    else:  # no host sync on accelerators: evaluate every row, mask
                        boot_buf[s] = policy.critic(norm(info["final_obs"].to(f32))).squeeze(-1) * trunc
                ep_sum += (info["equity"] - 1.0).mul(done).sum()
                ep_cnt += done.sum()
            next_value = policy.critic(norm(obs)).squeeze(-1)
            scale, ret_acc = reward_scale(rew_buf, done_buf, ret_acc, ret_rms, cfg.gamma, cfg.normalize_rewards)
            rewards = rew_buf * scale + cfg.gamma * boot_buf
            adv = gae(rewards, val_buf, next_value, done_buf, cfg.gamma, cfg.gae_lambda)
            returns = adv + val_buf
        t_roll = time.perf_counter() - t_it
        # ---------------- update ----------------
        if on_cpu and cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        b_obs_raw = obs_buf.reshape(-1, D)
        b_obs = norm(b_obs_raw).detach()
        b_act = act_buf.permute(0, 2, 1).reshape(-1, K).clone()
        b_logp = logp_buf.reshape(-1).clone()
        b_adv = adv.reshape(-1).clone()
        b_ret = returns.reshape(-1).clone()
        b_val = val_buf.reshape(-1).clone()
        clipfracs: list[torch.Tensor] = []
        stop = False
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(cfg.batch_size, generator=gen, device=dev)
            for start in range(0, cfg.batch_size, mb_size):
                mb = perm[start : start + mb_size]
                newlogp, entropy = policy.log_prob(b_obs[mb], b_act[mb])
                newv = policy.critic(b_obs[mb]).squeeze(-1)
                out = ppo_loss(newlogp, entropy, newv, b_logp[mb], b_adv[mb], b_ret[mb], b_val[mb], cfg)
                clipfracs.append(out.clip_frac)
                approx_kl, pg_loss, v_loss, ent, loss = out.approx_kl, out.pg_loss, out.v_loss, out.entropy, out.loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                optimizer.step()
            if cfg.target_kl is not None and float(approx_kl) > cfg.target_kl:
                stop = True
            if stop:
                break
        # normaliser: fold this rollout's observations in (train window only), after the update
        if cfg.normalize_obs:
            policy.obs_rms.update(b_obs_raw)
        # ---------------- logging (one host sync per iteration) ----------------
        with torch.no_grad():
            var_y = b_ret.var()
            ev = float("nan") if float(var_y) == 0.0 else float(1.0 - (b_ret - b_val).var() / var_y)
            n_ep = float(ep_cnt)
            row = {
                "iteration": float(it),
                "env_steps": float(it * cfg.batch_size),
                "env_steps_per_s": cfg.batch_size / max(time.perf_counter() - t_it, 1e-9),
                "mean_reward": float(rew_buf.mean()),
                "mean_net": float(net_buf.mean()),
                "episodes": n_ep,
                "mean_episode_return": float(ep_sum) / n_ep if n_ep else float("nan"),
                "entropy": float(ent),
                "approx_kl": float(approx_kl),
                "clip_frac": float(torch.stack(clipfracs).mean()),
                "value_loss": float(v_loss),
                "policy_loss": float(pg_loss),
                "explained_variance": ev,
                "learning_rate": lr,
                "action_std": float(policy.log_std.exp().mean()),
                "rollout_s": t_roll,
                "update_s": time.perf_counter() - t_it - t_roll,
                "wall_s": time.perf_counter() - t_start,
            }
        if selector.enabled:
            due = it % cfg.eval_every == 0 or it == n_iter
            row["val_sharpe"] = selector(policy, it * cfg.batch_size)["val_sharpe"] if due else float("nan")
        curve.append(row)
        if on_iteration is not None:
            on_iteration(row)
    return curve
