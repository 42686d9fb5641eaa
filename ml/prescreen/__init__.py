"""Prescreen classifiers per walk-forward fold: P(buy) / P(sell) per (ticker, date).

Six slots = {buy, sell} × {low, moderate, high} VIX regime, each an RF + HGB ensemble tuned by
purged k-fold CV inside the fold's train window. Timing: a score dated t uses features and the
VIX band known at the close of t; models never see a test-window row or a label reaching into it.
"""
from ml.prescreen.artifacts import ArtifactIntegrityError, file_sha256, load_models, save_models
from ml.prescreen.cv import label_end_dates, purged_kfold
from ml.prescreen.evaluate import calibration_table, evaluate_prescreen, precision_at_k
from ml.prescreen.models import (
    REGIMES,
    SCORES_SCHEMA,
    SIDES,
    PrescreenConfig,
    PrescreenModels,
    SlotModel,
    model_rows,
    score_prescreen,
    slot_key,
    train_prescreen,
    training_rows,
)

__all__ = [
    "REGIMES",
    "SCORES_SCHEMA",
    "SIDES",
    "ArtifactIntegrityError",
    "PrescreenConfig",
    "PrescreenModels",
    "SlotModel",
    "calibration_table",
    "evaluate_prescreen",
    "file_sha256",
    "label_end_dates",
    "load_models",
    "model_rows",
    "precision_at_k",
    "purged_kfold",
    "save_models",
    "score_prescreen",
    "slot_key",
    "train_prescreen",
    "training_rows",
]
