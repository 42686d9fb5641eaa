"""Group ``prescreen``: buy/sell classifiers per VIX regime, trained on each fold's train window only."""
import dagster as dg
import polars as pl

from assets.keys import FEATURES_DAILY, LABELS_FORWARD, MODELS_PRESCREEN, REF_FOLDS, REGIMES_VIX
from assets._metadata import md_table
from ml.prescreen import evaluate_prescreen, save_models, train_prescreen
from orchestration.partitions import folds_partitions
from orchestration.resources import PrescreenResource, WarehouseResource
from warehouse.artifacts import record_artifact
from warehouse.features import FEATURES_TABLE, LABELS_TABLE
from warehouse.folds import resolve_fold
from warehouse.tables import read_table, write_fold_rows


@dg.asset(key=MODELS_PRESCREEN, deps=[FEATURES_DAILY, LABELS_FORWARD, REGIMES_VIX, REF_FOLDS],
          partitions_def=folds_partitions, group_name="prescreen", kinds={"scikitlearn", "duckdb"})
def prescreen_models(context: dg.AssetExecutionContext, prescreen: PrescreenResource, warehouse: WarehouseResource):
    """Six models = {buy, sell} × {low, moderate, high} VIX regime (extreme folds into high), each an
    RF + HGB ensemble tuned by purged k-fold CV inside the train window. Scores the test window into
    ``models.prescreen_scores``; test-window AUC / precision@k / Brier / calibration into ``eval.*``."""
    wh = warehouse.get()
    fold = resolve_fold(wh, context.partition_key)
    cfg = prescreen.config()
    until = "WHERE date <= ?"
    features = read_table(wh, FEATURES_TABLE, until, [fold.test_end]).drop("source", "computed_at")
    labels = read_table(wh, LABELS_TABLE, until, [fold.test_end]).drop("source", "computed_at")
    vix = read_table(wh, "regimes.vix")
    context.log.info(f"fold {fold.key}: training 6 prescreen models on {fold.train_start}..{fold.train_end}")
    models = train_prescreen(features, labels, vix, fold, cfg)
    summary = models.summary_frame()
    for row in summary.iter_rows(named=True):
        context.log.info(f"  {row['side']}/{row['regime']}: n={row['n_train']:,} base rate {row['base_rate']:.3f} "
                         f"CV AUC rf={row['cv_auc_rf']} hgb={row['cv_auc_hgb']} ({row['fit_seconds']:.1f} s)")
    result = evaluate_prescreen(models, features, labels, vix)
    path = warehouse.artifact_dir(fold.key) / "prescreen.joblib"
    sha = save_models(models, path)
    record_artifact(wh, fold.key, "prescreen", path, sha,
                    {"config": cfg.model_dump(), "features": list(models.feature_names),
                     "train": [fold.train_start, fold.train_end]})
    scores = result["scores"].select("ticker", "date", "regime", "buy_probability", "sell_probability")
    write_fold_rows(wh, "models.prescreen_scores", scores, fold.key, ["ticker", "date"],
                    "Test-window P(buy) / P(sell) per fold, ticker, date from the model of the day's VIX regime.")
    write_fold_rows(wh, "models.prescreen_summary", summary.drop("fold"), fold.key, ["side", "regime"],
                    "Per fold and model slot: training size, base rate, chosen hyper-parameters, CV AUC.")
    write_fold_rows(wh, "eval.prescreen_metrics", result["metrics"].drop("fold"), fold.key, ["side", "regime"],
                    "Test-window ROC AUC, precision at top-k, Brier score per fold and model slot.")
    write_fold_rows(wh, "eval.prescreen_calibration", result["calibration"].drop("fold"), fold.key,
                    ["side", "regime", "bin"], "Test-window calibration table (10 bins) per fold and model slot.")
    metrics = result["metrics"]
    shown = [c for c in ("side", "regime", "n_rows", "base_rate", "roc_auc", "precision_at_k", "lift_at_k", "brier", "baseline_roc_auc") if c in metrics.columns]
    return dg.MaterializeResult(metadata={
        "fold": fold.key,
        "artifact": dg.MetadataValue.path(str(path)),
        "sha256": sha,
        "test_metrics": dg.MetadataValue.md(md_table(metrics.select(shown))),
        "mean_test_roc_auc": float(metrics.filter(pl.col("regime") == "all")["roc_auc"].mean() or float("nan")),
        "dagster/row_count": scores.height,
    })
