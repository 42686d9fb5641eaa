"""The code location: ``dagster dev`` loads ``defs`` from here (see workspace.yaml)."""
import dagster as dg

from assets import decisions, evaluation, features, folds, ingestion, ingestion_checks, policies, prescreen, regimes
from orchestration.jobs import ALL_JOBS
from orchestration.profiles import profile_settings
from orchestration.resources import (
    FeatureStoreResource,
    MarketDataResource,
    MonitoringResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    RiskResource,
    WarehouseResource,
)
from orchestration.schedules import nightly_schedule
from orchestration.sensors import ALL_SENSORS

all_assets = dg.load_assets_from_modules([ingestion, features, folds, regimes, prescreen, policies, evaluation,
                                          decisions])

defs = dg.Definitions(
    assets=all_assets,
    # Steps run one after another inside each run: every heavy step (PPO's 2 update threads, the
    # prescreen's 2 worker processes) already uses both cores of a 2-core machine, and oversubscribed
    # torch threads slow down by 10x. Parallelism across folds comes from launching several fold runs.
    executor=dg.in_process_executor,
    asset_checks=dg.load_asset_checks_from_modules([ingestion_checks, features]),
    jobs=ALL_JOBS,
    schedules=[nightly_schedule],
    sensors=ALL_SENSORS,
    resources={
        "warehouse": WarehouseResource(),
        "market": MarketDataResource(),
        "features": FeatureStoreResource(),
        "regimes": RegimeResource(**profile_settings("regimes")),
        "prescreen": PrescreenResource(**profile_settings("prescreen")),
        "policy": PolicyResource(**profile_settings("policy")),
        "risk": RiskResource(),
        "monitoring": MonitoringResource(),
    },
)


def definitions_with(**resources) -> dg.Definitions:
    """``defs`` with some resources replaced (tests, benchmarks, notebooks): the same assets, checks, jobs,
    schedules, sensors and executor, e.g. ``definitions_with(warehouse=WarehouseResource(path=...))``."""
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          schedules=defs.schedules, sensors=defs.sensors, executor=defs.executor,
                          resources={**defs.resources, **resources})
