"""Group ``regimes``: VIX bands per date, and causal sector HMMs fitted per walk-forward fold."""
import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets._models import load_fold_hmms
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
from ml.regimes.hmm import (
    fit_sector_hmms,
    hmm_observations,
    hmm_report_frames,
    sector_filtered_probabilities,
    sector_groups,
    sector_hmms_to_json,
)
from ml.prescreen import file_sha256
from ml.regimes.vix import vix_regimes
from ml.reports.files import atomic_write
from orchestration.automation import eager_when_checks_pass
from orchestration.partitions import folds_partitions
from orchestration.resources import RegimeResource, WarehouseResource
from warehouse import ingest as wi
from warehouse.artifacts import newest_fold_with, record_artifact
from warehouse.folds import resolve_fold
from warehouse.tables import write_fold_rows, write_replacing

GROUP = "regimes"


@dg.asset(key=REGIMES_VIX, deps=[RAW_INDEX_BARS, REF_TRADING_CALENDAR], group_name=GROUP, kinds={"duckdb"},
          automation_condition=eager_when_checks_pass())
def vix_regime_table(context: dg.AssetExecutionContext, regimes: RegimeResource, warehouse: WarehouseResource):
    """Per trading date: VIX close (known at the close of t), 4-band regime and 5-bucket reporting label."""
    wh = warehouse.get()
    cfg = regimes.vix_config()
    frame = vix_regimes(wi.read_index_bars(wh), wi.read_calendar(wh), cfg)
    write_replacing(wh, "regimes.vix", frame, ["date"],
                    f"VIX regimes per date: band edges {cfg.band_edges}, bucket edges {cfg.bucket_edges}")
    days = frame.group_by("bucket").len().sort("len", descending=True)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "band_edges": list(cfg.band_edges),
        "bucket_edges": list(cfg.bucket_edges),
        "days_per_bucket": dg.MetadataValue.md(md_table(days)),
        "days_per_band": dg.MetadataValue.md(md_table(frame.group_by("band").len().sort("band"))),
    })


@dg.asset(key=REGIMES_SECTOR_HMM, deps=[RAW_BARS, REF_SECTORS, REF_FOLDS], partitions_def=folds_partitions,
          group_name=GROUP, kinds={"duckdb", "hmmlearn"})
def sector_hmm(context: dg.AssetExecutionContext, regimes: RegimeResource, warehouse: WarehouseResource):
    """One 3-state Gaussian HMM per GICS sector fitted on the fold's train window only; forward-filtered
    (causal) Bull/Sideways/Bear probabilities from train start to test end."""
    wh = warehouse.get()
    fold = resolve_fold(wh, context.partition_key)
    cfg = regimes.hmm_config()
    bars = wi.read_bars(wh).filter(pl.col("date") <= fold.test_end)
    groups = sector_groups(bars, wi.read_sectors(wh), cfg.mode)
    obs = hmm_observations(bars, groups, window=cfg.window, market_ticker=cfg.market_ticker)
    context.log.info(f"fold {fold.key}: fitting {groups['sector'].n_unique()} sector HMMs on "
                     f"{fold.train_start}..{fold.train_end} ({cfg.restarts} restarts each)")
    fitted = fit_sector_hmms(obs, fold.train_start, fold.train_end, cfg)
    skipped = sorted(set(groups["sector"]) - set(fitted))
    for sector in skipped:
        context.log.warning(f"sector {sector}: too few train observations before {fold.train_end}, no HMM")
    for sector, f in fitted.items():
        level = context.log.info if f.converged else context.log.warning
        level(f"sector {sector}: log-likelihood {f.log_likelihood:.1f}, converged={f.converged} "
              f"({sum(f.restart_converged)}/{len(f.restart_converged)} restarts converged)")
    path = warehouse.artifact_dir(fold.key) / "sector_hmms.json"
    atomic_write(path, sector_hmms_to_json(fitted, cfg).encode())
    record_artifact(wh, fold.key, "sector_hmm", path, file_sha256(path),
                    {"sectors": sorted(fitted), "train": [fold.train_start, fold.train_end]})
    probs = sector_filtered_probabilities(fitted, obs).filter(pl.col("date") >= fold.train_start)
    report = hmm_report_frames(fitted, probs, (fold.test_start, fold.test_end))
    write_fold_rows(wh, "regimes.sector_hmm", probs, fold.key, ["sector", "date"],
                    "Forward-filtered P(state_t | obs_1..t) per fold, sector, date (causal; known at close t).")
    summary = report["summary"]
    if summary.height:
        summary = summary.with_columns(pl.col("first_date", "last_date").cast(pl.Date))
        write_fold_rows(wh, "regimes.sector_hmm_summary", summary, fold.key, ["sector"],
                        "Per fold and sector: fit diagnostics; share of days over the test window.")
        write_fold_rows(wh, "regimes.sector_hmm_states", report["states"], fold.key, ["sector", "state"],
                        "Per fold, sector, state: duration 1/(1-p_ii) days, share of test days, state means/vols.")
        write_fold_rows(wh, "regimes.sector_hmm_transitions", report["transitions"], fold.key,
                        ["sector", "from_state", "to_state"], "Per fold and sector: HMM transition matrix.")
    not_converged = [s for s, f in fitted.items() if not f.converged]
    states = report["states"]
    return dg.MaterializeResult(metadata={
        "fold": fold.key,
        "train_window": f"{fold.train_start} .. {fold.train_end}",
        "sectors_fitted": len(fitted),
        "sectors_skipped": skipped,
        "not_converged": not_converged,
        "dagster/row_count": probs.height,
        "states": dg.MetadataValue.md(md_table(
            states.select("sector", "state", "expected_duration_days", "share_of_days", "mean_ret_mean", "mean_vol")
            if states.height and "mean_vol" in states.columns else states)),
        "transitions": dg.MetadataValue.md(md_table(report["transitions"])) if report["transitions"].height else "",
    })


@dg.asset(key=REGIMES_SECTOR_HMM_LIVE, deps=[RAW_BARS, REF_SECTORS, REGIMES_SECTOR_HMM], group_name=GROUP,
          kinds={"duckdb"}, automation_condition=eager_when_checks_pass())
def sector_hmm_live(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Sector Bull/Sideways/Bear probabilities up to the newest bar, from the newest fold whose HMMs are
    saved (the fold the daily decision deploys). Forward-filtered with the fold's frozen parameters and
    train-window scaler: known at the close of each date, identical to ``regimes.sector_hmm`` where both exist."""
    wh = warehouse.get()
    key = newest_fold_with(wh, "sector_hmm")
    if key is None:  # nothing to deploy yet: not an error here (the decision step says what is missing)
        context.log.warning("no fold has saved sector HMMs yet: no live sector states (run the fold job for the "
                            "newest fold)")
        return dg.MaterializeResult(metadata={"fold": "none", "dagster/row_count": 0})
    fold = resolve_fold(wh, key)
    fitted, cfg = load_fold_hmms(wh, key)
    bars = wi.read_bars(wh)
    groups = sector_groups(bars, wi.read_sectors(wh), cfg.mode)
    obs = hmm_observations(bars, groups, window=cfg.window, market_ticker=cfg.market_ticker)
    probs = sector_filtered_probabilities(fitted, obs).filter(pl.col("date") >= fold.train_start)
    write_replacing(wh, "regimes.sector_hmm_live", probs.select(pl.lit(key).alias("fold"), pl.all()),
                    ["sector", "date"],
                    "Sector HMM probabilities up to the newest bar from the deployed fold's HMMs (causal).")
    last = probs.filter(pl.col("date") == probs["date"].max())
    context.log.info(f"sector HMM states on {probs['date'].max()} (fold {key}): "
                     + ", ".join(f"{r['sector']} {r['state']}" for r in last.iter_rows(named=True)))
    return dg.MaterializeResult(metadata={
        "fold": key, "dagster/row_count": probs.height, "last_date": str(probs["date"].max()),
        "latest_states": dg.MetadataValue.md(md_table(last.select("sector", "state", *[c for c in last.columns
                                                                                        if c.startswith("p_")]))),
    })
