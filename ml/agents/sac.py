"""SAC for the daily allocation environment - CleanRL-style (``sac_continuous_action.py``), one readable file.

Algorithm (Haarnoja et al. 2018, with automatic entropy tuning):

* actor: tanh-squashed diagonal Gaussian over ``a in (-1, 1)^(A+1)`` (:class:`~ml.agents.offpolicy.ActorPolicy`,
  ``stochastic=True``); the environment receives the logits ``logit_scale * a``, the weights are their softmax;
* twin Q networks and their Polyak-averaged targets; the soft Bellman target
  ``r + gamma * (1 - terminated) * (min(Q1', Q2')(s', a') - alpha * log pi(a'|s'))`` with ``a' ~ pi(.|s')``;
* actor loss ``E[alpha * log pi(a|s) - min(Q1, Q2)(s, a)]``, updated every ``policy_frequency`` gradient steps
  (``policy_frequency`` times, as CleanRL's delayed update);
* temperature: ``log alpha`` learned so the policy's entropy tracks ``target_entropy = -target_entropy_scale *
  (A+1)`` (the reference uses scale 0.5), or a fixed ``alpha``.

Replay, batching, the validation-based checkpoint selection and the training curve are the off-policy loop's
(:func:`~ml.agents.offpolicy.train_off_policy`). Deterministic action (evaluation, decisions): ``tanh(mean)``.
Reproducible bit for bit on CPU with the same seed, data and thread count.
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

__all__ = ["SACConfig", "train_sac"]


class SACConfig(OffPolicyConfig):
    """SAC hyper-parameters (CleanRL names) on top of :class:`~ml.agents.offpolicy.OffPolicyConfig`."""

    autotune: bool = Field(default=True, description="learn the temperature alpha")
    alpha: float = Field(default=0.2, gt=0.0, description="initial (autotune) or fixed temperature")
    target_entropy_scale: float = Field(default=0.5, gt=0.0, description="target entropy = -scale x action dim")


class SACLearner:
    """Networks, optimisers and one gradient step of SAC (the loop calls ``explore`` and ``update``)."""

    def __init__(self, actor: ActorPolicy, cfg: SACConfig, generator: torch.Generator):
        self.actor, self.cfg, self.gen = actor, cfg, generator
        D, K, dev = actor.obs_dim, actor.n_actions, actor.mu.weight.device
        self.qf1, self.qf2 = QNetwork(D, K, cfg.hidden_sizes).to(dev), QNetwork(D, K, cfg.hidden_sizes).to(dev)
        self.qf1_target, self.qf2_target = copy.deepcopy(self.qf1), copy.deepcopy(self.qf2)
        self.q_optimizer = torch.optim.Adam([*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.q_lr, fused=True)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.policy_lr, fused=True)
        self.target_entropy = -cfg.target_entropy_scale * K
        self.log_alpha = torch.full((1,), float(torch.log(torch.tensor(cfg.alpha))), device=dev,
                                    requires_grad=cfg.autotune)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.q_lr, fused=True) if cfg.autotune else None

    def explore(self, obs_n: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs_n, self.gen)[0]

    def update(self, batch: tuple[torch.Tensor, ...], grad_step: int) -> dict[str, torch.Tensor]:
        obs, actions, rewards, next_obs, terminated = batch
        cfg = self.cfg
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs, self.gen)
            q_next = torch.min(self.qf1_target(next_obs, next_a), self.qf2_target(next_obs, next_a))
            target = rewards + (1.0 - terminated) * cfg.gamma * (q_next - alpha * next_logp)
        q1, q2 = self.qf1(obs, actions), self.qf2(obs, actions)
        qf_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        out = {"qf_loss": qf_loss.detach(), "q_mean": q1.detach().mean(), "alpha": alpha[0]}
        if grad_step % cfg.policy_frequency == 0:
            for _ in range(cfg.policy_frequency):
                pi, logp = self.actor.sample(obs, self.gen)
                actor_loss = (alpha * logp - torch.min(self.qf1(obs, pi), self.qf2(obs, pi))).mean()
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_optimizer.step()
                if self.alpha_optimizer is not None:
                    alpha_loss = (-self.log_alpha.exp() * (logp.detach() + self.target_entropy)).mean()
                    self.alpha_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.alpha_optimizer.step()
                    alpha = self.log_alpha.detach().exp()
            out |= {"actor_loss": actor_loss.detach(), "entropy": -logp.detach().mean()}
        soft_update(self.qf1_target, self.qf1, cfg.tau)
        soft_update(self.qf2_target, self.qf2, cfg.tau)
        return out


def train_sac(
    panel: MarketPanel,
    start_idx: int,
    end_idx: int,
    env_config: EnvConfig | None = None,
    config: SACConfig | None = None,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    validation: tuple[int, int] | None = None,
) -> TrainResult:
    """Train SAC on panel rows ``[start_idx, end_idx]`` (decisions at ``start_idx .. end_idx-1``); with
    ``validation`` rows the best checkpoint by validation Sharpe is returned. Curve rows: ``env_steps``,
    ``grad_steps``, ``env_steps_per_s``, ``grad_steps_per_s``, ``mean_reward``, ``mean_net``, ``qf_loss``,
    ``q_mean``, ``alpha``, ``actor_loss``, ``entropy``, ``val_sharpe``, ``wall_s``."""
    cfg = config or SACConfig()
    return train_off_policy(panel, start_idx, end_idx, env_config or EnvConfig(), cfg,
                            lambda actor, gen: SACLearner(actor, cfg, gen), kind="sac", stochastic=True,
                            on_iteration=on_iteration, validation=validation)
