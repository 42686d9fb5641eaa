"""`regimeflow run`: a failing blocking check stops the pipeline before any per-fold run."""
import struct
from datetime import date

import polars as pl
import pytest

from ml.data.csv_source import write_csv_dir
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from orchestration import cli
from warehouse import Warehouse
from warehouse.db import WarehouseVersionError, connect_file


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
    # write-audit-publish: the batch is rejected before anything is written, naming the rule, ticker and date
    assert "input rejected by the data-quality rules, nothing written" in out.err
    assert "rule bars_high_ge_open_close failed for 1 row: SPY" in out.err
    assert "--- fold" not in out.out


SMALL_PROFILE = """
resources:
  market: {config: {include_stocks: false, sector_etfs: [XLB, XLE, XLF, XLK, XLV], history_start: "2008-01-01"}}
  features: {config: {lookahead_cutoffs: 2}}
  regimes: {config: {hmm_restarts: 1}}
  prescreen: {config: {cv_splits: 2, n_jobs: 1, generations: 1}}
  policy: {config: {total_steps: 4096, num_envs: 16, episode_length: 128, offpolicy_total_steps: 2048,
                    offpolicy_num_envs: 16, qlearning_epochs_scale: 0.02}}
"""


@pytest.mark.slow
def test_moving_the_data_folder_keeps_run_decide_and_audit_working(tmp_path, monkeypatch, capsys):
    """Artifacts are recorded relative to the artifact root (the warehouse's folder by default): the whole
    data folder moves to another path and the pipeline, the decision and the audit find every model."""
    import shutil

    universe = Universe(include_stocks=False, sector_etfs=["XLB", "XLE", "XLF", "XLK", "XLV"],
                        history_start=date(2008, 1, 1), history_end=date(2014, 12, 31))
    csv_dir = write_csv_dir(generate_market(universe, seed=4), tmp_path / "market")
    profile = tmp_path / "small.yaml"
    profile.write_text(SMALL_PROFILE)
    data = tmp_path / "data"
    monkeypatch.setenv("REGIMEFLOW_WAREHOUSE", str(data / "warehouse" / "regimeflow.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)
    source = ["--source", "csv", "--data-dir", str(csv_dir), "--profile", str(profile)]
    assert cli.main(["run", *source, "--folds", "2014"]) == 0
    assert "daily decision:      2014-12-31 (fold 2014)" in capsys.readouterr().out

    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(data, moved)
    monkeypatch.setenv("REGIMEFLOW_WAREHOUSE", str(moved / "warehouse" / "regimeflow.duckdb"))
    assert cli.main(["run", *source, "--folds", "none"]) == 0
    assert cli.main(["run", "--job", "decide", "--profile", str(profile)]) == 0  # loads the deployed models
    assert cli.main(["audit"]) == 0
    out = capsys.readouterr().out
    assert "1 decisions replayed" in out and "1 match, 0 differ" in out
    assert not data.exists() and (moved / "warehouse" / "artifacts" / "2014").is_dir()


def test_the_walk_forward_report_waits_for_a_yearly_fold():
    from types import SimpleNamespace

    ok, failed = SimpleNamespace(success=True), SimpleNamespace(success=False)
    assert not cli._yearly_fold_succeeded([("seed-2008-2019", ok, 1.0)])  # seed fold alone: no report
    assert not cli._yearly_fold_succeeded([("2019", failed, 1.0), ("seed-2008-2019", ok, 1.0)])
    assert cli._yearly_fold_succeeded([("2019", ok, 1.0), ("seed-2008-2019", failed, 1.0)])


def _stamp_newer_storage_version(path) -> None:
    """Rewrite the DuckDB file's storage version to 999 (what a newer DuckDB writes: 2.x files are unreadable by
    the pinned 1.5) and fix the main header's checksum: DuckDB's checksum XORs ``word * 0xbf58476d1ce4e5b9`` over
    the 8-byte words after it, and the version's low half lies in the first word."""
    mul = lambda w: (w * 0xBF58476D1CE4E5B9) & (2**64 - 1)  # noqa: E731
    with open(path, "r+b") as fh:
        head = bytearray(fh.read(16))
        checksum, old = struct.unpack("<QQ", head)
        head[12:16] = struct.pack("<I", 999)
        new = struct.unpack("<Q", head[8:16])[0]
        head[0:8] = struct.pack("<Q", checksum ^ mul(old) ^ mul(new))
        fh.seek(0)
        fh.write(head)


def test_a_warehouse_from_a_newer_duckdb_stops_the_run_with_a_plain_message(tmp_path, monkeypatch, capsys):
    path = tmp_path / "wh.duckdb"
    with Warehouse(path).write():
        pass
    _stamp_newer_storage_version(path)
    with pytest.raises(WarehouseVersionError, match="regimeflow run --fresh"):
        connect_file(path, read_only=True)
    monkeypatch.setenv("REGIMEFLOW_WAREHOUSE", str(path))
    monkeypatch.setattr(cli, "_instance", lambda: (_ for _ in ()).throw(SystemExit("instance reached")))
    assert cli.main(["run", "--source", "synthetic", "--folds", "none"]) == 2  # stops before any run is launched
    err = capsys.readouterr().err
    assert "written by a newer DuckDB" in err and "Traceback" not in err
    # --fresh rebuilds it: the file is removed before anything opens it, and the run goes on
    with pytest.raises(SystemExit, match="instance reached"):
        cli.main(["run", "--source", "synthetic", "--folds", "none", "--fresh"])
    assert not path.exists()
