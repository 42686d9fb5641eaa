"""The code location: ``dagster dev`` loads ``defs`` from here (see workspace.yaml).

Every resource starts from the ``ml`` defaults; profiles (``orchestration/profiles/*.yaml``) and the
launchpad override them per run. Frames travel through the warehouse IO manager, fold models through the
model IO manager (``infra.io_managers``)."""
import dagster as dg

from assets import (
    decisions,
    evaluation,
    features,
    folds,
    ingestion,
    ingestion_checks,
    policies,
    prescreen,
    qlearning,
    regimes,
    research,
    sector_book,
    stock_book,
)
from infra.io_managers import model_io_manager, warehouse_io_manager
from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    MonitoringResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    RiskResource,
    SectorBookResource,
    StockBookResource,
    WarehouseResource,
)
from orchestration.executors import default_executor
from orchestration.jobs import ALL_JOBS
from orchestration.schedules import nightly_schedule
from orchestration.sensors import ALL_SENSORS

ASSET_MODULES = [ingestion, features, folds, regimes, prescreen, policies, qlearning, evaluation, sector_book, stock_book,
                 decisions, research]
CHECK_MODULES = [ingestion_checks, features, regimes, prescreen, qlearning, sector_book, stock_book]


def storage_resources(warehouse: WarehouseResource) -> dict:
    """The warehouse and the two IO managers that read and write through it."""
    return {"warehouse": warehouse, "io_manager": warehouse_io_manager, "model_io_manager": model_io_manager}


DEFAULT_RESOURCES = {
    **storage_resources(WarehouseResource()),
    "market": MarketDataResource(),
    "features": FeatureStoreResource(),
    "regimes": RegimeResource(),
    "prescreen": PrescreenResource(),
    "policy": PolicyResource(),
    "risk": RiskResource(),
    "monitoring": MonitoringResource(),
    "sector_book": SectorBookResource(),
    "stock_book": StockBookResource(),
}

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    # Default: steps run one after another inside each run: every heavy step (PPO's 2 update threads, the
    # prescreen's 2 worker processes) already uses both cores of a 2-core machine, and oversubscribed
    # torch threads slow down by 10x. $REGIMEFLOW_EXECUTOR=celery sends each step to Celery workers instead
    # (orchestration.executors).
    executor=default_executor(),
    asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
    jobs=ALL_JOBS,
    schedules=[nightly_schedule],
    sensors=ALL_SENSORS,
    resources=DEFAULT_RESOURCES,
)


def definitions_with(**resources) -> dg.Definitions:
    """``defs`` with some resources replaced (tests, benchmarks, notebooks): the same assets, checks, jobs,
    schedules, sensors and executor, e.g. ``definitions_with(warehouse=WarehouseResource(path=...))`` (the IO
    managers always use the ``warehouse`` resource)."""
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          schedules=defs.schedules, sensors=defs.sensors, executor=defs.executor,
                          resources={**DEFAULT_RESOURCES, **resources})


def job_named(name: str) -> dg.JobDefinition:
    """Job ``name`` of ``defs`` resolved: the reconstructor of :func:`reconstructable_job` (Celery workers and
    ``dg.execute_job`` rebuild the job in their own process from this module)."""
    return defs.resolve_job_def(name)


def reconstructable_job(name: str):
    """A reconstructable pointer to job ``name`` (what multi-process executors need, e.g. Celery)."""
    return dg.build_reconstructable_job("orchestration.definitions", "job_named", reconstructable_args=(name,))
