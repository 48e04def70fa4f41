"""The web API: every endpoint, its limits and bad inputs, path-traversal attempts, runs
off the request thread, and a restart that keeps past runs."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from oreflow.cli import app as cli
from oreflow.report import headline_tables, load_result
from oreflow.web import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_TestClient = pytest.importorskip("fastapi.testclient").TestClient


def TestClient(app, **kw):  # noqa: N802  the app answers only to local host names
    return _TestClient(app, base_url="http://localhost", **kw)

SMALL = {"scenario": "licensing-2025-04", "paths": 60, "seed": 4, "months": 12}
CUSTOM = """
name: custom-dy-halt
start: "2025-01"
months: 8
shocks:
  - type: export_control
    origin: CHN
    elements: [Dy, Tb]
    start: 1
    duration: 4
    approval: [[0, 0.2]]
"""


def wait(client, run_id: str, timeout: float = 60) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        rec = client.get(f"/api/runs/{run_id}").json()
        if rec["status"] in ("done", "failed"):
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {rec['status']} after {timeout} s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("web") / "data"


@pytest.fixture(scope="module")
def client(data_dir, network):
    with TestClient(create_app(data_dir, network=network)) as c:
        yield c


@pytest.fixture(scope="module")
def done_run(client) -> str:
    r = client.post("/api/runs", json=SMALL)
    assert r.status_code == 202, r.text
    rec = wait(client, r.json()["id"])
    assert rec["status"] == "done", rec
    return rec["id"]


def test_health_and_openapi(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok"
    from oreflow.limits import memory_budget

    assert h["limits"] == {"max_path_months": 100_000 * 120, "max_concurrent_runs": 2,
                           "max_stockpile_paths": 5000, "max_body_bytes": 1024 * 1024,
                           "memory_budget_bytes": memory_budget()}
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/health", "/api/scenarios", "/api/runs", "/api/runs/{run_id}",
              "/api/runs/{run_id}/summary", "/api/runs/{run_id}/report",
              "/api/runs/{run_id}/export", "/api/stockpile"):
        assert p in paths, p
    assert client.get("/docs").status_code == 200


def test_scenarios_are_the_builtins_with_yaml(client):
    from oreflow.scenario import builtin_names, parse_scenario

    got = client.get("/api/scenarios").json()
    assert [s["name"] for s in got] == builtin_names()
    for s in got:
        assert parse_scenario(s["yaml"]).name == s["name"]


def test_run_lifecycle(client, done_run, data_dir):
    rec = client.get(f"/api/runs/{done_run}").json()
    assert rec["status"] == "done" and rec["progress"] == 1.0
    assert (rec["scenario"], rec["paths"], rec["seed"], rec["months"]) == (
        "licensing-2025-04", 60, 4, 12)
    assert rec["dataset_version"].startswith("oreflow-data-")
    assert rec["finished_at"] >= rec["started_at"] >= rec["created_at"]
    assert done_run in [r["id"] for r in client.get("/api/runs").json()]
    assert (data_dir / "runs" / f"{done_run}.nc").is_file()
    assert (data_dir / "oreflow.duckdb").is_file()


def test_summary_is_the_cli_json(client, done_run):
    api = client.get(f"/api/runs/{done_run}/summary").json()
    r = CliRunner().invoke(cli, ["stress", "licensing-2025-04", "--paths", "60", "--seed", "4",
                                 "--months", "12", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert api == json.loads(r.output)


def test_run_page_shows_the_notes(client, done_run):
    page = client.get(f"/runs/{done_run}").text
    notes = client.get(f"/api/runs/{done_run}/summary").json()["notes"]
    assert notes and 'id="run-notes"' in page
    assert "not by arbitrage" in page


def test_report_endpoint(client, done_run, data_dir):
    r = client.get(f"/api/runs/{done_run}/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<meta name="oreflow-seed" content="4">' in html
    assert "oreflow-data-" in html and 'id="chart-sankey"' in html
    assert (data_dir / "runs" / f"{done_run}.html").is_file()  # made once, then served
    d = client.get(f"/api/runs/{done_run}/report", params={"download": "true"})
    assert "attachment" in d.headers["content-disposition"] and d.text == html


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_export_round_trips(client, done_run, data_dir, fmt):
    tables = headline_tables(load_result(data_dir / "runs" / f"{done_run}.nc"))
    r = client.get(f"/api/runs/{done_run}/export", params={"format": fmt, "table": "sectors"})
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    buf = io.BytesIO(r.content)
    back = {"csv": pd.read_csv, "parquet": pd.read_parquet, "xlsx": pd.read_excel}[fmt](buf)
    pd.testing.assert_frame_equal(back, tables["sectors"], check_dtype=False, rtol=1e-12)
    whole = client.get(f"/api/runs/{done_run}/export", params={"format": fmt})
    if fmt == "xlsx":
        assert set(pd.read_excel(io.BytesIO(whole.content), sheet_name=None)) == set(tables)
    else:
        with zipfile.ZipFile(io.BytesIO(whole.content)) as zf:
            assert sorted(zf.namelist()) == sorted(f"{n}.{fmt}" for n in tables)


def test_export_bad_format_or_table(client, done_run):
    r = client.get(f"/api/runs/{done_run}/export", params={"format": "xls"})
    assert r.status_code == 422 and "format" in r.json()["detail"]
    assert "'csv', 'xlsx' or 'parquet'" in r.json()["detail"]
    r = client.get(f"/api/runs/{done_run}/export", params={"table": "secrets"})
    assert r.status_code == 422 and "table" in r.json()["detail"]


def test_netcdf_download(client, done_run, tmp_path):
    r = client.get(f"/api/runs/{done_run}/result.nc")
    assert r.status_code == 200
    p = tmp_path / "r.nc"
    p.write_bytes(r.content)
    with xr.open_dataset(p, engine="h5netcdf") as ds:
        assert ds.attrs["seed"] == 4 and ds.sizes["path"] == 60
        # web runs also keep monthly bands of unmet demand by sector
        assert ds["unmet_sector_t"].dims == ("quantile", "month", "region", "sector")
        band = ds["unmet_sector_t"]
        assert band.sizes["month"] == 12 and float(band.sel(quantile=0.95).max()) > 0
        assert (band.sel(quantile=0.05) <= band.sel(quantile=0.95) + 1e-6).all()


def test_scenario_yaml_run(client):
    r = client.post("/api/runs", json={"scenario_yaml": CUSTOM, "paths": 30})
    assert r.status_code == 202, r.text
    rec = wait(client, r.json()["id"])
    assert rec["status"] == "done" and rec["scenario"] == "custom-dy-halt"
    assert rec["months"] == 8  # the scenario's own horizon
    assert rec["scenario_sha256"] == hashlib.sha256(CUSTOM.encode()).hexdigest()
    assert rec["scenario_yaml"] == CUSTOM


@pytest.mark.parametrize("body, status, words", [
    ({"scenario": "nope"}, 400, ["unknown scenario 'nope'", "licensing-2025-04"]),
    ({"scenario": "/etc/passwd"}, 400, ["unknown scenario '/etc/passwd'"]),
    ({"scenario": "../../oreflow/scenarios/baseline"}, 400, ["unknown scenario"]),
    ({"scenario_yaml": "name: [unclosed"}, 400, ["not valid YAML"]),
    ({"scenario_yaml": "- a list"}, 400, ["expected a mapping"]),
    ({"scenario_yaml": "name: x\nstart: '2025-13'\n"}, 400, ["start"]),
    ({"scenario_yaml": CUSTOM.replace("[Dy, Tb]", "[Dy, Kryptonite]")}, 400,
     ["unknown name 'Kryptonite'", "elements"]),
    ({"scenario_yaml": CUSTOM + "    surprise: 1\n"}, 400, ["surprise"]),
    ({}, 422, ["exactly one of 'scenario'"]),
    ({"scenario": "baseline", "scenario_yaml": CUSTOM}, 422, ["exactly one of"]),
    ({"scenario": "baseline", "paths": 0}, 422, ["paths", "greater than or equal to 1"]),
    ({"scenario": "baseline", "paths": "many"}, 422, ["paths", "integer"]),
    ({"scenario": "baseline", "months": 601}, 422, ["months", "600"]),
    ({"scenario": "baseline", "seed": -1}, 422, ["seed"]),
    ({"scenario": "baseline", "path": "/tmp/x"}, 422, ["path", "Extra inputs"]),
    ({"scenario_yaml": "x" * 100_001}, 422, ["scenario_yaml", "100000"]),
])
def test_bad_run_requests(client, body, status, words):
    r = client.post("/api/runs", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for w in words:
        assert w in detail, (w, detail)


def test_not_json(client):
    r = client.post("/api/runs", content=b"paths=3", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


@pytest.mark.parametrize("url", [
    "/api/runs/0123456789abcdef0123456789abcdef",
    "/api/runs/0123456789abcdef0123456789abcdef/summary",
    "/api/runs/0123456789abcdef0123456789abcdef/report",
    "/api/runs/0123456789abcdef0123456789abcdef/export",
    "/api/runs/0123456789abcdef0123456789abcdef/result.nc",
    "/runs/0123456789abcdef0123456789abcdef",
    "/api/runs/not-an-id",
    "/api/runs/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/runs/..%2Foreflow/summary",
    "/api/runs/%2e%2e/report",
    "/api/runs/..%5C..%5Coreflow.duckdb/result.nc",
    "/runs/..%2F..%2Foreflow.duckdb",
    "/compare?a=../oreflow&b=..%2F..%2Fetc",
])
def test_unknown_ids_and_traversal_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.text[:200])
    assert "root:" not in r.text and "DUCK" not in r.text


def test_static_files_stay_in_the_package(client):
    for url in ("/static/..%2F..%2Fcli.py", "/static/../app.py", "/static/%2e%2e/app.py",
                "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "def create_app" not in r.text and "root:" not in r.text
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.js").status_code == 200


def test_yaml_names_never_become_paths(client, data_dir, tmp_path):
    evil = CUSTOM.replace("custom-dy-halt", "../../../../escaped")
    r = client.post("/api/runs", json={"scenario_yaml": evil, "paths": 5, "months": 2})
    rec = wait(client, r.json()["id"])
    assert rec["status"] == "done" and rec["scenario"] == "../../../../escaped"
    assert not list(data_dir.parent.rglob("escaped*"))
    files = {p.name for p in (data_dir / "runs").iterdir()}
    assert all(f.split(".")[0] in {x["id"] for x in client.get("/api/runs").json()}
               for f in files)


def test_pages(client, done_run):
    home = client.get("/")
    assert home.status_code == 200 and "licensing-2025-04" in home.text
    assert 'id="run-form"' in home.text and done_run in home.text
    page = client.get(f"/runs/{done_run}").text
    for chart in ("chart-prices", "chart-unmet_sector", "chart-unmet", "chart-sectors",
                  "chart-sankey"):
        assert f'id="{chart}"' in page
    assert "/static/plotly.min.js" in page and "cdn" not in page.lower()
    cmp = client.get("/compare", params={"a": done_run, "b": done_run})
    assert cmp.status_code == 200 and 'id="compare-table"' in cmp.text
    assert 'id="compare-paired"' in cmp.text  # a run against itself: path by path
    assert 'id="a-chart-prices"' in cmp.text and 'id="b-chart-prices"' in cmp.text
    other = wait(client, client.post("/api/runs", json={"scenario_yaml": CUSTOM, "paths": 20,
                                                        "months": 3}).json()["id"])
    cmp = client.get("/compare", params={"a": done_run, "b": other["id"]}).text
    assert 'id="compare-paired"' not in cmp and "difference of the two medians" in cmp
    titles = re.findall(r"\"title\":{\"text\":\"Price inside CHN and in \w+, p5\S+p95: (\w+)",
                        cmp)
    assert len(titles) == 2 and len(set(titles)) == 1  # both sides open on A's element
    assert client.get("/compare").status_code == 200
    assert client.get("/stockpile").status_code == 200


# ---- limits, failures and restarts on their own data directories -------------------------
@pytest.fixture
def gate(monkeypatch):
    """Runs wait for `gate.set()` before simulating, so tests can hold them 'running'."""
    import oreflow.simulate

    real, event = oreflow.simulate.run_stress, threading.Event()

    def held(*a, **k):
        assert event.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(oreflow.simulate, "run_stress", held)
    yield event
    event.set()


def test_size_limit(tmp_path, network):
    with TestClient(create_app(tmp_path, max_path_months=1000, network=network)) as c:
        r = c.post("/api/runs", json={"scenario": "baseline", "paths": 100, "months": 12})
        assert r.status_code == 422
        assert r.json()["detail"] == ("paths x months = 100 x 12 = 1,200 exceeds this "
                                      "server's limit of 1,000; use fewer paths or months")
        r = c.post("/api/runs", json={"scenario": "baseline", "paths": 50})  # 36 months
        assert r.status_code == 422 and "50 x 36" in r.json()["detail"]
        assert c.post("/api/runs", json={"scenario": "baseline", "paths": 100,
                                         "months": 10}).status_code == 202
        assert c.get("/api/health").json()["limits"]["max_path_months"] == 1000


def test_concurrency_limit_and_runs_off_the_request_thread(tmp_path, network, gate):
    with TestClient(create_app(tmp_path, max_concurrent_runs=1, network=network)) as c:
        t0 = time.time()
        first = c.post("/api/runs", json=SMALL)
        assert first.status_code == 202 and time.time() - t0 < 5  # returned while held
        assert c.get(f"/api/runs/{first.json()['id']}").json()["status"] in ("queued",
                                                                             "running")
        second = c.post("/api/runs", json=SMALL)
        assert second.status_code == 429
        assert "1 run(s) already in progress" in second.json()["detail"]
        summ = c.get(f"/api/runs/{first.json()['id']}/summary")
        assert summ.status_code == 409 and "try again when it is done" in summ.json()["detail"]
        gate.set()
        assert wait(c, first.json()["id"])["status"] == "done"
        assert c.post("/api/runs", json=SMALL).status_code == 202


def test_failed_run_is_recorded(tmp_path, network, monkeypatch):
    import oreflow.simulate

    def broken(*a, **k):
        raise MemoryError("out of memory")

    monkeypatch.setattr(oreflow.simulate, "run_stress", broken)
    with TestClient(create_app(tmp_path, network=network)) as c:
        rid = c.post("/api/runs", json=SMALL).json()["id"]
        rec = wait(c, rid)
        assert rec["status"] == "failed" and rec["message"] == "MemoryError: out of memory"
        for what in ("summary", "report", "export"):
            r = c.get(f"/api/runs/{rid}/{what}")
            assert r.status_code == 409 and "failed: MemoryError" in r.json()["detail"]
        assert c.get("/api/health").json()["active_runs"] == 0


def test_restart_keeps_past_runs(tmp_path, network, gate):
    with TestClient(create_app(tmp_path, network=network)) as c:
        gate.set()
        done = c.post("/api/runs", json=SMALL).json()["id"]
        assert wait(c, done)["status"] == "done"
        summary = c.get(f"/api/runs/{done}/summary").json()
        gate.clear()
        held = c.post("/api/runs", json={**SMALL, "seed": 5}).json()["id"]
        assert c.get(f"/api/runs/{held}").json()["status"] in ("queued", "running")
        c.app.state.manager.close(wait=False)  # the server stops mid-run
    gate.set()
    with TestClient(create_app(tmp_path, network=network)) as c:
        runs = {r["id"]: r for r in c.get("/api/runs").json()}
        assert set(runs) == {done, held}
        assert runs[done]["status"] == "done"
        assert c.get(f"/api/runs/{done}/summary").json() == summary
        assert c.get(f"/api/runs/{done}/report").status_code == 200
        assert runs[held]["status"] == "failed"
        assert runs[held]["message"].startswith("interrupted")
        assert c.get(f"/api/runs/{held}/summary").status_code == 409


def test_stockpile_endpoint(client):
    body = {"budget_usd": 1e9, "scenarios": {"licensing-2025-04": 1}, "paths": 12,
            "eval_paths": 8, "months": 6}
    r = client.post("/api/stockpile", json=body)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["perspective"] == "USA" and plan["spent_usd"] <= 1e9
    ev = plan["evaluation"]
    assert ev["paths"] == 8
    assert set(ev["expected_unserved_usd"]) == {"plan", "rule_60_days", "rule_equal_money", "none"}
    assert sum(h["usd"] for h in plan["holdings"]) == pytest.approx(plan["spent_usd"],
                                                                    rel=1e-6)
    assert np.isfinite(list(plan["days_of_cover"].values())).all()


def test_stockpile_endpoint_across_commodities_with_charts(client):
    body = {"budget_usd": 1e9, "commodities": ["Co", "graphite"], "paths": 8, "eval_paths": 4,
            "months": 12}
    r = client.post("/api/stockpile", json=body)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["commodities"] == ["Co", "graphite_natural"]
    assert set(plan["spend_by_commodity"]) == {"Co", "graphite_natural"}
    assert plan["spent_usd"] <= plan["budget_usd"]
    assert {"holdings", "spend", "marginal", "loss", "loss_by_commodity"} <= set(plan["charts"])
    assert all(fig["data"] for fig in plan["charts"].values())
    r = client.post("/api/stockpile", json={**body, "commodities": ["Co", "Kryptonite"]})
    assert r.status_code == 400 and "unknown commodity 'Kryptonite'" in r.json()["detail"]
    page = client.get("/stockpile").text
    assert 'class="commodity" data-id="Ga"' in page and "plotly.min.js" in page


@pytest.mark.parametrize("body, status, words", [
    ({"scenarios": {"/etc/passwd": 1}}, 400, ["unknown scenario(s) '/etc/passwd'"]),
    ({"scenarios": {"baseline": 0}}, 400, ["not all zero"]),
    ({"perspective": "Atlantis", "paths": 2, "eval_paths": 2, "months": 2,
      "scenarios": {"baseline": 1}}, 400, ["unknown perspective 'Atlantis'"]),
    ({"budget_usd": -1}, 422, ["budget_usd"]),
    ({"cvar_alpha": 1.0}, 422, ["cvar_alpha"]),
    ({"paths": 5001}, 422, ["paths", "5000"]),
    ({"paths": 5000, "eval_paths": 5000, "months": 600}, 422,
     ["exceeds this server's limit"]),
])
def test_bad_stockpile_requests(client, body, status, words):
    r = client.post("/api/stockpile", json=body)
    assert r.status_code == status, r.text
    for w in words:
        assert w in r.json()["detail"], (w, r.json()["detail"])


def test_serve_with_an_unusable_data_dir(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    r = CliRunner().invoke(cli, ["serve", "--data-dir", str(f), "--port", "1"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "cannot use as the data directory" in " ".join(r.output.split())


def test_progress_comes_from_the_engine(tmp_path, network, monkeypatch):
    """GET /api/runs/{id} reports what run_stress's progress callback last said."""
    import oreflow.simulate

    real = oreflow.simulate.run_stress
    halfway, go_on = threading.Event(), threading.Event()

    def stepping(*a, progress=None, **k):
        progress(30, 120)
        halfway.set()
        assert go_on.wait(30)
        return real(*a, progress=progress, **k)

    monkeypatch.setattr(oreflow.simulate, "run_stress", stepping)
    with TestClient(create_app(tmp_path, network=network)) as c:
        rid = c.post("/api/runs", json=SMALL).json()["id"]
        assert halfway.wait(30)
        rec = c.get(f"/api/runs/{rid}").json()
        assert rec["status"] == "running" and rec["progress"] == pytest.approx(0.25)
        go_on.set()
        rec = wait(c, rid)
        assert rec["status"] == "done" and rec["progress"] == 1.0


def test_user_text_is_escaped_in_pages(client):
    evil = CUSTOM.replace("custom-dy-halt", "<script>alert(1)</script>")
    rid = client.post("/api/runs", json={"scenario_yaml": evil, "paths": 5,
                                         "months": 2}).json()["id"]
    assert wait(client, rid)["status"] == "done"
    for url in ("/", f"/runs/{rid}", f"/api/runs/{rid}/report"):
        text = client.get(url).text
        assert "<script>alert(1)</script>" not in text, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, url


def test_stopping_the_server_interrupts_running_runs(tmp_path, network, monkeypatch):
    """Shutdown does not wait for a long run: it stops at its next month, marked interrupted."""
    import oreflow.simulate

    real, started = oreflow.simulate.run_stress, threading.Event()

    def slow(*a, progress=None, **k):
        def tick(done, total):
            started.set()
            time.sleep(0.05)
            progress(done, total)

        return real(*a, progress=tick, **k)

    monkeypatch.setattr(oreflow.simulate, "run_stress", slow)
    with TestClient(create_app(tmp_path, network=network)) as c:
        rid = c.post("/api/runs", json={**SMALL, "paths": 2000, "months": 36}).json()["id"]
        assert started.wait(30)
        t0 = time.time()
    assert time.time() - t0 < 5  # the lifespan's close() returned promptly
    with TestClient(create_app(tmp_path, network=network)) as c:
        rec = c.get(f"/api/runs/{rid}").json()
        assert rec["status"] == "failed" and rec["message"].startswith("interrupted")
        assert not (tmp_path / "runs" / f"{rid}.nc").exists()
