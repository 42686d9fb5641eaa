"""Save / load allocation policies (PPO, SAC / TD3 actors, ensembles) as self-describing ``torch.save`` files
readable with ``weights_only=True``.

File content (only tensors and primitive containers, so ``torch.load`` with ``weights_only=True`` works):

``format``           ``"regimeflow.ppo_policy/1"`` (PPO), ``"regimeflow.actor_policy/1"`` (SAC / TD3: ``kind``,
                     ``agent_config`` instead of ``ppo_config``, ``architecture`` with ``logit_scale`` and
                     ``stochastic``) or ``"regimeflow.ensemble_policy/1"`` (``names``, ``weights``, ``members``:
                     one such payload per member, plus ``env_config`` and ``data_hash``)
``state_dict``       actor/critic/log-std weights **and the observation normaliser** (``obs_rms.mean``,
                     ``obs_rms.var``, ``obs_rms.count``: float64, fitted on the train window)
``architecture``     ``{"obs_dim", "n_actions", "hidden_sizes", "obs_clip", "shared_body"}`` (absent = False)
``env_config``       :class:`~ml.envs.portfolio.EnvConfig` as a JSON string
``ppo_config``       :class:`~ml.agents.ppo.PPOConfig` as a JSON string
``obs_names``        observation column names (list of str); ``assets`` (list of str)
``data_hash``        sha256 of the training-window panel rows (:meth:`MarketPanel.data_hash`)
``train_window``     ``[first earned date, last earned date]`` (ISO strings)
``versions``         ``{"torch", "regimeflow", "python"}``; ``meta``: caller's extra JSON string (may be "")

Any unreadable/corrupt file, missing key, wrong format or architecture, or a config / data hash that
differs from what the caller expects raises :class:`CheckpointError` with the reason.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from ml.agents.ensemble import EnsemblePolicy
from ml.agents.offpolicy import ActorPolicy
from ml.agents.ppo import PPOConfig, PPOPolicy
from ml.agents.sac import SACConfig
from ml.agents.td3 import TD3Config
from ml.artifacts import ArtifactIntegrityError, atomic_write, load_torch, torch_bytes
from ml.envs.portfolio import EnvConfig

__all__ = ["ACTOR_FORMAT", "CHECKPOINT_FORMAT", "ENSEMBLE_FORMAT", "CheckpointError", "checkpoint_bytes", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "regimeflow.ppo_policy/1"
ACTOR_FORMAT = "regimeflow.actor_policy/1"  # SAC / TD3 actors
ENSEMBLE_FORMAT = "regimeflow.ensemble_policy/1"
ACTOR_KINDS = {"sac": SACConfig, "td3": TD3Config}
_BASE = ("format", "state_dict", "architecture", "env_config", "obs_names", "assets", "data_hash")
_REQUIRED = {CHECKPOINT_FORMAT: (*_BASE, "ppo_config"), ACTOR_FORMAT: (*_BASE, "kind", "agent_config"),
             ENSEMBLE_FORMAT: ("format", "names", "weights", "members", "env_config", "data_hash")}
_FORMATS = set(_REQUIRED)


class CheckpointError(ValueError):
    """A policy checkpoint cannot be used; ``reason`` says why (also the message)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"checkpoint {self.path}: {reason}")


def _versions() -> dict[str, str]:
    try:
        from importlib.metadata import version

        rf = version("regimeflow")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        rf = "unknown"
    return {"torch": str(torch.__version__), "regimeflow": str(rf), "python": str(platform.python_version())}


def _payload(policy: Any) -> dict[str, Any]:
    """The tensors and primitive containers that describe ``policy`` (any kind), without versions/meta."""
    kind = getattr(policy, "kind", "ppo")
    common = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
        "env_config": policy.env_config.model_dump_json(),
        "obs_names": list(policy.obs_names),
        "assets": list(policy.assets),
        "data_hash": policy.data_hash,
        "train_window": list(policy.train_window),
    }
    if kind == "ppo":
        return {"format": CHECKPOINT_FORMAT, "architecture": policy.architecture(),
                "ppo_config": policy.ppo_config.model_dump_json(), **common}
    if kind in ACTOR_KINDS:
        return {"format": ACTOR_FORMAT, "kind": kind, "architecture": policy.architecture(),
                "agent_config": policy.agent_config.model_dump_json(), **common}
    if kind == "ensemble":
        return {"format": ENSEMBLE_FORMAT, "names": list(policy.names), "weights": policy.mix.tolist(),
                "members": [_payload(m) for m in policy.members], "env_config": common["env_config"],
                "data_hash": policy.data_hash}
    raise TypeError(f"cannot checkpoint a policy of kind {kind!r}")


def checkpoint_bytes(policy: Any, meta: dict[str, Any] | None = None) -> bytes:
    """The checkpoint file's content: ``policy`` (PPO, SAC/TD3 actor or ensemble: weights, normaliser,
    configs, data hash), versions and ``meta`` (optional JSON-serialisable extras, e.g. the fold)."""
    payload = {**_payload(policy), "versions": _versions(), "meta": json.dumps(meta or {}, sort_keys=True, default=str)}
    return torch_bytes(payload)


def save_checkpoint(path: str | os.PathLike, policy: PPOPolicy, meta: dict[str, Any] | None = None) -> Path:
    """Write :func:`checkpoint_bytes` to ``path`` atomically. Returns the path."""
    return atomic_write(path, checkpoint_bytes(policy, meta))


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{k}: checkpoint={a.get(k)!r} expected={b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _policy(payload: dict[str, Any], path: Path) -> Any:
    """Rebuild a policy from a payload (recursively for ensembles); CheckpointError on any mismatch."""
    if not isinstance(payload, dict) or payload.get("format") not in _FORMATS:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(path, f"format {fmt!r} is not one of {sorted(_FORMATS)}")
    missing = [k for k in _REQUIRED[payload["format"]] if k not in payload]
    if missing:
        raise CheckpointError(path, f"missing keys {missing}")
    if payload["format"] == ENSEMBLE_FORMAT:
        members = [_policy(m, path) for m in payload["members"]]
        try:
            return EnsemblePolicy(members, list(payload["weights"]), list(payload["names"]))
        except ValueError as exc:
            raise CheckpointError(path, f"invalid ensemble ({exc})") from exc
    arch = payload["architecture"]
    meta = {"env_config": EnvConfig.model_validate_json(payload["env_config"]), "obs_names": list(payload["obs_names"]),
            "assets": tuple(payload["assets"]), "data_hash": str(payload["data_hash"]),
            "train_window": tuple(payload.get("train_window") or ("", ""))}
    try:
        if payload["format"] == CHECKPOINT_FORMAT:
            policy = PPOPolicy(
                int(arch["obs_dim"]), int(arch["n_actions"]), tuple(arch["hidden_sizes"]),
                obs_clip=float(arch["obs_clip"]), shared_body=bool(arch.get("shared_body", False)),
                ppo_config=PPOConfig.model_validate_json(payload["ppo_config"]), **meta)
        else:
            kind = str(payload["kind"])
            if kind not in ACTOR_KINDS:
                raise CheckpointError(path, f"unknown actor kind {kind!r}")
            policy = ActorPolicy(
                int(arch["obs_dim"]), int(arch["n_actions"]), tuple(arch["hidden_sizes"]),
                float(arch["logit_scale"]), float(arch["obs_clip"]), stochastic=bool(arch["stochastic"]), kind=kind,
                agent_config=ACTOR_KINDS[kind].model_validate_json(payload["agent_config"]), **meta)
        policy.load_state_dict(payload["state_dict"], strict=True)
    except CheckpointError:
        raise
    except (ValidationError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"weights or configs do not match the stored architecture ({exc})") from exc
    return policy


def load_checkpoint(
    path: str | os.PathLike,
    *,
    sha256: str | None = None,
    expected_env_config: EnvConfig | None = None,
    expected_data_hash: str | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """Load a policy saved by :func:`save_checkpoint` (``torch.load`` with ``weights_only=True``) in eval mode.

    ``sha256``: when given, the file's content must hash to it (checked on the bytes that are loaded).
    ``expected_env_config`` / ``expected_data_hash``: when given, must equal what the checkpoint was
    trained with, else :class:`CheckpointError` names the differing fields / both hashes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        payload = load_torch(path, sha256)
    except ArtifactIntegrityError as exc:
        raise CheckpointError(path, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means a corrupt file
        raise CheckpointError(path, f"corrupt or unreadable file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"unexpected content of type {type(payload).__name__}")
    if payload.get("format") not in _FORMATS:
        raise CheckpointError(path, f"format {payload.get('format')!r} is not one of {sorted(_FORMATS)}")
    try:
        env_cfg = EnvConfig.model_validate_json(payload["env_config"])
    except KeyError:
        raise CheckpointError(path, "missing keys ['env_config']") from None
    except (ValidationError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid stored config ({exc})") from exc
    if expected_env_config is not None and expected_env_config != env_cfg:
        diff = _config_diff(env_cfg.model_dump(), expected_env_config.model_dump())
        raise CheckpointError(path, "environment config mismatch: " + "; ".join(diff))
    if expected_data_hash is not None and expected_data_hash != payload.get("data_hash"):
        raise CheckpointError(
            path, f"data hash mismatch: checkpoint={payload.get('data_hash')} expected={expected_data_hash}"
        )
    policy = _policy(payload, path)
    for name, tensor in policy.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(path, f"non-finite values in {name}")
    policy.versions = dict(payload.get("versions") or {})  # type: ignore[attr-defined]
    policy.meta = json.loads(payload.get("meta") or "{}")  # type: ignore[attr-defined]
    return policy.to(device).eval()
