"""Stock-level policies for :class:`~ml.envs.stock_env.BatchedStockEnv`: permutation-equivariant networks, the
deployable actor, ensembles, deterministic evaluation, validation selection and (de)serialisation.

Networks (any number of stocks ``S``; nothing is sized by it):

* a shared per-stock encoder ``phi`` (MLP, ReLU) turns each stock's normalised vector ``x_i`` into ``h_i``;
* masked pooling over the candidates: ``c = [mean_i h_i, max_i h_i]`` (non-candidates excluded; ``h >= 0``
  after the ReLU so the masked max is ``max(h * mask)``; 0 when there is no candidate);
* actor: a per-stock head ``psi([h_i, c, g])`` -> one output per stock (two for SAC: mean and log-std). Permuting
  the stocks permutes the outputs; a non-candidate's features change nothing but its own output;
* critics: ``V(s) = MLP([pool(phi_v(x)), g])``, ``Q(s, a) = MLP([pool(phi_q([x_i, a_i])), g])``.

The networks see observations standardised by the actor's frozen train-window normalisers (``x_rms`` for the
per-stock columns, ``g_rms`` for the global ones: :meth:`BatchedStockEnv.train_stats`, clipped to +-obs_clip).
Work is done on the candidate slots only (:func:`~ml.envs.stock_env.compact`: ~30 of 100 stocks).

Deterministic action (evaluation, decisions): PPO ``clamp(mean, -1, 1)``, SAC / TD3 ``tanh(mean)``; 0
(no trade) for non-candidates. Timing: as the environment - decided at the close of t on data known then,
filled at the open of t+1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from ml.agents.common import RunningMeanStd, layer, mlp, resolve_device
from ml.agents.ensemble import composite_score, composite_weights
from ml.agents.rollout import ValidationSelector
from ml.artifacts import torch_bytes, torch_from_bytes
from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig, StockObs, compact
from ml.envs.stock_panel import StockPanel

__all__ = ["ACTOR_FORMAT", "ENSEMBLE_FORMAT", "EquivariantNet", "PooledCritic", "StockActor", "StockEnsemble",
           "StockEvalResult", "StockQ", "StockValidationSelector", "evaluate_stock_policy", "load_stock_policy",
           "masked_pool", "stock_composite_ensemble", "stock_policy_bytes"]

ACTOR_FORMAT = "regimeflow.stock_actor/1"
ENSEMBLE_FORMAT = "regimeflow.stock_ensemble/1"
KINDS = ("ppo", "sac", "td3")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the SAC head's log-std range (CleanRL)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------


def masked_pool(h: torch.Tensor, mask: torch.Tensor, use_max: bool = True) -> torch.Tensor:
    """``[B, S, H] -> [B, H]`` (mean) or ``[B, 2H]`` (mean, max) over the slots where ``mask`` ``[B, S]`` is
    True. ``h`` must be >= 0 (post-ReLU) for the max; an empty mask pools to 0."""
    m = mask.to(h.dtype)[..., None]
    hm = h * m
    mean = hm.sum(-2) / m.sum(-2).clamp_min(1.0)
    return torch.cat([mean, hm.amax(-2)], dim=-1) if use_max else mean


def _encoder(n_in: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Per-stock MLP (ReLU after every layer, also the last: its output is pooled with a max)."""
    return nn.Sequential(*mlp(n_in, hidden[:-1], hidden[-1], math.sqrt(2.0), activation=nn.ReLU), nn.ReLU())


class EquivariantNet(nn.Module):
    """Per-stock outputs ``[B, S, n_out]`` from ``x [B, S, Fx]``, ``g [B, G]``, ``mask [B, S]``:
    ``psi([phi(x_i), pool(phi(x)), g])``. The head's first layer is split into a per-stock part and a shared
    context part (one linear map of the concatenation, without materialising it)."""

    def __init__(self, x_dim: int, g_dim: int, n_out: int, hidden: tuple[int, ...] = (64, 64),
                 head: tuple[int, ...] = (64,), out_std: float = 0.01, use_max: bool = True):
        super().__init__()
        if not hidden or not head:
            raise ValueError("the equivariant net needs >= 1 encoder layer and >= 1 head layer")
        self.use_max = bool(use_max)
        self.phi = _encoder(x_dim, hidden)
        width = hidden[-1]
        self.psi_stock = layer(width, head[0], math.sqrt(2.0))
        self.psi_context = layer(width * (2 if use_max else 1) + g_dim, head[0], math.sqrt(2.0))
        self.psi_out = mlp(head[0], head[1:], n_out, out_std, activation=nn.ReLU)

    def forward(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.phi(x)
        ctx = torch.cat([masked_pool(h, mask, self.use_max), g], dim=-1)
        z = torch.relu(self.psi_stock(h) + self.psi_context(ctx)[..., None, :])
        return self.psi_out(z)


class PooledCritic(nn.Module):
    """Scalar ``[B]``: ``MLP([pool(phi(x)), g])`` - the PPO value ``V(s)`` (``x_dim`` per-stock columns)."""

    def __init__(self, x_dim: int, g_dim: int, hidden: tuple[int, ...] = (64, 64), head: tuple[int, ...] = (64,),
                 use_max: bool = True):
        super().__init__()
        self.use_max = bool(use_max)
        self.phi = _encoder(x_dim, hidden)
        self.head = mlp(hidden[-1] * (2 if use_max else 1) + g_dim, head, 1, 1.0, activation=nn.ReLU)

    def forward(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([masked_pool(self.phi(x), mask, self.use_max), g], dim=-1)).squeeze(-1)


class StockQ(PooledCritic):
    """``Q(s, a)`` ``[B]``: the per-stock encoder sees ``[x_i, a_i]``; non-candidates' actions are pooled out."""

    def __init__(self, x_dim: int, g_dim: int, hidden: tuple[int, ...] = (64, 64), head: tuple[int, ...] = (64,),
                 use_max: bool = True):
        super().__init__(x_dim + 1, g_dim, hidden, head, use_max)

    def forward(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                a: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([x, a[..., None].to(x.dtype)], dim=-1), g, mask)


# ----------------------------------------------------------------------------------------------------
# Deployable actor and ensemble
# ----------------------------------------------------------------------------------------------------


class StockActor(nn.Module):
    """Normalisers + equivariant actor: everything needed to act on raw :class:`StockObs`, in one ``state_dict``.

    ``kind``: ``"ppo"`` (Gaussian mean, learned scalar ``log_std``; deterministic ``clamp(mean, -1, 1)``),
    ``"sac"`` (tanh-squashed Gaussian, per-stock mean and log-std; ``tanh(mean)``), ``"td3"`` (``tanh(mean)``).
    Metadata: ``env_config``, ``feature_names`` / ``market_names`` (the panel's columns), ``data_hash`` (of the
    training rows), ``train_window`` (first / last earned date, ISO), ``seed``, ``agent_config``."""

    def __init__(self, x_dim: int, g_dim: int, kind: str, hidden_sizes: tuple[int, ...] = (64, 64),
                 head_sizes: tuple[int, ...] = (64,), use_max: bool = True, obs_clip: float = 10.0,
                 init_log_std: float = -0.5, *, env_config: StockEnvConfig | None = None,
                 feature_names: Sequence[str] = (), market_names: Sequence[str] = (), data_hash: str = "",
                 train_window: tuple[str, str] = ("", ""), seed: int = 0, agent_config: BaseModel | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"actor kind must be one of {KINDS}, got {kind!r}")
        self.x_dim, self.g_dim, self.kind = int(x_dim), int(g_dim), str(kind)
        self.hidden_sizes, self.head_sizes = tuple(int(h) for h in hidden_sizes), tuple(int(h) for h in head_sizes)
        self.use_max = bool(use_max)
        self.x_rms = RunningMeanStd(self.x_dim, clip=obs_clip)
        self.g_rms = RunningMeanStd(self.g_dim, clip=obs_clip)
        self.net = EquivariantNet(self.x_dim, self.g_dim, 2 if kind == "sac" else 1, self.hidden_sizes,
                                  self.head_sizes, 0.01, self.use_max)
        self.log_std = nn.Parameter(torch.full((1,), float(init_log_std))) if kind == "ppo" else None
        self.env_config = env_config or StockEnvConfig()
        self.feature_names, self.market_names = tuple(feature_names), tuple(market_names)
        self.data_hash, self.train_window, self.seed = str(data_hash), tuple(train_window), int(seed)
        self.agent_config = agent_config

    @property
    def dtype(self) -> torch.dtype:
        return self.net.psi_stock.weight.dtype

    @property
    def fill_values(self) -> np.ndarray:
        """Values of NaN features ``[F]``: the normaliser's means (they standardise to 0)."""
        return self.x_rms.mean[: len(self.feature_names)].cpu().numpy().copy()

    def set_stats(self, env: BatchedStockEnv) -> None:
        """Fit the normalisers on the env's training window (:meth:`BatchedStockEnv.train_stats`)."""
        (mx, vx, nx), (mg, vg, ng) = env.train_stats()
        dev = self.x_rms.mean.device
        self.x_rms.set_stats(torch.as_tensor(mx, device=dev), torch.as_tensor(vx, device=dev), nx)
        self.g_rms.set_stats(torch.as_tensor(mg, device=dev), torch.as_tensor(vg, device=dev), ng)

    # -- on normalised, compacted inputs (training) ------------------------------------------------------
    def prepare(self, obs: StockObs, *per_stock: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                        torch.Tensor, list[torch.Tensor]]:
        """Network inputs of raw observations: ``(x [B, K, Fx], g [B, G], mask [B, K], idx [B, K], extra)`` -
        the candidate slots only (:func:`~ml.envs.stock_env.compact`; ``idx`` their stock columns, ``extra`` the
        ``per_stock`` tensors gathered alike), standardised with the frozen normalisers, in the network's dtype."""
        mask, idx, (x, *extra) = compact(obs.mask, obs.x, *per_stock)
        return (self.x_rms.normalize(x.to(self.dtype)), self.g_rms.normalize(obs.g.to(self.dtype)), mask, idx,
                extra)

    def mean(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pre-squash action mean per stock ``[B, S]``."""
        return self.net(x, g, mask)[..., 0]

    def action(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Deterministic action ``[B, S]`` in [-1, 1] (non-candidates included; the env ignores them)."""
        m = self.mean(x, g, mask)
        return m.clamp(-1.0, 1.0) if self.kind == "ppo" else torch.tanh(m)

    def sample(self, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """SAC: reparameterised ``(a = tanh(u) [B, S], log pi(a|s) [B])``, the log-density summed over the
        candidate slots only (non-candidates' actions have no effect)."""
        out = self.net(x, g, mask)
        mean = out[..., 0]
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(out[..., 1]) + 1.0)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        y = torch.tanh(mean + log_std.exp() * eps)
        logp = -0.5 * eps * eps - log_std - _LOG_SQRT_2PI - torch.log1p(-y * y + 1e-6)
        return y, (logp * mask.to(logp.dtype)).sum(-1)

    # -- deployable ------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: StockObs) -> torch.Tensor:
        """Deterministic action ``[B, S]`` in [-1, 1] for raw observations (0 for non-candidates)."""
        x_c, g, mask_c, idx, _ = self.prepare(obs)
        a_c = self.action(x_c, g, mask_c) * mask_c
        return torch.zeros(obs.mask.shape, dtype=a_c.dtype, device=a_c.device).scatter(1, idx, a_c)

    def architecture(self) -> dict[str, Any]:
        return {"x_dim": self.x_dim, "g_dim": self.g_dim, "hidden_sizes": list(self.hidden_sizes),
                "head_sizes": list(self.head_sizes), "use_max": self.use_max, "obs_clip": self.x_rms.clip}


class StockEnsemble(nn.Module):
    """``act = sum_k c_k act_k`` (weights ``c`` >= 0, normalised); metadata from the first member (all must share
    the environment config and the panel's columns)."""

    kind = "ensemble"

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], names: Sequence[str]):
        super().__init__()
        if not members or len(members) != len(weights) or len(members) != len(names):
            raise ValueError("an ensemble needs members, weights and names of the same non-zero length")
        first = members[0]
        for m in members[1:]:
            if (m.env_config != first.env_config or tuple(m.feature_names) != tuple(first.feature_names)
                    or tuple(m.market_names) != tuple(first.market_names)):
                raise ValueError("ensemble members must share the environment config and the panel's columns")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"ensemble weights must be finite, >= 0 and not all 0, got {list(weights)}")
        self.members = nn.ModuleList(members)
        self.register_buffer("mix", torch.as_tensor(w / w.sum(), dtype=torch.float64))
        self.names = [str(n) for n in names]
        self.env_config = first.env_config
        self.feature_names, self.market_names = first.feature_names, first.market_names
        self.data_hash, self.train_window, self.seed = first.data_hash, tuple(first.train_window), int(first.seed)

    @property
    def fill_values(self) -> np.ndarray:
        return self.members[0].fill_values

    @property
    def member_weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.mix.tolist()))

    @torch.no_grad()
    def act(self, obs: StockObs) -> torch.Tensor:
        """``sum_k c_k act_k(obs)`` ``[B, S]`` (float64)."""
        return sum(c * m.act(obs).to(torch.float64) for c, m in zip(self.mix, self.members))


# ----------------------------------------------------------------------------------------------------
# Evaluation and model selection
# ----------------------------------------------------------------------------------------------------


class StockEvalResult(NamedTuple):
    """Deterministic rollout: ``weights[i]`` ``[S]`` were set at the open after the close of panel row ``lo + i``
    and earned ``net_returns[i]`` (with ``turnover[i]``) on ``dates[i]`` (panel row ``lo + i + 1``)."""

    net_returns: np.ndarray  # [n] float64, daily net return (fraction)
    weights: np.ndarray  # [n, S] float64
    turnover: np.ndarray  # [n] float64, sum |w_new - w_open|
    dates: np.ndarray  # [n] datetime64[D]


def _check_columns(policy: Any, panel: StockPanel) -> None:
    if tuple(panel.feature_names) != tuple(policy.feature_names) or \
            tuple(panel.market_names) != tuple(policy.market_names):
        raise ValueError(f"panel columns {panel.feature_names} / {panel.market_names} do not match the policy's "
                         f"{policy.feature_names} / {policy.market_names}")


@torch.no_grad()
def evaluate_stock_policy(policy: Any, panel: StockPanel, lo: int, hi: int,
                          env_config: StockEnvConfig | None = None, device: str | torch.device = "cpu"
                          ) -> StockEvalResult:
    """Deterministic rollout of ``policy.act`` (float64 environment arithmetic) over panel rows ``[lo, hi]``:
    one book from all cash, no time limit, no termination; decisions at rows ``lo .. hi-1``, earned days
    ``lo+1 .. hi``. ``env_config``: default the policy's; NaN features filled with the policy's values."""
    _check_columns(policy, panel)
    dev = resolve_device(device) if isinstance(device, str) else device
    lo, hi = int(lo), int(hi)
    n = hi - lo
    cfg = (env_config or policy.env_config).model_copy(
        update={"episode_length": n, "terminate_below": None, "dtype": "float64"})
    env = BatchedStockEnv(panel, cfg, lo, hi, num_envs=1, device=dev, fill=policy.fill_values)
    was = policy.training
    pol = policy.to(dev).eval()
    w_out = torch.empty(n, panel.n_stocks, dtype=torch.float64, device=dev)
    net_out = torch.empty(n, dtype=torch.float64, device=dev)
    turn_out = torch.empty(n, dtype=torch.float64, device=dev)
    obs = env.reset(starts=[lo])
    for i in range(n):
        obs, _r, _te, _tr, info = env.step(pol.act(obs))
        w_out[i], net_out[i], turn_out[i] = info["weights"][0], info["net"][0], info["turnover"][0]
    pol.train(was)
    return StockEvalResult(net_out.cpu().numpy(), w_out.cpu().numpy(), turn_out.cpu().numpy(),
                           panel.dates[lo + 1 : hi + 1].copy())


class StockValidationSelector(ValidationSelector):
    """:class:`~ml.agents.rollout.ValidationSelector` for stock policies: every call evaluates the policy on the
    validation rows with :func:`evaluate_stock_policy` and keeps the weights of the best Sharpe so far."""

    def net_returns(self, policy: Any) -> np.ndarray:
        return evaluate_stock_policy(policy, self.panel, *self.window, device=self.device).net_returns


def stock_composite_ensemble(members: Mapping[str, StockActor], panel: StockPanel,
                             window: tuple[int, int] | None) -> tuple[StockEnsemble, list[dict[str, Any]]]:
    """Score each member on the validation rows ``window`` with :func:`~ml.agents.ensemble.composite_score`
    against ``panel.benchmark`` over the same earned days, weigh by :func:`~ml.agents.ensemble.composite_weights`
    (equal, ``fallback_equal=True``, without a window or when no composite is > 0). Returns the ensemble and one
    row per member: ``member, val_return, benchmark_val_return, excess, sortino, composite, weight,
    fallback_equal`` (scores None without a window)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    hashes = {m.data_hash for m in members.values()}
    if len(hashes) > 1:
        raise ValueError(f"ensemble members were trained on different data (data hashes {sorted(hashes)})")
    scores = {}
    if window is None:
        weights, fell_back = {k: 1.0 / len(members) for k in members}, True
    else:
        lo, hi = int(window[0]), int(window[1])
        first = str(panel.dates[lo + 1])
        late = {k: m.train_window[1] for k, m in members.items() if m.train_window[1] and m.train_window[1] >= first}
        if late:
            raise ValueError(f"members {late} trained on days of the validation slice (from {first})")
        ref = panel.benchmark[lo + 1 : hi + 1]
        scores = {k: composite_score(evaluate_stock_policy(m, panel, lo, hi).net_returns, ref)
                  for k, m in members.items()}
        weights, fell_back = composite_weights({k: s.composite for k, s in scores.items()})
    ensemble = StockEnsemble(list(members.values()), [weights[k] for k in members], list(members))
    rows = []
    for k in members:
        s = scores.get(k)
        rows.append({"member": k, "val_return": s and s.val_return, "benchmark_val_return": s and s.spy_return,
                     "excess": s and s.excess, "sortino": s and s.sortino, "composite": s and s.composite,
                     "weight": weights[k], "fallback_equal": fell_back})
    return ensemble, rows


# ----------------------------------------------------------------------------------------------------
# Serialisation
# ----------------------------------------------------------------------------------------------------


def _config_classes() -> dict[str, type[BaseModel]]:
    from ml.agents.stock_offpolicy import StockOffPolicyConfig
    from ml.agents.stock_ppo import StockPPOConfig

    return {"ppo": StockPPOConfig, "sac": StockOffPolicyConfig, "td3": StockOffPolicyConfig}


def _payload(policy: Any) -> dict[str, Any]:
    if isinstance(policy, StockEnsemble):
        return {"format": ENSEMBLE_FORMAT, "names": list(policy.names), "weights": policy.mix.tolist(),
                "members": [_payload(m) for m in policy.members]}
    if not isinstance(policy, StockActor):
        raise TypeError(f"cannot serialise a {type(policy).__name__} as a stock policy")
    return {
        "format": ACTOR_FORMAT, "kind": policy.kind, "architecture": policy.architecture(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
        "env_config": policy.env_config.model_dump_json(),
        "agent_config": "" if policy.agent_config is None else policy.agent_config.model_dump_json(),
        "feature_names": list(policy.feature_names), "market_names": list(policy.market_names),
        "data_hash": policy.data_hash, "train_window": list(policy.train_window), "seed": policy.seed,
    }


def stock_policy_bytes(policy: StockActor | StockEnsemble) -> bytes:
    """Self-describing payload (tensors, primitive containers, JSON strings; ``weights_only``-loadable):
    ``format`` (``regimeflow.stock_actor/1`` or ``regimeflow.stock_ensemble/1``), ``kind``, ``architecture``,
    ``state_dict`` (weights and the train-window normalisers), ``env_config`` / ``agent_config`` (JSON),
    ``feature_names``, ``market_names``, ``data_hash``, ``train_window``, ``seed``; ensembles: ``names``,
    ``weights``, ``members`` (one actor payload each)."""
    return torch_bytes(_payload(policy))


_ACTOR_KEYS = ("kind", "architecture", "state_dict", "env_config", "agent_config", "feature_names", "market_names",
               "data_hash", "train_window", "seed")


def _policy(payload: Any) -> StockActor | StockEnsemble:
    if not isinstance(payload, dict) or payload.get("format") not in (ACTOR_FORMAT, ENSEMBLE_FORMAT):
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a stock policy: format {fmt!r} is not {ACTOR_FORMAT!r} or {ENSEMBLE_FORMAT!r}")
    if payload["format"] == ENSEMBLE_FORMAT:
        missing = [k for k in ("names", "weights", "members") if k not in payload]
        if missing:
            raise ValueError(f"stock ensemble payload misses keys {missing}")
        return StockEnsemble([_policy(m) for m in payload["members"]], list(payload["weights"]),
                             list(payload["names"]))
    missing = [k for k in _ACTOR_KEYS if k not in payload]
    if missing:
        raise ValueError(f"stock actor payload misses keys {missing}")
    try:
        kind, arch = str(payload["kind"]), payload["architecture"]
        if kind not in KINDS:
            raise ValueError(f"unknown actor kind {kind!r}")
        agent_cfg = (_config_classes()[kind].model_validate_json(payload["agent_config"])
                     if payload["agent_config"] else None)
        actor = StockActor(
            int(arch["x_dim"]), int(arch["g_dim"]), kind, tuple(arch["hidden_sizes"]), tuple(arch["head_sizes"]),
            bool(arch["use_max"]), float(arch["obs_clip"]),
            env_config=StockEnvConfig.model_validate_json(payload["env_config"]),
            feature_names=list(payload["feature_names"]), market_names=list(payload["market_names"]),
            data_hash=str(payload["data_hash"]), train_window=tuple(payload["train_window"]),
            seed=int(payload["seed"]), agent_config=agent_cfg)
        actor.load_state_dict(payload["state_dict"], strict=True)
    except (ValidationError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"stock actor payload does not match its architecture or configs ({exc})") from exc
    for name, tensor in actor.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"stock actor payload has non-finite values in {name}")
    return actor


def load_stock_policy(blob: bytes) -> StockActor | StockEnsemble:
    """Rebuild a policy written by :func:`stock_policy_bytes` (``weights_only`` load, CPU, eval mode).
    ``ValueError`` with the reason on unreadable bytes, a wrong format, missing keys or mismatching weights."""
    try:
        payload = torch_from_bytes(blob)
    except Exception as exc:  # noqa: BLE001 - any unpickling / zip error means corrupt bytes
        raise ValueError(f"stock policy bytes are corrupt or unreadable ({type(exc).__name__}: {exc})") from exc
    return _policy(payload).eval()
