"""Group ``prescreen``: buy/sell classifiers per VIX regime, trained on each fold's train window only."""
import dagster as dg
import polars as pl

from assets._metadata import fold_lookahead_result, md_table
from assets.keys import FEATURES_DAILY, LABELS_FORWARD, MODELS_PRESCREEN, RAW_BARS, RAW_INDEX_BARS, REF_FOLDS, REGIMES_VIX
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.resources import FeatureStoreResource, PolicyResource, PrescreenResource, RegimeResource
from ml.data.universe import ALLOCATION_ASSETS
from ml.features import compute_features
from ml.folds import fold_from_frame
from ml.lookahead import check_lookahead
from ml.prescreen import evaluate_prescreen, score_prescreen, train_prescreen
from ml.regimes.vix import vix_regimes

CAUSAL_GENERATIONS = 3  # train-window blocks by default (g1, g2 score 2/3 of the window: the stock book's RL trains there)


@dg.asset(key=MODELS_PRESCREEN, partitions_def=folds_partitions, group_name="prescreen",
          kinds={"scikitlearn", "duckdb"}, io_manager_key="model_io_manager",
          ins={"features": dg.AssetIn(FEATURES_DAILY), "labels": dg.AssetIn(LABELS_FORWARD),
               "vix": dg.AssetIn(REGIMES_VIX), "folds": dg.AssetIn(REF_FOLDS)})
def prescreen_models(context: dg.AssetExecutionContext, prescreen: PrescreenResource, policy: PolicyResource,
                     features: pl.DataFrame, labels: pl.DataFrame, vix: pl.DataFrame, folds: pl.DataFrame) -> FoldModel:
    """Six models = {buy, sell} × {low, moderate, high} VIX regime (extreme folds into high), each an
    RF + HGB ensemble tuned by purged k-fold CV inside the train window; in causal generations (a score
    dated t comes from models whose labels all ended before t; 3 unless ``prescreen.generations`` is set): the
    stock book's RL members and a policy observing the scores read the train window's scores.
    Test-window scores, AUC / precision@k / Brier / calibration go to the warehouse; the models to the
    fold's ``prescreen`` artifact."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = prescreen.config()
    if prescreen.generations is None:  # the stock book's RL members train on the train window's scores
        cfg = cfg.model_copy(update={"generations": CAUSAL_GENERATIONS})
    elif policy.env_config().observation.prescreen and cfg.generations < 2:  # the policy needs train-window scores
        cfg = cfg.model_copy(update={"generations": CAUSAL_GENERATIONS})
        context.log.info(f"the configured policy observes prescreen scores: {CAUSAL_GENERATIONS} causal generations")
    features = features.filter(pl.col("date") <= fold.test_end).drop("source", "computed_at", strict=False)
    labels = labels.filter(pl.col("date") <= fold.test_end).drop("source", "computed_at", strict=False)
    context.log.info(f"fold {fold.key}: training prescreen models on {fold.train_start}..{fold.train_end}")
    models = train_prescreen(features, labels, vix, fold, cfg)
    summary = models.summary_frame()
    for row in summary.iter_rows(named=True):
        context.log.info(f"  {row.get('generation', '')} {row['side']}/{row['regime']}: n={row['n_train']:,} "
                         f"base rate {row['base_rate']:.3f} CV AUC rf={row['cv_auc_rf']} hgb={row['cv_auc_hgb']} "
                         f"({row['fit_seconds']:.1f} s)")
    result = evaluate_prescreen(models, features, labels, vix)
    metrics = result["metrics"]
    shown = [c for c in ("side", "regime", "n_rows", "base_rate", "roc_auc", "precision_at_k", "lift_at_k", "brier",
                         "baseline_roc_auc") if c in metrics.columns]
    context.add_output_metadata({
        "fold": fold.key,
        "test_metrics": dg.MetadataValue.md(md_table(metrics.select(shown))),
        "mean_test_roc_auc": float(metrics.filter(pl.col("regime") == "all")["roc_auc"].mean() or float("nan")),
        "fit_seconds": round(models.fit_seconds, 1),
    })
    scores = result["scores"].drop("buy", "sell", strict=False)
    return FoldModel(models, {"main": scores, "summary": summary.drop("fold", strict=False),
                              "metrics": metrics.drop("fold"), "calibration": result["calibration"].drop("fold")},
                     {"config": cfg.model_dump(), "features": list(models.feature_names),
                      "train": [fold.train_start, fold.train_end]})


@dg.asset_check(asset=MODELS_PRESCREEN, blocking=True, name="prescreen_scores_no_lookahead",
                additional_ins={"bars": dg.AssetIn(RAW_BARS, metadata={"tickers": list(ALLOCATION_ASSETS)}),
                                "index_bars": dg.AssetIn(RAW_INDEX_BARS), "folds": dg.AssetIn(REF_FOLDS)})
def prescreen_scores_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                                  regimes: RegimeResource, bars: pl.DataFrame, index_bars: pl.DataFrame,
                                  folds: pl.DataFrame, models: LoadedModel):
    """The allocation assets' prescreen scores (what a policy observing them reads) recomputed from
    truncated / garbled raw bars and VIX - features, VIX band, frozen models of every generation - must
    equal the full-history scores up to each cutoff inside the fold's window."""
    fold = fold_from_frame(folds, models.fold)
    window = bars.filter(pl.col("date") <= fold.test_end)
    feature_cfg, vix_cfg = features.config(), regimes.vix_config()

    def scores(b: pl.DataFrame, idx: pl.DataFrame) -> pl.DataFrame:
        feats = compute_features(b, idx, feature_cfg)
        regimes_ = vix_regimes(idx, feats.get_column("date").unique().sort(), vix_cfg)
        out = score_prescreen(models.model, feats, regimes_, start=fold.train_start)
        return out.select("ticker", "date", "buy_probability", "sell_probability")

    report = check_lookahead(scores, window, index_bars.filter(pl.col("date") <= fold.test_end),
                             **features.fold_lookahead_kwargs())
    return fold_lookahead_result(context, report, fold.key, tickers=list(ALLOCATION_ASSETS))
