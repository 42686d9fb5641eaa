"""Learning agents (pure Python/Torch): PPO allocation policies and their checkpoints."""
from ml.agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ml.agents.ppo import EvalResult, PPOConfig, PPOPolicy, TrainResult, evaluate_policy, train_ppo

__all__ = [
    "CheckpointError",
    "EvalResult",
    "PPOConfig",
    "PPOPolicy",
    "TrainResult",
    "evaluate_policy",
    "load_checkpoint",
    "save_checkpoint",
    "train_ppo",
]
