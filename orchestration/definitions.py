"""The code location: ``dagster dev`` loads ``defs`` from here (see workspace.yaml)."""
import dagster as dg

from assets import ingestion, ingestion_checks
from orchestration.jobs import ingest_job, main_job
from orchestration.resources import MarketDataResource, WarehouseResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion]),
    asset_checks=dg.load_asset_checks_from_modules([ingestion_checks]),
    jobs=[ingest_job, main_job],
    resources={"warehouse": WarehouseResource(), "market": MarketDataResource()},
)
