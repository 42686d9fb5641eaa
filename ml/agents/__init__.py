"""Learning agents (pure Python/Torch): PPO, SAC and TD3 allocation policies, their ensembles and checkpoints."""
from ml.agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ml.agents.common import TrainResult
from ml.agents.ensemble import EnsemblePolicy, composite_ensemble, composite_score, composite_weights
from ml.agents.ppo import PPOConfig, PPOPolicy, train_ppo
from ml.agents.rollout import EvalResult, ValidationSelector, evaluate_policy
from ml.agents.sac import SACConfig, train_sac
from ml.agents.td3 import TD3Config, train_td3

__all__ = [
    "CheckpointError",
    "EnsemblePolicy",
    "EvalResult",
    "PPOConfig",
    "PPOPolicy",
    "SACConfig",
    "TD3Config",
    "TrainResult",
    "ValidationSelector",
    "composite_ensemble",
    "composite_score",
    "composite_weights",
    "evaluate_policy",
    "load_checkpoint",
    "save_checkpoint",
    "train_ppo",
    "train_sac",
    "train_td3",
]
