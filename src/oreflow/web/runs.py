"""Runs of the web app: queued off the request thread, persisted in DuckDB.

Every run has a uuid4 hex id (the only thing ever joined to a path, and checked first), a row
in `runs` of DATA_DIR/oreflow.duckdb and, once done, its result at DATA_DIR/runs/<id>.nc.
Progress lives in memory while a run works; status, settings, the summary and any error
message live in the database, so they survive a restart. A run still queued or running when
the server stopped cannot be resumed: the next start marks it failed ('interrupted').
A run can be cancelled (`cancel`): a queued one never starts, a running one stops at its next
month; its status becomes 'cancelled'. A run whose result cannot be written (a full disk)
fails with the reason; the server keeps serving. Runs must fit the memory budget
(oreflow.limits): one that never fits is refused with 422, one that does not fit beside the
runs in progress with 429.
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

from oreflow.finite import NonFiniteResultError
from oreflow.io import WriteError, remove_stale_temp_files
from oreflow.limits import BASE_BYTES, SAFETY, fmt_bytes, memory_budget, run_bytes_above_base
from oreflow.network import Network
from oreflow.scenario import Scenario

log = logging.getLogger("oreflow.web")

ID_RE = re.compile(r"^[0-9a-f]{32}$")
INTERRUPTED = "interrupted: the server stopped before the run finished"
CANCELLED = "cancelled at the user's request"
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


class _Cancelled(Exception):
    """Raised from the progress callback to stop a run the user cancelled."""


class ResultUnavailable(Exception):
    """A finished run whose result file is missing or unreadable (answered with 410)."""

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"the result of run {run_id} {why}; start the run again (the same "
                         "seed gives the same result)")


def valid_id(run_id: str) -> bool:
    return bool(ID_RE.fullmatch(run_id))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class RunManager:
    """Queues runs on a thread pool and keeps their records in DuckDB."""

    def __init__(self, data_dir: Path | str, max_path_months: int = 100_000 * 120,
                 max_concurrent_runs: int = 2,
                 network: Network | Callable[[], Network] | None = None,
                 memory_budget_bytes: int | None = None) -> None:
        if max_path_months < 1 or max_concurrent_runs < 1:
            raise ValueError("max_path_months and max_concurrent_runs must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.runs_dir)  # left by a server that was killed mid-write
        self.max_path_months = int(max_path_months)
        self.max_concurrent_runs = int(max_concurrent_runs)
        self.memory_budget = int(memory_budget_bytes or memory_budget())
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
        self._memory: dict[str, int] = {}  # estimated bytes of each run in progress
        self._cancel: set[str] = set()
        self._futures: dict = {}
        self._status_override: dict[str, tuple[str, str]] = {}  # when the database failed
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

    def _finish(self, run_id: str, status: str, message: str | None = None, **values) -> None:
        """Record a run's end; if even the database cannot be written (a full disk), keep the
        status in memory so the run never shows 'running' forever."""
        try:
            self._update(run_id, status=status, message=message, finished_at=_now(), **values)
        except Exception as e:  # noqa: BLE001  (duckdb.Error, OSError, ...)
            log.error("run %s: could not record status %s: %s", run_id, status, e)
            with self._lock:
                self._status_override[run_id] = (
                    status, (message or "") + " (not saved: the run database could not be "
                    "written)")

    # ---- limits -------------------------------------------------------------------------
    def check_size(self, paths: int, months: int, what: str = "paths x months") -> None:
        size = paths * months
        if size > self.max_path_months:
            raise RunLimitError(
                f"{what} = {paths:,} x {months:,} = {size:,} exceeds this server's limit of "
                f"{self.max_path_months:,}; use fewer paths or months", 422)

    def check_memory(self, paths: int, months: int, shocks: int = 0) -> int:
        """The run's estimated memory above the server's own, or RunLimitError: 422 if it
        can never fit the budget, 429 if it does not fit beside the runs in progress."""
        extra = run_bytes_above_base(paths, months, shocks, len(self.network.elements))
        base = int(BASE_BYTES * SAFETY)
        if base + extra > self.memory_budget:
            raise RunLimitError(
                f"{paths:,} paths x {months:,} month(s) would need about "
                f"{fmt_bytes(base + extra)} of memory (estimate), above this server's budget "
                f"of {fmt_bytes(self.memory_budget)}; use fewer paths or months (the budget "
                "is set with --max-memory or OREFLOW_MEMORY_BUDGET)", 422)
        with self._lock:
            busy = sum(self._memory.values())
        if base + busy + extra > self.memory_budget:
            raise RunLimitError(
                f"this run needs about {fmt_bytes(extra)} of memory (estimate) and the runs "
                f"in progress hold {fmt_bytes(busy)} of this server's budget of "
                f"{fmt_bytes(self.memory_budget)}; wait for one to finish and try again", 429)
        return extra

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
            self._memory.pop(key, None)
            self._futures.pop(key, None)

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
        with self._lock:  # the memory check and the reservation as one step
            extra = self.check_memory(paths, months, len(scenario.shocks))
            self.reserve(run_id)
            self._memory[run_id] = extra
        try:
            self._exec("INSERT INTO runs (id, created_at, status, scenario, scenario_sha256, "
                       "scenario_yaml, paths, seed, months) VALUES (?, ?, 'queued', ?, ?, ?, ?, "
                       "?, ?)", [run_id, _now(), scenario.name, sha, scenario_yaml, paths, seed,
                                 months])
            self._progress[run_id] = 0.0
            self._futures[run_id] = self._pool.submit(self._work, run_id, scenario, sha, paths,
                                                      seed, months)
        except BaseException:
            self.release(run_id)
            raise
        return self.get(run_id)

    def cancel(self, run_id: str) -> dict | None:
        """Cancel a queued or running run (None if unknown); a finished run is left as is."""
        rec = self.get(run_id)
        if rec is None or rec["status"] not in ("queued", "running"):
            return rec
        with self._lock:
            self._cancel.add(run_id)
            future = self._futures.get(run_id)
        if future is not None and future.cancel():  # never started: record it here
            self._finish(run_id, "cancelled", CANCELLED)
            with self._lock:
                self._cancel.discard(run_id)
            self.release(run_id)
        return self.get(run_id)

    def _work(self, run_id: str, sc: Scenario, sha: str, paths: int, seed: int,
              months: int) -> None:
        from oreflow.simulate import run_stress, save_result, summary

        try:
            if run_id in self._cancel:
                raise _Cancelled
            self._update(run_id, status="running", started_at=_now())

            def progress(done: int, total: int) -> None:
                if self._stopping:  # the server is stopping: end the run now
                    raise _Interrupted
                if run_id in self._cancel:
                    raise _Cancelled
                self._progress[run_id] = done / total

            ds = run_stress(sc, paths=paths, seed=seed, months=months, network=self.network,
                            scenario_sha256=sha, progress=progress)
            save_result(ds, self.result_path(run_id))
            self._update(run_id, status="done", finished_at=_now(),
                         dataset_version=ds.attrs["dataset_version"],
                         summary=json.dumps(summary(ds)))
        except _Interrupted:
            self._finish(run_id, "failed", INTERRUPTED)
        except _Cancelled:
            self._finish(run_id, "cancelled", CANCELLED)
        except WriteError as e:  # a full disk: the run fails, the server goes on
            log.error("run %s: %s", run_id, e)
            self._finish(run_id, "failed", f"the result could not be saved ({e.reason}); "
                                           "free some space and start the run again")
        except NonFiniteResultError as e:
            self._finish(run_id, "failed", str(e))
        except Exception as e:  # a failed run is recorded, never lost in a worker thread
            log.exception("run %s failed", run_id)
            self._finish(run_id, "failed", self._public(f"{type(e).__name__}: {e}"))
        finally:
            with self._lock:
                self._cancel.discard(run_id)
            self.release(run_id)

    def _public(self, message: str) -> str:
        """A message without the server's own paths, cut to a readable length."""
        message = message.replace(str(self.data_dir), "DATA_DIR")
        return message if len(message) <= 2000 else message[:2000] + " ..."

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
        if r["id"] in self._status_override and r["status"] in ("queued", "running"):
            r["status"], r["message"] = self._status_override[r["id"]]
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
        """A finished run's result, read fully into memory; ResultUnavailable if its file is
        missing or unreadable (the message names no path)."""
        from oreflow.report import ReportError, load_result

        path = self.check_result(run_id)
        try:
            return load_result(path)
        except ReportError:
            log.warning("run %s: result file %s is unreadable", run_id, path)
            raise ResultUnavailable(run_id, "cannot be read (its file is damaged)") from None

    def check_result(self, run_id: str) -> Path:
        """The result file of a finished run, or ResultUnavailable if it is gone."""
        path = self.result_path(run_id)
        if not path.is_file():
            raise ResultUnavailable(run_id, "is missing (its file was deleted)")
        return path
