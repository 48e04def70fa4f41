"""Runs of the web app: queued off the request thread, persisted in DuckDB.

Every run has a uuid4 hex id (the only thing ever joined to a path, and checked first), a row
in `runs` of DATA_DIR/oreflow.duckdb and, once done, its result at DATA_DIR/runs/<id>.nc.
Progress lives in memory while a run works; status, settings, the summary and any error
message live in the database, so they survive a restart. A run still queued or running when
the server stopped cannot be resumed: the next start marks it failed ('interrupted').
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import xarray as xr

from oreflow.network import Network
from oreflow.scenario import Scenario

log = logging.getLogger("oreflow.web")

ID_RE = re.compile(r"^[0-9a-f]{32}$")
INTERRUPTED = "interrupted: the server stopped before the run finished"
COLUMNS = ("id", "created_at", "started_at", "finished_at", "status", "message", "scenario",
           "scenario_sha256", "scenario_yaml", "paths", "seed", "months", "dataset_version",
           "summary")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,
    message VARCHAR,
    scenario VARCHAR NOT NULL,
    scenario_sha256 VARCHAR,
    scenario_yaml VARCHAR,
    paths BIGINT NOT NULL,
    seed UBIGINT NOT NULL,
    months INTEGER NOT NULL,
    dataset_version VARCHAR,
    summary VARCHAR
)
"""


class DataDirError(OSError):
    """The data directory cannot be used (e.g. another server holds its database)."""


class RunLimitError(Exception):
    """A request the server's limits refuse (too large, or too many runs at once)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Interrupted(Exception):
    """Raised from the progress callback to stop a run when the server stops."""


def valid_id(run_id: str) -> bool:
    return bool(ID_RE.fullmatch(run_id))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class RunManager:
    """Queues runs on a thread pool and keeps their records in DuckDB."""

    def __init__(self, data_dir: Path | str, max_path_months: int = 100_000 * 120,
                 max_concurrent_runs: int = 2,
                 network: Network | Callable[[], Network] | None = None) -> None:
        if max_path_months < 1 or max_concurrent_runs < 1:
            raise ValueError("max_path_months and max_concurrent_runs must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.max_path_months = int(max_path_months)
        self.max_concurrent_runs = int(max_concurrent_runs)
        self._network_src = network
        self._network: Network | None = network if isinstance(network, Network) else None
        self._net_lock = threading.Lock()
        self._lock = threading.RLock()  # guards the connection, _active and _progress
        db_path = self.data_dir / "oreflow.duckdb"
        try:
            self._db = duckdb.connect(str(db_path))
        except duckdb.Error as e:
            raise DataDirError(f"cannot open the run database {db_path} (is another oreflow "
                               f"serve using this data directory?): {e}") from None
        self._db.execute(SCHEMA)
        self._db.execute("UPDATE runs SET status = 'failed', message = ?, finished_at = ? "
                         "WHERE status IN ('queued', 'running')", [INTERRUPTED, _now()])
        self._active: set[str] = set()
        self._progress: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrent_runs,
                                        thread_name_prefix="oreflow-run")
        self._stopping = self._closed = False

    # ---- shared state -------------------------------------------------------------------
    @property
    def network(self) -> Network:
        """The base-year network, built once (about two seconds) and shared by every run."""
        with self._net_lock:
            if self._network is None:
                src = self._network_src
                self._network = src() if callable(src) else Network.from_dataset()
            return self._network

    def close(self, wait: bool = True) -> None:
        """Stop taking runs, stop running ones at their next month (recorded as interrupted;
        with `wait`) and close the database."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True  # no new runs from here on
        self._pool.shutdown(wait=wait, cancel_futures=True)
        with self._lock:
            self._closed = True
            self._db.close()

    def _exec(self, sql: str, params: list | None = None) -> list[tuple]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the run manager is closed")
            return self._db.execute(sql, params or []).fetchall()

    def _update(self, run_id: str, **values) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._lock:
            if self._closed:
                return
            self._db.execute(f"UPDATE runs SET {cols} WHERE id = ?", [*values.values(), run_id])

    # ---- limits -------------------------------------------------------------------------
    def check_size(self, paths: int, months: int, what: str = "paths x months") -> None:
        size = paths * months
        if size > self.max_path_months:
            raise RunLimitError(
                f"{what} = {paths:,} x {months:,} = {size:,} exceeds this server's limit of "
                f"{self.max_path_months:,}; use fewer paths or months", 422)

    def reserve(self, key: str) -> None:
        """Take one of the concurrent-run slots, or refuse with 429."""
        with self._lock:
            if self._stopping:
                raise RunLimitError("the server is shutting down; try again later", 503)
            if len(self._active) >= self.max_concurrent_runs:
                raise RunLimitError(
                    f"{len(self._active)} run(s) already in progress, the limit of this "
                    f"server; wait for one to finish and try again", 429)
            self._active.add(key)

    def release(self, key: str) -> None:
        with self._lock:
            self._active.discard(key)
            self._progress.pop(key, None)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    # ---- runs -----------------------------------------------------------------------------
    def submit(self, scenario: Scenario, scenario_yaml: str, sha: str, paths: int, seed: int,
               months: int | None) -> dict:
        """Queue a run of a validated scenario; returns its record."""
        months = int(months or scenario.months)
        self.check_size(paths, months)
        run_id = uuid.uuid4().hex
        self.reserve(run_id)
        try:
            self._exec("INSERT INTO runs (id, created_at, status, scenario, scenario_sha256, "
                       "scenario_yaml, paths, seed, months) VALUES (?, ?, 'queued', ?, ?, ?, ?, "
                       "?, ?)", [run_id, _now(), scenario.name, sha, scenario_yaml, paths, seed,
                                 months])
            self._progress[run_id] = 0.0
            self._pool.submit(self._work, run_id, scenario, sha, paths, seed, months)
        except BaseException:
            self.release(run_id)
            raise
        return self.get(run_id)

    def _work(self, run_id: str, sc: Scenario, sha: str, paths: int, seed: int,
              months: int) -> None:
        from oreflow.simulate import run_stress, save_result, summary

        try:
            self._update(run_id, status="running", started_at=_now())

            def progress(done: int, total: int) -> None:
                if self._stopping:  # the server is stopping: end the run now
                    raise _Interrupted
                self._progress[run_id] = done / total

            ds = run_stress(sc, paths=paths, seed=seed, months=months, network=self.network,
                            scenario_sha256=sha, progress=progress)
            save_result(ds, self.result_path(run_id))
            self._update(run_id, status="done", finished_at=_now(),
                         dataset_version=ds.attrs["dataset_version"],
                         summary=json.dumps(summary(ds)))
        except _Interrupted:
            self._update(run_id, status="failed", finished_at=_now(), message=INTERRUPTED)
        except Exception as e:  # a failed run is recorded, never lost in a worker thread
            log.exception("run %s failed", run_id)
            self._update(run_id, status="failed", finished_at=_now(),
                         message=f"{type(e).__name__}: {e}")
        finally:
            self.release(run_id)

    def result_path(self, run_id: str) -> Path:
        if not valid_id(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.runs_dir / f"{run_id}.nc"

    def report_path(self, run_id: str) -> Path:
        return self.result_path(run_id).with_suffix(".html")

    def _record(self, row: tuple) -> dict:
        r = dict(zip(COLUMNS, row, strict=True))
        for k in ("created_at", "started_at", "finished_at"):
            r[k] = r[k].isoformat(timespec="seconds") + "Z" if r[k] else None
        r["summary"] = json.loads(r["summary"]) if r["summary"] else None
        r["progress"] = 1.0 if r["status"] == "done" else self._progress.get(r["id"], 0.0)
        return r

    def get(self, run_id: str) -> dict | None:
        """A run's record, or None for an unknown (or malformed) id."""
        if not valid_id(run_id):
            return None
        rows = self._exec(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = ?", [run_id])
        return self._record(rows[0]) if rows else None

    def list(self, limit: int = 200) -> list[dict]:
        rows = self._exec(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY created_at DESC "
                          "LIMIT ?", [limit])
        return [self._record(r) for r in rows]

    def load(self, run_id: str) -> xr.Dataset:
        """A finished run's result, read fully into memory."""
        from oreflow.report import load_result

        return load_result(self.result_path(run_id))
