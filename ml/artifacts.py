"""Files the pipeline writes and reads back: atomic writes, SHA-256 hashing and verified loads.

The one implementation behind every model artifact (PPO checkpoints, prescreen models, sector HMMs)
and every report or chart file:

* :func:`atomic_write` writes bytes through a temp file in the same folder (fsync, then ``os.replace``):
  a reader sees the old file or the new one, never half of one;
* :func:`sha256_bytes` / :func:`sha256_file` hash content (hex digests);
* :func:`read_verified` reads a file and checks its SHA-256 on the bytes it returns, so what is
  deserialised is exactly what was verified (no check-then-reopen race);
* ``torch`` / ``joblib`` / ``json`` (de)serialisers on top: :func:`torch_bytes` + :func:`load_torch`
  (``weights_only=True``), :func:`joblib_bytes` + :func:`load_joblib` (unpickling runs code, so it
  is only ever done after the hash check), :func:`load_json`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "atomic_copy",
    "atomic_link",
    "atomic_write",
    "joblib_bytes",
    "load_joblib",
    "load_json",
    "load_torch",
    "read_verified",
    "sha256_bytes",
    "sha256_file",
    "torch_bytes",
    "torch_from_bytes",
]


class ArtifactIntegrityError(ValueError):
    """A file is missing, or its content does not have the SHA-256 recorded when it was written."""


class ArtifactMissingError(ArtifactIntegrityError, FileNotFoundError):
    """The artifact file does not exist (also a ``FileNotFoundError``)."""


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and rename; parents are created.
    ``mode``: permissions of the result (``mkstemp`` makes 0600; reports and models are for people to read)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy a (large) file to ``target`` through a temp file in the target's folder and a rename: a reader
    of ``target`` sees the previous file or the complete copy (the analyst snapshot of the warehouse)."""
    t = Path(target)
    tmp = t.with_name(f".{t.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, t)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return t


def atomic_link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Make ``target`` a hard link to ``source`` through a temp link and a rename (``OSError`` where the
    filesystem has no hard links): readers of ``target`` see the previous file or ``source``."""
    t = Path(target)
    tmp = t.with_name(f".{t.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    os.link(source, tmp)
    try:
        os.replace(tmp, t)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return t


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_arrays(prefix: bytes, arrays: Iterable[Any]) -> str:
    """sha256 (hex) of ``prefix`` followed by the C-contiguous bytes of each array in turn (the caller fixes
    dtypes, so the digest identifies values, names and layout): the data hashes of the training panels."""
    import numpy as np

    h = hashlib.sha256(prefix)
    for arr in arrays:
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_verified(path: str | os.PathLike[str], sha256: str | None) -> bytes:
    """The bytes of ``path`` after checking they hash to ``sha256`` (``None``: no check, only for files this
    process just wrote). :class:`ArtifactIntegrityError` when the file is missing or differs."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactMissingError(f"artifact {p} does not exist")
    data = p.read_bytes()
    if sha256 is not None:
        got = sha256_bytes(data)
        if got.lower() != sha256.lower():
            raise ArtifactIntegrityError(f"artifact {p} has SHA-256 {got}, expected {sha256}: refusing to load it "
                                         "(changed, truncated or replaced since it was written)")
    return data


def torch_bytes(payload: Any) -> bytes:
    """``torch.save`` of ``payload`` (tensors and primitive containers) into bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def torch_from_bytes(data: bytes) -> Any:
    """``torch.load(..., weights_only=True, map_location="cpu")`` of bytes (already verified by the caller)."""
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_torch(path: str | os.PathLike[str], sha256: str | None) -> Any:
    """Verified ``torch.load(..., weights_only=True, map_location="cpu")``."""
    return torch_from_bytes(read_verified(path, sha256))


def joblib_bytes(obj: Any, compress: int = 3) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


def load_joblib(path: str | os.PathLike[str], sha256: str | None) -> Any:
    """Unpickle a joblib file, only after its SHA-256 matched (pickles run code when loaded)."""
    import joblib

    return joblib.load(io.BytesIO(read_verified(path, sha256)))


def load_json(path: str | os.PathLike[str], sha256: str | None) -> Any:
    return json.loads(read_verified(path, sha256).decode("utf-8"))
