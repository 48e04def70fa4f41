"""Command line: `oreflow data ...`, `oreflow risk`, `oreflow demo`.

A thin layer over the Python API: each command calls one function, prints its table and
turns the library's errors into one clear line and a non-zero exit."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from oreflow.data import TABLES, DatasetError, check_dataset, load_dataset
from oreflow.io import atomic_write_text

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
    recs = df.to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in r.items()} for r in recs]


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
        return load_dataset(path)
    except DatasetError as e:
        fail(str(e))


@data_app.command("list")
def data_list() -> None:
    """List the dataset's tables with their row counts."""
    ds = _dataset(None)
    df = pd.DataFrame([(n, len(ds[n]), t.description) for n, t in TABLES.items()],
                      columns=["table", "rows", "description"])
    print_frame(df, Format.table, title=f"Dataset {ds.version}")


@data_app.command("show")
def data_show(table: str = typer.Argument(..., help="table name, e.g. mine_production"),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Print one table."""
    if table not in TABLES:
        fail(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    print_frame(_dataset(None)[table], fmt, title=table)


@data_app.command("sources")
def data_sources(fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """The sources every number cites, with how many rows cite each."""
    ds = _dataset(None)
    counts = pd.concat([ds[n]["source_id"] for n, t in TABLES.items() if t.sourced])
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

    tables, problems = check_dataset(path)
    if not problems:  # the schema holds: does the model build and run on it?
        folder = Path(path) if path is not None else _DEFAULT
        problems = check_model(Dataset(tables=tables, path=folder, version=_version(folder)))
    summary = []
    for name, table in TABLES.items():
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
    from oreflow.data.load import TABLES_DIR, validate_tables

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


@app.command()
def risk(perspective: str = typer.Option("USA", "--perspective", "-p",
                                         help="region (USA, JPN, IND, ...) or bloc "
                                         "(EU, G7, QUAD, MSP)"),
         element: list[str] = typer.Option(None, "--element", "-e",
                                           help="element symbol or REO; repeat for several"),
         fmt: Format = typer.Option(Format.table, "--format"),
         top: int = typer.Option(10, "--top", help="chokepoints to list (table format)")) -> None:
    """Concentration and supply risk by element and stage, for a perspective."""
    from oreflow.network import Network
    from oreflow.risk import UnknownPerspectiveError, indicator_table

    try:
        net = Network.from_dataset(_dataset(None))
        table = indicator_table(net, perspective, element or None)
    except (UnknownPerspectiveError, ValueError) as e:
        fail(str(e))
    cols = ["element", "stage", "world_t", "china_share", "hhi", "wgi_hhi", "import_reliance",
            "eu_sr"]
    if fmt is not Format.table:
        print_frame(table[["perspective", *cols, "chokepoint"]], fmt)
        return
    _print_risk(table, cols, perspective, top, net.year)


def _print_risk(table: pd.DataFrame, cols: list[str], perspective: str, top: int,
                year: int) -> None:
    from oreflow.risk import chokepoints

    digits = {"world_t": ",.0f", "china_share": ".0%", "hhi": ",.0f", "wgi_hhi": ".2f",
              "import_reliance": ".0%", "eu_sr": ".2f", "chokepoint": ".2f"}
    print_frame(table[cols], Format.table, digits=digits,
                title=f"Rare earths by stage, {year} (t REO-eq), perspective {perspective.upper()}")
    print_frame(chokepoints(table, top)[["element", "stage", "china_share", "hhi",
                                         "import_reliance", "chokepoint"]],
                Format.table, digits=digits, title=f"Top {top} chokepoints (HHI x reliance)")


scenario_app = typer.Typer(no_args_is_help=True, help="Scenario files: list, show, validate.")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("list")
def scenario_list() -> None:
    """The built-in scenarios."""
    from oreflow.scenario import builtin_names, load_scenario

    rows = []
    for name in builtin_names():
        sc, _ = load_scenario(name)
        rows.append((name, sc.start, sc.months, len(sc.shocks),
                     " ".join(sc.description.split())[:90]))
    print_frame(pd.DataFrame(rows, columns=["scenario", "start", "months", "shocks",
                                            "description"]), Format.table,
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
    from oreflow.scenario import ScenarioError, load_scenario

    try:
        load_scenario(path)  # the file itself first: a bad one is refused before the dataset loads
        sc, sha = load_scenario(path, Network.from_dataset(_dataset(None)))
    except ScenarioError as e:
        fail(str(e), code=1)
    out.print(f"[green]ok[/green]: {sc.name}, {len(sc.shocks)} shock(s), {sc.months} months "
              f"from {sc.start}; sha256 {sha[:12]}")


@app.command()
def stress(scenario: str = typer.Argument(..., help="built-in scenario or YAML file"),
           paths: int = typer.Option(1000, "--paths", min=1, max=10_000_000),
           seed: int = typer.Option(0, "--seed"),
           months: int = typer.Option(None, "--months", min=1, max=600),
           out_file: Path = typer.Option(None, "--out", help="write the full result (NetCDF)"),
           fmt: Format = typer.Option(Format.table, "--format"),
           max_memory: str = typer.Option(None, "--max-memory",
                                          help="memory budget of the run, e.g. 8G (default: "
                                          "$OREFLOW_MEMORY_BUDGET or half the machine's)")
           ) -> None:
    """Monte Carlo stress test of a scenario: prices, shortfalls, first weeks short."""
    from oreflow.io import OutPathError, WriteError, check_out_path
    from oreflow.limits import check_run_memory, memory_budget
    from oreflow.network import Network
    from oreflow.scenario import ScenarioError, load_scenario, scenario_text
    from oreflow.simulate import run_stress, save_result, summary

    try:
        load_scenario(scenario)  # a bad file is refused before the dataset loads
        net = Network.from_dataset(_dataset(None))
        sc, sha = load_scenario(scenario, net)
        # everything that can be checked is checked before the run, not after it
        check_run_memory(paths, months or sc.months, len(sc.shocks), len(net.elements),
                         memory_budget(max_memory))
        if out_file is not None:
            label = scenario_text(scenario)[0]
            check_out_path(out_file, [label] if Path(label).is_file() else [])
        ds = _run_with_progress(run_stress, sc, paths, seed, months, net,
                                quiet=fmt is not Format.table, scenario_sha256=sha)
        if out_file is not None:
            save_result(ds, out_file)
    except WriteError as e:
        fail(f"{e} (the run finished; re-run with the same seed to get the same result)")
    except (ScenarioError, OutPathError, ValueError) as e:
        fail(str(e))
    result = summary(ds)
    if fmt is Format.json:
        print(json.dumps(result, indent=1))
    else:
        _print_stress(result, ds)
    if out_file is not None and fmt is Format.table:
        out.print(f"Full result: {out_file.resolve()}")


def _run_with_progress(run_stress, scenario, paths, seed, months, net, quiet: bool, **kw):
    """Run with a progress bar on long runs; the result also carries monthly unmet-demand
    bands by sector (for the report's fan charts)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from oreflow.report import SectorUnmet

    by_sector = SectorUnmet(net, paths)
    if quiet or paths * (months or 36) < 200_000:
        return by_sector.add_to(run_stress(scenario, paths=paths, seed=seed, months=months,
                                           network=net, on_month=by_sector, **kw))
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("run", total=1.0)
        return by_sector.add_to(run_stress(
            scenario, paths=paths, seed=seed, months=months, network=net, on_month=by_sector,
            progress=lambda d, t: bar.update(task, completed=d / t), **kw))


def _print_stress(result: dict, ds) -> None:
    head = (f"{result['scenario']}: {result['paths']} paths, {result['months']} months from "
            f"{ds.attrs['start']}, seed {result['seed']}, dataset {result['dataset_version']}")
    out.print(head)
    peaks = pd.DataFrame([(e, v["CHN"], v["ROW"]) for e, v in result["price_peak_ratio"].items()],
                         columns=["element", "peak_price_x_CHN", "peak_price_x_ROW"])
    peaks = peaks[(peaks["peak_price_x_ROW"] > 1.01) | (peaks["peak_price_x_CHN"] > 1.01)]
    if len(peaks):
        print_frame(peaks, Format.table, title="Peak price / base price (median over paths)",
                    digits={"peak_price_x_CHN": ".2f", "peak_price_x_ROW": ".2f"})
    sec = pd.DataFrame([(s, result["shortfall_t"][s], result["first_shortfall_week"][s])
                        for s in result["shortfall_t"]],
                       columns=["sector", "shortfall_t_p50", "first_short_week_p50"])
    sec["shortfall_t_p95"] = ds["shortfall_t"].sum("zone").quantile(0.95, "path").values
    sec = sec.sort_values("shortfall_t_p50", ascending=False)
    print_frame(sec[["sector", "shortfall_t_p50", "shortfall_t_p95", "first_short_week_p50"]],
                Format.table, title="Unmet demand over the horizon, t of element",
                digits={"shortfall_t_p50": ",.0f", "shortfall_t_p95": ",.0f",
                        "first_short_week_p50": ".1f"})


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
    cols = ["element", "stage", "world_t", "china_share", "hhi", "wgi_hhi", "import_reliance",
            "eu_sr"]
    _print_risk(main, cols, "USA", 10, net.year)
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
    try:
        save_result(result, out_dir / "licensing-2025-04.nc")
    except OSError as e:
        fail(str(e))
    _print_stress(summary(result), result)
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
        seed: int = typer.Option(0, "--seed"),
        months: int = typer.Option(60, "--months", help="horizon of every scenario"),
        cvar_weight: float = typer.Option(0.0, "--cvar-weight",
                                          help="0 = expected value only, 1 = CVaR only"),
        cvar_alpha: float = typer.Option(0.95, "--cvar-alpha"),
        min_days: str = typer.Option(None, "--min-days",
                                     help="minimum days of cover: 30 (every element) or "
                                          "Dy:60,Tb:60"),
        elements: str = typer.Option(None, "--elements", help="only hold these, e.g. Nd,Pr,Dy,Tb"),
        fmt: PlanFormat = typer.Option(PlanFormat.table, "--format")) -> None:
    """Plan a stockpile with a budget and score it against a flat 60-day rule on fresh paths."""
    import contextlib

    from oreflow.stockpile import PlanError, plan_stockpile

    busy = (err.status(f"simulating {paths:,} + {eval_paths:,} paths, optimising, scoring")
            if fmt is PlanFormat.table else contextlib.nullcontext())
    with busy:
        try:
            plan = plan_stockpile(
                budget_usd=budget_usd, perspective=perspective, scenarios=scenarios,
                paths=paths, eval_paths=eval_paths, seed=seed, months=months,
                cvar_weight=cvar_weight, cvar_alpha=cvar_alpha,
                min_days=_parse_min_days(min_days),
                elements=[e.strip() for e in elements.split(",")] if elements else None)
        except PlanError as e:
            fail(str(e))
    if fmt is PlanFormat.json:
        print(json.dumps(plan.to_dict(), indent=1))
        return
    _print_plan(plan)


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
    rows = [(k, ev["expected_unserved_usd"][k], ev["cvar95_unserved_usd"][k])
            for k in ("plan", "rule_60_days", "none")]
    print_frame(pd.DataFrame(rows, columns=["strategy", "expected_unserved_usd",
                                            "cvar95_unserved_usd"]),
                Format.table, title=f"Unserved demand on {ev['paths']} fresh paths (USD)",
                digits={"expected_unserved_usd": ",.0f", "cvar95_unserved_usd": ",.0f"})


@app.command()
def stocks(element: list[str] = typer.Option(None, "--element", "-e",
                                             help="element in magnets (Nd, Pr, Dy, Tb, Gd, Ho, "
                                             "Sm); repeat for several; default Nd Pr Dy Tb"),
           region: str = typer.Option("all", "--region", "-r",
                                      help="region of use (CHN, USA, XEU or EU, JPN, KOR, IND, "
                                      "XOT) or all"),
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
        regions = resolve_regions(all_regions, region)
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
