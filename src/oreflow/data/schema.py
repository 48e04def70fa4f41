"""What each table of the embedded dataset must hold: columns, units, ranges, keys.

The schema is data, not code scattered through loaders (the PyPSA habit): one `Table`
per concept, each column with its kind, unit and allowed values. `validate` checks a set
of tables against it and returns every problem found, each naming file, row and column.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

STATUSES = ("reported", "estimate", "assumption")
STAGES = ("mining", "separation", "metal", "magnet")
FORMS = ("oxide", "metal", "magnet")
SHARE_TOLERANCE = 1e-3
"""Shares in a group must sum to 1 within this: curated shares are written to 3-4 digits."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "int" | "float" | "bool"
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    ref: str | None = None  # "table.column" that must contain every value
    nullable: bool = False


@dataclass(frozen=True)
class Param:
    """A row a parameter table must have: its exact name and the range of its value."""

    name: str
    min: float | None = None
    max: float | None = None
    unit: str = ""
    integer: bool = False


@dataclass(frozen=True)
class Covers:
    """Every combination of the `sources`' values must appear in `columns` of the table.

    A source is "table.column" (optionally filtered: "table.column[col=v,col!=v,col>0]",
    where a value '@base_year' is the dataset's base year), "years:1990..@base_year", or a
    tuple of literal values."""

    columns: tuple[str, ...]
    sources: tuple[str | tuple[str, ...], ...]


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    shares: tuple[tuple[str, ...], str] | None = None  # (group-by columns, share column)
    sourced: bool = True  # every row carries source_id, vintage and status
    min_rows: int = 1
    params: tuple[Param, ...] = ()  # rows the model reads by name (exact match)
    param_column: str = "parameter"
    value_column: str = "value"
    covers: tuple[Covers, ...] = ()  # what the model looks up must be there
    row_ranges: tuple[Param, ...] = ()  # value ranges of rows by param_column (not required)

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    def all_columns(self) -> tuple[Column, ...]:
        if not self.sourced:
            return self.columns
        return self.columns + SOURCE_COLUMNS


SOURCE_COLUMNS = (
    Column("source_id", "str", ref="sources.source_id", description="id in sources.csv"),
    Column("vintage", "int", "year", "year of the source's data", min=1900, max=2100),
    Column("status", "str", allowed=STATUSES, description="reported, estimate or assumption"),
    Column("note", "str", nullable=True),
)

_REGION = Column("region", "str", ref="regions.region", description="ISO 3166 alpha-3 or X.. code")
_ELEMENT = Column("element", "str", ref="elements.element", description="element symbol")
_SHARE = Column("share", "float", "fraction", min=0.0, max=1.0)
_YEAR = Column("year", "int", "year", min=1900, max=2100)

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "sources",
            "Every source a number in the dataset cites.",
            (
                Column("source_id", "str"),
                Column("citation", "str"),
                Column("url", "str", nullable=True),
                Column("licence", "str"),
                Column("kind", "str", allowed=("primary", "secondary", "assumption", "derived")),
            ),
            key=("source_id",),
            sourced=False,
        ),
        Table(
            "regions",
            "Countries (ISO3) and pseudo-regions with their governance indicators (WGI 2023).",
            (
                Column("region", "str"),
                Column("name", "str"),
                Column("kind", "str", allowed=("country", "pseudo", "aggregate")),
                *(
                    Column(f"wgi_{k}", "float", "WGI estimate", min=-3.0, max=3.0, nullable=True)
                    for k in ("va", "pv", "ge", "rq", "rl", "cc")
                ),
            ),
            key=("region",),
        ),
        Table(
            "blocs",
            "Membership of the blocs a user compares (EU, G7, QUAD, MSP).",
            (Column("bloc", "str"), _REGION),
            key=("bloc", "region"),
        ),
        Table(
            "elements",
            "The 17 rare earths with oxide formula and oxide-to-metal mass factor.",
            (
                Column("element", "str"),
                Column("name", "str"),
                Column("atomic_number", "int", min=21, max=71),
                Column("atomic_weight", "float", "g/mol", min=1, max=300),
                Column("class", "str", allowed=("light", "heavy")),
                Column("oxide_formula", "str"),
                Column("metal_per_oxide", "float", "t metal / t oxide", min=0.5, max=1.0),
                Column("produced", "bool"),
            ),
            key=("element",),
        ),
        Table(
            "mine_production",
            "Rare-earth mine production by country, t REO (USGS).",
            (
                _REGION,
                _YEAR,
                Column("t_reo", "float", "t REO", min=0.0),
                Column("qualifier", "str", allowed=("", "<", ">"), nullable=True),
            ),
            key=("region", "year"),
        ),
        Table(
            "reserves",
            "Rare-earth reserves by country, t REO (USGS MCS 2026, v1.3 errata applied).",
            (
                _REGION,
                _YEAR,
                Column("t_reo", "float", "t REO", min=0.0),
                Column("qualifier", "str", allowed=("", "<", ">"), nullable=True),
            ),
            key=("region", "year"),
        ),
        Table(
            "deposits",
            "Mining sources (deposit types) whose element mix is known.",
            (Column("deposit", "str"), Column("name", "str"), _REGION, Column("type", "str")),
            key=("deposit",),
        ),
        Table(
            "deposit_composition",
            "Element mix of each mining source, share of REO.",
            (Column("deposit", "str", ref="deposits.deposit"), _ELEMENT, _SHARE),
            key=("deposit", "element"),
            shares=(("deposit",), "share"),
        ),
        Table(
            "mine_source_split",
            "Each producing country's output split among mining sources.",
            (_REGION, Column("deposit", "str", ref="deposits.deposit"), _SHARE),
            key=("region", "deposit"),
            shares=(("region",), "share"),
        ),
        Table(
            "concentrate_routing",
            "Where each country's concentrate is separated (share of its mine output).",
            (
                Column("origin", "str", ref="regions.region"),
                Column("destination", "str", ref="regions.region"),
                _SHARE,
            ),
            key=("origin", "destination"),
            shares=(("origin",), "share"),
        ),
        Table(
            "stage_shares",
            "Share of world output of the metal stage (by element) and the magnet stage (by "
            "magnet grade) by country; item '*' covers elements without rows of their own.",
            (Column("stage", "str", allowed=("metal", "magnet")),
             Column("item", "str", description="element (metal) or grade (magnet), or '*'"),
             _REGION, _SHARE),
            key=("stage", "item", "region"),
            shares=(("stage", "item"), "share"),
        ),
        Table(
            "stage_parameters",
            "Yield (output/input) and capacity utilisation of each stage.",
            (
                Column("stage", "str", allowed=STAGES),
                Column("yield", "float", "fraction", min=0.01, max=1.0),
                Column("utilization", "float", "fraction", min=0.01, max=1.0),
            ),
            key=("stage",),
        ),
        Table(
            "sectors",
            "End-use sectors: the form they buy, rationing priority (1 = served first), "
            "share of world magnet mass (derived from magnet_demand for magnet sectors).",
            (
                Column("sector", "str"),
                Column("name", "str"),
                Column("form", "str", allowed=FORMS),
                Column("priority", "int", min=1, max=9),
                Column("magnet_mass_share", "float", "fraction", min=0.0, max=1.0),
            ),
            key=("sector",),
        ),
        Table(
            "magnet_grades",
            "Magnet grades: one product per grade (the same tonnage whichever element counts it).",
            (
                Column("grade", "str"),
                Column("name", "str"),
                Column("family", "str", allowed=("NdFeB", "SmCo")),
                Column("heavy_free", "bool", description="no Dy or Tb in the grade"),
            ),
            key=("grade",),
        ),
        Table(
            "magnet_grade_composition",
            "Rare-earth content of each magnet grade, t element per t finished magnet.",
            (
                Column("grade", "str", ref="magnet_grades.grade"),
                _ELEMENT,
                Column("t_per_t_magnet", "float", "t/t", min=0.0, max=1.0),
            ),
            key=("grade", "element"),
        ),
        Table(
            "magnet_demand",
            "World use of finished magnets by sector and grade in the base year.",
            (
                Column("sector", "str", ref="sectors.sector"),
                Column("grade", "str", ref="magnet_grades.grade"),
                Column("t_magnet_per_year", "float", "t finished magnet per year", min=0.0,
                       max=1e7),
            ),
            key=("sector", "grade"),
        ),
        Table(
            "magnet_composition",
            "Rare-earth content of the magnets each magnet sector uses (derived: its grade mix "
            "x grade composition), t element per t magnet; used by the stock model.",
            (
                Column("sector", "str", ref="sectors.sector"),
                _ELEMENT,
                Column("t_per_t_magnet", "float", "t/t", min=0.0, max=1.0),
            ),
            key=("sector", "element"),
        ),
        Table(
            "enduse_demand",
            "World use of each element by the non-magnet sectors in the base year, t REO-eq "
            "(sector use x the sector's element composition).",
            (
                _ELEMENT,
                Column("sector", "str", ref="sectors.sector"),
                Column("t_reo_per_year", "float", "t REO-eq per year", min=0.0, max=1e7),
            ),
            key=("element", "sector"),
        ),
        Table(
            "separation_capability",
            "Which elements a country's separation plants separate; the rest of their feed is "
            "shipped on, unseparated, to `forward_to` (item '*': every other element).",
            (
                _REGION,
                Column("element", "str", description="element symbol or '*'"),
                Column("separated_share", "float", "fraction", min=0.0, max=1.0),
                Column("forward_to", "str", ref="regions.region"),
            ),
            key=("region", "element"),
        ),
        Table(
            "trade_routes",
            "Known bilateral routes: a share of the origin's exports (basis 'origin') or of the "
            "destination's imports (basis 'destination') of an element at a stage.",
            (
                Column("stage", "str", allowed=("separation", "metal", "magnet")),
                Column("origin", "str", ref="regions.region"),
                Column("destination", "str", ref="regions.region"),
                Column("element", "str", description="element symbol or '*'"),
                _SHARE,
                Column("basis", "str", allowed=("origin", "destination")),
            ),
            key=("stage", "origin", "destination", "element", "basis"),
        ),
        Table(
            "market_regions",
            "The stress engine's market regions: each network region's market (row '*': every "
            "region not listed).",
            (Column("region", "str", description="a region of regions.csv or '*'"),
             Column("market", "str", description="market region code (CHN, USA, EU, ...)")),
            key=("region",),
        ),
        Table(
            "demand_response",
            "Short-run demand response by sector: the elasticity of the sector's final demand "
            "and of substitution away from the rare earth (inputs of the derived-demand "
            "elasticity, docs/model.md).",
            (
                Column("sector", "str", ref="sectors.sector"),
                Column("final_demand_elasticity", "float", "-", min=-5.0, max=0.0),
                Column("substitution_elasticity", "float", "-", min=0.0, max=5.0),
            ),
            key=("sector",),
        ),
        Table(
            "network_parameters",
            "Scalars of the base-year network: magnet machining and swarf recovery, customs "
            "conversion factors.",
            (Column("parameter", "str"), Column("value", "float", min=0.0, max=1e6),
             Column("unit", "str")),
            key=("parameter",),
        ),
        Table(
            "eu_criticality",
            "Per-element inputs of the EU supply-risk formula from the EC's criticality "
            "assessment: substitution index for supply risk (si_sr) and end-of-life recycling "
            "input rate (eol_rir), one row per value so that each carries its own source.",
            (
                _ELEMENT,
                Column("parameter", "str", allowed=("si_sr", "eol_rir")),
                Column("value", "float", "index or fraction", min=0.0, max=1.0),
            ),
            key=("element", "parameter"),
        ),
        Table(
            "trade_agreements",
            "Trade agreements in force: partners of a party get the EC trade-partner factor t_c.",
            (
                Column("party", "str", description="a region or bloc code"),
                Column("partner", "str", ref="regions.region"),
                Column("in_force", "int", "year", min=1950, max=2100),
            ),
            key=("party", "partner"),
        ),
        Table(
            "sector_regions",
            "Share of each sector's world use by region of manufacture.",
            (Column("sector", "str", ref="sectors.sector"), _REGION, _SHARE),
            key=("sector", "region"),
            shares=(("sector",), "share"),
        ),
        Table(
            "prices",
            "Annual average prices, USD/kg (USGS: outside China; SMM: inside China).",
            (
                Column("product", "str"),
                Column("form", "str"),
                Column("zone", "str", allowed=("ROW", "CHN")),
                _YEAR,
                Column("usd_per_kg", "float", "USD/kg", min=0.0),
            ),
            key=("product", "form", "zone", "year"),
        ),
        Table(
            "base_prices",
            "Base-year oxide price per element inside (CHN) and outside (ROW) China.",
            (
                _ELEMENT,
                Column("zone", "str", allowed=("ROW", "CHN")),
                Column("usd_per_kg", "float", "USD/kg oxide", min=0.0),
            ),
            key=("element", "zone"),
        ),
        Table(
            "china_domestic_prices",
            "China domestic oxide quotes (SMM), CNY/t including VAT.",
            (
                Column("date", "str"),
                Column("product", "str"),
                Column("cny_per_t_low", "float", "CNY/t", min=0.0),
                Column("cny_per_t_high", "float", "CNY/t", min=0.0),
            ),
            key=("date", "product"),
        ),
        Table(
            "validation_targets",
            "Recorded episode figures the model is fitted to (role fit) or checked against "
            "(role check): price multiples over the episode's base, by zone.",
            (
                Column("target", "str"),
                Column("scenario", "str"),
                Column("quantity", "str", allowed=("peak_ratio", "ratio_at", "peak_month",
                                                   "gap_at")),
                _ELEMENT,
                Column("zone", "str", allowed=("ROW", "CHN")),
                Column("month", "float", "months since the scenario starts", min=0.0,
                       max=600.0, nullable=True),
                Column("observed", "float", min=0.0, max=1e4),
                Column("observed_low", "float", min=0.0, max=1e4),
                Column("observed_high", "float", min=0.0, max=1e4),
                Column("role", "str", allowed=("fit", "check")),
                Column("basis", "str"),
            ),
            key=("target",),
        ),
        Table(
            "market_parameters",
            "Scalars: exchange rates, VAT, base year, placeholder prices.",
            (Column("parameter", "str"), Column("value", "float"), Column("unit", "str")),
            key=("parameter",),
        ),
        Table(
            "market_behaviour",
            "Behavioural parameters of the stress-test engine (prices, substitution, supply).",
            (Column("parameter", "str"), Column("value", "float"), Column("unit", "str")),
            key=("parameter",),
        ),
        Table(
            "sector_value",
            "What a missing kilogram of rare earth costs a sector: the value added of the "
            "product not made, per kg of rare earth it contains (stockpile planner).",
            (
                Column("sector", "str", ref="sectors.sector"),
                Column("product", "str"),
                Column("unit_value_usd", "float", "USD per unit", min=0.0),
                Column("value_added_share", "float", "fraction", min=0.0, max=1.0),
                Column("re_kg_per_unit", "float", "kg REO-eq per unit", min=0.0),
            ),
            key=("sector",),
        ),
        Table(
            "stockpile_forms",
            "Holding a rare earth as oxide, metal or magnet: processing cost from the form "
            "before, storage, shelf life and the months it takes to convert into this form.",
            (
                Column("form", "str", allowed=FORMS),
                Column("processing_usd_per_kg", "float", "USD per kg REO-eq", min=0.0),
                Column("storage_usd_per_t_year", "float", "USD per t REO-eq per year", min=0.0),
                Column("shelf_life_years", "float", "years", min=0.1),
                Column("conversion_lead_months", "float", "months", min=0.0),
            ),
            key=("form",),
        ),
        Table(
            "stockpile_parameters",
            "Financing and purchase terms of a stockpile (Project Vault style).",
            (Column("parameter", "str"), Column("value", "float", min=0.0), Column("unit", "str")),
            key=("parameter",),
        ),
        Table(
            "risk_parameters",
            "Scalars of the EU supply-risk formula.",
            (Column("parameter", "str"), Column("value", "float", min=0.0)),
            key=("parameter",),
        ),
        Table(
            "export_controls",
            "Export-control regimes, historical and in force, by commodity (chains.csv); "
            "`elements` names rare earths, `stages` the stages of each commodity's chain.",
            (
                Column("regime", "str"),
                Column("origin", "str", ref="regions.region"),
                Column("instrument", "str", allowed=("quota", "licence", "ban")),
                Column("commodities", "str",
                       description="chains of chains.csv the regime covers, ';'-separated"),
                Column("elements", "str", nullable=True),
                Column("stages", "str", nullable=True),
                Column("destinations", "str"),
                Column("announced", "str"),
                Column("effective", "str"),
                Column("ends", "str", nullable=True),
                Column("state", "str", allowed=("in_force", "suspended", "ended")),
            ),
            key=("regime",),
        ),
        Table(
            "export_controls_usgs",
            "Export controls of all countries in force for 2026 (USGS MCS 2026 Table 4).",
            (
                Column("region", "str", ref="regions.region"),
                Column("control_type", "str"),
                Column("commodities", "str"),
                Column("url", "str", nullable=True),
            ),
            key=("region", "control_type"),
        ),
        Table(
            "trade_china_imports_2846",
            "China's imports of HS 2846 (rare-earth compounds) by origin (UN Comtrade).",
            (
                _YEAR,
                Column("origin", "str", ref="regions.region"),
                Column("t", "float", "t", min=0.0),
                Column("usd", "float", "USD", min=0.0),
            ),
            key=("year", "origin"),
        ),
        Table(
            "trade_us_imports",
            "US imports for consumption by partner, HTS 2805, 2846 and 8505 (USITC).",
            (
                _YEAR,
                Column("hts4", "str", allowed=("2805", "2846", "8505")),
                Column("partner", "str", ref="regions.region"),
                Column("t", "float", "t", min=0.0, nullable=True),
                Column("usd", "float", "USD", min=0.0, nullable=True),
                Column("partial_year", "bool"),
            ),
            key=("year", "hts4", "partner"),
        ),
        Table(
            "us_salient",
            "US salient statistics of the rare-earth chapters (USGS MCS 2026).",
            (
                Column("chapter", "str"),
                Column("detail", "str"),
                Column("unit", "str"),
                _YEAR,
                Column("value", "float", nullable=True),
                Column("value_text", "str", nullable=True),
            ),
            key=("chapter", "detail", "year"),
        ),
    ]
}


@dataclass
class Problem:
    file: str
    row: int | None  # line number in the CSV file (header is line 1)
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", line {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


@dataclass
class DatasetError(ValueError):
    """Raised when the dataset does not validate; lists every problem."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{len(self.problems)} problem(s) in the dataset:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems[:50])])


def _plain(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def _line(i: int) -> int:
    return int(i) + 2  # 0-based data row -> CSV line (after the header)


def coerce(table: Table, df: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Check columns exist and convert each to its kind; report what does not parse."""
    problems: list[Problem] = []
    out = df.copy()
    for col in table.all_columns():
        if col.name not in out.columns:
            if col.nullable:
                out[col.name] = pd.NA if col.kind == "str" else np.nan
                continue
            allowed = ", ".join(c.name for c in table.all_columns())
            problems.append(
                Problem(table.file, None, col.name, f"missing column (expected: {allowed})")
            )
            continue
        raw = out[col.name]
        missing = raw.isna() | (raw.astype(str).str.strip() == "")
        if col.kind == "str":
            out[col.name] = raw.where(~missing, "").astype(str).str.strip()
        elif col.kind in ("int", "float"):
            num = pd.to_numeric(raw, errors="coerce").astype(float)
            bad = ~np.isfinite(num.to_numpy()) & ~missing.to_numpy()
            for i in np.flatnonzero(bad):
                problems.append(
                    Problem(table.file, _line(i), col.name,
                            f"{raw.iloc[i]!r} is not a finite number")
                )
            out[col.name] = num.where(np.isfinite(num))
        elif col.kind == "bool":
            text = raw.astype(str).str.strip().str.lower()
            ok = text.isin(["true", "false"])
            for i in np.flatnonzero((~ok).to_numpy()):
                problems.append(
                    Problem(table.file, _line(i), col.name,
                            f"expected true or false, got {raw.iloc[i]!r}")
                )
            out[col.name] = text == "true"
        if not col.nullable and col.kind != "bool":
            for i in np.flatnonzero(missing.to_numpy()):
                problems.append(
                    Problem(table.file, _line(i), col.name, "empty value where one is required")
                )
    return out, problems


def check_values(table: Table, df: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[Problem]:
    """Ranges, allowed values, references, keys and share sums of one coerced table."""
    problems: list[Problem] = []
    for col in table.all_columns():
        if col.name not in df.columns:
            continue
        s = df[col.name]
        if col.kind in ("int", "float"):
            v = s.to_numpy(dtype=float)
            if col.min is not None:
                for i in np.flatnonzero(v < col.min):
                    problems.append(Problem(table.file, _line(i), col.name,
                                            f"{v[i]:g} is below the minimum {col.min:g}"
                                            + (f" {col.unit}" if col.unit else "")))
            if col.max is not None:
                for i in np.flatnonzero(v > col.max):
                    problems.append(Problem(table.file, _line(i), col.name,
                                            f"{v[i]:g} is above the maximum {col.max:g}"
                                            + (f" {col.unit}" if col.unit else "")))
            if col.kind == "int":
                frac = np.isfinite(v) & (v != np.round(v))
                for i in np.flatnonzero(frac):
                    problems.append(Problem(table.file, _line(i), col.name,
                                            f"{v[i]:g} is not a whole number"))
        if col.allowed is not None:
            bad = ~s.isin(col.allowed) & ~(col.nullable & (s == ""))
            for i in np.flatnonzero(bad.to_numpy()):
                problems.append(Problem(table.file, _line(i), col.name,
                                        f"{s.iloc[i]!r} is not allowed (allowed: "
                                        f"{', '.join(repr(a) for a in col.allowed)})"))
        if col.ref is not None:
            ref_table, ref_col = col.ref.split(".")
            known = tables.get(ref_table)
            if known is not None and ref_col in known.columns:
                valid = set(known[ref_col].astype(str))
                bad = ~s.astype(str).isin(valid) & ~(col.nullable & (s == ""))
                for i in np.flatnonzero(bad.to_numpy()):
                    problems.append(Problem(table.file, _line(i), col.name,
                                            f"unknown id {s.iloc[i]!r}: not in {ref_table}.csv"))
    if all(k in df.columns for k in table.key):
        dup = df.duplicated(list(table.key), keep="first")
        for i in np.flatnonzero(dup.to_numpy()):
            keyval = ", ".join(f"{k}={_plain(df[k].iloc[i])}" for k in table.key)
            problems.append(Problem(table.file, _line(i), None, f"duplicate key ({keyval})"))
    if table.shares is not None:
        groups, col = table.shares
        if all(g in df.columns for g in groups) and col in df.columns:
            sums = df.groupby(list(groups))[col].sum()
            for key, total in sums.items():
                if abs(total - 1.0) > SHARE_TOLERANCE:
                    key = key if isinstance(key, tuple) else (key,)
                    label = ", ".join(f"{g}={k!r}" for g, k in zip(groups, key, strict=True))
                    problems.append(Problem(table.file, None, col,
                                            f"shares for {label} sum to {total:.4f}, "
                                            f"not 1 (tolerance {SHARE_TOLERANCE})"))
    return problems


# ---- magnets in use and recycling (oreflow.stocks) ------------------------------------------
MAGNET_HISTORY_QUANTITIES = ("world_output_t_magnet", "heavy_ree_index")
RECYCLING_PARAMETERS = ("collection_rate", "preprocessing_yield", "recovery_yield",
                        "capacity_t_magnet_per_year", "expansion_t_magnet_per_year",
                        "lead_time_months")

TABLES.update({t.name: t for t in [
    Table(
        "magnet_history",
        "World magnet output and the Dy+Tb content of magnets by year (index to the base "
        "year), annual: anchors as sourced, years between interpolated (estimates).",
        (
            _YEAR,
            Column("quantity", "str", allowed=MAGNET_HISTORY_QUANTITIES),
            Column("value", "float", min=0.0),
            Column("unit", "str"),
        ),
        key=("quantity", "year"),
    ),
    Table(
        "magnet_sector_history",
        "Share of world magnet mass by magnet sector and year (base year from sectors.csv).",
        (_YEAR, Column("sector", "str", ref="sectors.sector"), _SHARE),
        key=("year", "sector"),
        shares=(("year",), "share"),
    ),
    Table(
        "magnet_lifetimes",
        "Lifetime in use of the products each magnet sector's magnets go into (log-normal: "
        "mean and standard deviation of the lifetime, years).",
        (
            Column("sector", "str", ref="sectors.sector"),
            Column("parameter", "str", allowed=("mean", "std")),
            Column("years", "float", "years", min=0.1, max=100.0),
        ),
        key=("sector", "parameter"),
    ),
    Table(
        "recycling",
        "End-of-life magnet recycling by region: collection rate, pre-processing and "
        "recovery yields, capacity (t of magnets processed a year), how fast capacity can "
        "grow at a full price signal, and the lead time before it does.",
        (
            _REGION,
            Column("parameter", "str", allowed=RECYCLING_PARAMETERS),
            Column("value", "float", min=0.0),
            Column("unit", "str"),
        ),
        key=("region", "parameter"),
    ),
]})


# ---- critical-mineral chains declared as data (oreflow.chains) ---------------------------
ENGINE_SLOTS = ("mining", "separation", "metal", "magnet")
"""The stress engine's stage slots a chain stage may map onto (docs/model.md)."""
QUANTITY_UNITS = ("t", "share")
_CHAIN = Column("chain", "str", ref="chains.chain", description="commodity id (chains.csv)")

TABLES.update({t.name: t for t in [
    Table(
        "chains",
        "Commodity chains: id, quantity basis, which model builds the network (`network`: the "
        "detailed rare-earth Network; `generic`: oreflow.chains.ChainNetwork), and where the "
        "USGS MCS 2026 data release holds the chain's world table, US consumption and US "
        "import sources.",
        (
            Column("chain", "str"),
            Column("name", "str"),
            Column("aliases", "str", nullable=True,
                   description="other names a user may type, ';'-separated (any case)"),
            Column("basis", "str", description="what one unit of quantity counts"),
            Column("unit", "str", allowed=("t",)),
            Column("model", "str", allowed=("network", "generic")),
            Column("usgs_chapter", "str", nullable=True, description="MCS 2026 chapter"),
            Column("usgs_stage", "str", nullable=True,
                   description="stage of the MCS world production table"),
            Column("usgs_consumption", "str", nullable=True,
                   description="Statistics_detail of US consumption ('' if withheld)"),
            Column("usgs_import_detail", "str", nullable=True,
                   description="Statistics_detail of the US import sources used"),
            Column("usgs_import_stage", "str", nullable=True,
                   description="stage whose product those imports are (and USGS's reliance)"),
        ),
        key=("chain",),
    ),
    Table(
        "chain_stages",
        "Stages of each chain in order: the form each puts out, the engine slot it maps to, "
        "t of the chain's basis per t of that form, yield (output / input, basis) and whether "
        "end users buy its product.",
        (
            _CHAIN,
            Column("stage", "str"),
            Column("order", "int", min=1, max=20),
            Column("name", "str"),
            Column("form", "str"),
            Column("engine_slot", "str", allowed=ENGINE_SLOTS, nullable=True),
            Column("basis_per_t_form", "float", "t basis / t form", min=0.0, max=1.0,
                   nullable=True),
            Column("yield", "float", "fraction", min=0.01, max=1.0, nullable=True),
            Column("end_use", "bool"),
        ),
        key=("chain", "stage"),
    ),
    Table(
        "coproduction",
        "By-product links: the host a chain's stage is recovered from, with the share of the "
        "stage's world output that comes from it where a figure exists.",
        (
            _CHAIN,
            Column("stage", "str"),
            Column("host", "str"),
            Column("host_chain", "str", ref="chains.chain", nullable=True),
            Column("share", "float", "fraction", min=0.0, max=1.0, nullable=True),
        ),
        key=("chain", "stage", "host"),
    ),
    Table(
        "chain_production",
        "Output by chain, stage, region and year, t of the chain's basis (`unit` t) or a share "
        "of the stage's world output (`unit` share); region WLD is the world total. USGS rows "
        "are read from the MCS 2026 data release by the build script.",
        (
            _CHAIN,
            Column("stage", "str"),
            _REGION,
            _YEAR,
            Column("value", "float", min=0.0, max=1e10),
            Column("unit", "str", allowed=QUANTITY_UNITS),
            Column("qualifier", "str", allowed=("", "<", ">"), nullable=True),
        ),
        key=("chain", "stage", "region", "year"),
    ),
    Table(
        "chain_demand",
        "Use of each chain's products by region: t of basis a year (US: USGS MCS 2026) or a "
        "share of world end use; the rest of the world (XOT) takes what is left.",
        (
            _CHAIN,
            _REGION,
            _YEAR,
            Column("value", "float", min=0.0, max=1e10),
            Column("unit", "str", allowed=QUANTITY_UNITS),
        ),
        key=("chain", "region", "year"),
    ),
    Table(
        "chain_end_uses",
        "End-use sectors of each chain: the stage whose product a sector buys and the "
        "sector's share of that stage's end use (scope: the geography of the source).",
        (
            _CHAIN,
            Column("stage", "str"),
            Column("sector", "str"),
            Column("name", "str"),
            _SHARE,
            Column("scope", "str"),
        ),
        key=("chain", "stage", "sector"),
        shares=(("chain", "stage"), "share"),
    ),
    Table(
        "chain_prices",
        "Prices by chain, form, zone and year as published (`value`, `unit`) and per kg of "
        "the chain's basis (`usd_per_kg_basis`).",
        (
            _CHAIN,
            Column("form", "str"),
            Column("zone", "str", allowed=("ROW", "CHN")),
            _YEAR,
            Column("value", "float", min=0.0, max=1e10),
            Column("unit", "str"),
            Column("usd_per_kg_basis", "float", "USD/kg basis", min=0.0, max=1e7),
        ),
        key=("chain", "form", "zone", "year"),
    ),
    Table(
        "chain_us_salient",
        "US salient statistics of each chain's MCS 2026 chapter (production, trade, "
        "consumption, net import reliance as USGS reports it).",
        (
            _CHAIN,
            Column("statistic", "str"),
            Column("detail", "str"),
            Column("unit", "str"),
            _YEAR,
            Column("value", "float", min=-1e10, max=1e10, nullable=True),
            Column("qualifier", "str", allowed=("", "<", ">", "range"), nullable=True),
            Column("value_text", "str", nullable=True),
        ),
        key=("chain", "detail", "year"),
    ),
    Table(
        "chain_import_sources",
        "US import sources of each chain, share of US imports 2021-24 (USGS MCS 2026).",
        (
            _CHAIN,
            Column("detail", "str"),
            _REGION,
            Column("period", "str"),
            _SHARE,
        ),
        key=("chain", "detail", "region"),
    ),
    Table(
        "chain_parameters",
        "Scalars of the chain tables' build and of the generic chain network.",
        (Column("parameter", "str"), Column("value", "float", min=0.0, max=1e10),
         Column("unit", "str")),
        key=("parameter",),
    ),
    Table(
        "chain_sector_value",
        "What a missing kilogram of a chain's commodity costs a sector (the stockpile "
        "planner's value of unserved demand): the value added of the product not made, per "
        "kg of the chain's basis it contains, as sector_value.csv for the rare earths.",
        (
            _CHAIN,
            Column("sector", "str", description="a sector of chain_end_uses.csv"),
            Column("product", "str"),
            Column("unit_value_usd", "float", "USD per unit", min=0.0, max=1e10),
            Column("value_added_share", "float", "fraction", min=0.0, max=1.0),
            Column("kg_per_unit", "float", "kg of the chain's basis per unit", min=1e-9,
                   max=1e6),
        ),
        key=("chain", "sector"),
    ),
    Table(
        "stockpile_chain_forms",
        "Holding a chain's commodity in the form of one of its stages (the stress engine's "
        "traded items): processing cost from the stage before, storage, shelf life and the "
        "months it takes to convert into this form (stockpile planner), as "
        "stockpile_forms.csv for the rare earths.",
        (
            _CHAIN,
            Column("stage", "str"),
            Column("processing_usd_per_kg", "float", "USD per kg basis", min=0.0, max=1e6),
            Column("storage_usd_per_t_year", "float", "USD per t basis per year", min=0.0,
                   max=1e9),
            Column("shelf_life_years", "float", "years", min=0.1, max=1000.0),
            Column("conversion_lead_months", "float", "months", min=0.0, max=600.0),
        ),
        key=("chain", "stage"),
    ),
    Table(
        "stockpile_scenarios",
        "The stockpile planner's default scenario mix for each commodity other than the rare "
        "earths (`oreflow stockpile plan --commodities`): built-in scenarios and weights.",
        (
            Column("commodity", "str", ref="chains.chain",
                   description="commodity id (chains.csv)"),
            Column("scenario", "str", description="a built-in scenario about the commodity"),
            Column("weight", "float", min=0.0, max=1e6),
        ),
        key=("commodity", "scenario"),
    ),
]})


CHAIN_STAGE_TABLES = ("chain_production", "chain_end_uses", "coproduction",
                      "stockpile_chain_forms")
"""Tables whose (chain, stage) pairs must be declared in chain_stages.csv."""


def check_chain_references(tables: dict[str, pd.DataFrame]) -> list[Problem]:
    """Cross-table checks of the chain tables that single-column references cannot express:
    every (chain, stage) is declared in chain_stages.csv, each chain maps an engine slot at
    most once, and every commodity an export-control regime names is a chain."""
    problems: list[Problem] = []
    st = tables.get("chain_stages")
    if st is None or not {"chain", "stage"} <= set(st.columns):
        return problems
    declared = set(zip(st["chain"], st["stage"], strict=True))
    for name in CHAIN_STAGE_TABLES:
        df = tables.get(name)
        if df is None or not {"chain", "stage"} <= set(df.columns):
            continue
        for i, (c, s) in enumerate(zip(df["chain"], df["stage"], strict=True)):
            if (c, s) not in declared:
                stages = sorted(x for ch, x in declared if ch == c)
                problems.append(Problem(f"{name}.csv", _line(i), "stage",
                                        f"chain {c!r} has no stage {s!r} in chain_stages.csv "
                                        f"(stages: {', '.join(stages) or 'none'})"))
    slots = st[st["engine_slot"].astype(str) != ""]
    dup = slots.duplicated(["chain", "engine_slot"], keep="first")
    for i in np.flatnonzero(dup.to_numpy()):
        problems.append(Problem("chain_stages.csv", _line(slots.index[i]), "engine_slot",
                                f"chain {slots['chain'].iloc[i]!r} maps engine slot "
                                f"{slots['engine_slot'].iloc[i]!r} twice"))
    ctl, chains = tables.get("export_controls"), tables.get("chains")
    if ctl is not None and chains is not None and "commodities" in ctl.columns:
        known = set(chains["chain"])
        for i, text in enumerate(ctl["commodities"].astype(str)):
            bad = [c for c in text.split(";") if c.strip() and c.strip() not in known]
            if bad:
                problems.append(Problem("export_controls.csv", _line(i), "commodities",
                                        f"unknown commodity {', '.join(map(repr, bad))}: not "
                                        "in chains.csv"))
    return problems
# ---- what the model needs beyond column types (issue 11) ------------------------------------
# A dataset that passes these checks can be loaded by the model: every parameter it reads by
# name is there with that exact name and a value in range, every lookup it makes (an element's
# price, a magnet sector's lifetime, a producer's mining sources) finds its row, and no number
# is large enough to overflow. Declared here, per table, apart from the column definitions.
def _pct(name: str) -> Param:
    return Param(name, 0.0, 1.0, "fraction")


_PRODUCERS = "mine_production.region[year=@base_year,t_reo>0,region!=WLD]"
_MAGNET_SECTORS = "sectors.sector[form=magnet]"

REQUIREMENTS: dict[str, dict] = {
    "market_parameters": dict(params=(
        Param("base_year", 1990, 2100, "year", integer=True),
        _pct("china_vat_rate"),
        Param("cny_per_usd_2020_01", 1.0, 50.0, "CNY/USD"),
        Param("cny_per_usd_2025_03", 1.0, 50.0, "CNY/USD"),
        Param("cny_per_usd_2025_12", 1.0, 50.0, "CNY/USD"),
        Param("pm_oxide_usd_per_kg", 0.0, 1e5, "USD/kg"),
        Param("tm_oxide_usd_per_kg", 0.0, 1e5, "USD/kg"),
    )),
    "market_behaviour": dict(params=(
        Param("target_cover_months", 0.1, 60.0, "months of use"),
        Param("price_horizon_months", 0.25, 60.0, "months"),
        Param("expectation_horizon_months", 0.25, 60.0, "months"),
        Param("price_cap", 1.5, 1e4, "price multiple"),
        Param("price_rationing_elasticity", 0.0, 10.0),
        _pct("price_smoothing"),
        Param("substitution_rate_per_year", 0.0, 10.0, "fraction of demand per year"),
        _pct("substitution_max"),
        Param("substitution_full_price_ratio", 1.01, 100.0, "price multiple"),
        Param("supply_response_rate_per_year", 0.0, 10.0, "fraction of world market per year"),
        Param("supply_response_lead_months", 0.0, 120.0, "months"),
        _pct("supply_response_max"),
        Param("restock_months", 0.1, 120.0, "months"),
        _pct("production_adjustment_per_month"),
        Param("buyer_cover_months", 0.1, 60.0, "months of use"),
        Param("buyer_cover_cv", 0.01, 10.0, "coefficient of variation"),
        _pct("leakage"),
        _pct("stoppage_threshold"),
        _pct("arbitrage_rate"),
        Param("arbitrage_margin", 0.0, 10.0, "share of the origin's price"),
    )),
    "stockpile_parameters": dict(params=(
        _pct("conversion_capacity_share"),
        _pct("insurance_rate_per_year"),
        _pct("loan_rate_per_year"),
        Param("max_buy_share_per_month", 0.001, 1.0, "fraction"),
        Param("price_blocks", 1, 100, "count", integer=True),
        Param("purchase_price_slope", 0.0, 10.0, "fraction"),
        Param("purchase_window_months", 1.0, 600.0, "months"),
        _pct("rotation_cost_share"),
        Param("rule_days", 0.0, 3650.0, "days"),
        Param("tenor_years", 1.0, 100.0, "years"),
    )),
    "risk_parameters": dict(params=(
        Param("export_ban_factor", 1.0, 10.0),
        Param("export_licence_factor", 1.0, 10.0),
        Param("export_quota_factor", 1.0, 10.0),
        Param("trade_partner_factor", 0.1, 10.0),
        Param("ec_assessment_year", 1990, 2100, "year", integer=True),
        Param("ec_window_first_year", 1990, 2100, "year", integer=True),
        Param("ec_window_last_year", 1990, 2100, "year", integer=True),
    )),
    "stage_parameters": dict(params=tuple(Param(s) for s in STAGES), param_column="stage"),
    "mine_production": dict(covers=(Covers(("year",), (("@base_year",),)),)),
    "trade_china_imports_2846": dict(covers=(Covers(("year",), (("@base_year",),)),)),
    "mine_source_split": dict(covers=(Covers(("region",), (_PRODUCERS,)),)),
    "concentrate_routing": dict(covers=(Covers(("origin",), (_PRODUCERS,)),)),
    "deposit_composition": dict(covers=(Covers(("deposit",), ("deposits.deposit",)),)),
    "stage_shares": dict(covers=(Covers(("stage",), (("metal", "magnet"),)),)),
    "magnet_composition": dict(covers=(Covers(("sector",), (_MAGNET_SECTORS,)),)),
    "sector_regions": dict(covers=(Covers(("sector",), ("sectors.sector",)),)),
    "base_prices": dict(covers=(Covers(("element", "zone"),
                                       ("elements.element", ("ROW", "CHN"))),)),
    "stockpile_forms": dict(covers=(Covers(("form",), (FORMS,)),)),
    "blocs": dict(covers=(Covers(("bloc",), (("EU", "G7", "QUAD", "MSP"),)),)),
    "magnet_lifetimes": dict(covers=(Covers(("sector", "parameter"),
                                            (_MAGNET_SECTORS, ("mean", "std"))),)),
    "recycling": dict(covers=(Covers(("region", "parameter"),
                                     ("sector_regions.region", RECYCLING_PARAMETERS)),),
                      row_ranges=(_pct("collection_rate"), _pct("preprocessing_yield"),
                                  _pct("recovery_yield"),
                                  Param("capacity_t_magnet_per_year", 0.0, 1e7, "t magnet/yr"),
                                  Param("expansion_t_magnet_per_year", 0.0, 1e7, "t magnet/yr"),
                                  Param("lead_time_months", 0.0, 600.0, "months"))),
    "magnet_history": dict(covers=(Covers(("quantity", "year"),
                                          (MAGNET_HISTORY_QUANTITIES, "years:1990..@base_year")),),
                           param_column="quantity",
                           row_ranges=(Param("world_output_t_magnet", 1.0, 1e7, "t magnet"),
                                       Param("heavy_ree_index", 0.0, 100.0, "index"))),
    "magnet_sector_history": dict(covers=(Covers(("year", "sector"),
                                                 ("years:1990..@base_year", _MAGNET_SECTORS)),)),
}
"""Per table: `params` (rows read by exact name, with the value's range) and `covers` (rows
every lookup of the model needs). Every table also needs at least one row (`min_rows`)."""

MAX_BOUNDS: dict[tuple[str, str], tuple[float, float]] = {
    ("mine_production", "t_reo"): (0.0, 1e8),  # world output is about 4e5 t
    ("reserves", "t_reo"): (0.0, 1e10),
    ("prices", "usd_per_kg"): (0.0, 1e6),
    ("base_prices", "usd_per_kg"): (0.0, 1e6),
    ("china_domestic_prices", "cny_per_t_low"): (0.0, 1e9),
    ("china_domestic_prices", "cny_per_t_high"): (0.0, 1e9),
    ("market_parameters", "value"): (-1e12, 1e12),  # per-parameter ranges above
    ("market_behaviour", "value"): (-1e12, 1e12),
    ("sector_value", "unit_value_usd"): (0.0, 1e10),
    ("sector_value", "re_kg_per_unit"): (0.0, 1e6),
    ("stockpile_forms", "processing_usd_per_kg"): (0.0, 1e6),
    ("stockpile_forms", "storage_usd_per_t_year"): (0.0, 1e9),
    ("stockpile_forms", "shelf_life_years"): (0.1, 1000.0),
    ("stockpile_forms", "conversion_lead_months"): (0.0, 600.0),
    ("stockpile_parameters", "value"): (0.0, 1e12),
    ("risk_parameters", "value"): (0.0, 1e12),
    ("trade_china_imports_2846", "t"): (0.0, 1e9),
    ("trade_china_imports_2846", "usd"): (0.0, 1e13),
    ("trade_us_imports", "t"): (0.0, 1e9),
    ("trade_us_imports", "usd"): (0.0, 1e13),
    ("us_salient", "value"): (-1e12, 1e12),
    ("magnet_history", "value"): (0.0, 1e9),
    ("recycling", "value"): (0.0, 1e9),
}
"""Ranges for numeric columns that had only a minimum: a value beyond them (1e300) would
overflow in the model and come out as NaN or infinity."""


def _bounded(table: Table) -> Table:
    cols = []
    for c in table.columns:
        if (table.name, c.name) in MAX_BOUNDS:
            lo, hi = MAX_BOUNDS[(table.name, c.name)]
            c = replace(c, min=lo if c.min is None else max(c.min, lo), max=hi)
        cols.append(c)
    return replace(table, columns=tuple(cols), **REQUIREMENTS.get(table.name, {}))


TABLES.update({name: _bounded(t) for name, t in TABLES.items()})


def base_year_of(tables: dict[str, pd.DataFrame]) -> int | None:
    """The base year from coerced market_parameters, or None if it is not usable."""
    mp = tables.get("market_parameters")
    if mp is None or not {"parameter", "value"} <= set(mp.columns):
        return None
    v = mp.loc[mp["parameter"] == "base_year", "value"]
    if len(v) != 1 or not np.isfinite(v.iloc[0]) or v.iloc[0] != round(v.iloc[0]):
        return None
    spec = next(p for p in REQUIREMENTS["market_parameters"]["params"] if p.name == "base_year")
    if not spec.min <= v.iloc[0] <= spec.max:
        return None  # reported by check_params; coverage by year is not checked then
    return int(v.iloc[0])


def _describe_difference(got: str, want: str) -> str:
    """What makes `got` differ from `want`: a look-alike or invisible character, or case."""
    for i, ch in enumerate(got):
        if i >= len(want) or ch != want[i]:
            if ord(ch) > 127 or unicodedata.category(ch) == "Cf":
                name = unicodedata.name(ch, "unnamed")
                return f"character {i + 1} is U+{ord(ch):04X} ({name}), not {want[i:i + 1]!r}"
            break
    if got.casefold() == want.casefold():
        return "it differs in upper/lower case"
    return "it is spelled differently"


def _near(got: str, want: str) -> bool:
    norm = unicodedata.normalize("NFKD", got)
    norm = "".join(c for c in norm if unicodedata.category(c) not in ("Mn", "Cf")).casefold()
    return norm == want.casefold() or difflib.SequenceMatcher(None, got, want).ratio() >= 0.8


def check_params(table: Table, df: pd.DataFrame) -> list[Problem]:
    """Every declared parameter present by its exact name, once, with a value in range; a
    near-miss ('bаse_year' with a Cyrillic а) is named as such."""
    problems: list[Problem] = []
    col, val = table.param_column, table.value_column
    if not table.params or col not in df.columns:
        return problems
    names = df[col].astype(str)
    wanted = {p.name for p in table.params}
    for p in table.params:
        rows = np.flatnonzero((names == p.name).to_numpy())
        if len(rows) == 0:
            near = [(i, n) for i, n in enumerate(names) if n not in wanted and _near(n, p.name)]
            if near:
                i, n = near[0]
                problems.append(Problem(table.file, _line(i), col,
                                        f"{n!r} is not the required {col} {p.name!r}: "
                                        f"{_describe_difference(n, p.name)}; names must match "
                                        "exactly"))
            else:
                rng = (f" (a value in [{p.min:g}, {p.max:g}]{' ' + p.unit if p.unit else ''})"
                       if p.min is not None and p.max is not None else "")
                problems.append(Problem(table.file, None, col,
                                        f"required {col} {p.name!r} is missing{rng}"))
            continue
        if p.min is None or val not in df.columns:
            continue
        i = rows[0]
        v = float(df[val].iloc[i])
        unit = f" {p.unit}" if p.unit else ""
        if not np.isfinite(v):
            continue  # reported by the coercion as not a finite number
        if not p.min <= v <= p.max:
            problems.append(Problem(table.file, _line(i), val,
                                    f"{p.name} = {v:g} is outside its range "
                                    f"[{p.min:g}, {p.max:g}]{unit}"))
        elif p.integer and v != round(v):
            problems.append(Problem(table.file, _line(i), val,
                                    f"{p.name} = {v:g} must be a whole number"))
    return problems


def _text(x) -> str:
    """A cell as the text it was written as (2024.0 -> '2024', True -> 'true')."""
    if isinstance(x, bool | np.bool_):
        return str(bool(x)).lower()
    if isinstance(x, float | np.floating) and float(x).is_integer():
        return str(int(x))
    return str(x)


def _source_values(src: str | tuple[str, ...], tables: dict[str, pd.DataFrame],
                   base_year: int | None) -> tuple[list[str], str] | None:
    """The values a Covers source names, and how to describe them; None if unresolvable."""
    if isinstance(src, tuple):
        if any(v == "@base_year" for v in src):
            if base_year is None:
                return None
            return [str(base_year)], f"the base year {base_year}"
        return [str(v) for v in src], f"one of {', '.join(map(str, src))}"
    if src.startswith("years:"):
        lo, hi = src[len("years:"):].split("..")
        if base_year is None:
            return None
        lo_y = base_year if lo == "@base_year" else int(lo)
        hi_y = base_year if hi == "@base_year" else int(hi)
        return [str(y) for y in range(lo_y, hi_y + 1)], f"every year {lo_y}..{hi_y}"
    ref, _, cond = src.partition("[")
    tname, cname = ref.split(".")
    df = tables.get(tname)
    if df is None or cname not in df.columns:
        return None
    mask = np.ones(len(df), bool)
    for term in filter(None, cond.rstrip("]").split(",")):
        for op in ("!=", ">", "="):
            if op in term:
                c, v = term.split(op, 1)
                break
        if c not in df.columns:
            return None
        if v == "@base_year":
            if base_year is None:
                return None
            v = str(base_year)
        col = df[c]
        if op == ">":
            mask &= (pd.to_numeric(col, errors="coerce") > float(v)).to_numpy()
        else:
            text = col.map(_text).astype(str)
            eq = (text == v).to_numpy()
            mask &= eq if op == "=" else ~eq
    values = list(dict.fromkeys(df.loc[mask, cname].map(_text)))
    where = f" with {cond.rstrip(']')}" if cond else ""
    return values, f"every {cname} of {tname}.csv{where}"


def check_covers(table: Table, df: pd.DataFrame, tables: dict[str, pd.DataFrame],
                 base_year: int | None) -> list[Problem]:
    """Rows the model looks up must exist: every combination the `covers` sources give."""
    problems: list[Problem] = []
    for cov in table.covers:
        if not all(c in df.columns for c in cov.columns):
            continue
        resolved = [_source_values(s, tables, base_year) for s in cov.sources]
        if any(r is None for r in resolved):
            continue  # the source table has its own problems, reported there
        have = set(zip(*(df[c].map(_text) for c in cov.columns), strict=True))
        need = [()]
        for values, _ in resolved:
            need = [(*n, v) for n in need for v in values]
        missing = [n for n in need if n not in have]
        if missing:
            shown = "; ".join(", ".join(f"{c}={v!r}" for c, v in zip(cov.columns, m, strict=True))
                              for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            what = " x ".join(f"{c}: {d}" for c, (_, d) in zip(cov.columns, resolved, strict=True))
            problems.append(Problem(table.file, None, ", ".join(cov.columns),
                                    f"no row for ({shown}){more}; the model needs a row for "
                                    f"{what}"))
    return problems


def check_row_ranges(table: Table, df: pd.DataFrame) -> list[Problem]:
    """Rows whose value must lie in the range declared for their kind (e.g. a recycling
    collection_rate is a fraction; its capacity a tonnage)."""
    problems: list[Problem] = []
    col, val = table.param_column, table.value_column
    if not table.row_ranges or col not in df.columns or val not in df.columns:
        return problems
    names = df[col].astype(str).to_numpy()
    values = df[val].to_numpy(dtype=float)
    for p in table.row_ranges:
        for i in np.flatnonzero((names == p.name) & ((values < p.min) | (values > p.max))):
            unit = f" {p.unit}" if p.unit else ""
            problems.append(Problem(table.file, _line(i), val,
                                    f"{p.name} = {values[i]:g} is outside its range "
                                    f"[{p.min:g}, {p.max:g}]{unit}"))
    return problems


def check_contents(table: Table, df: pd.DataFrame, tables: dict[str, pd.DataFrame],
                   base_year: int | None) -> list[Problem]:
    """Row count, required parameters, row ranges and coverage of one coerced table."""
    if len(df) < table.min_rows:
        return [Problem(table.file, None, None,
                        f"has {len(df)} data row(s); the model needs at least {table.min_rows}")]
    return (check_params(table, df) + check_row_ranges(table, df)
            + check_covers(table, df, tables, base_year))
