"""``ref/folds``: default walk-forward folds computed from the trading calendar, registered as partitions."""
import dagster as dg
import polars as pl

from assets._metadata import md_table
from assets.keys import REF_FOLDS, REF_TRADING_CALENDAR
from infra.partitions import FOLDS
from ml.folds import folds_frame, pipeline_folds
from ml.labels import MAX_LABEL_HORIZON


@dg.asset(key=REF_FOLDS, group_name="folds", kinds={"duckdb"}, ins={"calendar": dg.AssetIn(REF_TRADING_CALENDAR)})
def folds(context: dg.AssetExecutionContext, calendar: pl.DataFrame) -> pl.DataFrame:
    """Expanding-window yearly folds (test = one calendar year, 2012 … the calendar's last year) plus
    ``seed-2008-2019``. Train windows start after the longest feature warm-up; an embargo of the
    longest label horizon (trading days) separates train end and test start. The fold of a year that has
    begun but not ended is ``partial``: it exists from the year's first session (its train window is final),
    and every run moves its ``test_end`` to the newest session (an upsert: only ``test_end`` / ``partial``
    change). New keys are added to the ``folds`` dynamic partitions."""
    dates = calendar.get_column("date")
    fold_list = pipeline_folds(dates)
    if not fold_list:
        raise dg.Failure(f"the trading calendar ({dates.min()}..{dates.max()}) is too short for any fold")
    frame = folds_frame(fold_list)
    existing = set(context.instance.get_dynamic_partitions(FOLDS))
    new = [f.key for f in fold_list if f.key not in existing]
    if new:
        context.instance.add_dynamic_partitions(FOLDS, new)
    partial = [f.label for f in fold_list if f.partial]
    context.log.info(f"{len(fold_list)} folds ({len(new)} new partitions): {[f.key for f in fold_list]}"
                     + (f"; partial (test window still growing): {partial}" if partial else ""))
    context.add_output_metadata({
        "dagster/row_count": frame.height,
        "new_partitions": new,
        "partial_folds": partial,
        "embargo_sessions": MAX_LABEL_HORIZON,
        "folds": dg.MetadataValue.md(md_table(frame)),
    })
    return frame
