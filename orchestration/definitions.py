"""The code location: ``dagster dev`` loads ``defs`` from here (see workspace.yaml)."""
import dagster as dg

from assets import features, ingestion, ingestion_checks
from orchestration.jobs import ingest_job, main_job
from orchestration.resources import FeatureStoreResource, MarketDataResource, WarehouseResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, features]),
    asset_checks=dg.load_asset_checks_from_modules([ingestion_checks, features]),
    jobs=[ingest_job, main_job],
    resources={"warehouse": WarehouseResource(), "market": MarketDataResource(),
               "features": FeatureStoreResource()},
)
