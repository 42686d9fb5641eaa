"""Prescreen model artifacts on disk: joblib file + SHA-256 (checked before unpickling)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import joblib


class ArtifactIntegrityError(ValueError):
    """The artifact on disk does not have the expected SHA-256 (changed, truncated or wrong file)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_models(models: object, path: str | os.PathLike[str]) -> str:
    """Write ``models`` with joblib (atomically: temp file + rename); return the file's SHA-256 hex."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    joblib.dump(models, tmp, compress=3)
    os.replace(tmp, p)
    return file_sha256(p)


def load_models(path: str | os.PathLike[str], expected_sha256: str | None) -> object:
    """Load an artifact written by :func:`save_models` after checking its SHA-256.

    Unpickling runs code, so the hash is verified *before* loading; pass ``None`` only for
    files you created yourself in this process. Raises :class:`ArtifactIntegrityError`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prescreen artifact not found: {p}")
    if expected_sha256 is not None:
        got = file_sha256(p)
        if got.lower() != expected_sha256.lower():
            raise ArtifactIntegrityError(
                f"prescreen artifact {p} has sha256 {got}, expected {expected_sha256}: refusing to load"
            )
    return joblib.load(p)
