"""Prescreen classifiers per walk-forward fold: P(buy) / P(sell) per (ticker, date).

Six slots = {buy, sell} × {low, moderate, high} VIX regime, each an RF + HGB ensemble tuned by
purged k-fold CV inside the fold's train window, in forward generations (the final one scores the
test window and live dates; earlier ones score later blocks of the train window out of sample).
Timing: a score dated t uses features and the VIX band known at the close of t and models whose
training labels all ended before t; no model sees a test-window row or a label reaching into it.
"""
from ml.prescreen.artifacts import ArtifactIntegrityError, load_models, save_models
from ml.prescreen.cv import label_end_dates, purged_kfold
from ml.prescreen.evaluate import calibration_table, evaluate_prescreen, precision_at_k
from ml.prescreen.models import (
    REGIMES,
    SCORES_SCHEMA,
    SIDES,
    Generation,
    PrescreenConfig,
    PrescreenModels,
    SlotModel,
    generation_bounds,
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
    "Generation",
    "PrescreenConfig",
    "PrescreenModels",
    "SlotModel",
    "calibration_table",
    "evaluate_prescreen",
    "generation_bounds",
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
