"""Deterministic rollouts of any allocation policy (PPO, SAC, TD3, ensembles; see :mod:`ml.agents.common`)
and model selection on a validation slice.

Timing: the policy decides at the close of panel row t on data <= close t; the weights earn row t+1 under
the policy's execution model (``ml.costs``), costs and drift exactly as in training (float64 arithmetic).
"""
from __future__ import annotations

import copy
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import torch

from ml import metrics
from ml.agents.common import resolve_device
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv

__all__ = ["EvalResult", "ValidationSelector", "check_compatible", "evaluate_policy"]


class EvalResult(NamedTuple):
    """Deterministic rollout over a window: ``weights[i]`` ``[A+1]`` (cash last) were chosen at the close of
    panel row ``start_idx + i`` and earned ``net_returns[i]`` on ``dates[i]`` (= panel row ``start_idx+i+1``)."""

    weights: np.ndarray  # [T, A+1] float64
    net_returns: np.ndarray  # [T] float64, daily net return (fraction)
    dates: np.ndarray  # [T] datetime64[D], the day each net return was earned

    def to_frame(self, assets: tuple[str, ...] | list[str]) -> pl.DataFrame:
        """Long-friendly Polars frame: ``date`` (day earned), ``w_<asset>``..., ``w_cash``, ``net_return``."""
        cols = {"date": pl.Series(self.dates).cast(pl.Date)}
        for j, name in enumerate([*assets, "cash"]):
            cols[f"w_{name}"] = pl.Series(self.weights[:, j])
        cols["net_return"] = pl.Series(self.net_returns)
        return pl.DataFrame(cols)


def check_compatible(policy: Any, panel: MarketPanel) -> list[str]:
    """The panel's observation names; ValueError when they are not the layout ``policy`` was trained on."""
    names = policy.env_config.obs_names(panel)
    if policy.obs_names and names != policy.obs_names:
        raise ValueError(
            f"panel observation layout {names} does not match the policy's {policy.obs_names}"
        )
    if len(names) != policy.obs_dim:
        raise ValueError(f"panel gives {len(names)} observation columns, the policy expects {policy.obs_dim}")
    return names


@torch.no_grad()
def evaluate_policy(
    policy: Any, panel: MarketPanel, start_idx: int, end_idx: int, device: str | torch.device = "cpu",
    overlay: Any | None = None,
) -> EvalResult:
    """Deterministic rollout (``softmax(policy.act_t(obs))``, frozen normalisers) over panel rows
    ``[start_idx, end_idx]``: one episode from ``initial_weights``, no time limit, no termination;
    decisions at rows ``start_idx .. end_idx-1``. Costs and drift as in training (float64 arithmetic).

    ``overlay`` (e.g. :class:`ml.risk.BreakerTracker`): ``overlay.adjust(row, weights [A+1]) -> weights``
    rewrites each day's target weights before the step (the policy then sees the adjusted holdings),
    ``overlay.observe(net)`` receives the net return the step earned."""
    check_compatible(policy, panel)
    dev = resolve_device(device) if isinstance(device, str) else device
    n = int(end_idx) - int(start_idx)
    cfg = policy.env_config.model_copy(update={"episode_length": n, "terminate_below": None, "dtype": "float64"})
    env = BatchedPortfolioEnv(panel, cfg, start_idx, end_idx, num_envs=1, device=dev)
    was = policy.training
    pol = policy.to(dev).eval()
    w_out = torch.empty(n, env.n_assets + 1, dtype=torch.float64, device=dev)
    net_out = torch.empty(n, dtype=torch.float64, device=dev)
    with torch.inference_mode():
        obs = env.reset(starts=[start_idx])
        for i in range(n):
            logits_t = pol.act_t(obs)
            if overlay is not None:  # adjust the weights, hand them back as logits (log w: softmax-exact)
                w = torch.softmax(logits_t.to(torch.float64), dim=0)[:, 0].cpu().numpy()
                w = overlay.adjust(start_idx + i, w)
                logits_t = torch.log(torch.as_tensor(w, dtype=torch.float64, device=dev))[:, None]
            obs, _r, _te, _tr, info = env.step_t(logits_t)
            w_out[i] = info["weights"][0]
            net_out[i] = info["net"][0]
            if overlay is not None:
                overlay.observe(float(info["net"][0]))
    pol.train(was)
    return EvalResult(
        weights=w_out.cpu().numpy(),
        net_returns=net_out.cpu().numpy(),
        dates=panel.dates[start_idx + 1 : end_idx + 1].copy(),
    )


class ValidationSelector:
    """Model selection on a validation slice (the reference's ``EvalCallback``): every call evaluates the
    current policy deterministically on panel rows ``[start_idx, end_idx]`` (earned days
    ``start_idx+1 .. end_idx``, after the training window) and keeps a copy of its weights when its
    validation Sharpe (daily net returns, annualised, rf 0) is the best so far. :meth:`restore` loads the
    best weights back. The slice's rollouts draw no random numbers, so selection keeps training
    bit-for-bit reproducible. ``window=None`` disables it (every call returns None; the last weights stay).
    """

    def __init__(self, panel: MarketPanel, window: tuple[int, int] | None, device: torch.device | str = "cpu"):
        self.panel, self.window, self.device = panel, window, device
        self.history: list[dict[str, float]] = []
        self.best_score = -float("inf")
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    @property
    def enabled(self) -> bool:
        return self.window is not None

    def __call__(self, policy: Any, step: int) -> dict[str, float] | None:
        """Evaluate ``policy`` after ``step`` env steps; returns ``{step, val_sharpe, val_return}``."""
        if self.window is None:
            return None
        s = metrics.summary(self.net_returns(policy))
        row = {"step": float(step), "val_sharpe": float(s["sharpe"]), "val_return": float(s["total_return"])}
        self.history.append(row)
        score = row["val_sharpe"] if np.isfinite(row["val_sharpe"]) else -float("inf")
        if self._best_state is None or score > self.best_score:
            self.best_score, self.best_step = score, int(step)
            self._best_state = copy.deepcopy({k: v.detach().clone() for k, v in policy.state_dict().items()})
        return row

    def net_returns(self, policy: Any) -> np.ndarray:
        """The policy's daily net returns over the validation window (deterministic rollout)."""
        return evaluate_policy(policy, self.panel, *self.window, device=self.device).net_returns

    def restore(self, policy: Any) -> None:
        """Load the best weights seen (no-op when disabled or never called)."""
        if self._best_state is not None:
            policy.load_state_dict(self._best_state)

    def summary(self) -> dict[str, Any]:
        """``{"validation_window", "best_step", "best_val_sharpe", "evaluations"}`` for metadata."""
        if self.window is None:
            return {"validation_window": None}
        d = self.panel.dates
        return {"validation_window": [str(d[self.window[0] + 1]), str(d[self.window[1]])],
                "best_step": self.best_step, "best_val_sharpe": self.best_score, "evaluations": len(self.history)}
