"""Shared parts of the off-policy learners (:mod:`ml.agents.sac`, :mod:`ml.agents.td3`): their config, the
deployable actor, the twin-Q critic and a replay buffer that lives on the training device.

Actions (as PPO): ``A + 1`` logits whose softmax are the target weights (cash last). The off-policy actors
output a bounded action ``a = tanh(u)`` in ``(-1, 1)^(A+1)`` (what the critics see and the buffer stores);
the environment receives the logits ``logit_scale * a``. With the default scale 3 a single sleeve can
reach ``e^6 / (e^6 + 4 e^-6)`` ~ 99.99 % of the book, so the bound does not restrict the allocation.

Timing: as every allocation policy - observation at the close of t (data <= close t), the weights earn t+1.
Rewards are the environment's (``EnvConfig.reward``) times ``reward_scale`` (100: daily returns in percent,
so the critics regress O(1) targets); the normaliser is fitted on the training window's feature rows once
(:func:`~ml.agents.common.init_obs_stats`) and frozen, so the buffer stores normalised observations.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ml.agents.common import Determinism, RunningMeanStd, TrainResult, init_obs_stats, layer, mlp, resolve_device
from ml.agents.rollout import ValidationSelector
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig

__all__ = ["ActorPolicy", "OffPolicyConfig", "QNetwork", "ReplayBuffer", "soft_update", "train_off_policy"]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's bounds of the SAC actor's log-std
_LOG_SQRT_2PI = 0.9189385332046727


class OffPolicyConfig(BaseModel):
    """Hyper-parameters common to SAC and TD3 (CleanRL names). Defaults are sized for one fold on 2 CPU
    cores: 32 envs x 5,000 vector steps = 160k transitions, one gradient step (batch 256) per vector step
    after ``learning_starts`` transitions of uniform random actions, i.e. ~4,800 gradient steps and every
    transition replayed ~8 times (~35 s for SAC, ~22 s for TD3 per fold on an idle 2-core CPU; the main job
    with all three learners and the ensemble then takes ~28 minutes). ``gamma`` 0.9 (not 0.99): the action affects the future only through the
    weights held (next-day costs), so a long horizon adds the noise of 100 future daily returns to every
    Q target and no signal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_steps: int = Field(default=160_000, ge=1, description="environment steps (transitions) in total")
    num_envs: int = Field(default=32, ge=1)
    buffer_size: int = Field(default=200_000, ge=1, description="replay capacity (transitions)")
    batch_size: int = Field(default=256, ge=1)
    learning_starts: int = Field(default=5_000, ge=0, description="transitions of uniform random actions first "
                                 "(at most a quarter of total_steps)")
    updates_per_step: int = Field(default=1, ge=1, description="gradient steps per vector step")
    gamma: float = Field(default=0.9, ge=0.0, le=1.0)
    tau: float = Field(default=0.005, gt=0.0, le=1.0, description="Polyak rate of the target networks")
    policy_lr: float = Field(default=3e-4, gt=0.0)
    q_lr: float = Field(default=1e-3, gt=0.0)
    policy_frequency: int = Field(default=2, ge=1, description="gradient steps per (delayed) actor update")
    hidden_sizes: tuple[int, ...] = (128, 128)
    logit_scale: float = Field(default=3.0, gt=0.0, description="logits = logit_scale * tanh(actor output)")
    reward_scale: float = Field(default=100.0, gt=0.0, description="rewards x this (100: percent units)")
    obs_clip: float = Field(default=10.0, gt=0.0)
    eval_every: int = Field(default=20_000, ge=1, description="env steps between validation evaluations")
    log_every: int = Field(default=8_000, ge=1, description="env steps between training-curve rows")
    seed: int = 0
    device: str = Field(default="auto", description='"auto" (CUDA when available, else CPU), "cpu", "cuda"...')
    num_threads: int | None = Field(default=2, ge=1, description="torch CPU threads (None = torch's default)")
    deterministic: bool = True

    @property
    def vector_steps(self) -> int:
        return max(1, self.total_steps // self.num_envs)


class ActorPolicy(nn.Module):
    """The deployable part of an off-policy learner: observation normaliser + actor MLP (ReLU).

    ``stochastic`` (SAC): a second head gives the log-std of a tanh-squashed Gaussian; the deterministic
    action is ``tanh(mean)`` (as TD3's). Metadata as :class:`~ml.agents.ppo.PPOPolicy` plus ``kind``
    (``"sac"``/``"td3"``) and ``agent_config`` (the learner's config)."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: tuple[int, ...] = (128, 128),
        logit_scale: float = 3.0,
        obs_clip: float = 10.0,
        *,
        stochastic: bool,
        kind: str,
        agent_config: OffPolicyConfig | None = None,
        env_config: EnvConfig | None = None,
        obs_names: list[str] | None = None,
        assets: tuple[str, ...] = (),
        data_hash: str = "",
        train_window: tuple[str, str] = ("", ""),
    ):
        super().__init__()
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.logit_scale, self.stochastic, self.kind = float(logit_scale), bool(stochastic), str(kind)
        self.obs_rms = RunningMeanStd(obs_dim, clip=obs_clip)
        body = mlp(obs_dim, self.hidden_sizes, 1, 1.0, activation=nn.ReLU)
        self.body = nn.Sequential(*list(body)[:-1])
        width = self.hidden_sizes[-1] if self.hidden_sizes else obs_dim
        self.mu = layer(width, n_actions, 0.01)
        self.log_std = layer(width, n_actions, 0.01) if self.stochastic else None
        self.agent_config = agent_config or OffPolicyConfig()
        self.env_config = env_config or EnvConfig()
        self.obs_names = list(obs_names or [])
        self.assets = tuple(assets)
        self.data_hash = data_hash
        self.train_window = tuple(train_window)

    @property
    def seed(self) -> int:
        return self.agent_config.seed

    @property
    def dtype(self) -> torch.dtype:
        return self.mu.weight.dtype

    # -- acting (raw observations) ----------------------------------------------------------------------
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs.to(self.dtype))

    def action(self, obs_n: torch.Tensor) -> torch.Tensor:
        """Deterministic bounded action ``tanh(mean)`` ``[..., A+1]`` for normalised observations."""
        return torch.tanh(self.mu(self.body(obs_n)))

    def mean_logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic logits ``[..., A+1]`` for raw observations."""
        return self.logit_scale * self.action(self.normalize(obs))

    def act_t(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic logits assets-first ``[A+1, E]`` for raw observations ``[E, D]``."""
        return self.mean_logits(obs).t()

    @torch.no_grad()
    def weights(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mean_logits(obs), dim=-1)

    # -- SAC ------------------------------------------------------------------------------------------
    def sample(self, obs_n: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample ``(a = tanh(x) [N, A+1], log pi(a|s) [N])``, ``x ~ N(mean, std)``."""
        h = self.body(obs_n)
        mean = self.mu(h)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(self.log_std(h)) + 1.0)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        y = torch.tanh(mean + log_std.exp() * eps)
        logp = (-0.5 * eps * eps - log_std - _LOG_SQRT_2PI).sum(-1) - torch.log1p(-y * y + 1e-6).sum(-1)
        return y, logp

    def architecture(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "hidden_sizes": list(self.hidden_sizes),
                "obs_clip": self.obs_rms.clip, "logit_scale": self.logit_scale, "stochastic": self.stochastic}


class QNetwork(nn.Module):
    """``Q(s, a)``: MLP (ReLU) over the normalised observation and the bounded action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim + n_actions, tuple(hidden_sizes), 1, 1.0, activation=nn.ReLU)

    def forward(self, obs_n: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs_n, action], dim=-1)).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source``."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, tau)


class ReplayBuffer:
    """Ring buffer of transitions as preallocated tensors on the training device (no host copies):
    normalised observation, bounded action, scaled reward, normalised next observation (the final one
    for truncated episodes) and the termination flag. ``add`` writes the ``E`` rows of one vector step;
    ``sample`` draws uniformly with the caller's generator."""

    def __init__(self, capacity: int, obs_dim: int, n_actions: int, num_envs: int, device: torch.device):
        self.capacity, self.device = int(capacity), device
        f32 = torch.float32
        self.obs = torch.zeros(capacity, obs_dim, dtype=f32, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, dtype=f32, device=device)
        self.actions = torch.zeros(capacity, n_actions, dtype=f32, device=device)
        self.rewards = torch.zeros(capacity, dtype=f32, device=device)
        self.terminated = torch.zeros(capacity, dtype=f32, device=device)
        self._rows = torch.arange(num_envs, device=device)
        self.pos = self.size = 0

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor) -> None:
        idx = torch.remainder(self._rows + self.pos, self.capacity)
        self.obs.index_copy_(0, idx, obs)
        self.next_obs.index_copy_(0, idx, next_obs)
        self.actions.index_copy_(0, idx, actions)
        self.rewards.index_copy_(0, idx, rewards)
        self.terminated.index_copy_(0, idx, terminated)
        n = self._rows.numel()
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``(obs, actions, rewards, next_obs, terminated)`` of ``batch_size`` uniform draws."""
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return (self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx])


def train_off_policy(
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    env_config: EnvConfig,
    cfg: OffPolicyConfig,
    make_learner: Callable[[ActorPolicy, torch.Generator], Any],
    *,
    kind: str,
    stochastic: bool,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    validation: tuple[int, int] | None = None,
) -> TrainResult:
    """The loop SAC and TD3 share: ``num_envs`` batched environments on panel rows ``[start_idx, end_idx]``
    step together; each vector step adds ``num_envs`` transitions to the device replay buffer and, after
    ``learning_starts`` transitions of uniform random actions, runs ``updates_per_step`` gradient steps.

    ``make_learner(actor, generator)`` builds the algorithm: an object with ``explore(obs_n) -> a`` (the
    behaviour action in (-1, 1)) and ``update(batch, grad_step) -> {name: tensor}`` (losses for the log).
    Every ``eval_every`` env steps the deterministic actor is evaluated on ``validation`` and the best
    checkpoint (validation Sharpe) is returned (:class:`~ml.agents.rollout.ValidationSelector`).
    Reproducible bit for bit on CPU (one ``torch.Generator`` for starts, exploration, noise and sampling)."""
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    with Determinism(cfg, device):
        torch.manual_seed(cfg.seed)
        env = BatchedPortfolioEnv(panel, env_config, start_idx, end_idx, num_envs=cfg.num_envs, device=device,
                                  seed=cfg.seed + 1, return_final_obs=True)
        dates = panel.dates
        actor = ActorPolicy(
            env.obs_dim, env.n_assets + 1, cfg.hidden_sizes, cfg.logit_scale, cfg.obs_clip, stochastic=stochastic,
            kind=kind, agent_config=cfg, env_config=env_config, obs_names=env_config.obs_names(panel),
            assets=panel.assets, data_hash=panel.data_hash(start_idx, end_idx),
            train_window=(str(dates[start_idx + 1]), str(dates[end_idx])),
        ).to(device)
        init_obs_stats(actor.obs_rms, env, start_idx, end_idx)
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + 2)
        learner = make_learner(actor, gen)
        selector = ValidationSelector(panel, validation, device)
        curve = _loop(env, actor, learner, gen, cfg, selector, on_iteration, t_start)
        selector.restore(actor)
    actor = actor.cpu().eval()
    return TrainResult(policy=actor, curve=curve, env_steps=cfg.vector_steps * cfg.num_envs,
                       wall_s=time.perf_counter() - t_start, data_hash=actor.data_hash,
                       train_window=(start_idx, end_idx), selection=selector.summary())


def _loop(env: BatchedPortfolioEnv, actor: ActorPolicy, learner: Any, gen: torch.Generator, cfg: OffPolicyConfig,
          selector: ValidationSelector, on_iteration: Callable[[dict[str, float]], None] | None,
          t_start: float) -> list[dict[str, float]]:
    E, K, dev, f32 = cfg.num_envs, env.n_assets + 1, env.device, torch.float32
    buffer = ReplayBuffer(cfg.buffer_size, env.obs_dim, K, E, dev)
    norm = actor.obs_rms.frozen(f32)
    warmup = min(cfg.learning_starts, cfg.total_steps // 4) // E  # random actions: at most a quarter
    log_every, eval_every = max(1, cfg.log_every // E), max(1, cfg.eval_every // E)
    obs = norm(env.reset().to(f32))
    rew_sum = torch.zeros((), dtype=torch.float64, device=dev)
    net_sum = torch.zeros((), dtype=torch.float64, device=dev)
    n_rows, grad_steps, losses, curve = 0, 0, {}, []
    t_log, steps_log, grads_log = time.perf_counter(), 0, 0
    for step in range(1, cfg.vector_steps + 1):
        with torch.no_grad():
            if step <= warmup:
                a = torch.rand(E, K, generator=gen, device=dev, dtype=f32) * 2.0 - 1.0
            else:
                a = learner.explore(obs)
            next_raw, reward, term, trunc, info = env.step(cfg.logit_scale * a)
            next_obs = norm(next_raw.to(f32))
            real_next = torch.where(trunc[:, None], norm(info["final_obs"].to(f32)), next_obs)
            buffer.add(obs, a, reward.to(f32) * cfg.reward_scale, real_next, term.to(f32))
            rew_sum += reward.sum()
            net_sum += info["net"].sum()
            n_rows += E
        obs = next_obs
        if step > warmup:
            for _ in range(cfg.updates_per_step):
                grad_steps += 1
                losses |= learner.update(buffer.sample(cfg.batch_size, gen), grad_steps)  # keeps the last actor loss
        last = step == cfg.vector_steps
        eval_due = selector.enabled and step > warmup and (step % eval_every == 0 or last)
        row = None
        if step % log_every == 0 or last or eval_due:  # every evaluation gets its curve row
            now = time.perf_counter()
            row = {"iteration": float(step), "env_steps": float(step * E), "grad_steps": float(grad_steps),
                   "env_steps_per_s": (step * E - steps_log) / max(now - t_log, 1e-9),
                   "grad_steps_per_s": (grad_steps - grads_log) / max(now - t_log, 1e-9),
                   "mean_reward": float(rew_sum) / max(n_rows, 1), "mean_net": float(net_sum) / max(n_rows, 1),
                   **{k: float(v) for k, v in losses.items()}, "wall_s": now - t_start}
            t_log, steps_log, grads_log = now, step * E, grad_steps
            rew_sum.zero_()
            net_sum.zero_()
            n_rows = 0
        if row is not None:
            row["val_sharpe"] = selector(actor, step * E)["val_sharpe"] if eval_due else float("nan")
            curve.append(row)
            if on_iteration is not None:
                on_iteration(row)
    return curve
