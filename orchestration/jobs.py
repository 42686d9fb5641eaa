"""Jobs. ``main`` materializes every asset (and runs every check) on the default data source."""
import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest", selection=dg.AssetSelection.groups("ingestion"),
    description="Load market data into raw.* / ref.* and run the blocking data-quality checks.",
)
main_job = dg.define_asset_job(
    "main", selection=dg.AssetSelection.all(),
    description="The whole pipeline on the default data source (what the README quickstart runs).",
)
