"""Loading a fold's saved models for downstream assets, always through ``models.artifacts`` (lineage),
after checking the SHA-256 recorded when the model was written."""
from pathlib import Path

import dagster as dg

from ml.agents.checkpoint import load_checkpoint
from ml.prescreen import file_sha256
from warehouse.artifacts import artifact


def _checked(wh, fold_key: str, kind: str, asset: str) -> dict:
    try:
        rec = artifact(wh, fold_key, kind)
    except KeyError as exc:
        raise dg.Failure(f"{exc}. Materialize {asset} for fold {fold_key}.") from exc
    if not Path(rec["path"]).is_file() or file_sha256(rec["path"]) != rec["sha256"]:
        raise dg.Failure(f"{kind} artifact {rec['path']} is missing or does not match the SHA-256 recorded for "
                         f"fold {fold_key}; re-materialize {asset} for this fold")
    return rec


def load_fold_policy(wh, fold_key: str):
    """The fold's PPO checkpoint (and its artifact record)."""
    rec = _checked(wh, fold_key, "policy_ppo", "models/policy_ppo")
    return load_checkpoint(rec["path"]), rec


def load_fold_hmms(wh, fold_key: str):
    """The fold's fitted sector HMMs and their config."""
    from ml.regimes.hmm import sector_hmms_from_json

    rec = _checked(wh, fold_key, "sector_hmm", "regimes/sector_hmm")
    return sector_hmms_from_json(Path(rec["path"]).read_text())


def load_fold_prescreen(wh, fold_key: str):
    """The fold's six prescreen models (hash verified before unpickling)."""
    from ml.prescreen import load_models

    rec = _checked(wh, fold_key, "prescreen", "models/prescreen")
    return load_models(rec["path"], rec["sha256"])
