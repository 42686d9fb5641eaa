"""Source resolution: auto picks csv > yahoo > synthetic; explicit choices never fall back."""
from __future__ import annotations

import pytest

from ml.data.csv_source import CsvMarketSource
from ml.data.market import SourceUnavailableError
from ml.data.sources import SYNTHETIC_WARNING, SyntheticMarketSource, YahooSource, resolve_source

OFFLINE = dict(is_yahoo_reachable=lambda: False)
ONLINE = dict(is_yahoo_reachable=lambda: True)


def test_auto_uses_configured_csv_dir(csv_dir, tmp_path):
    r = resolve_source(None, env={"REGIMEFLOW_DATA_DIR": str(csv_dir)}, default_dir=tmp_path / "none", **ONLINE)
    assert isinstance(r.source, CsvMarketSource) and r.source.root == csv_dir.resolve()
    assert r.warning is None


def test_auto_uses_default_dir_when_present(csv_dir):
    r = resolve_source(None, env={}, default_dir=csv_dir, **ONLINE)
    assert isinstance(r.source, CsvMarketSource) and "default path" in r.reason


def test_auto_uses_yahoo_when_online_and_no_csv(tmp_path):
    r = resolve_source(None, env={}, default_dir=tmp_path / "none", **ONLINE)
    assert isinstance(r.source, YahooSource)


def test_auto_falls_back_to_synthetic_loudly(tmp_path):
    r = resolve_source(None, env={}, default_dir=tmp_path / "none", seed=5, **OFFLINE)
    assert isinstance(r.source, SyntheticMarketSource) and r.source.seed == 5
    assert r.warning == SYNTHETIC_WARNING and "SYNTHETIC" in r.warning


def test_explicit_yahoo_offline_fails_clearly(tmp_path):
    with pytest.raises(SourceUnavailableError, match="not reachable"):
        resolve_source("yahoo", env={}, default_dir=tmp_path, **OFFLINE)


def test_explicit_csv_missing_dir_fails(tmp_path):
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        resolve_source("csv", env={}, default_dir=tmp_path / "none", **ONLINE)
    with pytest.raises(SourceUnavailableError, match="REGIMEFLOW_DATA_DIR"):
        resolve_source(None, env={"REGIMEFLOW_DATA_DIR": str(tmp_path / "gone")}, **ONLINE)


def test_env_source_override(tmp_path, csv_dir):
    r = resolve_source(None, env={"REGIMEFLOW_SOURCE": "synthetic", "REGIMEFLOW_DATA_DIR": str(csv_dir)}, **ONLINE)
    assert isinstance(r.source, SyntheticMarketSource)
    with pytest.raises(ValueError, match="unknown market source"):
        resolve_source("parquet", env={})


def test_yahoo_reachability_uses_no_network_in_tests():
    from ml.data.yahoo_source import YahooMarketSource

    assert YahooMarketSource.is_reachable(timeout=0.5) is False  # the conftest guard refuses the connection
