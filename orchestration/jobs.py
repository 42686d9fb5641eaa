"""Jobs.

* ``prepare``: everything that is not per fold (ingestion, features, labels, VIX regimes, folds) with checks.
* ``fold``: the per-fold assets (sector HMMs, prescreen, policies, evaluation), one run per fold partition.
* ``ingest``: ingestion only.

* ``report``: the walk-forward track over all folds, its report and the analyst views.

``regimeflow run`` (the README's main job) runs ``prepare``, ``fold`` for every fold partition, then ``report``.
"""
import dagster as dg


def _partitioned(defs_assets) -> dg.AssetSelection:
    """The assets partitioned by fold (their job's partitioning is inferred from them)."""
    keys = [spec.key for a in defs_assets for spec in getattr(a, "specs", [])
            if getattr(a, "partitions_def", None) is not None]
    return dg.AssetSelection.assets(*keys)


ingest_job = dg.define_asset_job(
    "ingest", selection=dg.AssetSelection.groups("ingestion"),
    description="Load market data into raw.* / ref.* and run the blocking data-quality checks.",
)


def build_jobs(assets) -> list:
    fold_assets = _partitioned(assets)
    after_folds = fold_assets.downstream() - fold_assets
    prepare = dg.define_asset_job(
        "prepare", selection=dg.AssetSelection.all() - fold_assets.downstream(),
        description="Everything not per fold: ingestion, features, labels, VIX regimes, folds (with checks).",
    )
    fold = dg.define_asset_job(
        "fold", selection=fold_assets,
        description="Per-fold models and evaluation for one fold partition.",
    )
    report = dg.define_asset_job(
        "report", selection=after_folds,
        description="Across folds: the stitched walk-forward track, its report and the analyst views.",
    )
    return [ingest_job, prepare, fold, report]
