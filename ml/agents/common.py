"""What every allocation learner shares: device choice, the observation normaliser, MLP builders, the
determinism context and the normaliser's train-window initialisation.

The policy protocol (PPO, SAC, TD3 and ensembles of them all satisfy it, so the evaluation, the daily
decision and the audit treat them alike):

* ``act_t(obs [E, D]) -> logits [A+1, E]`` - deterministic target-weight logits, assets-first, for *raw*
  observations (the policy normalises them itself with its frozen train-window statistics);
* ``mean_logits(obs [..., D]) -> [..., A+1]`` - the same, env-first; ``weights(obs)`` = softmax of it;
* metadata: ``env_config``, ``obs_names``, ``assets``, ``data_hash``, ``train_window`` (ISO strings),
  ``kind`` (``"ppo"``, ``"sac"``, ``"td3"``, ``"ensemble"``), ``seed``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Determinism", "RunningMeanStd", "TrainResult", "init_obs_stats", "layer", "mlp", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class RunningMeanStd(nn.Module):
    """Running mean/variance (float64 buffers, parallel-merge update); part of the policy's state_dict."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = float(clip), float(eps)
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of the rows of ``x`` ``[N, dim]``."""
        x = x.reshape(-1, self.mean.numel()).to(torch.float64)
        n = float(x.shape[0])
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        tot = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta * delta * self.count * n / tot
        self.mean.copy_(self.mean + delta * n / tot)
        self.var.copy_(m2 / tot)
        self.count.copy_(tot)

    def set_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        with torch.no_grad():
            self.mean.copy_(mean)
            self.var.copy_(var)
            self.count.fill_(float(count))

    def frozen(self, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        """The normalisation with the current statistics as constants of ``dtype`` (for hot loops)."""
        m = self.mean.to(dtype)
        s = torch.sqrt(self.var + self.eps).to(dtype)
        lo, hi = -self.clip, self.clip
        return lambda x: torch.clamp((x - m) / s, lo, hi)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` in ``x``'s dtype."""
        return self.frozen(x.dtype)(x)


def layer(n_in: int, n_out: int, std: float) -> nn.Linear:
    """Linear layer, orthogonal weights with gain ``std``, zero bias."""
    lin = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, out_std: float,
        activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """``hidden`` layers of ``activation`` (orthogonal init, gain sqrt 2) and a linear head (gain ``out_std``)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [layer(n_in, h, math.sqrt(2.0)), activation()]
        n_in = h
    layers.append(layer(n_in, n_out, out_std))
    return nn.Sequential(*layers)


class Determinism:
    """Context: seed-independent global torch settings for one training run, restored on exit.

    ``cfg`` needs ``num_threads`` (None = leave torch's default) and ``deterministic``."""

    def __init__(self, cfg: Any, device: torch.device):
        self.cfg, self.device = cfg, device

    def __enter__(self) -> None:
        self._threads = torch.get_num_threads()
        self._det = torch.are_deterministic_algorithms_enabled()
        self._det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.cfg.num_threads is not None:
            torch.set_num_threads(self.cfg.num_threads)
        if self.cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device.type != "cpu")

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._det, warn_only=self._det_warn)


def init_obs_stats(obs_rms: RunningMeanStd, env: Any, start_idx: int, end_idx: int) -> None:
    """Seed a normaliser with the train window's feature rows of a batched env (weights: the moments of
    the uniform simplex, Dirichlet(1))."""
    feat = env._feat[:, start_idx : end_idx + 1].t().to(torch.float64)  # [T, F]
    k = env.n_assets + 1
    w_mean = torch.full((k,), 1.0 / k, dtype=torch.float64, device=feat.device)
    w_var = torch.full((k,), (k - 1) / (k * k * (k + 1)), dtype=torch.float64, device=feat.device)
    mean = torch.cat([feat.mean(0), w_mean])
    var = torch.cat([feat.var(0, unbiased=False), w_var])
    obs_rms.set_stats(mean, var, float(feat.shape[0]))


@dataclass
class TrainResult:
    """What a trainer (:func:`train_ppo`, ``train_sac``, ``train_td3``) returns: the policy (on CPU, eval mode;
    the best checkpoint on the validation slice when one was given, else the last), the training curve (one
    dict per iteration / logging interval, as passed to ``on_iteration``), totals, the train-window data hash
    and the model selection's ``selection`` summary (:meth:`ValidationSelector.summary`)."""

    policy: Any
    curve: list[dict[str, float]] = field(default_factory=list)
    env_steps: int = 0
    wall_s: float = 0.0
    data_hash: str = ""
    train_window: tuple[int, int] = (0, 0)
    selection: dict[str, Any] = field(default_factory=dict)
