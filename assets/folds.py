"""``ref/folds``: default walk-forward folds computed from the trading calendar, registered as partitions."""
import dagster as dg

from assets._metadata import md_table
from assets.keys import REF_FOLDS, REF_TRADING_CALENDAR
from ml.folds import folds_frame, pipeline_folds
from ml.labels import MAX_LABEL_HORIZON
from orchestration.partitions import FOLDS
from orchestration.resources import WarehouseResource
from warehouse import ingest as wi
from warehouse.folds import write_folds


@dg.asset(key=REF_FOLDS, deps=[REF_TRADING_CALENDAR], group_name="folds", kinds={"duckdb"})
def folds(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Expanding-window yearly folds (test = one calendar year, 2012 … last complete year) plus
    ``seed-2008-2019``. Train windows start after the longest feature warm-up; an embargo of the
    longest label horizon (trading days) separates train end and test start. New keys are added to
    the ``folds`` dynamic partitions."""
    wh = warehouse.get()
    calendar = wi.read_calendar(wh)
    fold_list = pipeline_folds(calendar)
    if not fold_list:
        raise dg.Failure(f"the trading calendar ({calendar.min()}..{calendar.max()}) is too short for any fold")
    frame = folds_frame(fold_list)
    write_folds(wh, frame)
    existing = set(context.instance.get_dynamic_partitions(FOLDS))
    new = [f.key for f in fold_list if f.key not in existing]
    if new:
        context.instance.add_dynamic_partitions(FOLDS, new)
    context.log.info(f"{len(fold_list)} folds ({len(new)} new partitions): {[f.key for f in fold_list]}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "new_partitions": new,
        "embargo_sessions": MAX_LABEL_HORIZON,
        "folds": dg.MetadataValue.md(md_table(frame)),
    })
