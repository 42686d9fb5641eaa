"""Prescreen model artifacts: a joblib file whose SHA-256 is checked before unpickling (``ml.artifacts``)."""
from __future__ import annotations

import os

from ml.artifacts import ArtifactIntegrityError, atomic_write, joblib_bytes, load_joblib, sha256_bytes

__all__ = ["ArtifactIntegrityError", "load_models", "save_models"]


def save_models(models: object, path: str | os.PathLike[str]) -> str:
    """Write ``models`` with joblib (atomically); return the file's SHA-256 hex."""
    data = joblib_bytes(models)
    atomic_write(path, data)
    return sha256_bytes(data)


def load_models(path: str | os.PathLike[str], expected_sha256: str | None) -> object:
    """Load an artifact written by :func:`save_models` after checking its SHA-256 (``None`` only for
    files this process wrote itself). Raises :class:`ArtifactIntegrityError`."""
    return load_joblib(path, expected_sha256)
