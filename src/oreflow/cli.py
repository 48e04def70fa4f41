"""Command line: `oreflow data ...`, `oreflow risk`, `oreflow demo`.

A thin layer over the Python API: each command calls one function, prints its table and
turns the library's errors into one clear line and a non-zero exit."""

from __future__ import annotations

import importlib
import json
import math
import os
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from oreflow.io import atomic_write_text, json_records

# numpy asks the kernel for huge pages for every large array; where transparent huge pages
# are compacted on demand (defrag "madvise", as on the project's machine) the first
# touch of fresh memory then waits for compaction: a stress run of 100,000 paths spent 1.3 s
# more system time and took 2.8% longer (paired runs on the project's 2-core machine).
# Commands are one process each, so this is decided here, before numpy is imported; an
# explicit NUMPY_MADVISE_HUGEPAGE=1 keeps numpy's default.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


class _Lazy:
    """A module imported on first use: `oreflow --help` and the quick commands do not pay for
    pandas and the dataset."""

    def __init__(self, name: str) -> None:
        self._name, self._module = name, None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


pd = _Lazy("pandas")
data = _Lazy("oreflow.data")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Stress-test rare-earth supply chains.")
data_app = typer.Typer(no_args_is_help=True, help="The embedded dataset: list, show, check, build.")
app.add_typer(data_app, name="data")

out = Console(width=max(Console().width, 120))
err = Console(stderr=True)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _records(df: pd.DataFrame) -> list[dict]:
    return json_records(df)


def print_frame(df: pd.DataFrame, fmt: Format, title: str | None = None,
                digits: dict[str, str] | None = None) -> None:
    if fmt is Format.json:
        print(json.dumps(_records(df), indent=1))
        return
    if fmt is Format.csv:
        print(df.to_csv(index=False, float_format="%.6g"), end="")
        return
    digits = digits or {}
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in df.columns:
        t.add_column(str(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row, strict=True):
            if isinstance(v, float):
                cells.append("n/a" if not math.isfinite(v) else format(v, digits.get(c, ",.4g")))
            else:
                cells.append(str(v))
        t.add_row(*cells)
    out.print(t)


def _dataset(path: Path | None):
    try:
        return data.load_dataset(path)
    except data.DatasetError as e:
        fail(str(e))


@data_app.command("list")
def data_list() -> None:
    """List the dataset's tables with their row counts."""
    ds = _dataset(None)
    df = pd.DataFrame([(n, len(ds[n]), t.description) for n, t in data.TABLES.items()],
                      columns=["table", "rows", "description"])
    print_frame(df, Format.table, title=f"Dataset {ds.version}")


@data_app.command("show")
def data_show(table: str = typer.Argument(..., help="table name, e.g. mine_production"),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Print one table."""
    if table not in data.TABLES:
        fail(f"unknown table {table!r}; tables: {', '.join(data.TABLES)}")
    print_frame(_dataset(None)[table], fmt, title=table)


@data_app.command("sources")
def data_sources(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """The sources every number cites, with how many rows cite each."""
    ds = _dataset(None)
    counts = pd.concat([ds[n]["source_id"] for n, t in data.TABLES.items() if t.sourced])
    src = ds["sources"].copy()
    src["rows"] = src["source_id"].map(counts.value_counts()).fillna(0).astype(int)
    print_frame(src[["source_id", "kind", "rows", "licence", "citation"]], fmt, title="Sources")


@data_app.command("check")
def data_check(path: Path = typer.Option(None, "--path", help="dataset folder (default: embedded)")
               ) -> None:
    """Validate every table, then build the model from them; report how many rows are sourced,
    by status. Non-zero exit if any problem (a row with no source, an unknown id, a bad value,
    a missing parameter, a model that cannot be built from the data)."""
    from oreflow.data.load import TABLES_DIR as _DEFAULT
    from oreflow.data.load import Dataset, _version
    from oreflow.data.modelcheck import check_model

    tables, problems = data.check_dataset(path)
    if not problems:  # the schema holds: does the model build and run on it?
        folder = Path(path) if path is not None else _DEFAULT
        problems = check_model(Dataset(tables=tables, path=folder, version=_version(folder)))
    summary = []
    for name, table in data.TABLES.items():
        if name not in tables or not table.sourced:
            continue
        df = tables[name]
        sourced = (df["source_id"] != "") & df["status"].isin(["reported", "estimate",
                                                               "assumption"])
        by = df["status"].value_counts()
        summary.append((name, len(df), int(sourced.sum()), int(by.get("reported", 0)),
                        int(by.get("estimate", 0)), int(by.get("assumption", 0))))
    df = pd.DataFrame(summary, columns=["table", "rows", "sourced", "reported", "estimate",
                                        "assumption"])
    print_frame(df, Format.table, title="Dataset check")
    total, ok = int(df["rows"].sum()), int(df["sourced"].sum())
    if problems:
        for p in problems:
            err.print(f"[red]-[/red] {p}", highlight=False)
        fail(f"{len(problems)} problem(s); {ok} of {total} rows sourced", code=1)
    out.print(f"[green]ok[/green]: all {total} rows of {len(df)} tables carry a source id, "
              "a vintage and a status")


@data_app.command("build")
def data_build(raw_dir: Path = typer.Option(None, "--raw-dir",
                                            help="raw files (default: ../shared/data)"),
               out_dir: Path = typer.Option(None, "--out", help="where to write the tables "
                                            "(default: the package's tables/)")) -> None:
    """Rebuild every table from the raw public files and the curated notes."""
    from oreflow.data import build, raw
    from oreflow.data.load import BASE_YEAR_VARIANTS, TABLES_DIR, validate_tables

    try:
        tables = build.build_tables(raw_dir)
    except raw.RawDataError as e:
        fail(str(e))
    from oreflow.data.load import Dataset
    from oreflow.data.modelcheck import check_model

    text = {n: df.astype(str).replace({"nan": "", "<NA>": ""}) for n, df in tables.items()}
    coerced, problems = validate_tables(text)
    target = out_dir or TABLES_DIR
    if not problems:  # the model must build from what is about to be written
        problems = check_model(Dataset(tables=coerced, path=target, version="oreflow-data-build"))
    if problems:
        fail("the built tables do not validate:\n" + "\n".join(f"  - {p}" for p in problems))
    written = build.write_tables(tables, target)
    out.print(f"wrote {len(written)} tables to {target}")
    for year, folder in BASE_YEAR_VARIANTS.items():
        try:
            past = build.build_variant(raw_dir, year)
        except raw.RawDataError as e:
            fail(str(e))
        merged = dict(text)
        merged.update({n: df.astype(str).replace({"nan": "", "<NA>": ""})
                       for n, df in past.items()})
        _, problems = validate_tables(merged)
        if problems:
            fail(f"the {year} tables do not validate:\n"
                 + "\n".join(f"  - {p}" for p in problems))
        written = build.write_tables(past, target / folder, replace=True)
        out.print(f"wrote {len(written)} tables of base year {year} to {target / folder}")


class TradeFactors(str, Enum):
    ec = "ec"
    current = "current"


RISK_COLUMNS = ["element", "stage", "world_t", "china_share", "hhi", "wgi_hhi",
                "import_reliance", "eu_sr", "eu_sr_ec"]
RISK_DIGITS = {"world_t": ",.0f", "china_share": ".0%", "hhi": ",.0f", "wgi_hhi": ".2f",
               "import_reliance": ".0%", "eu_sr": ".2f", "eu_sr_ec": ".2f", "chokepoint": ".2f",
               "t": ",.1f", "share": ".1%"}
TC_TITLES = {"ec": "t_c 'ec': agreements and restrictions of the EC 2023 assessment's vintage",
             "current": "t_c 'current': agreements and export controls in force today"}


@app.command()
def risk(perspective: str = typer.Option("USA", "--perspective", "-p",
                                         help="region (USA, JPN, IND, ...), bloc (EU, G7, QUAD, "
                                         "MSP) or member state; any case"),
         element: list[str] = typer.Option(None, "--element", "-e",
                                           help="element symbol or REO (any case); repeat for "
                                           "several"),
         fmt: Format = typer.Option(Format.table, "--format"),
         top: int = typer.Option(10, "--top", help="chokepoints to list (table format)"),
         sources: bool = typer.Option(False, "--sources",
                                      help="who supplies the perspective at each stage, with "
                                      "the basis of each flow, instead of the indicators"),
         trade_factors: TradeFactors = typer.Option(
             TradeFactors.current, "--trade-factors",
             help="t_c of the EU supply risk: 'ec' (vintage of the EC 2023 assessment) or "
                  "'current' (controls in force today)"),
         commodity: str = typer.Option(None, "--commodity", "-c",
                                       help="a chain of chains.csv (REE, Ga, Ge, Sb, W, "
                                       "graphite_natural, graphite_synthetic, Co, Li, Ni; any "
                                       "case); default REE"),
         all_: bool = typer.Option(False, "--all",
                                   help="every (commodity, stage) ranked by HHI x the "
                                   "perspective's import reliance")) -> None:
    """Concentration and supply risk by element and stage, for a perspective; or, with
    --sources, who supplies it; --commodity for another mineral, --all for every
    (commodity, stage). JSON is a list of rows either way."""
    from oreflow.network import Network
    from oreflow.perspective import resolve_perspective
    from oreflow.risk import indicator_table, sources_table

    ds = _dataset(None)
    if all_ or (commodity is not None and _chain_id(ds, commodity) != "REE"):
        if sources or element:
            fail("--sources and --element apply to the rare earths only (--commodity REE)")
        _risk_chains(ds, perspective, fmt, commodity, all_, trade_factors.value)
        return
    net = Network.from_dataset(ds)
    try:
        p = resolve_perspective(perspective, net)
        if sources:
            table = sources_table(net, p, element or None)
        else:
            table = indicator_table(net, p, element or None, trade_factors.value)
    except ValueError as e:
        fail(str(e))
    if p.note:
        err.print(f"note: {p.note}", highlight=False)
    if fmt is not Format.table:
        print_frame(table, fmt)
        return
    if sources:
        print_frame(table.drop(columns="perspective"), Format.table, digits=RISK_DIGITS,
                    title=f"Who supplies {p.code} ({', '.join(p.regions)}), {net.year}, t REO-eq "
                          "a year; basis: domestic, observed, routed, allocated")
        return
    _print_risk(table, RISK_COLUMNS, p.code, top, net.year, trade_factors.value)


CHAIN_RISK_COLUMNS = ["commodity", "stage", "world_t", "china_share", "hhi", "top_producer",
                      "top_share", "import_reliance", "usgs_import_reliance",
                      "supply_from_china", "exposure", "chokepoint", "controls", "data_status"]
CHAIN_DIGITS = {**RISK_DIGITS, "top_share": ".0%", "supply_from_china": ".0%",
                "exposure": ".0%"}


def _chain_id(ds, commodity: str) -> str:
    from oreflow.data.chain import UnknownChainError

    try:
        return ds.chain(commodity).id
    except UnknownChainError as e:
        fail(str(e))


def _risk_chains(ds, perspective: str, fmt: Format, commodity: str | None, all_: bool,
                 setting: str) -> None:
    """`risk --commodity X` (a generic chain) and `risk --all`."""
    from oreflow.chain_risk import all_commodities_table, chain_indicator_table
    from oreflow.chains import ChainError, ChainNetwork

    try:
        if all_:
            table = all_commodities_table(ds, perspective, setting)
            if commodity is not None:
                table = table[table["commodity"] == _chain_id(ds, commodity)]
        else:
            table = chain_indicator_table(ChainNetwork.from_dataset(ds, commodity), perspective)
    except (ValueError, ChainError) as e:
        fail(str(e))
    if table.attrs.get("note"):
        err.print(f"note: {table.attrs['note']}", highlight=False)
    for cid, why in table.attrs.get("skipped", {}).items():
        err.print(f"note: {cid} left out: {why}", highlight=False)
    if fmt is not Format.table:
        print_frame(table, fmt)
        return
    cols = (["rank"] if all_ else []) + CHAIN_RISK_COLUMNS
    what = "every commodity" if all_ else table["commodity"].iloc[0]
    print_frame(table[cols], Format.table, digits=CHAIN_DIGITS,
                title=f"{what} by stage, {ds.base_year} (t of each chain's basis), perspective "
                      f"{table.attrs.get('perspective', perspective)}; ranked by HHI x reliance"
                if all_ else f"{what} by stage, {ds.base_year}, perspective "
                f"{table.attrs.get('perspective', perspective)}")


def _print_risk(table: pd.DataFrame, cols: list[str], perspective: str, top: int,
                year: int, setting: str = "current") -> None:
    from oreflow.risk import chokepoints

    print_frame(table[cols], Format.table, digits=RISK_DIGITS,
                title=f"Rare earths by stage, {year} (t REO-eq), perspective {perspective}; "
                      f"EU SR with {TC_TITLES[setting]}")
    print_frame(chokepoints(table, top)[["rank", "element", "stage", "china_share", "hhi",
                                         "import_reliance", "chokepoint"]],
                Format.table, digits=RISK_DIGITS,
                title=f"Top {top} chokepoints (HHI x reliance; exact ties by world tonnage)")


scenario_app = typer.Typer(no_args_is_help=True, help="Scenario files: list, show, validate.")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("list")
def scenario_list() -> None:
    """The built-in scenarios."""
    from oreflow.scenario import builtin_names, load_scenario

    rows = []
    for name in builtin_names():
        sc, _ = load_scenario(name)
        rows.append((name, ",".join(sc.commodities), sc.start, sc.months, len(sc.shocks),
                     " ".join(sc.description.split())[:90]))
    print_frame(pd.DataFrame(rows, columns=["scenario", "commodity", "start", "months",
                                            "shocks", "description"]), Format.table,
                title="Built-in scenarios")


@scenario_app.command("show")
def scenario_show(name: str = typer.Argument(..., help="built-in name or YAML file")) -> None:
    """Print a scenario's YAML."""
    from oreflow.scenario import ScenarioError, scenario_text

    try:
        _, text = scenario_text(name)
    except ScenarioError as e:
        fail(str(e))
    print(text, end="")


@scenario_app.command("validate")
def scenario_validate(path: str = typer.Argument(..., help="built-in name or YAML file")
                      ) -> None:
    """Check a scenario against the schema and the dataset's names."""
    from oreflow.network import Network
    from oreflow.scenario import ScenarioError, load_scenario, scenario_warnings

    net = Network.from_dataset(_dataset(None))
    try:
        load_scenario(path)  # the file itself first: a bad one is refused before the dataset loads
        sc, sha = load_scenario(path, net)
    except ScenarioError as e:
        fail(str(e), code=1)
    for w in scenario_warnings(sc, net):
        err.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    out.print(f"[green]ok[/green]: {sc.name}, {len(sc.shocks)} shock(s), {sc.months} months "
              f"from {sc.start}; sha256 {sha[:12]}")


@app.command()
def stress(scenario: str = typer.Argument(..., help="built-in scenario or YAML file"),
           paths: int = typer.Option(1000, "--paths", min=1, max=10_000_000),
           seed: int = typer.Option(0, "--seed", min=0, help="random seed (>= 0)"),
           months: int = typer.Option(None, "--months", min=1, max=600),
           perspective: str = typer.Option(None, "--perspective", "-p",
                                           help="read sector figures for a region or bloc "
                                                "(USA, EU, JPN, KOR, IND, CHN, G7, ...); "
                                                "default: every region"),
           out_file: Path = typer.Option(None, "--out", help="write the full result (NetCDF, "
                                         ".nc)"),
           fmt: Format = typer.Option(Format.table, "--format"),
           max_memory: str = typer.Option(None, "--max-memory",
                                          help="memory budget of the run, e.g. 8G (default: "
                                          "$OREFLOW_MEMORY_BUDGET or half the machine's)"),
           against: str = typer.Option(None, "--against",
                                       help="another scenario (name or YAML) run on the same "
                                            "paths and seed: print the change path by path "
                                            "(what an investment or a stockpile avoids)")
           ) -> None:
    """Monte Carlo stress test of a scenario: prices by region, physical shortage and demand
    given up because of price, first stoppage by sector and region; with --against, the
    change against another scenario on the same paths."""
    from oreflow.io import OutPathError, WriteError, check_out_path
    from oreflow.limits import check_run_memory, memory_budget
    from oreflow.network import Network
    from oreflow.scenario import ScenarioError, load_scenario, scenario_text, scenario_warnings
    from oreflow.simulate import compare, run_stress, save_result, summary
    from oreflow.simulate.market import MarketError, perspective_markets
    from oreflow.simulate.results import CompareError
    from oreflow.simulate.run import RunError

    try:
        load_scenario(scenario)  # a bad file is refused before the dataset loads
        if against is not None:
            load_scenario(against)
            if out_file is not None:
                fail("--out saves one run: give --out or --against, not both (run each "
                     "scenario with its own --out to keep both)")
        net = Network.from_dataset(_dataset(None))
        sc, sha = load_scenario(scenario, net)
        warnings = scenario_warnings(sc, net)
        other = None
        if against is not None:
            other, other_sha = load_scenario(against, net)
            for what in ("controller", "base_year", "commodities"):
                mine, theirs = getattr(sc, what), getattr(other, what)
                if mine != theirs:
                    fail(f"--against {against}: {what} {theirs} is not {sc.name}'s {mine}; "
                         "runs compare path by path only on the same market")
        # everything that can be checked is checked before the run, not after it
        if out_file is not None:
            label = scenario_text(scenario)[0]
            check_out_path(out_file, [label] if Path(label).is_file() else [])
            if out_file.suffix != ".nc":
                fail(f"--out {out_file}: the file name must end in .nc")
        check_run_memory(paths, months or sc.months, len(sc.shocks), len(net.elements),
                         memory_budget(max_memory))
        ds = _run_with_progress(run_stress, sc, paths, seed, months, net,
                                quiet=fmt is not Format.table, sha=sha,
                                bands=out_file is not None)  # only a saved result shows them
        markets, note = (perspective_markets(_stress_base(net, sc, ds.attrs["controller"]),
                                             net.dataset, perspective)
                         if perspective else (None, ""))
        ds.attrs["perspective"] = perspective.upper() if perspective else "all regions"
        ds.attrs["perspective_regions"] = json.dumps(markets or [])
        extra = ([note] if note else []) + [f"warning: {w}" for w in warnings]
        if extra:
            ds.attrs["notes"] = json.dumps(json.loads(ds.attrs.get("notes", "[]")) + extra)
        if out_file is not None:
            save_result(ds, out_file)
        if other is not None:
            check_run_memory(paths, months or other.months, len(other.shocks),
                             len(net.elements), memory_budget(max_memory))
            ds_other = _run_with_progress(run_stress, other, paths, seed,
                                          months or sc.months, net,
                                          quiet=fmt is not Format.table, sha=other_sha,
                                          bands=False)
            changes = compare(ds, ds_other, perspective.upper() if perspective else None,
                              markets)
            changes["notes"] += json.loads(ds.attrs.get("notes", "[]"))
            n = min(len(sc.shocks), len(other.shocks))
            if sc.shocks[:n] != other.shocks[:n]:
                changes["notes"].append(
                    f"the shocks of {sc.name} and {other.name} differ before the end of the "
                    "shorter list: their paths share random numbers only as far as the shocks "
                    "make the same draws in the same order, so the change may be a noisier "
                    "estimate (list the shared shocks first, in the same order)")
    except WriteError as e:
        fail(f"{e} (the run finished; re-run with the same seed to get the same result)")
    except (ScenarioError, OutPathError, MarketError, RunError, CompareError, ValueError) as e:
        fail(str(e))
    if other is not None:
        _print_compare(changes, fmt)
        return
    if fmt is not Format.json:  # JSON carries them; CSV keeps stdout to the table
        for n in json.loads(ds.attrs.get("notes", "[]")):
            err.print(f"note: {n}", highlight=False)
    result = summary(ds, perspective.upper() if perspective else None, markets)
    if fmt is Format.json:
        print(json.dumps(result, indent=1))
    elif fmt is Format.csv:
        from oreflow.report import sector_table

        print(sector_table(ds).to_csv(index=False, float_format="%.6g"), end="")
    else:
        _print_stress(result, ds)
    if out_file is not None and fmt is Format.table:
        out.print(f"Full result: {out_file.resolve()}")


def _print_compare(c: dict, fmt: Format) -> None:
    """`oreflow stress A --against B`: the change by sector and the peak price ratios."""
    if fmt is Format.json:
        print(json.dumps(c, indent=1))
        return
    rows = [{"sector": x, **{f"unmet_physical_t_change_{q}": v[q] for q in ("p5", "p50", "p95")},
             "demand_reduction_t_change_p50": c["demand_reduction_t_change"][x]["p50"]}
            for x, v in c["unmet_physical_t_change"].items()]
    sectors = pd.DataFrame(rows)
    for n in c["notes"]:  # on stderr: a CSV on stdout stays the table alone
        err.print(f"note: {n}", highlight=False)
    if fmt is Format.csv:
        print(sectors.to_csv(index=False, float_format="%.6g"), end="")
        return
    out.print(f"{c['scenario']} against {c['against']}: {c['paths']} paths, {c['months']} "
              f"months, seed {c['seed']}")
    ctrl = c["controller"]
    shown = [r for r in c["perspective_regions"] if r != ctrl][:3]
    prices = pd.DataFrame([(e, v[ctrl], v["ROW"], *(v[r] for r in shown))
                           for e, v in c["price_peak_ratio_change"].items()],
                          columns=["element", f"x_{ctrl}", "x_outside", *(f"x_{r}" for r in shown)])
    cols = list(prices.columns[1:])
    prices = prices.astype({k: float for k in cols})
    prices = prices[(prices[cols] > 1.005).any(axis=1) | (prices[cols] < 0.995).any(axis=1)]
    if len(prices):
        print_frame(prices, Format.table, digits={k: ".3f" for k in cols},
                    title=f"Peak price, {c['scenario']} / {c['against']} on the same path "
                          "(median over paths)")
    short = sectors.rename(columns={f"unmet_physical_t_change_{q}": f"physical_{q}"
                                    for q in ("p5", "p50", "p95")}
                           | {"demand_reduction_t_change_p50": "given_up_for_price_p50"})
    print_frame(short, Format.table, digits={k: ",.1f" for k in short.columns[1:]},
                title=f"Change by sector, {c['perspective']}: t of element over the horizon, "
                      f"{c['scenario']} minus {c['against']} path by path (negative: avoided)")


def _stress_base(net, sc, controller: str):
    """The engine's base year of a scenario: the rare-earth network's, or its chains'."""
    from oreflow.simulate.market import market_base

    if sc.is_ree:
        return market_base(net.at_year(sc.base_year), controller)
    from oreflow.simulate.chain_market import chain_market_base, chain_markets

    return chain_market_base(chain_markets(net.dataset, sc.commodities), controller)


def _run_with_progress(run_stress, scenario, paths, seed, months, net, quiet: bool,
                       sha: str = "", bands: bool = True):
    """Run with a progress bar on long runs."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet or paths * (months or 36) < 200_000:
        return run_stress(scenario, paths=paths, seed=seed, months=months, network=net,
                          scenario_sha256=sha, bands=bands)
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("run", total=1.0)
        return run_stress(scenario, paths=paths, seed=seed, months=months, network=net,
                          scenario_sha256=sha, bands=bands,
                          progress=lambda d, t: bar.update(task, completed=d / t))


def _print_stress(result: dict, ds) -> None:
    from oreflow.report import region_table, sector_table

    head = (f"{result['scenario']}: {result['paths']} paths, {result['months']} months from "
            f"{ds.attrs['start']}, seed {result['seed']}, dataset {result['dataset_version']}")
    out.print(head)
    ctrl = result["controller"]
    regions = result["perspective_regions"]
    shown = [r for r in regions if r != ctrl][:3] if len(regions) < 7 else []
    rows = []
    lows = result.get("price_low_ratio") or {}
    for e, v in result["price_peak_ratio"].items():
        low = lows.get(e, {}).get(ctrl)
        rows.append((e, v[ctrl], low, v["ROW"], *(v[r] for r in shown)))
    cols = ["element", f"peak_x_{ctrl}", f"low_x_{ctrl}", "peak_x_outside",
            *(f"peak_x_{r}" for r in shown)]
    peaks = pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[1:]})
    peaks = peaks[(peaks[cols[1:]] > 1.01).any(axis=1) | (peaks[cols[1:]] < 0.99).any(axis=1)]
    if len(peaks):
        print_frame(peaks, Format.table, digits={c: ".2f" for c in cols[1:]},
                    title=f"Peak price / base price (median over paths; low_x_{ctrl}: the "
                          "lowest)")
    sec = sector_table(ds)
    print_frame(sec[["sector", "unmet_physical_t_p50", "unmet_physical_t_p95",
                     "demand_reduction_t_p50", "first_stoppage_week_p50"]],
                Format.table, title=f"By sector, {result['perspective']}: physical shortage "
                                    "and demand given up because of price, t of element",
                digits={"unmet_physical_t_p50": ",.0f", "unmet_physical_t_p95": ",.0f",
                        "demand_reduction_t_p50": ",.0f", "first_stoppage_week_p50": ".1f"})
    print_frame(region_table(ds), Format.table,
                title="By region (all sectors), t of element",
                digits={"unmet_physical_t_p50": ",.0f", "unmet_physical_t_p95": ",.0f",
                        "demand_reduction_t_p50": ",.0f", "first_stoppage_week_p50": ".1f"})


@app.command()
def demo(out_dir: Path = typer.Option(Path("out"), "--out", help="folder for the results")
         ) -> None:
    """The first screen: concentration for the USA, then a stress test of the April 2025
    licences with its HTML report."""
    from oreflow.network import Network
    from oreflow.risk import indicator_table

    ds = _dataset(None)
    net = Network.from_dataset(ds)
    table = indicator_table(net, "USA")
    main = table[table["element"].isin(["REO", "Nd", "Pr", "Dy", "Tb", "Sm", "Y"])]
    _print_risk(main, RISK_COLUMNS, "USA", 10, net.year)
    path = out_dir / "risk_USA.csv"
    try:
        atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
    except OSError as e:
        fail(str(e))
    out.print(f"Full table ({len(table)} rows, all elements): {path.resolve()}")
    out.print(f"Dataset {ds.version}; base year {net.year}\n")
    from oreflow.simulate import run_stress, save_result, summary

    result = _run_with_progress(run_stress, "licensing-2025-04", 2000, 0, None, net,
                                quiet=True)
    result.attrs["perspective"], result.attrs["perspective_regions"] = "USA", '["USA"]'
    try:
        save_result(result, out_dir / "licensing-2025-04.nc")
    except OSError as e:
        fail(str(e))
    _print_stress(summary(result, "USA", ["USA"]), result)
    out.print(f"Full result: {(out_dir / 'licensing-2025-04.nc').resolve()}")
    from oreflow.report import write_report

    try:
        write_report(result, out_dir / "licensing-2025-04.html", network=net)
    except OSError as e:
        fail(str(e))
    out.print(f"Report (opens offline): {(out_dir / 'licensing-2025-04.html').resolve()}")


stockpile_app = typer.Typer(
    no_args_is_help=True, help="Stockpile planning: what to hold, in which form, what it buys.")
app.add_typer(stockpile_app, name="stockpile")


class PlanFormat(str, Enum):
    table = "table"
    json = "json"


@stockpile_app.command("plan")
def stockpile_plan(
        budget_usd: float = typer.Option(12e9, "--budget-usd", help="purchase plus carrying cost"),
        perspective: str = typer.Option("USA", "--perspective", "-p"),
        scenarios: str = typer.Option(None, "--scenarios",
                                      help="built-in names or YAML files with optional weights, "
                                           "e.g. licensing-2025-04:2,quota-2010 (default: six "
                                           "disruption scenarios, equal weights)"),
        paths: int = typer.Option(2000, "--paths", help="paths to optimise over"),
        eval_paths: int = typer.Option(2000, "--eval-paths", help="fresh paths to score on"),
        seed: int = typer.Option(0, "--seed", min=0, help="random seed (>= 0)"),
        months: int = typer.Option(60, "--months", help="horizon of every scenario"),
        cvar_weight: float = typer.Option(0.0, "--cvar-weight",
                                          help="0 = expected value only, 1 = CVaR only"),
        cvar_alpha: float = typer.Option(0.95, "--cvar-alpha"),
        min_days: str = typer.Option(None, "--min-days",
                                     help="minimum days of cover: 30 (every element) or "
                                          "Dy:60,Tb:60"),
        elements: str = typer.Option(None, "--elements", help="only hold these, e.g. Nd,Pr,Dy,Tb"),
        sweep: Path = typer.Option(None, "--sweep",
                                   help="a sweep file: draw the paths across its parameter "
                                        "distributions and scenarios (docs/sweep.md)"),
        param_draws: int = typer.Option(32, "--param-draws", min=1,
                                        help="parameter sets drawn from --sweep (Latin "
                                             "hypercube), for fitting and, fresh, for scoring"),
        method: str = typer.Option("auto", "--method",
                                   help="monolithic (one LP), benders (path decomposition) or "
                                        "auto (benders from 600 distinct paths)"),
        commodities: str = typer.Option(
            None, "--commodities",
            help="plan one budget across these commodities, e.g. REE,Ga,Ge,Sb,W,graphite,Co,"
                 "Li,Ni (each on its own scenarios, stockpile_scenarios.csv; --scenarios "
                 "replaces the mix of the commodities they are about); default: rare earths "
                 "only, the single-commodity plan"),
        report: Path = typer.Option(None, "--report",
                                    help="also write the plan's charts as one HTML file"),
        fmt: PlanFormat = typer.Option(PlanFormat.table, "--format")) -> None:
    """Plan a stockpile with a budget and score it against a flat 60-day rule on fresh paths."""
    import contextlib

    from oreflow.stockpile import PlanError, plan_stockpile

    busy = (err.status(f"simulating {paths:,} + {eval_paths:,} paths, optimising, scoring")
            if fmt is PlanFormat.table else contextlib.nullcontext())
    if report is not None:
        from oreflow.io import OutPathError, check_out_path

        try:
            check_out_path(report, option="--report")
        except OutPathError as e:
            fail(str(e))
    with busy:
        try:
            if commodities is not None:
                if sweep is not None:
                    raise PlanError("--sweep plans the rare earths alone; leave out "
                                    "--commodities or --sweep")
                from oreflow.stockpile_basket import plan_basket

                plan = plan_basket(
                    budget_usd=budget_usd, commodities=commodities, perspective=perspective,
                    scenarios=scenarios, paths=paths, eval_paths=eval_paths, seed=seed,
                    months=months, cvar_weight=cvar_weight, cvar_alpha=cvar_alpha,
                    min_days=_parse_min_days(min_days),
                    elements=[e.strip() for e in elements.split(",")] if elements else None,
                    method=method)
            else:
                plan = plan_stockpile(
                    budget_usd=budget_usd, perspective=perspective, scenarios=scenarios,
                    paths=paths, eval_paths=eval_paths, seed=seed, months=months,
                    cvar_weight=cvar_weight, cvar_alpha=cvar_alpha,
                    min_days=_parse_min_days(min_days),
                    elements=[e.strip() for e in elements.split(",")] if elements else None,
                    sweep=sweep, param_draws=param_draws, method=method)
        except PlanError as e:
            fail(str(e))
    if report is not None:
        from oreflow.stockpile_report import write_plan_report

        write_plan_report(plan.to_dict(), report)
    if fmt is PlanFormat.json:
        print(json.dumps(plan.to_dict(), indent=1))
        return
    if commodities is not None:
        _print_basket(plan)
    else:
        _print_plan(plan)
    if report is not None:
        out.print(f"Charts: {report}")


def _parse_min_days(text: str | None):
    if not text:
        return None
    try:
        if ":" not in text:
            return float(text)
        return {k.strip(): float(v) for k, v in (i.split(":", 1) for i in text.split(","))}
    except ValueError:
        fail(f"--min-days {text!r}: give a number of days (30) or element:days pairs "
             "(Dy:60,Tb:60)")


def _print_strategies(ev: dict, title: str) -> None:
    """A plan's evaluation: the plan, the 60-day rule at its money and within the budget,
    and no stockpile, each with its expected and CVaR95 loss."""
    label = {"plan": "plan", "rule_equal_money":
             f"60-day rule at the plan's money ({ev['rule_equal_money_days'] or 0:,.0f} days)",
             "rule_60_days": "60-day rule (within the budget)", "none": "no stockpile"}
    rows = [(label[k], ev["expected_unserved_usd"][k], ev["cvar95_unserved_usd"][k])
            for k in ("plan", "rule_equal_money", "rule_60_days", "none")]
    print_frame(pd.DataFrame(rows, columns=["strategy", "expected_loss_usd", "cvar95_loss_usd"]),
                Format.table, title=title,
                digits={"expected_loss_usd": ",.0f", "cvar95_loss_usd": ",.0f"})


def _print_plan(plan) -> None:
    d = plan.to_dict()
    out.print(f"Stockpile for {plan.perspective}: budget {plan.budget_usd / 1e9:,.2f} B USD, "
              f"spent {d['spent_usd'] / 1e9:,.3f} B USD on purchases, carrying cost "
              f"{d['carry_usd_per_year'] / 1e6:,.1f} M USD/yr "
              f"({plan.settings['paths']} paths, seed {plan.settings['seed']}, dataset "
              f"{plan.settings['dataset_version']})")
    h = plan.holdings()
    h["days_of_cover"] = h["element"].map(d["days_of_cover"])
    print_frame(h, Format.table, title="Holdings (t of rare earth contained, REO-eq)",
                digits={"t": ",.1f", "usd": ",.0f", "days_of_cover": ",.0f"})
    ev = d["evaluation"]
    _print_strategies(ev, f"Value lost to physical shortage on {ev['paths']} fresh paths (USD)")
    if ev.get("price_response_loss_usd") is not None:
        out.print(f"Demand given up because of price (not served by a stockpile; consumer-"
                  f"surplus triangle): {ev['price_response_loss_usd']:,.0f} USD expected. "
                  f"Valuation: {ev['valuation']}.")


def _print_basket(plan) -> None:
    d = plan.to_dict()
    out.print(f"Stockpile across {', '.join(d['commodities'])} for {plan.perspective}: budget "
              f"{plan.budget_usd / 1e9:,.2f} B USD; purchases {d['spent_usd'] / 1e9:,.3f} B USD, "
              f"carrying cost {d['carry_usd_per_year'] / 1e6:,.1f} M USD/yr, "
              f"{d['cost_over_tenor_usd'] / 1e9:,.3f} B USD over the tenor "
              f"({plan.settings['paths']} paths per commodity, seed {plan.settings['seed']}, "
              f"dataset {plan.settings['dataset_version']})")
    h = plan.holdings().groupby(["commodity", "form"], sort=False)[["t", "usd"]].sum()
    print_frame(h.reset_index(), Format.table,
                title="Holdings by commodity and form (t of each commodity's basis; rare "
                      "earths REO-eq, element rows in --format json)",
                digits={"t": ",.2f", "usd": ",.0f"})
    sp = plan.spend()[["commodity", "purchase_usd", "cost_over_tenor_usd", "share_of_budget",
                       "last_dollar_usd_per_usd", "next_dollar_usd_per_usd"]].rename(
        columns={"share_of_budget": "share", "last_dollar_usd_per_usd": "last_dollar",
                 "next_dollar_usd_per_usd": "next_dollar"})
    print_frame(sp, Format.table,
                title="Spend and what the last and next dollar of each commodity avoid "
                      "(USD of expected loss per USD)",
                digits={"purchase_usd": ",.0f", "cost_over_tenor_usd": ",.0f",
                        "share": ".3f", "last_dollar": ",.4f", "next_dollar": ",.4f"})
    out.print(f"Budget shadow price: {d['budget_shadow_price_usd_per_usd']:,.4f} USD of expected "
              "loss per USD of budget (0: the budget does not bind).")
    ev = d["evaluation"]
    _print_strategies(ev, "Value lost to physical shortage on fresh paths, all commodities (USD; "
                          "CVaR95 summed over commodities)")
    by = pd.DataFrame([{"commodity": c, **{k: v["expected_unserved_usd"][k]
                                           for k in ("plan", "rule_equal_money", "none")}}
                       for c, v in ev["by_commodity"].items()])
    print_frame(by, Format.table, title="Expected loss by commodity (USD)",
                digits={k: ",.0f" for k in ("plan", "rule_equal_money", "none")})


@app.command()
def stocks(element: list[str] = typer.Option(None, "--element", "-e",
                                             help="element in magnets (Nd, Pr, Dy, Tb, Gd, Ho, "
                                             "Sm); repeat for several; default Nd Pr Dy Tb"),
           region: str = typer.Option("all", "--region", "-r",
                                      help="region of use (CHN, USA, XEU, JPN, KOR, IND, XOT), "
                                      "bloc (EU = XEU, G7, ...), member state (ITA = XEU) or "
                                      "all; any case"),
           year: int = typer.Option(None, "--year", help="year of the by-sector table "
                                    "(default: the base year)"),
           until: int = typer.Option(None, "--until", help="project inflows to this year"),
           growth: float = typer.Option(0.0, "--growth", help="yearly inflow growth after the "
                                        "base year, e.g. 0.05"),
           collection_rate: float = typer.Option(None, "--collection-rate", min=0.0, max=1.0,
                                                 help="override the collection rate of the "
                                                 "selected region(s)"),
           capacity: float = typer.Option(None, "--capacity-t-magnet", min=0.0,
                                          help="override the recycling capacity (t of magnets a "
                                          "year) of the selected region"),
           by: str = typer.Option("sector", "--by", help="csv: 'sector' or 'year' table"),
           fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Magnets in use: stock, end of life and secondary potential by sector (t of element)."""
    from oreflow.network import Network
    from oreflow.stocks import (
        StocksError,
        magnet_stocks,
        resolve_elements,
        resolve_regions,
        stock_regions,
        stocks_tables,
    )

    net = Network.from_dataset(_dataset(None))
    try:
        if by not in ("sector", "year"):
            raise StocksError(f"--by {by!r}: allowed: sector, year")
        all_regions = stock_regions(net.dataset)
        regions = resolve_regions(all_regions, region, net.dataset)
        if capacity is not None and len(regions) != 1:
            raise StocksError("--capacity-t-magnet needs one --region (capacities are per "
                              f"region: {', '.join(all_regions)})")
        ds = magnet_stocks(net, end_year=until, growth_per_year=growth,
                           collection_rate=_per_region(collection_rate, regions),
                           capacity_t_magnet_per_year=_per_region(capacity, regions))
        elements = resolve_elements([str(e) for e in ds["element"].values], element)
        year = net.year if year is None else year
        by_sector, by_year = stocks_tables(ds, elements, regions, year)
    except StocksError as e:
        fail(str(e))
    label = "all regions" if len(regions) > 1 else regions[0]
    if fmt is Format.json:
        print(json.dumps({"region": label, "year": year, "base_year": net.year,
                          "dataset_version": net.dataset.version, "units": "t of element; "
                          "flows a year, stocks at year end",
                          "by_sector": _records(by_sector), "by_year": _records(by_year)},
                         indent=1))
        return
    if fmt is Format.csv:
        print_frame(by_sector if by == "sector" else by_year, fmt)
        return
    digits = {"inflow_t": ",.1f", "stock_t": ",.1f", "eol_t": ",.1f",
              "secondary_potential_t": ",.2f"}
    print_frame(by_sector, fmt, digits=digits,
                title=f"Magnets in use, {label}, {year} (t of element; flows a year)")
    ys = by_year["year"]
    last = int(ys.max())
    print_frame(by_year[(ys % 5 == 0) | (ys == last)], fmt, digits=digits,
                title=f"By year, {label}, all sectors (every 5 years; {int(ys.min())}-{last})")
    out.print(f"Dataset {net.dataset.version}; base year {net.year}; regions are regions of "
              "manufacture (sector_regions.csv); docs/stocks.md")


def _per_region(value: float | None, regions: list[str]) -> dict[str, float] | None:
    return None if value is None else {r: value for r in regions}


@app.command()
def validate(out_file: Path = typer.Option(Path("docs/validation.md"), "--out", "-o",
                                           help="the Markdown report to write"),
             paths: int = typer.Option(200, "--paths", min=10, max=20_000),
             seeds: str = typer.Option("1,2,3", "--seeds", help="comma-separated seeds"),
             fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Backtest: every recorded target (validation_targets.csv) against the model, in-sample
    (what scripts/calibrate.py fits) and out-of-sample, pass or miss; writes the report."""
    from oreflow.validate import run_validation

    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
        if any(s < 0 for s in seed_list):
            raise ValueError
    except ValueError:
        fail(f"--seeds {seeds!r}: give comma-separated integers >= 0, e.g. 1,2,3")
    try:
        tab = run_validation(out_file, seeds=seed_list, paths=paths)
    except OSError as e:
        fail(f"{out_file}: cannot write: {e}")
    if fmt is Format.json:
        print(tab.to_json(orient="records", indent=2))
        return
    if fmt is Format.csv:
        print(tab.to_csv(index=False), end="")
        return
    t = Table(title="Backtest: observed vs simulated (median \\[p5-p95] over paths and seeds)")
    for c in ("target", "sample", "observed", "simulated", "result"):
        t.add_column(c)
    for r in tab.itertuples():
        t.add_row(r.target, r.sample, f"{r.observed:g}",
                  f"{r.simulated_median:.3g} [{r.simulated_p5:.3g}-{r.simulated_p95:.3g}]",
                  r.result)
    out.print(t)
    out.print(f"Report: {out_file}")


# ---- sweeps: parameter uncertainty on Dask, results in Zarr ------------------------------
from typer.core import TyperGroup  # noqa: E402


class _SweepGroup(TyperGroup):
    """`oreflow sweep FILE.yaml` runs a sweep; `oreflow sweep report STORE` reports one."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


sweep_app = typer.Typer(cls=_SweepGroup, no_args_is_help=True,
                        help="Parameter sweeps and Sobol sensitivity: `oreflow sweep FILE.yaml "
                             "--out X.zarr`, `oreflow sweep report X.zarr`.")
app.add_typer(sweep_app, name="sweep")


@sweep_app.command("run")
def sweep_run(
        sweep_file: Path = typer.Argument(..., help="sweep file (YAML; docs/sweep.md)"),
        out_dir: Path = typer.Option(..., "--out", help="the Zarr store (a folder, .zarr); "
                                     "an interrupted sweep resumes from it"),
        scheduler: str = typer.Option(None, "--scheduler",
                                      help="an existing Dask scheduler, tcp://host:8786 "
                                           "(default: a LocalCluster on this machine)"),
        workers: int = typer.Option(None, "--workers", min=1, max=1024,
                                    help="LocalCluster worker processes (default: cores)"),
        serial: bool = typer.Option(False, "--serial", help="run in this process, no Dask"),
        top: int = typer.Option(6, "--top", min=1, help="headlines in the printed table"),
        fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Run a sweep (design points x scenarios x blocks of paths) and print Sobol indices."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from oreflow.sweep.design import load_sweep
    from oreflow.sweep.errors import SweepError
    from oreflow.sweep.run import run_sweep

    if scheduler and serial:
        fail("--scheduler and --serial exclude each other")
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir}: exists and is not a folder; a sweep store is a folder (.zarr): "
             "give a new path, or the store of an interrupted sweep to resume it")
    try:
        sweep = load_sweep(sweep_file)
    except SweepError as e:
        fail(str(e))
    quiet = fmt is not Format.table
    if not quiet:
        out.print(f"{sweep.spec.name}: {sweep.points} design points ({sweep.spec.design.method}"
                  f") x {len(sweep.scenarios)} scenario(s) x {sweep.spec.paths} paths x "
                  f"{sweep.months} months, {len(sweep.blocks)} block(s) of up to "
                  f"{sweep.spec.block_paths} paths per point")
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=quiet) as bar:
        task = bar.add_task("tasks", total=None)
        try:
            run = run_sweep(sweep, out_dir, scheduler=scheduler, workers=workers, serial=serial,
                            progress=lambda d, t: bar.update(task, completed=d, total=t),
                            on_dashboard=lambda link: err.print(
                                f"Dask dashboard: {link}", highlight=False))
        except SweepError as e:
            fail(str(e))
    _print_sweep(run, top, fmt)


def _print_sweep(run, top: int, fmt: Format) -> None:
    from oreflow.sweep.report import shown, sobol_table
    from oreflow.sweep.store import describe

    st = run.store
    info = {**describe(st), "store": str(st.path.resolve()), "computed_blocks": run.computed,
            "skipped_blocks": run.skipped, "where": run.where,
            "seconds": round(run.seconds, 2),
            "path_months_per_s": round(run.path_months_per_s, 1) if run.computed else None}
    table = (sobol_table(st) if st.attrs["design"]["method"] == "saltelli"
             else pd.DataFrame())
    if fmt is Format.json:
        print(json.dumps({**info, "sobol": _records(table)}, indent=1))
        return
    if fmt is Format.csv:
        print(table.to_csv(index=False, float_format="%.6g"), end="")
        return
    out.print(f"{run.computed} block(s) computed ({run.skipped} already in the store) on "
              f"{run.where} in {run.seconds:.1f} s"
              + (f", {run.path_months_per_s:,.0f} path-months/s" if run.computed else ""))
    if table.empty:
        out.print("no Sobol indices: they need a saltelli design")
    for scen in st.attrs["scenarios"]:
        t = shown(st, table, scen, top)
        heads = t["headline"].unique()
        print_frame(t[["headline", "parameter", "S1", "S1_ci95", "ST", "ST_ci95"]],
                    Format.table, digits={c: ".3f" for c in ("S1", "S1_ci95", "ST",
                                                             "ST_ci95")},
                    title=f"Sobol indices, {scen}: first-order S1 and total ST with 95% CI "
                          f"({len(heads)} headlines: those the sweep file names, then "
                          "those that vary most)")
    out.print(f"Store: {st.path.resolve()}; full table and charts: oreflow sweep report "
              f"{st.path} --out sweep.html")


@sweep_app.command("report")
def sweep_report(store: Path = typer.Argument(..., help="a finished sweep store (.zarr)"),
                 out_file: Path = typer.Option(None, "--out", "-o",
                                               help="write the HTML report here"),
                 top: int = typer.Option(8, "--top", min=1,
                                         help="headlines charted per scenario"),
                 fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Sobol table of a finished sweep, and its HTML report with tornado charts."""
    from oreflow.sweep.errors import SweepError
    from oreflow.sweep.report import shown, sobol_table, write_report
    from oreflow.sweep.store import open_store

    try:
        st = open_store(store)
        table = sobol_table(st)
        if out_file is not None:
            write_report(st, out_file, top)
    except (SweepError, OSError) as e:
        fail(str(e))
    if fmt is not Format.table:
        print_frame(table, fmt)
    else:
        for scen in st.attrs["scenarios"]:
            t = shown(st, table, scen, top)
            print_frame(t[["headline", "parameter", "S1", "S1_ci95", "ST", "ST_ci95"]],
                        Format.table, digits={c: ".3f" for c in ("S1", "S1_ci95", "ST",
                                                                 "ST_ci95")},
                        title=f"Sobol indices, {scen} (95% CI)")
    if out_file is not None:
        err.print(f"Report: {out_file.resolve()}", highlight=False)


# ---- reports and the web dashboard ------------------------------------------------------
class TableFormat(str, Enum):
    csv = "csv"
    xlsx = "xlsx"
    parquet = "parquet"


@app.command()
def report(result: Path = typer.Argument(..., help="a result written by `oreflow stress --out`"),
           out_file: Path = typer.Option(..., "--out", "-o", help="the HTML file to write"),
           tables_dir: Path = typer.Option(None, "--tables-dir",
                                           help="also write the headline tables here"),
           table_format: TableFormat = typer.Option(TableFormat.csv, "--table-format")) -> None:
    """One self-contained HTML report of a stress result (opens offline), and its tables."""
    from oreflow.io import OutPathError, check_out_path
    from oreflow.report import (
        ReportError,
        export_tables,
        headline_tables,
        load_result,
        write_report,
    )

    try:
        check_out_path(out_file, [result], option="--out")
        ds = load_result(result)
        write_report(ds, out_file)
        written = (export_tables(headline_tables(ds), table_format.value, tables_dir,
                                 stem=result.stem) if tables_dir is not None else [])
    except (ReportError, OutPathError, OSError) as e:
        fail(str(e))
    out.print(f"Report: {out_file.resolve()}")
    for p in written:
        out.print(f"Table: {p.resolve()}")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host"),
          port: int = typer.Option(8000, "--port", min=1, max=65535),
          data_dir: Path = typer.Option(Path("oreflow-data"), "--data-dir",
                                        help="where runs and their database live"),
          max_path_months: int = typer.Option(100_000 * 120, "--max-path-months", min=1,
                                              help="largest paths x months one run may ask"),
          max_concurrent_runs: int = typer.Option(2, "--max-concurrent-runs", min=1),
          max_memory: str = typer.Option(None, "--max-memory",
                                         help="memory budget of all runs, e.g. 8G (default: "
                                         "$OREFLOW_MEMORY_BUDGET or half the machine's)"),
          allowed_host: list[str] = typer.Option(None, "--allowed-host",
                                                 help="also answer to this Host name; repeat "
                                                 "for several ('*': any; default: 127.0.0.1, "
                                                 "localhost, [::1] and --host)"),
          max_body_bytes: int = typer.Option(1024 * 1024, "--max-body-bytes", min=1024,
                                             help="largest request body accepted")) -> None:
    """The web dashboard: run scenarios, watch progress, compare runs, plan stockpiles."""
    import uvicorn

    from oreflow.limits import fmt_bytes, memory_budget
    from oreflow.web import create_app
    from oreflow.web.security import allowed_hosts_for, is_local_host

    try:
        budget = memory_budget(max_memory)
    except ValueError as e:
        fail(str(e))
    hosts = allowed_hosts_for(host, allowed_host or [])
    try:
        web = create_app(data_dir, max_path_months=max_path_months,
                         max_concurrent_runs=max_concurrent_runs, allowed_hosts=hosts,
                         max_body_bytes=max_body_bytes, memory_budget_bytes=budget)
    except OSError as e:
        fail(f"{data_dir}: cannot use as the data directory: {e}")
    if not is_local_host(host):
        err.print(f"[yellow]warning:[/yellow] listening on {host}, beyond this machine: anyone "
                  "who can reach this port can read every run and start new ones (there is no "
                  "login). Use --host 127.0.0.1 unless the network is trusted.",
                  highlight=False)
        if host in ("0.0.0.0", "::") and not allowed_host:
            err.print("[yellow]warning:[/yellow] requests must still name 127.0.0.1 or "
                      "localhost as their host; add this machine's name with --allowed-host "
                      "NAME to reach it from elsewhere", highlight=False)
    out.print(f"oreflow dashboard on http://{host}:{port}/ (data in {data_dir.resolve()}; "
              f"memory budget {fmt_bytes(budget)}; hosts {', '.join(hosts)})")
    uvicorn.run(web, host=host, port=port, log_level="warning")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
