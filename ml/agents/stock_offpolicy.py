"""SAC and TD3 for the stock environment - CleanRL-style (``sac_continuous_action.py``,
``td3_continuous_action.py``), one readable file with the loop they share.

* actor: the permutation-equivariant :class:`~ml.agents.stock_policy.StockActor` - SAC: a tanh-squashed
  Gaussian per stock (mean and log-std heads), TD3: ``tanh(mean)`` plus ``N(0, exploration_noise)``; the
  env maps ``a in [-1, 1]^S`` to BUY / SELL / HOLD (:func:`~ml.envs.stock_env.action_targets`);
* twin critics :class:`~ml.agents.stock_policy.StockQ` ``Q(s, a)`` (per-stock encoder over ``[x_i, a_i]``,
  masked pooling over the candidates, MLP with ``g``) and Polyak-averaged targets (rate ``tau``);
* SAC (Haarnoja et al. 2018): soft target ``r + gamma (1 - term) (min Q'(s', a') - alpha log pi(a'|s'))``,
  actor loss ``E[alpha log pi - min Q]`` (delayed as CleanRL: ``policy_frequency`` actor steps every
  ``policy_frequency`` critic steps), log-densities summed over the candidate slots; temperature learned
  towards the per-state target entropy ``-target_entropy_scale x (number of candidates)`` (0.5 x ~25);
* TD3 (Fujimoto et al. 2018): clipped double-Q with target-policy smoothing
  ``a' = clip(mu'(s') + clip(N(0, policy_noise), +-noise_clip), -1, 1)``, actor (``-Q1(s, mu(s))``) and every
  target network updated once per ``policy_frequency`` critic steps;
* replay buffer (:class:`StockReplayBuffer`) on the training device holding ``(t, w, a, r, t', w', term)`` -
  rows and held weights, not the ``S x Fx`` observations - rebuilt with
  :meth:`~ml.envs.stock_env.BatchedStockEnv.observe` when sampled (the observation is a pure function of
  ``(t, w)``); truncated episodes store the pre-reset ``(t', w')`` so their targets bootstrap;
* rewards are the env's (``reward_scale`` 100: daily net return in percent, O(1) critic targets);
  normalisers fitted once on the training window and frozen.

Timing: decisions at the close of t on data known then, filled at the open of t+1 (:mod:`ml.envs.stock_env`).
Reproducible bit for bit on CPU (global seed for the initialisation, one ``torch.Generator`` for exploration,
noise and sampling, the env's own for episode starts; ``Determinism`` during training).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F

from ml.agents.common import Determinism, TrainResult, resolve_device
from ml.agents.offpolicy import soft_update
from ml.agents.stock_policy import StockActor, StockQ, StockValidationSelector
from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig, StockObs, stock_data_hash
from ml.envs.stock_panel import StockPanel

__all__ = ["StockOffPolicyConfig", "StockReplayBuffer", "train_stock_sac", "train_stock_td3"]


class StockOffPolicyConfig(BaseModel):
    """SAC and TD3 hyper-parameters (CleanRL names; each learner reads its own). Defaults sized for one fold
    (~3,000 rows x 100 stocks x ~12 features) in <= ~20 s each on 2 CPU cores: 32 envs x 1,000 vector steps =
    32k transitions, uniform random actions for the first 2k, then one gradient step (batch 128) per vector
    step (~940 steps; each transition replayed ~4 times). The networks are 2 x 32 wide (a SAC step costs
    ~18 ms at 2 x 32, ~30 ms at 2 x 64 on 2 cores: per-stock layers run on ~128 x 50 candidate slots).
    ``gamma`` 0.8 as the stock PPO (a ~5-day horizon). ``exploration_noise`` 0.2 (TD3):
    with the HOLD band of +-0.15 around an initial action of ~0, a smaller noise would rarely trade.

    Caveat (synthetic 3,000 x 100 panel with a planted 1-day signal that PPO learns): at this budget SAC and TD3
    drift into buy-and-hold (TD3: ~99 of 100 names, ~2 % daily turnover). The critics' mean dQ/da is > 0 (buying
    top-N names pays on average) and saturates the tanh actor before they resolve which names pay; 2x the
    steps or ``policy_lr`` 1e-4 did not change it for TD3."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_steps: int = Field(default=32_000, ge=1, description="environment steps (transitions) in total")
    num_envs: int = Field(default=32, ge=1)
    buffer_size: int = Field(default=100_000, ge=1, description="replay capacity (transitions)")
    batch_size: int = Field(default=128, ge=1)
    learning_starts: int = Field(default=2_000, ge=0, description="transitions of uniform random actions first "
                                 "(at most a quarter of total_steps)")
    updates_per_step: int = Field(default=1, ge=1, description="gradient steps per vector step")
    gamma: float = Field(default=0.8, ge=0.0, le=1.0)
    tau: float = Field(default=0.005, gt=0.0, le=1.0, description="Polyak rate of the target networks")
    policy_lr: float = Field(default=3e-4, gt=0.0)
    q_lr: float = Field(default=1e-3, gt=0.0)
    policy_frequency: int = Field(default=2, ge=1, description="critic steps per (delayed) actor update")
    hidden_sizes: tuple[int, ...] = Field(default=(32, 32), description="per-stock encoder layers")
    head_sizes: tuple[int, ...] = Field(default=(32,), description="per-stock head / critic head layers")
    use_max: bool = Field(default=True, description="pool with masked mean and max (False: mean only)")
    obs_clip: float = Field(default=10.0, gt=0.0)
    # SAC
    autotune: bool = Field(default=True, description="SAC: learn the temperature alpha")
    alpha: float = Field(default=0.2, gt=0.0, description="SAC: initial (autotune) or fixed temperature")
    target_entropy_scale: float = Field(default=0.5, gt=0.0, description="SAC: target entropy = -scale x candidates")
    # TD3
    exploration_noise: float = Field(default=0.2, ge=0.0, description="TD3: behaviour noise std (action units)")
    policy_noise: float = Field(default=0.2, ge=0.0, description="TD3: target policy smoothing noise std")
    noise_clip: float = Field(default=0.5, ge=0.0, description="TD3: clip of the smoothing noise")
    eval_every: int = Field(default=10_000, ge=1, description="env steps between validation evaluations")
    log_every: int = Field(default=4_000, ge=1, description="env steps between training-curve rows")
    seed: int = 0
    device: str = Field(default="auto", description='"auto" (CUDA when available, else CPU), "cpu", "cuda"...')
    num_threads: int | None = Field(default=2, ge=1, description="torch CPU threads (None = torch's default)")
    deterministic: bool = True

    @property
    def vector_steps(self) -> int:
        return max(1, self.total_steps // self.num_envs)


class StockReplayBuffer:
    """Ring buffer on the training device: row ``t``, held weights ``w [S]``, action ``a [S]``, reward, next row
    ``t'``, next weights ``w' [S]`` (pre-reset for finished episodes) and the termination flag. ``sample``
    rebuilds ``(obs, a, r, next_obs, term)`` with ``observe(t, w)`` (the env's :meth:`observe`)."""

    def __init__(self, capacity: int, n_stocks: int, num_envs: int, device: torch.device, w_dtype: torch.dtype):
        self.capacity, self.device = int(capacity), device
        self.t = torch.zeros(capacity, dtype=torch.long, device=device)
        self.t_next = torch.zeros(capacity, dtype=torch.long, device=device)
        self.w = torch.zeros(capacity, n_stocks, dtype=w_dtype, device=device)
        self.w_next = torch.zeros(capacity, n_stocks, dtype=w_dtype, device=device)
        self.actions = torch.zeros(capacity, n_stocks, dtype=torch.float32, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=device)
        self._rows = torch.arange(num_envs, device=device)
        self.pos = self.size = 0

    def add(self, t: torch.Tensor, w: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
            t_next: torch.Tensor, w_next: torch.Tensor, terminated: torch.Tensor) -> None:
        idx = torch.remainder(self._rows + self.pos, self.capacity)
        for buf, val in ((self.t, t), (self.w, w), (self.actions, actions), (self.rewards, rewards),
                         (self.t_next, t_next), (self.w_next, w_next), (self.terminated, terminated)):
            buf.index_copy_(0, idx, val.to(buf.dtype))
        n = self._rows.numel()
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator,
               observe: Callable[[torch.Tensor, torch.Tensor], StockObs]) -> tuple[Any, ...]:
        """``(obs, actions, rewards, next_obs, terminated)`` of ``batch_size`` uniform draws."""
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return (observe(self.t[idx], self.w[idx]), self.actions[idx], self.rewards[idx],
                observe(self.t_next[idx], self.w_next[idx]), self.terminated[idx])


def _prepare(actor: StockActor, obs: StockObs, actions: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Normalised, compacted ``(x, g, mask[, actions])`` for the networks."""
    x, g, mask, _, extra = actor.prepare(obs, *(() if actions is None else (actions,)))
    return (x, g, mask, *extra)


class SACLearner:
    """Twin soft Q, their targets, the temperature and one gradient step of SAC."""

    def __init__(self, actor: StockActor, cfg: StockOffPolicyConfig, generator: torch.Generator):
        self.actor, self.cfg, self.gen = actor, cfg, generator
        dev = actor.x_rms.mean.device
        self.qf1, self.qf2 = (StockQ(actor.x_dim, actor.g_dim, cfg.hidden_sizes, cfg.head_sizes, cfg.use_max).to(dev)
                              for _ in range(2))
        self.qf1_target, self.qf2_target = copy.deepcopy(self.qf1), copy.deepcopy(self.qf2)
        self.q_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.q_lr)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.policy_lr)
        self.log_alpha = torch.full((1,), float(torch.log(torch.tensor(cfg.alpha))), device=dev,
                                    requires_grad=cfg.autotune)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.q_lr) if cfg.autotune else None

    def explore(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(x, g, mask, self.gen)[0]

    def update(self, batch: tuple[Any, ...], grad_step: int) -> dict[str, torch.Tensor]:
        obs, actions, rewards, next_obs, terminated = batch
        cfg, actor = self.cfg, self.actor
        x, g, m, a = _prepare(actor, obs, actions)
        nx, ng, nm = _prepare(actor, next_obs)
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_a, next_logp = actor.sample(nx, ng, nm, self.gen)
            q_next = torch.min(self.qf1_target(nx, ng, nm, next_a), self.qf2_target(nx, ng, nm, next_a))
            target = rewards + (1.0 - terminated) * cfg.gamma * (q_next - alpha * next_logp)
        q1, q2 = self.qf1(x, g, m, a), self.qf2(x, g, m, a)
        qf_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        out = {"qf_loss": qf_loss.detach(), "q_mean": q1.detach().mean(), "alpha": alpha[0]}
        if grad_step % cfg.policy_frequency == 0:
            target_entropy = -cfg.target_entropy_scale * m.to(x.dtype).sum(-1)  # per state: -scale x candidates
            for _ in range(cfg.policy_frequency):
                pi, logp = actor.sample(x, g, m, self.gen)
                actor_loss = (alpha * logp - torch.min(self.qf1(x, g, m, pi), self.qf2(x, g, m, pi))).mean()
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_optimizer.step()
                if self.alpha_optimizer is not None:
                    alpha_loss = (-self.log_alpha.exp() * (logp.detach() + target_entropy)).mean()
                    self.alpha_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.alpha_optimizer.step()
                    alpha = self.log_alpha.detach().exp()
            out |= {"actor_loss": actor_loss.detach(), "entropy": -logp.detach().mean()}
        soft_update(self.qf1_target, self.qf1, cfg.tau)
        soft_update(self.qf2_target, self.qf2, cfg.tau)
        return out


class TD3Learner:
    """Twin Q, target actor and critics, and one gradient step of TD3."""

    def __init__(self, actor: StockActor, cfg: StockOffPolicyConfig, generator: torch.Generator):
        self.actor, self.cfg, self.gen = actor, cfg, generator
        dev = actor.x_rms.mean.device
        self.actor_target = copy.deepcopy(actor)
        self.qf1, self.qf2 = (StockQ(actor.x_dim, actor.g_dim, cfg.hidden_sizes, cfg.head_sizes, cfg.use_max).to(dev)
                              for _ in range(2))
        self.qf1_target, self.qf2_target = copy.deepcopy(self.qf1), copy.deepcopy(self.qf2)
        self.q_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.q_lr)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.policy_lr)

    def _noise(self, like: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.gen, device=like.device, dtype=like.dtype) * std

    def explore(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.actor.action(x, g, mask)
        return (a + self._noise(a, self.cfg.exploration_noise)).clamp(-1.0, 1.0)

    def update(self, batch: tuple[Any, ...], grad_step: int) -> dict[str, torch.Tensor]:
        obs, actions, rewards, next_obs, terminated = batch
        cfg, actor = self.cfg, self.actor
        x, g, m, a = _prepare(actor, obs, actions)
        nx, ng, nm = _prepare(actor, next_obs)
        with torch.no_grad():
            a_next = self.actor_target.action(nx, ng, nm)
            smoothing = self._noise(a_next, cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            a_next = (a_next + smoothing).clamp(-1.0, 1.0)
            q_next = torch.min(self.qf1_target(nx, ng, nm, a_next), self.qf2_target(nx, ng, nm, a_next))
            target = rewards + (1.0 - terminated) * cfg.gamma * q_next
        q1, q2 = self.qf1(x, g, m, a), self.qf2(x, g, m, a)
        qf_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        out = {"qf_loss": qf_loss.detach(), "q_mean": q1.detach().mean()}
        if grad_step % cfg.policy_frequency == 0:
            actor_loss = -self.qf1(x, g, m, actor.action(x, g, m)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.actor_target, actor, cfg.tau)
            soft_update(self.qf1_target, self.qf1, cfg.tau)
            soft_update(self.qf2_target, self.qf2, cfg.tau)
            out["actor_loss"] = actor_loss.detach()
        return out


def train_stock_sac(panel: StockPanel, start_idx: int, end_idx: int, env_config: StockEnvConfig | None = None,
                    config: StockOffPolicyConfig | None = None, validation: tuple[int, int] | None = None,
                    on_iteration: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train SAC on panel rows ``[start_idx, end_idx]`` (as :func:`~ml.agents.stock_ppo.train_stock_ppo`).
    Curve rows: ``iteration, env_steps, grad_steps, env_steps_per_s, grad_steps_per_s, mean_reward, mean_net,
    mean_turnover, qf_loss, q_mean, alpha, actor_loss, entropy, wall_s`` (+ ``val_sharpe``)."""
    return _train(panel, start_idx, end_idx, env_config, config, validation, on_iteration, "sac")


def train_stock_td3(panel: StockPanel, start_idx: int, end_idx: int, env_config: StockEnvConfig | None = None,
                    config: StockOffPolicyConfig | None = None, validation: tuple[int, int] | None = None,
                    on_iteration: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train TD3 on panel rows ``[start_idx, end_idx]``; curve rows as :func:`train_stock_sac` without
    ``alpha`` / ``entropy``."""
    return _train(panel, start_idx, end_idx, env_config, config, validation, on_iteration, "td3")


def _train(panel: StockPanel, start_idx: int, end_idx: int, env_config: StockEnvConfig | None,
           config: StockOffPolicyConfig | None, validation: tuple[int, int] | None,
           on_iteration: Callable[[dict[str, float]], None] | None, kind: str) -> TrainResult:
    """The loop SAC and TD3 share: ``num_envs`` envs step together; each vector step adds ``num_envs``
    transitions and, after ``learning_starts`` transitions of uniform random actions, runs
    ``updates_per_step`` gradient steps. Every ``eval_every`` env steps the deterministic actor is evaluated
    on ``validation`` and the best checkpoint (validation Sharpe) is kept."""
    env_cfg = env_config or StockEnvConfig()
    cfg = config or StockOffPolicyConfig()
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    with Determinism(cfg, device):
        torch.manual_seed(cfg.seed)
        env = BatchedStockEnv(panel, env_cfg, start_idx, end_idx, num_envs=cfg.num_envs, device=device,
                              seed=cfg.seed + 1)
        dates = panel.dates
        actor = StockActor(
            env.x_dim, env.g_dim, kind, cfg.hidden_sizes, cfg.head_sizes, cfg.use_max, cfg.obs_clip,
            env_config=env_cfg, feature_names=panel.feature_names, market_names=panel.market_names,
            data_hash=stock_data_hash(panel, start_idx, end_idx),
            train_window=(str(dates[start_idx + 1]), str(dates[end_idx])), seed=cfg.seed, agent_config=cfg,
        ).to(device)
        actor.set_stats(env)
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + 2)
        learner = (SACLearner if kind == "sac" else TD3Learner)(actor, cfg, gen)
        selector = StockValidationSelector(panel, validation, device)
        curve = _loop(env, actor, learner, gen, cfg, selector, on_iteration, t_start)
        selector.restore(actor)
    actor = actor.cpu().eval()
    return TrainResult(policy=actor, curve=curve, env_steps=cfg.vector_steps * cfg.num_envs,
                       wall_s=time.perf_counter() - t_start, data_hash=actor.data_hash,
                       train_window=(start_idx, end_idx), selection=selector.summary())


def _loop(env: BatchedStockEnv, actor: StockActor, learner: Any, gen: torch.Generator, cfg: StockOffPolicyConfig,
          selector: StockValidationSelector, on_iteration: Callable[[dict[str, float]], None] | None,
          t_start: float) -> list[dict[str, float]]:
    E, S, dev, f32 = cfg.num_envs, env.n_stocks, env.device, torch.float32
    buffer = StockReplayBuffer(cfg.buffer_size, S, E, dev, env.dtype)
    warmup = min(cfg.learning_starts, cfg.total_steps // 4) // E  # random actions: at most a quarter
    log_every, eval_every = max(1, cfg.log_every // E), max(1, cfg.eval_every // E)
    obs = env.reset()
    sums = torch.zeros(3, dtype=torch.float64, device=dev)  # reward, net, turnover since the last row
    n_rows, grad_steps, losses, curve = 0, 0, {}, []
    t_log, steps_log, grads_log = time.perf_counter(), 0, 0
    for step in range(1, cfg.vector_steps + 1):
        with torch.no_grad():
            t, w = env.t, env.w
            if step <= warmup:
                action = torch.rand(E, S, generator=gen, device=dev, dtype=f32) * 2.0 - 1.0
            else:
                x_c, g, mask_c, idx, _ = actor.prepare(obs)
                a_c = learner.explore(x_c, g, mask_c) * mask_c
                action = torch.zeros(E, S, dtype=f32, device=dev).scatter(1, idx, a_c)
            obs, reward, term, _trunc, info = env.step(action)
            buffer.add(t, w, action, reward, info["final_t"], info["final_w"], term)
            sums += torch.stack([reward.sum(), info["net"].sum(), info["turnover"].sum()]).to(torch.float64)
            n_rows += E
        if step > warmup:
            for _ in range(cfg.updates_per_step):
                grad_steps += 1
                losses |= learner.update(buffer.sample(cfg.batch_size, gen, env.observe), grad_steps)
        last = step == cfg.vector_steps
        eval_due = selector.enabled and step > warmup and (step % eval_every == 0 or last)
        if step % log_every == 0 or last or eval_due:  # every evaluation gets its curve row
            now = time.perf_counter()
            mean_reward, mean_net, mean_turnover = (sums / max(n_rows, 1)).tolist()
            row = {"iteration": float(step), "env_steps": float(step * E), "grad_steps": float(grad_steps),
                   "env_steps_per_s": (step * E - steps_log) / max(now - t_log, 1e-9),
                   "grad_steps_per_s": (grad_steps - grads_log) / max(now - t_log, 1e-9),
                   "mean_reward": mean_reward, "mean_net": mean_net, "mean_turnover": mean_turnover,
                   **{k: float(v) for k, v in losses.items()}, "wall_s": now - t_start}
            t_log, steps_log, grads_log = now, step * E, grad_steps
            sums.zero_()
            n_rows = 0
            row["val_sharpe"] = selector(actor, step * E)["val_sharpe"] if eval_due else float("nan")
            curve.append(row)
            if on_iteration is not None:
                on_iteration(row)
    return curve
