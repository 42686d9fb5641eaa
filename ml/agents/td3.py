"""TD3 for the daily allocation environment - CleanRL-style (``td3_continuous_action.py``), one readable file.

Algorithm (Fujimoto et al. 2018):

* deterministic actor ``a = tanh(mu(s))`` in ``(-1, 1)^(A+1)`` (:class:`~ml.agents.offpolicy.ActorPolicy`,
  ``stochastic=False``); the environment receives the logits ``logit_scale * a``; exploration adds
  ``N(0, exploration_noise)`` and clips to ``[-1, 1]``;
* twin Q networks (clipped double-Q: the target uses ``min(Q1', Q2')``) with **target policy smoothing**:
  ``a' = clip(mu'(s') + clip(N(0, policy_noise), -noise_clip, noise_clip), -1, 1)``;
* **delayed policy updates**: the actor (loss ``-Q1(s, mu(s))``) and every target network are updated once
  per ``policy_frequency`` critic steps (Polyak rate ``tau``).

Replay, batching, the validation-based checkpoint selection and the training curve are the off-policy loop's
(:func:`~ml.agents.offpolicy.train_off_policy`). Reproducible bit for bit on CPU with the same seed, data
and thread count.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from pydantic import Field
from torch.nn import functional as F

from ml.agents.common import TrainResult
from ml.agents.offpolicy import ActorPolicy, OffPolicyConfig, QNetwork, soft_update, train_off_policy
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import EnvConfig

__all__ = ["TD3Config", "train_td3"]


class TD3Config(OffPolicyConfig):
    """TD3 hyper-parameters (CleanRL names) on top of :class:`~ml.agents.offpolicy.OffPolicyConfig`."""

    exploration_noise: float = Field(default=0.1, ge=0.0, description="behaviour noise std (action units)")
    policy_noise: float = Field(default=0.2, ge=0.0, description="target policy smoothing noise std")
    noise_clip: float = Field(default=0.5, ge=0.0, description="clip of the smoothing noise")


class TD3Learner:
    """Networks, optimisers and one gradient step of TD3 (the loop calls ``explore`` and ``update``)."""

    def __init__(self, actor: ActorPolicy, cfg: TD3Config, generator: torch.Generator):
        self.actor, self.cfg, self.gen = actor, cfg, generator
        D, K, dev = actor.obs_dim, actor.n_actions, actor.mu.weight.device
        self.actor_target = copy.deepcopy(actor)
        self.qf1, self.qf2 = QNetwork(D, K, cfg.hidden_sizes).to(dev), QNetwork(D, K, cfg.hidden_sizes).to(dev)
        self.qf1_target, self.qf2_target = copy.deepcopy(self.qf1), copy.deepcopy(self.qf2)
        self.q_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.q_lr, fused=True)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.policy_lr, fused=True)

    def _noise(self, like: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.gen, device=like.device, dtype=like.dtype) * std

    def explore(self, obs_n: torch.Tensor) -> torch.Tensor:
        a = self.actor.action(obs_n)
        return (a + self._noise(a, self.cfg.exploration_noise)).clamp(-1.0, 1.0)

    def update(self, batch: tuple[torch.Tensor, ...], grad_step: int) -> dict[str, torch.Tensor]:
        obs, actions, rewards, next_obs, terminated = batch
        cfg = self.cfg
        with torch.no_grad():
            a_next = self.actor_target.action(next_obs)
            smoothing = self._noise(a_next, cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            a_next = (a_next + smoothing).clamp(-1.0, 1.0)
            q_next = torch.min(self.qf1_target(next_obs, a_next), self.qf2_target(next_obs, a_next))
            target = rewards + (1.0 - terminated) * cfg.gamma * q_next
        q1, q2 = self.qf1(obs, actions), self.qf2(obs, actions)
        qf_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        out = {"qf_loss": qf_loss.detach(), "q_mean": q1.detach().mean()}
        if grad_step % cfg.policy_frequency == 0:
            actor_loss = -self.qf1(obs, self.actor.action(obs)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.qf1_target, self.qf1, cfg.tau)
            soft_update(self.qf2_target, self.qf2, cfg.tau)
            out["actor_loss"] = actor_loss.detach()
        return out


def train_td3(
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    env_config: EnvConfig | None = None,
    config: TD3Config | None = None,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    validation: tuple[int, int] | None = None,
) -> TrainResult:
    """Train TD3 on panel rows ``[start_idx, end_idx]`` (decisions at ``start_idx .. end_idx-1``); with
    ``validation`` rows the best checkpoint by validation Sharpe is returned. Curve rows as
    :func:`~ml.agents.sac.train_sac` (without ``alpha`` / ``entropy``)."""
    cfg = config or TD3Config()
    return train_off_policy(panel, start_idx, end_idx, env_config or EnvConfig(), cfg,
                            lambda actor, gen: TD3Learner(actor, cfg, gen), kind="td3", stochastic=False,
                            on_iteration=on_iteration, validation=validation)
