"""IO managers: the asset graph carries the data.

* :class:`WarehouseIOManager` (``io_manager``, the default): an asset returns a Polars frame, or
  ``{part: frame}`` for assets with several tables; it is written through ``warehouse.catalog`` in ONE
  transaction (a fold partition replaces its own rows). Downstream assets receive frames. Input metadata
  narrows a load: ``tickers`` (rows of those tickers), ``columns``, ``part`` (one part of a multi-table
  asset; without it such an asset loads as ``{part: frame}``). A non-partitioned asset downstream of a
  per-fold asset receives every fold's rows (with the ``fold`` column).
* :class:`ModelIOManager` (``model_io_manager``): per-fold model assets return a :class:`FoldModel` (the
  model, its tables, metadata). The model is serialised (torch ``weights_only`` checkpoint / joblib / JSON),
  written atomically under the artifact root as ``<fold>/<asset>-<sha12>.<ext>`` (content-addressed: the
  previous file stays until the new record is committed), and recorded in ``models.artifacts`` with its
  path RELATIVE to the artifact root and its SHA-256 - in the same transaction as the model's tables.
  Loading verifies the SHA-256 on the bytes it deserialises. A downstream asset of the same fold receives
  a :class:`LoadedModel`; a non-partitioned one (the daily decision, live states, drift) receives
  :class:`FoldModels` - every fold with a recorded artifact, loaded on demand (it picks the deployed fold).
  With input metadata ``part``, the model asset's table is loaded instead (e.g. the HMM probabilities).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from infra.resources import WarehouseResource
from ml.artifacts import atomic_write, sha256_bytes
from warehouse.catalog import ARTIFACTS, MAIN, artifact_records, as_parts, read_asset, storage, write_asset


@dataclass(frozen=True)
class FoldModel:
    """What a per-fold model asset returns: the model, its warehouse tables (``{part: frame}``) and
    JSON-able metadata stored with the artifact record."""

    model: Any
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """A fold's model loaded (SHA-256 verified) from its artifact, with the record that located it."""

    model: Any
    fold: str
    path: str  # relative to the artifact root
    sha256: str
    meta: dict


@dataclass(frozen=True)
class Codec:
    suffix: str
    dump: Callable[[Any, Mapping[str, Any]], bytes]
    load: Callable[[Path, str], Any]


def _policy_codec() -> Codec:
    from ml.agents.checkpoint import checkpoint_bytes, load_checkpoint

    return Codec("pt", lambda m, meta: checkpoint_bytes(m, dict(meta)), lambda p, sha: load_checkpoint(p, sha256=sha))


def _joblib_codec() -> Codec:
    from ml.artifacts import joblib_bytes, load_joblib

    return Codec("joblib", lambda m, meta: joblib_bytes(m), load_joblib)


def _hmm_codec() -> Codec:
    from ml.artifacts import read_verified
    from ml.regimes.hmm import SectorHmms

    return Codec("json", lambda m, meta: m.to_json().encode(),
                 lambda p, sha: SectorHmms.from_json(read_verified(p, sha).decode()))


@dataclass(frozen=True)
class PairPolicyFile:
    """A fold's QR-DQN pair policy, read on demand: :meth:`load` returns None (and warns why) when the file is
    missing, fails its SHA-256 or does not deserialise, so the sector book falls back to the z-score rule."""

    path: Path
    sha256: str

    def load(self, warn: Callable[[str], None]):
        from ml.agents.qrdqn import load_pair_policy
        from ml.artifacts import read_verified

        try:
            blob = read_verified(self.path, self.sha256)
        except (OSError, ValueError) as exc:
            warn(f"QR-DQN pair policy {self.path}: {exc}; falling back to the z-score rule")
            return None
        if not blob:  # written for a fold without pairs
            warn("no QR-DQN pair policy for this fold (it had no cointegrated pair): the pair sleeves stay flat")
            return None
        return load_pair_policy(blob, warn)


def _pair_policy_codec() -> Codec:
    return Codec("pt", lambda m, meta: b"" if m is None else m.to_bytes(), PairPolicyFile)  # b"": no pairs, no policy


@dataclass(frozen=True)
class StockPolicyFile:
    """A fold's stock RL ensemble, read on demand: :meth:`load` returns None (and warns why) when the file is
    missing, fails its SHA-256 or does not deserialise, so the stock book runs without the RL signal."""

    path: Path
    sha256: str

    def load(self, warn: Callable[[str], None]):
        from ml.agents.stock_policy import load_stock_policy
        from ml.artifacts import read_verified

        try:
            blob = read_verified(self.path, self.sha256)
        except (OSError, ValueError) as exc:
            warn(f"stock RL policy {self.path}: {exc}; the stock book runs without the RL signal")
            return None
        if not blob:  # written for a fold without RL members
            warn("no stock RL policy for this fold: the stock book runs without the RL signal")
            return None
        try:
            return load_stock_policy(blob)
        except ValueError as exc:
            warn(f"stock RL policy {self.path}: {exc}; the stock book runs without the RL signal")
            return None


def _stock_policy_codec() -> Codec:
    from ml.agents.stock_policy import stock_policy_bytes

    return Codec("pt", lambda m, meta: b"" if m is None else stock_policy_bytes(m), StockPolicyFile)


#: Asset key path -> (artifact kind, codec factory).
CODECS: dict[tuple[str, ...], tuple[str, Callable[[], Codec]]] = {
    ("regimes", "sector_hmm"): ("sector_hmm", _hmm_codec),
    ("models", "prescreen"): ("prescreen", _joblib_codec),
    ("models", "policy_ppo"): ("policy_ppo", _policy_codec),
    ("models", "policy_sac"): ("policy_sac", _policy_codec),
    ("models", "policy_td3"): ("policy_td3", _policy_codec),
    ("models", "policy_ensemble"): ("policy_ensemble", _policy_codec),
    ("models", "qlearning"): ("qlearning", _joblib_codec),
    ("models", "pairs_qrdqn"): ("pairs_qrdqn", _pair_policy_codec),
    ("models", "stock_rl"): ("stock_rl", _stock_policy_codec),
}


def _codec(path: Sequence[str]) -> tuple[str, Codec]:
    try:
        kind, factory = CODECS[tuple(path)]
    except KeyError:
        raise KeyError(f"asset {'/'.join(path)} has no model codec in infra.io_managers.CODECS") from None
    return kind, factory()


def _load_frames(wh, key: dg.AssetKey, context: dg.InputContext, folds: Sequence[str] | None):
    meta = context.definition_metadata or {}
    store = storage(key.path)
    part = meta.get("part")
    kw = {"folds": folds, "tickers": meta.get("tickers"), "columns": meta.get("columns")}
    if part is not None or len(store.parts) == 1:
        return read_asset(wh, store, part or MAIN, **kw)
    return {p: read_asset(wh, store, p, **kw) for p in store.parts}


def _partition_folds(context) -> list[str] | None:
    """The fold partitions a step of a per-fold run reads: its own fold (an asset check on a per-fold asset
    is handed every key, so its run's partition decides); None in an unpartitioned run = every fold."""
    if not (context.has_asset_partitions and context.has_partition_key):
        return None
    keys = list(context.asset_partition_keys)
    return keys if len(keys) == 1 else [context.partition_key]


class _WarehouseStore(dg.IOManager):
    """Base of both IO managers: they read and write through the run's ``warehouse`` resource (the same
    instance the assets get, launchpad config included)."""

    def __init__(self, warehouse: WarehouseResource):
        self.warehouse = warehouse


class WarehouseIOManager(_WarehouseStore):
    """Frames <-> warehouse tables (``warehouse.catalog``); see the module docstring."""

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:  # nothing to write (e.g. an incremental run with nothing new)
            return
        fold = context.asset_partition_key if context.has_asset_partitions else None
        counts = write_asset(self.warehouse.get(), storage(context.asset_key.path), as_parts(obj), fold)
        context.add_output_metadata(counts.metadata())

    def load_input(self, context: dg.InputContext):
        key = context.asset_key
        folds = _partition_folds(context) if storage(key.path).per_fold else None
        return _load_frames(self.warehouse.get(), key, context, folds)


class FoldModels(Mapping[str, LoadedModel]):
    """Every fold with a recorded artifact of one model asset (``{fold: LoadedModel}``), loaded on access
    (what a non-partitioned asset receives; it picks the deployed fold)."""

    def __init__(self, loaders: Mapping[str, Callable[[], LoadedModel]]):
        self._loaders, self._cache = dict(loaders), {}

    @classmethod
    def of(cls, models: Mapping[str, LoadedModel]) -> FoldModels:
        """Already loaded models (tests, notebooks)."""
        return cls({k: (lambda m=m: m) for k, m in models.items()})

    def __getitem__(self, fold: str) -> LoadedModel:
        if fold not in self._cache:
            self._cache[fold] = self._loaders[fold]()
        return self._cache[fold]

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def _load_record(rec: dict, root: Path, codec: Codec) -> LoadedModel:
    path = root / rec["path"]
    model = codec.load(path, rec["sha256"])
    return LoadedModel(model, rec["fold"], rec["path"], rec["sha256"], json.loads(rec["meta"] or "{}"))


class ModelIOManager(_WarehouseStore):
    """Per-fold model artifacts (files + ``models.artifacts``) and their tables; see the module docstring."""

    def handle_output(self, context: dg.OutputContext, obj: FoldModel) -> None:
        if not isinstance(obj, FoldModel):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a FoldModel, got {type(obj).__name__}")
        fold = context.asset_partition_key
        kind, codec = _codec(context.asset_key.path)
        data = codec.dump(obj.model, obj.meta)
        sha = sha256_bytes(data)
        rel = f"{fold}/{context.asset_key.path[-1]}-{sha[:12]}.{codec.suffix}"
        root = self.warehouse.artifact_root()
        wh = self.warehouse.get()
        old = artifact_records(wh, kind, [fold])
        previous = set(old["path"].to_list())
        atomic_write(root / rel, data)
        record = pl.DataFrame({"fold": [fold], "kind": [kind], "path": [rel], "sha256": [sha],
                               "meta": [json.dumps(dict(obj.meta), default=str, sort_keys=True)],
                               "created_at": [datetime.now(timezone.utc).replace(tzinfo=None)]})
        try:
            counts = write_asset(wh, storage(context.asset_key.path), dict(obj.tables), fold,
                                 extra=[(ARTIFACTS, record)])
        except BaseException:  # the transaction rolled back: the previous record (and its file) stay in force
            if rel not in previous:
                (root / rel).unlink(missing_ok=True)
            raise
        for stale in previous - {rel}:  # the replaced file, once the new record is committed
            (root / stale).unlink(missing_ok=True)
        context.add_output_metadata({"artifact": dg.MetadataValue.path(str(root / rel)), "artifact_path": rel,
                                     "sha256": sha, "artifact_bytes": len(data), **counts.metadata()})

    def load_input(self, context: dg.InputContext):
        key = context.asset_key
        wh = self.warehouse.get()
        folds = _partition_folds(context)
        if (context.definition_metadata or {}).get("part") is not None:
            return _load_frames(wh, key, context, folds)
        kind, codec = _codec(key.path)
        records = artifact_records(wh, kind, folds)
        root = self.warehouse.artifact_root()
        if folds is None:
            return FoldModels({r["fold"]: (lambda r=r: _load_record(r, root, codec))
                               for r in records.iter_rows(named=True)})
        if records.is_empty():
            raise dg.Failure(f"no {kind} artifact for fold {folds[0]}: materialize {key.to_user_string()} for this fold")
        return _load_record(records.row(0, named=True), root, codec)


def _publishing(manager: _WarehouseStore, init_context):
    """Yield ``manager`` for the run; afterwards publish the analyst snapshot if the run wrote (once per run
    and process: the second IO manager's teardown finds nothing left to publish)."""
    yield manager
    wh = manager.warehouse.get()
    if wh.publish_if_written():
        init_context.log.info(f"published the analyst snapshot {wh.snapshot_path}")


@dg.io_manager(required_resource_keys={"warehouse"},
               description="Polars frames <-> warehouse tables (warehouse.catalog), one transaction per output.")
def warehouse_io_manager(init_context):
    yield from _publishing(WarehouseIOManager(init_context.resources.warehouse), init_context)


@dg.io_manager(required_resource_keys={"warehouse"},
               description="Fold models <-> SHA-256-verified artifacts under the artifact root (relative paths).")
def model_io_manager(init_context):
    yield from _publishing(ModelIOManager(init_context.resources.warehouse), init_context)
