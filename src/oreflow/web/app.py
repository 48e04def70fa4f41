"""The web app: a JSON API (FastAPI, OpenAPI schema at /docs) and server-rendered pages.

Runs execute on the run manager's threads, never on the request thread. Requests name
scenarios by built-in name or send YAML, which is parsed in memory; nothing a request sends
becomes a path, except a run id, which must be 32 hex digits. Plotly.js is served from the
installed `plotly` package and Swagger UI (/docs) from the installed `fastapi-offline`
package, so the pages work with no internet. Request bodies, Host headers and run sizes are
limited (oreflow.web.security, oreflow.limits; docs/report-and-web.md, "Limits and security").
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import jinja2
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.middleware.trustedhost import TrustedHostMiddleware

from oreflow import __version__
from oreflow.io import WriteError
from oreflow.network import Network
from oreflow.safe_yaml import excerpt
from oreflow.web.runs import ResultUnavailable, RunLimitError, RunManager, valid_id
from oreflow.web.security import (
    DEFAULT_ALLOWED_HOSTS,
    MAX_BODY_BYTES,
    BodyLimitMiddleware,
    add_local_docs,
)

MAX_YAML_CHARS = 100_000
MAX_STOCKPILE_PATHS = 5_000
"""Paths the stockpile planner may optimise over per request (its LP grows with them)."""


# ---- request bodies ------------------------------------------------------------------------
class RunRequest(BaseModel):
    """Start a stress run: a built-in scenario by name, or a scenario's YAML text."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scenario: str | None = Field(None, description="built-in scenario name", max_length=200,
                                 examples=["licensing-2025-04"])
    scenario_yaml: str | None = Field(None, max_length=MAX_YAML_CHARS,
                                      description="a whole scenario as YAML (instead of a name)")
    paths: int = Field(1000, ge=1, description="Monte Carlo paths (limited by --max-path-months "
                                                "and the memory budget)")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    months: int | None = Field(None, ge=1, le=600,
                               description="horizon; default: the scenario's own")

    @model_validator(mode="after")
    def _one_scenario(self):
        if (self.scenario is None) == (self.scenario_yaml is None):
            raise ValueError("give exactly one of 'scenario' (a built-in name) or "
                             "'scenario_yaml' (the scenario's YAML text)")
        return self


class StockpileRequest(BaseModel):
    """Plan a stockpile (see `oreflow stockpile plan`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    budget_usd: float = Field(12e9, ge=0, le=1e13)
    perspective: str = Field("USA", max_length=16)
    scenarios: dict[Annotated[str, Field(max_length=200)],
                    Annotated[float, Field(ge=0, le=1e6)]] | None = Field(
        None, max_length=50,
        description="built-in scenario name -> weight; default: the planner's mix")
    paths: int = Field(300, ge=1, le=MAX_STOCKPILE_PATHS)
    eval_paths: int = Field(300, ge=1, le=MAX_STOCKPILE_PATHS)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    months: int = Field(36, ge=1, le=600)
    cvar_weight: float = Field(0.0, ge=0, le=1)
    cvar_alpha: float = Field(0.95, gt=0, lt=1)
    commodities: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=20,
        description="plan one budget across these commodities (chains.csv ids or aliases, "
                    "e.g. REE, Ga, graphite, Co), each on its own scenario mix; default: the "
                    "rare earths alone")


# ---- helpers -------------------------------------------------------------------------------
def _templates() -> jinja2.Environment:
    from oreflow.report import fmt_number

    env = jinja2.Environment(loader=jinja2.PackageLoader("oreflow", "web/templates"),
                             autoescape=jinja2.select_autoescape(["html"]))
    env.filters["num"] = fmt_number
    return env


@lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def _format_errors(errors) -> str:
    """One line per error (at most 10), every part cut short: field names in a request body
    (an unknown key, a dict key) are the sender's text and are never echoed in full."""
    parts = []
    for e in list(errors)[:10]:
        loc = ".".join(excerpt(x, 60).strip("'") if isinstance(x, str) else str(x)
                       for x in e.get("loc", ()) if x != "body")
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")[:300]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _builtin_scenarios() -> list[dict]:
    from oreflow.scenario import builtin_names, parse_scenario, scenario_text

    out = []
    for name in builtin_names():
        _, text = scenario_text(name)
        sc = parse_scenario(text, name)
        out.append({"name": name, "description": " ".join(sc.description.split()),
                    "start": sc.start, "months": sc.months, "shocks": len(sc.shocks),
                    "yaml": text})
    return out


# ---- the app -------------------------------------------------------------------------------
def create_app(data_dir: Path | str, max_path_months: int = 100_000 * 120,
               max_concurrent_runs: int = 2, network: Network | None = None,
               allowed_hosts: list[str] | tuple[str, ...] = DEFAULT_ALLOWED_HOSTS,
               max_body_bytes: int = MAX_BODY_BYTES,
               memory_budget_bytes: int | None = None) -> FastAPI:
    """The web app over DATA_DIR (made if missing): runs, reports, exports, stockpile plans.

    Requests must name one of `allowed_hosts` in their Host header ('*' allows any) and send
    at most `max_body_bytes`; runs must fit `memory_budget_bytes` (oreflow.limits)."""
    manager = RunManager(data_dir, max_path_months=max_path_months,
                         max_concurrent_runs=max_concurrent_runs, network=network,
                         memory_budget_bytes=memory_budget_bytes)
    env = _templates()
    scenarios = _builtin_scenarios()
    scenario_names = [s["name"] for s in scenarios]
    report_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=lambda: manager.network, daemon=True).start()  # warm up
        yield
        manager.close()

    app = FastAPI(title="oreflow", version=__version__, lifespan=lifespan,
                  description="Stress-test rare-earth supply chains: runs, reports, exports.",
                  docs_url=None, redoc_url=None)
    app.state.manager = manager
    add_local_docs(app, "oreflow")
    # outermost first: the Host check, then the body limit, then the app
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _format_errors(exc.errors())}, status_code=422)

    @app.exception_handler(RunLimitError)
    async def _limit(request: Request, exc: RunLimitError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ResultUnavailable)
    async def _gone(request: Request, exc: ResultUnavailable):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=410)
        return HTMLResponse(env.get_template("error.html").render(
            version=__version__, status=410, message=str(exc)), status_code=410)

    def run_or_404(run_id: str) -> dict:
        rec = manager.get(run_id)
        if rec is None:
            why = "" if valid_id(run_id) else " (run ids are 32 hex digits)"
            raise HTTPException(404, f"no run with id {run_id[:64]!r}{why}")
        return rec

    def finished(run_id: str) -> dict:
        rec = run_or_404(run_id)
        if rec["status"] in ("failed", "cancelled"):
            raise HTTPException(409, f"run {run_id} {rec['status']}: {rec['message']}")
        if rec["status"] != "done":
            raise HTTPException(409, f"run {run_id} is {rec['status']} "
                                     f"({rec['progress']:.0%}); try again when it is done")
        return rec

    def page(name: str, **ctx) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(version=__version__, **ctx))

    # ---- API ----------------------------------------------------------------------------
    @app.get("/api/health", tags=["api"])
    def health() -> dict:
        """Liveness, version and the server's limits."""
        return {"status": "ok", "version": __version__, "active_runs": manager.active,
                "limits": {"max_path_months": manager.max_path_months,
                           "max_concurrent_runs": manager.max_concurrent_runs,
                           "max_stockpile_paths": MAX_STOCKPILE_PATHS,
                           "memory_budget_bytes": manager.memory_budget,
                           "max_body_bytes": int(max_body_bytes)}}

    @app.get("/api/scenarios", tags=["api"])
    def list_scenarios() -> list[dict]:
        """The built-in scenarios with their YAML (a starting point for editing)."""
        return scenarios

    @app.get("/api/runs", tags=["api"])
    def list_runs(limit: int = Query(200, ge=1, le=1000)) -> list[dict]:
        """Past and current runs, newest first (without their YAML and summary)."""
        return [{k: v for k, v in r.items() if k not in ("scenario_yaml", "summary")}
                for r in manager.list(limit)]

    @app.post("/api/runs", status_code=202, tags=["api"])
    def start_run(req: RunRequest) -> dict:
        """Queue a run; poll GET /api/runs/{id} for its status and progress."""
        from oreflow.scenario import ScenarioError, parse_scenario, scenario_text

        if req.scenario is not None:
            if req.scenario not in scenario_names:
                raise HTTPException(400, f"unknown scenario {req.scenario[:80]!r}; built-in: "
                                         f"{', '.join(scenario_names)} (or send scenario_yaml)")
            label, text = scenario_text(req.scenario)
        else:
            label, text = "scenario_yaml", req.scenario_yaml
        try:
            sc = parse_scenario(text, label, manager.network)
        except ScenarioError as e:
            raise HTTPException(400, str(e)) from None
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        rec = manager.submit(sc, text, sha, req.paths, req.seed, req.months)
        return {"id": rec["id"], "status": rec["status"], "url": f"/api/runs/{rec['id']}",
                "page": f"/runs/{rec['id']}"}

    @app.get("/api/runs/{run_id}", tags=["api"])
    def get_run(run_id: str) -> dict:
        """Status (queued, running, done, failed, cancelled), progress 0-1, settings, any
        error."""
        rec = run_or_404(run_id)
        return {k: v for k, v in rec.items() if k != "summary"}

    @app.delete("/api/runs/{run_id}", tags=["api"])
    def cancel_run(run_id: str) -> dict:
        """Cancel a queued or running run: a queued one never starts, a running one stops
        within a simulated month. Answers the run's record; 409 if it had already finished."""
        rec = run_or_404(run_id)
        if rec["status"] not in ("queued", "running"):
            raise HTTPException(409, f"run {run_id} is already {rec['status']}; only queued "
                                     "or running runs can be cancelled")
        rec = manager.cancel(run_id) or rec
        return {k: v for k, v in rec.items() if k != "summary"}

    @app.get("/api/runs/{run_id}/summary", tags=["api"])
    def run_summary(run_id: str) -> dict:
        """The same JSON as `oreflow stress --format json`."""
        return finished(run_id)["summary"]

    @app.get("/api/runs/{run_id}/report", response_class=HTMLResponse, tags=["api"])
    def run_report(run_id: str, download: bool = False):
        """The self-contained HTML report (as `oreflow report`)."""
        from oreflow.report import write_report

        finished(run_id)
        manager.check_result(run_id)
        path = manager.report_path(run_id)
        with report_lock:
            if not path.is_file():
                try:
                    write_report(manager.load(run_id), path, manager.network)
                except WriteError as e:  # a full disk: say so; the server goes on
                    raise HTTPException(503, f"the report could not be written ({e.reason}); "
                                             "try again when the disk has room") from None
        headers = ({"Content-Disposition": f'attachment; filename="oreflow-{run_id}.html"'}
                   if download else None)
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=headers)

    @app.get("/api/runs/{run_id}/export", tags=["api"])
    def run_export(run_id: str, format: Literal["csv", "xlsx", "parquet"] = "csv",
                   table: Literal["sectors", "prices", "monthly", "monthly_sector",
                                  "run"] | None = None):
        """Headline tables: one `table`, or all of them (a zip for csv and parquet, one
        sheet per table for xlsx)."""
        from oreflow.report import ReportError, export_bytes

        finished(run_id)
        manager.check_result(run_id)
        data = tables(run_id)  # ResultUnavailable (410) if the file is damaged
        try:
            data, media, name = export_bytes(data, format, table, stem=f"oreflow-{run_id[:8]}")
        except ReportError as e:
            raise HTTPException(404, manager._public(str(e))) from None
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/runs/{run_id}/result.nc", tags=["api"])
    def run_netcdf(run_id: str):
        """The full result as NetCDF (as `oreflow stress --out`)."""
        finished(run_id)
        return FileResponse(manager.check_result(run_id), media_type="application/x-netcdf",
                            filename=f"oreflow-{run_id}.nc")

    @app.post("/api/stockpile", tags=["api"])
    def stockpile(req: StockpileRequest) -> dict:
        """Plan a stockpile and score it against the 60-day rule and no stockpile. Runs while
        the request waits (on a worker thread), counted against the concurrent-run limit."""
        from oreflow.stockpile import PlanError, plan_stockpile

        if req.scenarios is not None:
            bad = [n for n in req.scenarios if n not in scenario_names]
            if bad:
                raise HTTPException(400, f"unknown scenario(s) {', '.join(map(repr, bad))}; "
                                         f"built-in: {', '.join(scenario_names)}")
            if not req.scenarios or sum(req.scenarios.values()) <= 0 or \
                    min(req.scenarios.values()) < 0:
                raise HTTPException(400, "scenario weights must be >= 0 and not all zero")
        n_sc = len(req.scenarios) if req.scenarios else 6
        if req.commodities:  # each commodity runs its own mix of about three scenarios
            n_sc = max(n_sc, 3 * len(req.commodities))
        manager.check_size(req.paths + req.eval_paths, req.months * n_sc,
                           "(paths + eval_paths) x (months x scenarios)")
        key = f"stockpile-{uuid.uuid4().hex}"
        manager.reserve(key)
        try:
            if req.commodities:
                from oreflow.stockpile_basket import plan_basket

                plan = plan_basket(budget_usd=req.budget_usd, commodities=req.commodities,
                                   perspective=req.perspective, scenarios=req.scenarios,
                                   paths=req.paths, eval_paths=req.eval_paths, seed=req.seed,
                                   months=req.months, cvar_weight=req.cvar_weight,
                                   cvar_alpha=req.cvar_alpha, network=manager.network)
            else:
                plan = plan_stockpile(budget_usd=req.budget_usd, perspective=req.perspective,
                                      scenarios=req.scenarios, paths=req.paths,
                                      eval_paths=req.eval_paths, seed=req.seed,
                                      months=req.months, cvar_weight=req.cvar_weight,
                                      cvar_alpha=req.cvar_alpha, network=manager.network)
        except (PlanError, ValueError) as e:
            raise HTTPException(400, str(e)) from None
        finally:
            manager.release(key)
        from oreflow.stockpile_report import plan_figures

        out = plan.to_dict()
        return {**out, "charts": plan_figures(out)}

    # ---- supply risk (the numbers of `oreflow risk`) -------------------------------------
    def risk_or_400(make):
        from oreflow.perspective import UnknownNameError

        try:
            return make()
        except UnknownNameError as e:
            raise HTTPException(400, str(e)) from None

    @app.get("/api/risk", tags=["api"])
    def risk(perspective: str = Query("USA", max_length=32,
                                      description="region, bloc or member state, any case"),
             element: str | None = Query(None, max_length=8,
                                         description="element symbol or REO; all if omitted"),
             trade_factors: Literal["ec", "current"] = "current") -> dict:
        """Indicators by element and stage (`rows`: as `oreflow risk --format json`), the
        perspective's chokepoint ranking and its regions and note."""
        from oreflow.web.riskpage import risk_json

        return risk_or_400(lambda: cached(
            ("risk", perspective.strip().upper(), (element or "").lower(), trade_factors),
            lambda: risk_json(manager.network, perspective, element, trade_factors)))

    @app.get("/api/risk/sources", tags=["api"])
    def risk_sources(perspective: str = Query("USA", max_length=32),
                     element: str | None = Query(None, max_length=8)) -> dict:
        """Who supplies the perspective at each stage (`rows`: as `oreflow risk --sources
        --format json`), with the basis of each flow."""
        from oreflow.web.riskpage import sources_json

        return risk_or_400(lambda: cached(
            ("sources", perspective.strip().upper(), (element or "").lower()),
            lambda: sources_json(manager.network, perspective, element)))

    # ---- pages --------------------------------------------------------------------------
    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js():
        return Response(_plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    static = resources.files("oreflow.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # ---- finished sweeps: stores put (or written) in DATA_DIR/sweeps/NAME.zarr ----------
    sweeps_dir = manager.data_dir / "sweeps"

    def sweep_store(name: str):
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name):
            raise HTTPException(404, f"no sweep {name!r}")
        path = sweeps_dir / f"{name}.zarr"
        if not path.is_dir():
            raise HTTPException(404, f"no sweep {name!r} in {sweeps_dir}")
        from oreflow.sweep.errors import SweepError
        from oreflow.sweep.store import open_store

        try:
            st = open_store(path)
        except SweepError as e:
            raise HTTPException(422, str(e)) from None
        if not st.complete:
            raise HTTPException(409, f"sweep {name!r} is not complete; run it to the end")
        return st

    @app.get("/api/sweeps", tags=["api"])
    def list_sweeps() -> list[dict]:
        """Finished sweep stores in DATA_DIR/sweeps (oreflow sweep FILE --out there)."""
        out = []
        for path in sorted(sweeps_dir.glob("*.zarr")) if sweeps_dir.is_dir() else []:
            from oreflow.sweep.errors import SweepError
            from oreflow.sweep.store import describe, open_store

            try:
                out.append({"id": path.stem, **describe(open_store(path))})
            except SweepError:
                continue
        return out

    @app.get("/api/sweeps/{name}/sobol", tags=["api"])
    def sweep_sobol(name: str) -> list[dict]:
        """Sobol indices of a finished sweep: one record per scenario, headline, parameter."""
        from oreflow.io import json_records
        from oreflow.sweep.report import sobol_table

        return json_records(sobol_table(sweep_store(name)))

    @app.get("/sweeps/{name}", response_class=HTMLResponse, include_in_schema=False)
    def sweep_page(name: str):
        from oreflow.sweep.report import render_report

        return HTMLResponse(render_report(sweep_store(name)))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page("index.html", scenarios=scenarios, runs=manager.list(),
                    max_path_months=manager.max_path_months)

    sankey_html: list[str] = []
    cache: OrderedDict[tuple, dict] = OrderedDict()  # finished runs never change

    def cached(key: tuple, make):
        with report_lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = make()
        with report_lock:
            cache[key] = value
            while len(cache) > 64:
                cache.popitem(last=False)
        return value

    def tables(run_id: str) -> dict:
        from oreflow.report import headline_tables

        return cached(("tables", run_id), lambda: headline_tables(manager.load(run_id)))

    def charts(run_id: str, with_sankey: bool = True, prefix: str = "",
               element: str | None = None, sector: str | None = None) -> dict:
        from oreflow.report import (
            default_element,
            default_sector,
            figure_html,
            figures,
            sankey_figure,
        )

        def make() -> dict:
            ds = manager.load(run_id)
            figs = figures(ds, element=element, sector=sector)
            return {"charts": {k: figure_html(f, f"{prefix}chart-{k}") for k, f in figs.items()},
                    "attrs": dict(ds.attrs), "notes": json.loads(ds.attrs.get("notes", "[]")),
                    "element": default_element(ds),
                    "sector": default_sector(ds)}

        out = dict(cached(("charts", run_id, prefix, element, sector), make))
        out["charts"] = dict(out["charts"])
        if with_sankey:
            if not sankey_html:
                sankey_html.append(figure_html(sankey_figure(manager.network), "chart-sankey"))
            out["charts"]["sankey"] = sankey_html[0]
        return {**out, "tables": tables(run_id)}

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(run_id: str):
        rec = run_or_404(run_id)
        ctx: dict = {}
        if rec["status"] == "done":
            try:
                manager.check_result(run_id)
                ctx = charts(run_id)
            except ResultUnavailable as e:  # the page still shows the run and says why
                ctx = {"unavailable": str(e)}
        return page("run.html", run=rec, **ctx)

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(a: str | None = None, b: str | None = None):
        done = [r for r in manager.list() if r["status"] == "done"]
        sides = []
        if a and b:
            finished(a), finished(b)
            side_a = charts(a, with_sankey=False, prefix="a-")
            # B opens on A's element and sector, so the two sides compare like with like
            side_b = charts(b, with_sankey=False, prefix="b-", element=side_a["element"],
                            sector=side_a["sector"])
            sides = [{"run": manager.get(a), **side_a}, {"run": manager.get(b), **side_b}]
        diff, unpaired = [], None
        if sides:
            diff, unpaired = _compare_table(sides, manager.load(a), manager.load(b))
        return page("compare.html", runs=done, a=a, b=b, sides=sides, diff=diff,
                    unpaired=unpaired)

    @app.get("/risk", response_class=HTMLResponse, include_in_schema=False)
    def risk_page(perspective: str = Query("EU", max_length=32),
                  element: str = Query("Dy", max_length=8),
                  trade_factors: Literal["ec", "current"] = "current"):
        from oreflow.perspective import UnknownNameError
        from oreflow.report import figure_html
        from oreflow.web.riskpage import (
            picker_options,
            risk_json,
            source_bars,
            source_sankey,
            sources_json,
        )

        net = manager.network
        ctx = {"options": picker_options(net), "perspective": perspective,
               "element": element, "trade_factors": trade_factors, "error": None}
        try:
            ind = risk_json(net, perspective, element, trade_factors)
            src = sources_json(net, perspective, element)
        except UnknownNameError as e:
            ctx["error"] = str(e)
            return HTMLResponse(env.get_template("risk.html").render(version=__version__, **ctx),
                                status_code=400)
        el = ind["rows"][0]["element"] if ind["rows"] else element
        who = ind["perspective"]
        charts = {s: figure_html(source_bars(src["rows"], s, who, el), f"chart-src-{s}")
                  for s in ("mining", "separation", "metal", "magnet")}
        charts["flow"] = figure_html(source_sankey(src["rows"], who, el), "chart-src-flow")
        ctx.update(perspective=who, element=el, ind=ind, src=src, charts=charts)
        return page("risk.html", **ctx)

    @app.get("/stockpile", response_class=HTMLResponse, include_in_schema=False)
    def stockpile_page():
        from oreflow.stockpile import DEFAULT_SCENARIOS

        ds = manager.network.dataset
        mixes = ds["stockpile_scenarios"]
        commodities = [{"id": c, "name": ds.chain(c).name,
                        "planned": c == "REE" or c in set(mixes["commodity"])}
                       for c in ds.chain_ids]
        return page("stockpile.html", scenarios=scenario_names,
                    default_mix=dict(DEFAULT_SCENARIOS), max_paths=MAX_STOCKPILE_PATHS,
                    commodities=commodities)

    return app


def _compare_table(sides: list[dict], ds_a, ds_b) -> tuple[list[dict], str | None]:
    """Sector by sector: median physical shortage of run A and B and B - A: path by path
    (median and p5-p95 of each path's difference) when the runs share paths, seed, horizon
    and market, else the difference of the medians; and the reason when not paired."""
    from oreflow.report import perspective_of
    from oreflow.simulate.results import CompareError, compare

    a, b = (s["tables"]["sectors"].set_index("sector") for s in sides)
    try:
        if perspective_of(ds_a) != perspective_of(ds_b):
            raise CompareError("the runs read different perspectives")
        change = compare(ds_b, ds_a, markets=perspective_of(ds_a))["unmet_physical_t_change"]
        unpaired = None
    except CompareError as e:
        change, unpaired = {}, str(e)
    rows = []
    for sector in a.index.union(b.index):
        va = float(a["unmet_physical_t_p50"].get(sector, float("nan")))
        vb = float(b["unmet_physical_t_p50"].get(sector, float("nan")))
        c = change.get(sector)
        rows.append({"sector": sector, "a": va, "b": vb,
                     "diff": c["p50"] if c else vb - va,
                     "p5": c["p5"] if c else None, "p95": c["p95"] if c else None})
    return sorted(rows, key=lambda r: -max(abs(r["a"]), abs(r["b"]))), unpaired
