"""Real services on localhost for the scale-out tests: a PostgreSQL server (the Dagster instance), a Redis server
(the Celery broker and result backend) and Celery worker processes of ``orchestration.celery_app``.

Each starts on a free loopback port under a temporary directory and stops (SIGTERM, then SIGKILL) on ``stop``.
PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` system user (``runuser``).
:func:`missing` says which programs are absent (``scripts/services.sh`` installs the Debian packages
``postgresql`` and ``redis-server`` when it can)."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def missing() -> list[str]:
    """The programs the stack needs that this machine lacks."""
    out = []
    if _postgres_bin() is None:
        out.append("postgresql (pg_ctl, initdb)")
    if shutil.which("redis-server") is None:
        out.append("redis-server")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        out.append("runuser (to run postgres as a non-root user)")
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready in {timeout_s:.0f} s\n{tail}")


def _stop(proc: subprocess.Popen | None, timeout_s: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in a fresh directory under the system temp dir (the server's user must
    reach it: pytest's own temp dirs are private to root), with database ``dagster`` (trust auth on loopback).
    ``stop`` shuts it down and removes the directory."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="regimeflow-pg-")))
    port: int = field(default_factory=free_port)
    user: str = "regimeflow"
    database: str = "dagster"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> Postgres:
        bindir = _postgres_bin()
        if bindir is None:
            raise RuntimeError("postgresql is not installed (Debian package postgresql)")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data, self.log = self.root / "data", self.root / "postgres.log"
        self._bindir, self._data = bindir, data
        self._run(str(bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        self.start_again()
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {self.database}")
        conn.close()
        return self

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(self._as_owner(*cmd), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start_again(self) -> None:
        """(Re)start the server on the same port and data directory."""
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self._bindir / "pg_ctl"), "-D", str(self._data), "-o", opts, "-l", str(self.log), "-w", "-t",
                  "60", "start")

    def halt(self, mode: str = "fast") -> None:
        """Shut the server down (``immediate``: like a crash), keeping its data."""
        if getattr(self, "_data", None) is not None and (self._data / "postmaster.pid").exists():
            subprocess.run(self._as_owner(str(self._bindir / "pg_ctl"), "-D", str(self._data), "-m", mode, "-w",
                                          "stop"), capture_output=True)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    """A Redis server without persistence; ``url`` is database 0."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / "redis.log"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", str(self.log)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def ready() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        _wait("redis-server", ready, 30, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class CeleryWorker:
    """``celery -A orchestration.celery_app worker`` on ``queues``: one process executing steps (prefork pool of
    one child, so a step runs in a child process of the worker: ``pool_pid``); ``env`` adds to os.environ."""

    name: str
    root: Path
    env: dict[str, str]
    queues: str = "cpu"
    proc: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / f"{self.name}.log"
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "orchestration.celery_app", "worker", "-Q", self.queues,
             "--concurrency", "1", "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--logfile", str(self.log)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(f"celery worker {self.name}", lambda: self.log.exists() and " ready." in self.log.read_text(), 120,
              self.log)
        return self

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def pool_pids(self) -> list[int]:
        """PIDs of the worker's pool children (the processes that execute steps)."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)



def cluster_env(postgres: Postgres, redis: Redis, home: Path) -> dict[str, str]:
    """The environment of ``deploy/cluster/cluster.env`` pointing at these services, with ``home`` as
    ``$DAGSTER_HOME`` holding a copy of ``deploy/cluster/dagster.yaml`` (the deploy file itself is what runs)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "cluster" / "dagster.yaml", home / "dagster.yaml")
    return {"DAGSTER_HOME": str(home), "REGIMEFLOW_DAGSTER_LOGS": str(home / "logs"),
            "REGIMEFLOW_PG_HOST": "127.0.0.1", "REGIMEFLOW_PG_PORT": str(postgres.port),
            "REGIMEFLOW_PG_DB": postgres.database, "REGIMEFLOW_PG_USER": postgres.user,
            "REGIMEFLOW_PG_PASSWORD": "trust-auth-ignores-it", "REGIMEFLOW_CELERY_BROKER": redis.url}
