"""Shared fixtures. Tests never touch the network: any non-loopback connection fails the test."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from benchmarks._data import market_dir

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise OSError(f"tests must not use the network (tried to connect to {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    for var in ("REGIMEFLOW_SOURCE", "REGIMEFLOW_DATA_DIR", "REGIMEFLOW_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real snapshot (``$REGIMEFLOW_TEST_DATA_DIR`` or ../shared/data/market); skips where absent."""
    root = market_dir()
    if root is None:
        pytest.skip("real market snapshot not found (set REGIMEFLOW_TEST_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def small_universe():
    from datetime import date

    from ml.data.universe import Universe

    return Universe(
        sector_etfs=["XLK", "XLF", "XLE"],
        stocks=["AAA", "BBB"],
        history_start=date(2019, 1, 1),
        history_end=date(2020, 12, 31),
    )


@pytest.fixture(scope="session")
def small_market(small_universe):
    from ml.data.synthetic import generate_market

    return generate_market(small_universe, seed=3)


@pytest.fixture
def csv_dir(tmp_path, small_market) -> Path:
    """A small synthetic market written in the snapshot CSV layout (AAA gzipped)."""
    from ml.data.csv_source import write_csv_dir

    return write_csv_dir(small_market, tmp_path / "market", gzip_tickers=frozenset({"AAA"}))


@pytest.fixture
def warehouse(tmp_path):
    from warehouse import Warehouse

    return Warehouse(tmp_path / "wh" / "regimeflow.duckdb", lock_timeout_s=30)


@pytest.fixture(scope="session")
def small_fold_reference(tmp_path_factory) -> dict:
    """The in-process reference of the cluster tests (``test_scale_out``, ``test_lake``), run once per session:
    ``regimeflow run --folds 2013,2014`` with their small profile on a file warehouse and a SQLite instance.
    What runs on Celery workers or on a DuckLake must equal its outputs bit for bit."""
    from test_scale_out import FOLDS, PROFILE, _cli

    tmp = tmp_path_factory.mktemp("reference")
    profile = tmp / "small.yaml"
    profile.write_text(PROFILE)
    env = {"REGIMEFLOW_WAREHOUSE": str(tmp / "ref" / "wh.duckdb"), "DAGSTER_HOME": str(tmp / "ref_home"),
           "REGIMEFLOW_EXECUTOR": "in_process"}
    done = _cli(["run", "--source", "synthetic", "--profile", str(profile), "--folds", FOLDS], env, tmp,
                tmp / "ref.log")
    assert done.returncode == 0, (tmp / "ref.log").read_text()[-4000:]
    return {"wh": tmp / "ref" / "wh.duckdb", "env": env}
