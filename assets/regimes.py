"""Group ``regimes``: VIX bands per date, and causal sector HMMs fitted per walk-forward fold."""

import dagster as dg
import polars as pl

from assets._metadata import fold_lookahead_result, md_table
from assets.keys import (
    RAW_BARS,
    RAW_INDEX_BARS,
    REF_FOLDS,
    REF_SECTORS,
    REF_TRADING_CALENDAR,
    REGIMES_SECTOR_HMM,
    REGIMES_SECTOR_HMM_LIVE,
    REGIMES_VIX,
)
from infra.automation import eager_when_checks_pass
from infra.io_managers import FoldModel, FoldModels, LoadedModel
from infra.partitions import folds_partitions
from infra.resources import FeatureStoreResource, RegimeResource
from ml.folds import deployed_fold, fold_from_frame
from ml.lookahead import check_lookahead
from ml.regimes.hmm import (
    SectorHmms,
    fit_sector_hmms,
    hmm_report_frames,
    sector_filtered_probabilities,
    sector_observations,
)
from ml.regimes.vix import vix_regimes

GROUP = "regimes"
FOLD_INPUTS = {"bars": dg.AssetIn(RAW_BARS), "sectors": dg.AssetIn(REF_SECTORS), "folds": dg.AssetIn(REF_FOLDS)}


@dg.asset(key=REGIMES_VIX, group_name=GROUP, kinds={"duckdb"}, automation_condition=eager_when_checks_pass(),
          ins={"index_bars": dg.AssetIn(RAW_INDEX_BARS), "calendar": dg.AssetIn(REF_TRADING_CALENDAR)})
def vix_regime_table(context: dg.AssetExecutionContext, regimes: RegimeResource, index_bars: pl.DataFrame,
                     calendar: pl.DataFrame) -> pl.DataFrame:
    """Per trading date: VIX close (known at the close of t), 4-band regime and 5-bucket reporting label."""
    cfg = regimes.vix_config()
    frame = vix_regimes(index_bars, calendar.get_column("date"), cfg)
    context.add_output_metadata({
        "dagster/row_count": frame.height,
        "band_edges": list(cfg.band_edges),
        "bucket_edges": list(cfg.bucket_edges),
        "days_per_bucket": dg.MetadataValue.md(md_table(frame.group_by("bucket").len().sort("len", descending=True))),
        "days_per_band": dg.MetadataValue.md(md_table(frame.group_by("band").len().sort("band"))),
    })
    return frame


@dg.asset(key=REGIMES_SECTOR_HMM, partitions_def=folds_partitions, group_name=GROUP, kinds={"duckdb", "hmmlearn"},
          io_manager_key="model_io_manager", ins=FOLD_INPUTS)
def sector_hmm(context: dg.AssetExecutionContext, regimes: RegimeResource, bars: pl.DataFrame,
               sectors: pl.DataFrame, folds: pl.DataFrame) -> FoldModel:
    """One 3-state Gaussian HMM per GICS sector fitted on the fold's train window only (saved as the fold's
    ``sector_hmm`` artifact); forward-filtered (causal) Bull/Sideways/Bear probabilities from train start to
    test end (``regimes.sector_hmm``, what policies observe), with fit reports."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = regimes.hmm_config()
    obs = sector_observations(bars.filter(pl.col("date") <= fold.test_end), sectors, cfg)
    context.log.info(f"fold {fold.key}: fitting {obs['sector'].n_unique()} sector HMMs on "
                     f"{fold.train_start}..{fold.train_end} ({cfg.restarts} restarts each)")
    hmms = SectorHmms(fit_sector_hmms(obs, fold.train_start, fold.train_end, cfg), cfg)
    skipped = sorted(set(obs["sector"]) - set(hmms.fitted))
    for sector in skipped:
        context.log.warning(f"sector {sector}: too few train observations before {fold.train_end}, no HMM")
    context.log.info("log-likelihoods (restarts converged): " + ", ".join(
        f"{s} {f.log_likelihood:.0f} ({sum(f.restart_converged)}/{len(f.restart_converged)})"
        for s, f in hmms.fitted.items()))
    for sector in (s for s, f in hmms.fitted.items() if not f.converged):
        context.log.warning(f"sector {sector}: the kept EM restart did not converge")
    probs = sector_filtered_probabilities(hmms.fitted, obs).filter(pl.col("date") >= fold.train_start)
    report = hmm_report_frames(hmms.fitted, probs, (fold.test_start, fold.test_end))
    tables = {"main": probs}
    if report["summary"].height:
        tables |= {"summary": report["summary"].with_columns(pl.col("first_date", "last_date").cast(pl.Date)),
                   "states": report["states"], "transitions": report["transitions"]}
    states = report["states"]
    context.add_output_metadata({
        "fold": fold.key,
        "train_window": f"{fold.train_start} .. {fold.train_end}",
        "sectors_fitted": len(hmms.fitted),
        "sectors_skipped": skipped,
        "not_converged": [s for s, f in hmms.fitted.items() if not f.converged],
        "dagster/row_count": probs.height,
        "states": dg.MetadataValue.md(md_table(
            states.select("sector", "state", "expected_duration_days", "share_of_days", "mean_ret_mean", "mean_vol")
            if states.height and "mean_vol" in states.columns else states)),
    })
    return FoldModel(hmms, tables, {"sectors": sorted(hmms.fitted), "train": [fold.train_start, fold.train_end]})


@dg.asset_check(asset=REGIMES_SECTOR_HMM, blocking=True, name="sector_hmm_no_lookahead",
                additional_ins=FOLD_INPUTS)
def sector_hmm_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                            bars: pl.DataFrame, sectors: pl.DataFrame, folds: pl.DataFrame, hmms: LoadedModel):
    """The fold's filtered probabilities recomputed with its frozen HMMs on history truncated / garbled after
    K cutoffs inside the fold's window must equal the stored ones up to each cutoff (policies observe them)."""
    fold = fold_from_frame(folds, hmms.fold)
    window = bars.filter(pl.col("date") <= fold.test_end)

    def probabilities(b: pl.DataFrame) -> pl.DataFrame:  # the checker keys rows by (ticker, date)
        out = hmms.model.probabilities(b, sectors).filter(pl.col("date") >= fold.train_start)
        return out.drop("state").rename({"sector": "ticker"})

    report = check_lookahead(probabilities, window, **features.fold_lookahead_kwargs())
    return fold_lookahead_result(context, report, fold.key)


@dg.asset(key=REGIMES_SECTOR_HMM_LIVE, group_name=GROUP, kinds={"duckdb"}, automation_condition=eager_when_checks_pass(),
          ins={**FOLD_INPUTS, "hmms": dg.AssetIn(REGIMES_SECTOR_HMM)})
def sector_hmm_live(context: dg.AssetExecutionContext, bars: pl.DataFrame, sectors: pl.DataFrame,
                    folds: pl.DataFrame, hmms: FoldModels) -> pl.DataFrame | None:
    """Sector Bull/Sideways/Bear probabilities up to the newest bar from the deployed fold's HMMs (the newest
    training window with saved HMMs, as the daily decision). Forward-filtered with the fold's frozen
    parameters and train-window scaler: known at the close of each date, identical to ``regimes.sector_hmm``
    where both exist. Each sector stops at its last observed session (``as_of``): a sector ETF that stopped
    updating gets no state on later days (warned), so nothing stale is presented as today's."""
    fold = deployed_fold(folds, list(hmms))
    if fold is None:  # nothing to deploy yet: not an error here (the decision step says what is missing)
        context.log.warning("no fold has saved sector HMMs yet: no live sector states (run the fold job for the "
                            "newest fold)")
        return None
    probs = hmms[fold.key].model.live_probabilities(bars, sectors).filter(pl.col("date") >= fold.train_start)
    newest = bars["date"].max()
    last = probs.filter(pl.col("date") == probs["date"].max())
    stale = probs.group_by("sector").agg(pl.col("as_of").first()).filter(pl.col("as_of") < newest).sort("sector")
    context.log.info(f"sector HMM states on {probs['date'].max()} (fold {fold.key}): "
                     + ", ".join(f"{r['sector']} {r['state']}" for r in last.iter_rows(named=True)))
    if stale.height:
        context.log.warning(f"{stale.height} sector(s) have no bar on {newest}; their live states stop at their "
                            "last observed session: " + ", ".join(f"{s} (as of {d})" for s, d in stale.iter_rows()))
    context.add_output_metadata({
        "fold": fold.key, "dagster/row_count": probs.height, "last_date": str(probs["date"].max()),
        "stale_sectors": dg.MetadataValue.json({s: str(d) for s, d in stale.iter_rows()}),
        "latest_states": dg.MetadataValue.md(md_table(last.select("sector", "state", *[c for c in last.columns
                                                                                        if c.startswith("p_")]))),
    })
    return probs.select(pl.lit(fold.key).alias("fold"), pl.all())
