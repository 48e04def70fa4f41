"""The web app under attack and bad luck (issue 11): a full disk during the result write, a
deleted or damaged result file, hostile Host headers and bodies, runs too large for memory,
cancellation, offline API docs, and no server paths in messages."""

from __future__ import annotations

import errno
import re
import time

import pytest

from oreflow import io as oio
from oreflow.limits import BASE_BYTES, SAFETY, estimate_run_bytes
from oreflow.web import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_TestClient = pytest.importorskip("fastapi.testclient").TestClient

SMALL = {"scenario": "licensing-2025-04", "paths": 20, "seed": 1, "months": 6}


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nname: bomb\n"


def TestClient(app, host="localhost", **kw):  # noqa: N802
    return _TestClient(app, base_url=f"http://{host}", **kw)


def wait(client, run_id, timeout=60.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        rec = client.get(f"/api/runs/{run_id}").json()
        if rec["status"] in ("done", "failed", "cancelled"):
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {rec['status']}")


@pytest.fixture
def app_client(tmp_path, network):
    with TestClient(create_app(tmp_path, network=network)) as c:
        yield c, tmp_path


def test_full_disk_during_result_write_fails_run_cleanly(app_client, monkeypatch):
    client, data_dir = app_client
    written = []

    def full_disk(path, data):
        with open(path, "wb") as fh:  # part of the file, then the disk is full
            fh.write(bytes(data)[:100])
        written.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(oio, "write_file_bytes", full_disk)
    rec = wait(client, client.post("/api/runs", json=SMALL).json()["id"])
    assert rec["status"] == "failed"
    assert "no space left on the device" in rec["message"]
    assert str(data_dir) not in rec["message"]
    assert written and not written[0].exists()  # the partial temp file is gone
    assert list((data_dir / "runs").iterdir()) == []  # no result, no temp file
    # the server goes on: health, pages and a new run once the disk has room
    assert client.get("/api/health").status_code == 200
    assert client.get(f"/runs/{rec['id']}").status_code == 200
    monkeypatch.undo()
    assert wait(client, client.post("/api/runs", json=SMALL).json()["id"])["status"] == "done"


def test_status_kept_when_the_database_cannot_be_written(app_client, monkeypatch):
    client, _ = app_client
    manager = client.app.state.manager
    real = manager._update

    def failing(run_id, **values):
        if values.get("status") in ("failed", "done"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(run_id, **values)

    monkeypatch.setattr(manager, "_update", failing)
    rec = wait(client, client.post("/api/runs", json=SMALL).json()["id"])
    assert rec["status"] == "failed" and "not saved" in rec["message"]


def test_deleted_or_damaged_result_gives_410_not_500(app_client):
    client, data_dir = app_client
    rid = wait(client, client.post("/api/runs", json=SMALL).json()["id"])["id"]
    (data_dir / "runs" / f"{rid}.nc").unlink()
    urls = [f"/api/runs/{rid}/report", f"/api/runs/{rid}/export?format=csv",
            f"/api/runs/{rid}/result.nc", f"/compare?a={rid}&b={rid}"]
    for url in urls:
        r = client.get(url)
        assert r.status_code == 410, (url, r.status_code)
        assert "deleted" in r.text and str(data_dir) not in r.text
    page = client.get(f"/runs/{rid}")
    assert page.status_code == 200 and 'id="result-unavailable"' in page.text
    # a damaged file (not NetCDF): same answer, no path, no traceback
    rid2 = wait(client, client.post("/api/runs", json=SMALL).json()["id"])["id"]
    (data_dir / "runs" / f"{rid2}.nc").write_bytes(b"not netcdf")
    for url in (f"/api/runs/{rid2}/export?format=xlsx", f"/api/runs/{rid2}/report"):
        r = client.get(url)
        assert r.status_code == 410 and "damaged" in r.text and str(data_dir) not in r.text


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "attacker:80"])
def test_foreign_host_header_refused(tmp_path, network, host):
    with TestClient(create_app(tmp_path, network=network), host=host) as c:
        assert c.get("/api/runs").status_code == 400
        assert c.post("/api/runs", json=SMALL).status_code == 400
    assert not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "localhost:8000"])
def test_local_host_headers_allowed(tmp_path, network, host):
    with TestClient(create_app(tmp_path, network=network), host=host) as c:
        assert c.get("/api/health").status_code == 200


def test_allowed_hosts_configurable(tmp_path, network):
    app = create_app(tmp_path, network=network, allowed_hosts=["oreflow.lan"])
    with TestClient(app, host="oreflow.lan") as c:
        assert c.get("/api/health").status_code == 200
    with TestClient(app, host="localhost") as c:
        assert c.get("/api/health").status_code == 400


def test_request_body_limit(app_client):
    client, _ = app_client
    big = b'{"scenario_yaml": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = client.post("/api/runs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "1,048,576 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/api/runs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/health").status_code == 200


def test_alias_bomb_and_deep_nesting_over_the_api(app_client):
    client, _ = app_client
    for text in (alias_bomb(), "[" * 1000 + "]" * 1000):
        t0 = time.perf_counter()
        r = client.post("/api/runs", json={"scenario_yaml": text})
        assert time.perf_counter() - t0 < 1.0
        assert r.status_code == 400 and len(r.content) < 1000, r.text[:300]


def test_nan_and_huge_numbers_refused_in_requests(app_client):
    client, _ = app_client
    for body in ('{"scenario": "baseline", "paths": NaN}',
                 '{"budget_usd": NaN}', '{"budget_usd": Infinity}',
                 '{"scenarios": {"baseline": NaN}}', '{"cvar_weight": 1e999}'):
        url = "/api/runs" if "paths" in body else "/api/stockpile"
        r = client.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text[:200])


def test_long_field_names_not_echoed(app_client):
    client, _ = app_client
    r = client.post("/api/runs", json={"scenario": "baseline", "x" * 100_000: 1})
    assert r.status_code == 422 and len(r.content) < 1000


def test_memory_budget_refuses_runs_with_estimate_and_limit(tmp_path, network):
    budget = int(BASE_BYTES * SAFETY) + 50 * 2**20
    with TestClient(create_app(tmp_path, network=network, memory_budget_bytes=budget)) as c:
        r = c.post("/api/runs", json={"scenario": "baseline", "paths": 12_000_000, "months": 1})
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "GB of memory (estimate)" in detail and "budget of" in detail
        assert c.get("/api/health").json()["limits"]["memory_budget_bytes"] == budget


def test_the_issue_12_million_paths_refused_by_default(app_client):
    client, _ = app_client
    r = client.post("/api/runs", json={"scenario": "baseline", "paths": 12_000_000, "months": 1})
    assert r.status_code == 422 and "memory" in r.json()["detail"]
    assert estimate_run_bytes(12_000_000, 1) > 60e9


def test_memory_of_runs_in_progress_counts(tmp_path, network):
    one = estimate_run_bytes(20_000, 12) - int(BASE_BYTES * SAFETY)
    budget = int(BASE_BYTES * SAFETY) + int(1.5 * one)  # one run fits, two do not
    app = create_app(tmp_path, network=network, memory_budget_bytes=budget)
    with TestClient(app) as c:
        m = app.state.manager
        with m._lock:  # hold a slot as a run in progress would
            m._memory["x" * 32] = one
        r = c.post("/api/runs", json={"scenario": "baseline", "paths": 20_000, "months": 12})
        assert r.status_code == 429 and "runs in progress hold" in r.json()["detail"]
        m.release("x" * 32)
        r = c.post("/api/runs", json={"scenario": "baseline", "paths": 20_000, "months": 12})
        assert r.status_code == 202


def test_cancel_a_running_run(app_client):
    client, _ = app_client
    rid = client.post("/api/runs", json={"scenario": "licensing-2025-04", "paths": 20_000,
                                         "months": 120}).json()["id"]
    r = client.delete(f"/api/runs/{rid}")
    assert r.status_code == 200
    rec = wait(client, rid, timeout=30)
    assert rec["status"] == "cancelled" and "cancelled" in rec["message"]
    assert client.get(f"/api/runs/{rid}/summary").status_code == 409
    assert client.delete(f"/api/runs/{rid}").status_code == 409  # already over
    assert client.delete("/api/runs/" + "0" * 32).status_code == 404
    assert client.get("/api/health").json()["active_runs"] == 0


def test_cancel_a_queued_run(tmp_path, network):
    app = create_app(tmp_path, network=network, max_concurrent_runs=2)
    with TestClient(app) as c:
        m = app.state.manager
        gate = __import__("threading").Event()
        m._pool.submit(gate.wait)  # both workers busy: the next run stays queued
        m._pool.submit(gate.wait)
        rid = c.post("/api/runs", json=SMALL).json()["id"]
        assert c.get(f"/api/runs/{rid}").json()["status"] == "queued"
        assert c.delete(f"/api/runs/{rid}").json()["status"] == "cancelled"
        gate.set()
        assert c.get("/api/health").json()["active_runs"] == 0


def test_run_page_has_a_cancel_button(app_client):
    client, _ = app_client
    rid = client.post("/api/runs", json={"scenario": "licensing-2025-04", "paths": 20_000,
                                         "months": 120}).json()["id"]
    page = client.get(f"/runs/{rid}").text
    client.delete(f"/api/runs/{rid}")
    assert 'id="cancel-button"' in page
    js = client.get("/static/app.js").text
    assert 'api("DELETE", `/api/runs/${id}`)' in js
    wait(client, rid)


def test_docs_served_from_local_files(app_client):
    client, _ = app_client
    html = client.get("/docs").text
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
    assert refs and all(u.startswith("/") for u in refs), refs
    assert "cdn" not in html.lower()
    for u in refs:
        assert client.get(u).status_code == 200, u
    assert client.get("/openapi.json").status_code == 200


def test_temp_files_of_a_killed_writer_removed_on_start(tmp_path, network):
    runs = tmp_path / "runs"
    runs.mkdir(parents=True)
    stale = runs / f".{'a' * 32}.nc.999999999.abc123.tmp"  # no such process
    stale.write_bytes(b"half a result")
    with TestClient(create_app(tmp_path, network=network)) as c:
        assert c.get("/api/health").status_code == 200
    assert not stale.exists()


def test_export_404_shows_no_server_path(app_client):
    client, data_dir = app_client
    rid = wait(client, client.post("/api/runs", json=SMALL).json()["id"])["id"]
    r = client.get(f"/api/runs/{rid}/export?format=csv&table=monthly_sector")
    assert r.status_code in (200, 404)
    assert str(data_dir) not in r.text


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("localhost", False),
                                              ("0.0.0.0", True), ("192.168.1.20", True)])
def test_serve_warns_when_binding_beyond_localhost(tmp_path, monkeypatch, host, warned):
    import uvicorn
    from typer.testing import CliRunner

    from oreflow.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    r = CliRunner().invoke(cli, ["serve", "--host", host, "--data-dir", str(tmp_path / "d"),
                                 "--max-memory", "2G"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert ("warning: listening on" in text) == warned
    assert seen["host"] == host and "memory budget 2.0 GB" in text
    assert seen["app"].state.manager.memory_budget == 2 * 2**30
    seen["app"].state.manager.close()


def test_full_disk_while_writing_a_report(app_client, monkeypatch):
    client, data_dir = app_client
    rid = wait(client, client.post("/api/runs", json=SMALL).json()["id"])["id"]

    def full(target, write):
        raise oio.WriteError(target, "no space left on the device")

    monkeypatch.setattr("oreflow.report.atomic_write", full)
    monkeypatch.setattr("oreflow.report.atomic_write_text",
                        lambda target, text: full(target, None))
    r = client.get(f"/api/runs/{rid}/report")
    assert r.status_code == 503 and "no space left" in r.json()["detail"]
    assert str(data_dir) not in r.text
    monkeypatch.undo()
    assert client.get(f"/api/runs/{rid}/report").status_code == 200
