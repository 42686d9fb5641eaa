"""`regimeflow run`: a failing blocking check stops the pipeline before any per-fold run."""
from datetime import date

import polars as pl

from ml.data.csv_source import write_csv_dir
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from orchestration import cli


def test_blocking_check_failure_stops_before_folds(tmp_path, monkeypatch, capsys):
    universe = Universe(include_stocks=False, history_start=date(2019, 1, 1), history_end=date(2020, 12, 31))
    csv_dir = write_csv_dir(generate_market(universe, seed=2), tmp_path / "market")
    spy = csv_dir / "ohlcv" / "SPY.csv"
    frame = pl.read_csv(spy, try_parse_dates=True)
    frame.with_columns(pl.when(pl.col("date") == frame["date"][30]).then(pl.col("open") * 1.3)
                       .otherwise(pl.col("open")).alias("open")).write_csv(spy)
    monkeypatch.setenv("REGIMEFLOW_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["run", "--source", "csv", "--data-dir", str(csv_dir)])
    out = capsys.readouterr()
    assert rc == 1
    assert "blocking check failed: raw/bars:bars_high_ge_open_close" in out.err
    assert "--- fold" not in out.out and "FAILED raw/bars:bars_high_ge_open_close" in out.out
