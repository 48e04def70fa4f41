"""Rebuild every table of the embedded dataset from the raw public files and the curated notes.

This script is the truth of the dataset: the committed CSVs under `tables/` are its output,
and running it twice writes the same bytes. Raw files come from `../shared/data` (see
`raw.default_raw_dir`); curated inputs (numbers the raw files lack, each with its source,
vintage and status) live in `curated/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pycountry

from oreflow.data import raw
from oreflow.data.build_chains import build_chain_tables
from oreflow.data.load import BASE_YEAR_VARIANTS
from oreflow.data.schema import TABLES
from oreflow.io import atomic_write_text

CURATED_DIR = Path(__file__).parent / "curated"
Curated = Path | tuple[Path, ...]
"""Curated folders searched in order: a past base year's folder (BASE_YEAR_VARIANTS: its files
replace today's whole), then today's."""
TRACE_PCT = 0.01
"""'tr' (trace) in a deposit composition is read as 0.01% of REO (assumption)."""

PSEUDO_REGIONS = {
    "XOT": ("Other countries (USGS 'Other countries' and the rest of the world)", "pseudo"),
    "XEU": ("European Union (EU-27 demand, not split by member state)", "pseudo"),
    "WLD": ("World total", "aggregate"),
}
WGI_KEYS = ("va", "pv", "ge", "rq", "rl", "cc")


def _curated(name: str, curated_dir: Curated) -> pd.DataFrame:
    """A curated file, from the first folder that has it (a base-year overlay, then today's)."""
    dirs = curated_dir if isinstance(curated_dir, tuple) else (curated_dir,)
    for d in dirs:
        if (d / f"{name}.csv").exists():
            return pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False)
    raise raw.RawDataError(f"curated file {name}.csv not found in {', '.join(map(str, dirs))}")


def _has_curated(name: str, curated_dir: Curated) -> bool:
    dirs = curated_dir if isinstance(curated_dir, tuple) else (curated_dir,)
    return any((d / f"{name}.csv").exists() for d in dirs)


def _sourced(df: pd.DataFrame, source_id: str, vintage: int, status, note="") -> pd.DataFrame:
    out = df.copy()
    out["source_id"] = source_id
    out["vintage"] = vintage
    out["status"] = status
    out["note"] = note
    return out


def _expand_wildcard(df: pd.DataFrame, key: str, regions: list[str]) -> pd.DataFrame:
    """Rows with `key == '*'` apply to every region in `regions` not listed explicitly."""
    explicit = df[df[key] != "*"]
    wild = df[df[key] == "*"]
    rest = [r for r in regions if r not in set(explicit[key])]
    expanded = [wild.assign(**{key: r}) for r in rest]
    return pd.concat([explicit, *expanded], ignore_index=True)


def build_elements(curated_dir: Curated) -> pd.DataFrame:
    e = _curated("elements", curated_dir)
    w = e["atomic_weight"].astype(float)
    n = e["metal_atoms"].astype(float)
    m = e["oxygen_atoms"].astype(float)
    e["metal_per_oxide"] = (n * w / (n * w + m * 15.999)).round(6)
    return e


def build_deposit_composition(curated_dir: Curated) -> pd.DataFrame:
    wide = _curated("deposit_composition_pct", curated_dir)
    meta = ["deposit", "source_id", "vintage", "status", "note"]
    long = wide.melt(id_vars=meta, var_name="element", value_name="pct")
    long["pct"] = long["pct"].replace("tr", str(TRACE_PCT)).astype(float)
    long = long[long["pct"] > 0].copy()
    long["share"] = (long["pct"] / long.groupby("deposit")["pct"].transform("sum")).round(8)
    long["note"] = "normalised from % of REO; tr read as 0.01%"
    generic = (
        long[long["deposit"].isin(["bayan_obo", "mountain_pass", "mount_weld"])]
        .pivot_table(index="element", columns="deposit", values="share", fill_value=0.0)
        .mean(axis=1)
    )
    g = pd.DataFrame({"deposit": "generic_lree", "element": generic.index,
                      "share": (generic / generic.sum()).round(8).to_numpy()})
    g = _sourced(g, "oreflow_derived", 2024, "assumption",
                 "mean of Bayan Obo, Mountain Pass and Mount Weld compositions")
    sichuan = long[long["deposit"] == "mountain_pass"].assign(
        deposit="cn_sichuan", source_id="oreflow_assumption", status="assumption",
        note="Sichuan bastnaesite: no composition in the reference notes; Mountain Pass used")
    return pd.concat([long, g, sichuan], ignore_index=True)


def _expand_items(df: pd.DataFrame, column: str, new: str) -> pd.DataFrame:
    """Rows whose `column` lists several items ("Nd;Pr") become one row per item in `new`."""
    out = df.assign(**{new: df[column].str.split(";")}).explode(new)
    out[new] = out[new].str.strip()
    return out.drop(columns=[column]).reset_index(drop=True)


def build_demand_tables(curated_dir: Curated) -> dict[str, pd.DataFrame]:
    """Magnet grades (one product per grade) and the sectors' demand in the base year."""
    g = _curated("magnet_grades", curated_dir)
    meta = ["grade", "source_id", "vintage", "status", "note"]
    elements = [c for c in g.columns if c not in meta + ["name", "family"]]
    comp = g[meta + elements].melt(id_vars=meta, var_name="element", value_name="t_per_t_magnet")
    comp = comp[comp["t_per_t_magnet"].astype(float) > 0].copy()
    heavy = comp[comp["element"].isin(["Dy", "Tb"])].groupby("grade")["t_per_t_magnet"]
    heavy = heavy.apply(lambda v: v.astype(float).sum())
    grades = g[["grade", "name", "family", "source_id", "vintage", "status", "note"]].copy()
    grades["heavy_free"] = ~grades["grade"].isin(heavy[heavy > 0].index)
    grades["heavy_free"] = grades["heavy_free"].map({True: "true", False: "false"})
    md = _curated("magnet_demand", curated_dir)
    t = md.assign(t=md["t_magnet_per_year"].astype(float))
    c = comp.assign(v=comp["t_per_t_magnet"].astype(float))
    mix = t.merge(c[["grade", "element", "v"]], on="grade")
    mix["w"] = mix["t"] * mix["v"]
    by_sector = mix.groupby(["sector", "element"], as_index=False)["w"].sum()
    total = t.groupby("sector")["t"].sum()
    by_sector["t_per_t_magnet"] = (by_sector["w"] / by_sector["sector"].map(total)).round(8)
    by_sector = _sourced(by_sector[["sector", "element", "t_per_t_magnet"]], "oreflow_derived",
                         2024, "estimate", "magnet_demand grade mix x magnet_grades composition")
    use = _curated("sector_use", curated_dir)
    sc = _curated("sector_composition", curated_dir)
    meta = ["sector", "source_id", "vintage", "status", "note"]
    sc = sc.melt(id_vars=meta, var_name="element", value_name="share")
    sc = sc[sc["share"].astype(float) > 0]
    ed = sc.merge(use[["sector", "t_reo_per_year", "status"]], on="sector",
                  suffixes=("", "_use"))
    ed["t_reo_per_year"] = (ed["t_reo_per_year"].astype(float) * ed["share"].astype(float))
    weaker = np.maximum(ed["status"].map(STATUS_RANK), ed["status_use"].map(STATUS_RANK))
    ed["status"] = np.array(list(STATUS_RANK))[weaker]
    ed["source_id"] = "oreflow_derived"
    ed["note"] = "sector_use.csv x sector_composition.csv"
    return {"magnet_grades": grades, "magnet_grade_composition": comp,
            "magnet_demand": md, "magnet_composition": by_sector,
            "enduse_demand": ed[["element", "sector", "t_reo_per_year", "source_id", "vintage",
                                 "status", "note"]]}


def build_sectors(curated_dir: Curated, magnet_demand: pd.DataFrame) -> pd.DataFrame:
    """sectors.csv with each magnet sector's share of world magnet mass derived from
    magnet_demand (so the stock model and the network count the same magnets)."""
    s = _curated("sectors", curated_dir)
    t = magnet_demand.assign(t=magnet_demand["t_magnet_per_year"].astype(float))
    share = t.groupby("sector")["t"].sum() / t["t"].sum()
    s["magnet_mass_share"] = s["sector"].map(share).fillna(0.0).round(8)
    return s


def mine_from_customs(comtrade: pd.DataFrame, mine: pd.DataFrame, year: int,
                      reo_per_t: float) -> pd.DataFrame:
    """Mine output of countries USGS does not list but whose rare-earth compounds China
    imports (Laos): Comtrade net weight x the REO content USGS implies for Myanmar."""
    listed = set(mine.query("year == @year")["region"])
    rows = comtrade[(comtrade["year"] == year) & (comtrade["origin"].isin(["LAO"]))
                    & ~comtrade["origin"].isin(listed)]
    out = pd.DataFrame({"region": rows["origin"], "year": year,
                        "t_reo": (rows["t"] * reo_per_t).round(0), "qualifier": ""})
    return _sourced(out, "un_comtrade", year, "estimate",
                    "not in USGS MCS 2026: China's HS 2846 imports from this country (UN Comtrade) "
                    "x network_parameters.hs2846_reo_content")


US_HTS_STAGE = {"2846": "separation", "8505": "magnet"}
"""HTS-4 headings of US imports used as observed sourcing: 2846 compounds (separated products;
also mixed compounds), 8505 magnets (the kilogram lines: permanent magnets, any material).
2805 is left out: it also holds alkali and alkaline-earth metals (FRA's 2024 lines are calcium
or sodium at ~$4.6/kg, not rare-earth metal)."""


def routes_from_us_imports(us: pd.DataFrame, year: int) -> pd.DataFrame:
    """Observed US sourcing: each partner's share of US imports (tonnes) by HTS heading."""
    u = us[(us["year"].astype(int) == year) & us["hts4"].isin(list(US_HTS_STAGE))].copy()
    u["t"] = pd.to_numeric(u["t"], errors="coerce").fillna(0.0)
    u = u[u["t"] > 0]
    u["share"] = (u["t"] / u.groupby("hts4")["t"].transform("sum")).round(6)
    out = pd.DataFrame({"stage": u["hts4"].map(US_HTS_STAGE), "origin": u["partner"],
                        "destination": "USA", "element": "*", "share": u["share"],
                        "basis": "destination"})
    out["share"] = out["share"] / out.groupby("stage")["share"].transform("sum")
    out["share"] = out["share"].round(6)
    return _sourced(out, "usitc_dataweb", year, "reported",
                    "share of US imports for consumption by partner, t (USITC DataWeb), HTS "
                    + u["hts4"] + "; restricted to partners that produce the element")


def build_prices(mcs: dict[str, pd.DataFrame], raw_dir: Path) -> pd.DataFrame:
    p = mcs["prices"].copy()
    p = p.rename(columns={"detail": "note"})
    p["zone"] = "ROW"
    p["source_id"] = "usgs_mcs2026"
    p["vintage"] = 2026
    extra = raw.read_mcs2026_other_prices(raw_dir)
    return pd.concat([p, extra], ignore_index=True)


def build_base_prices(prices: pd.DataFrame, elements: pd.DataFrame, domestic: pd.DataFrame,
                      market: pd.DataFrame, base_year: int) -> pd.DataFrame:
    """Base-year oxide prices outside China (USGS) and inside it (SMM, ex-VAT, where quoted)."""
    par = market.set_index("parameter")["value"].astype(float)
    oxide = prices[(prices["form"] == "oxide") & (prices["year"].astype(int) == base_year)]
    by_product = oxide.drop_duplicates("product").set_index("product")["usd_per_kg"].astype(float)
    rows = []
    for el in elements["element"]:
        if el in by_product.index:
            rows.append((el, "ROW", by_product[el], "usgs_mcs2026", 2026, "reported",
                         f"USGS {base_year} average oxide price"))
        else:
            key = f"{el.lower()}_oxide_usd_per_kg"
            rows.append((el, "ROW", par[key], "oreflow_assumption", base_year, "assumption",
                         f"no USGS price: market_parameters.{key}"))
    out = pd.DataFrame(rows, columns=["element", "zone", "usd_per_kg", "source_id", "vintage",
                                      "status", "note"])
    # Inside China: the last SMM quote before the April 2025 licences, ex-VAT, in USD, relative
    # to the USGS price of the same year, applied to the base-year export price.
    d = domestic[domestic["date"] == "2025-03-04"].copy()
    d["mid"] = (d["cny_per_t_low"].astype(float) + d["cny_per_t_high"].astype(float)) / 2
    d["usd_per_kg"] = d["mid"] / (1 + par["china_vat_rate"]) / par["cny_per_usd_2025_03"] / 1000
    ref = prices[(prices["form"] == "oxide") & (prices["year"].astype(int) == 2025)]
    ref = ref.drop_duplicates("product").set_index("product")["usd_per_kg"].astype(float)
    ratio = {p: float(u / ref[p]) for p, u in zip(d["product"], d["usd_per_kg"], strict=True)}
    ratio["Nd"] = ratio["Pr"] = ratio.pop("NdPr")
    chn = out.copy()
    chn["zone"] = "CHN"
    for i, el in enumerate(chn["element"]):
        if el in ratio:
            chn.loc[i, "usd_per_kg"] = out.loc[i, "usd_per_kg"] * ratio[el]
            chn.loc[i, ["source_id", "vintage", "status"]] = ["smm_prices", 2025, "estimate"]
            chn.loc[i, "note"] = (f"ROW price x {ratio[el]:.3f}: SMM 4 Mar 2025 quote ex-VAT "
                                  "over the USGS 2025 average")
        else:
            chn.loc[i, ["source_id", "status"]] = ["oreflow_assumption", "assumption"]
            chn.loc[i, "note"] = "no domestic quote: equal to the price outside China"
    out = pd.concat([out, chn], ignore_index=True)
    out["usd_per_kg"] = out["usd_per_kg"].astype(float).round(4)
    return out


def mine_from_history(curated: pd.DataFrame, raw_dir: Path, year: int) -> pd.DataFrame:
    """Mine output of a past year: the curated rows, the US from USGS DS140, and China as the
    DS140 world total less everyone else (the row left blank in the curated file)."""
    hist = raw.read_ds140(raw_dir)
    row = hist[hist["year"] == year].set_index("geography_code")["value"]
    if "WLD" not in row or "USA" not in row:
        raise raw.RawDataError(f"USGS DS140 has no world or US production for {year}")
    out = curated.copy()
    out["year"] = out["year"].astype(int)
    out = out[out["year"] == year]
    given = pd.to_numeric(out["t_reo"], errors="coerce")
    blank = given.isna()
    if blank.sum() != 1:
        raise raw.RawDataError(f"curated mine_production.csv for {year}: leave exactly one "
                               "t_reo blank (the region derived from the world total)")
    us = pd.DataFrame([("USA", year, row["USA"], "", "usgs_ds140", 2020, "reported",
                        "DS140 US production")], columns=out.columns)
    derived = row["WLD"] - given.sum() - row["USA"]
    out["t_reo"] = given.where(~blank, derived)
    return pd.concat([out, us], ignore_index=True)


def base_prices_from_fob(fob: pd.DataFrame, today: pd.DataFrame,
                         market: pd.DataFrame) -> pd.DataFrame:
    """Base prices of a past year: export (FOB China) quotes outside China; inside China the
    quote less the export duty; elements without a quote keep today's price, labelled."""
    duty = float(market.set_index("parameter").loc["china_export_duty_2010", "value"])
    quoted = fob.set_index("element")
    rows = []
    for el in today.query("zone == 'ROW'")["element"]:
        if el in quoted.index:
            q = quoted.loc[el]
            p = float(q["usd_per_kg"])
            rows.append((el, "ROW", p, q["source_id"], q["vintage"], q["status"], q["note"]))
            rows.append((el, "CHN", round(p / (1 + duty), 4), "oreflow_assumption",
                         q["vintage"], "assumption",
                         f"FOB quote less a {duty:.0%} export duty (no domestic quote)"))
        else:
            for zone in ("ROW", "CHN"):
                r = today.query("element == @el and zone == @zone").iloc[0]
                rows.append((el, zone, r["usd_per_kg"], "oreflow_assumption", r["vintage"],
                             "assumption", "no quote for the base year: today's price"))
    return pd.DataFrame(rows, columns=["element", "zone", "usd_per_kg", "source_id", "vintage",
                                       "status", "note"])


def build_variant(raw_dir: Path | None, base_year: int) -> dict[str, pd.DataFrame]:
    """The tables of a past base year that differ from today's."""
    today = build_tables(raw_dir)
    past = build_tables(raw_dir, base_year=base_year)
    return {n: df for n, df in past.items() if not df.equals(today[n])}


def build_regions(raw_dir: Path, referenced: set[str], eu_members: list[str]) -> pd.DataFrame:
    wgi = raw.read_wgi(raw_dir, 2023).set_index("region")
    rows = []
    for code in sorted(referenced):
        if code in PSEUDO_REGIONS:
            name, kind = PSEUDO_REGIONS[code]
            if code == "XOT":
                vals = wgi[list(WGI_KEYS)].mean()
                note = "WGI: mean over all economies (assumption)"
            elif code == "XEU":
                vals = wgi.loc[wgi.index.intersection(eu_members), list(WGI_KEYS)].mean()
                note = "WGI: mean over EU-27 members (assumption)"
            else:
                vals = pd.Series(np.nan, index=list(WGI_KEYS))
                note = "aggregate: no governance score"
            rows.append((code, name, kind, *vals.round(4), "oreflow_derived", 2023,
                         "assumption", note))
            continue
        country = pycountry.countries.get(alpha_3=code)
        if country is None:
            raise raw.RawDataError(f"region code {code!r} is not an ISO 3166 alpha-3 code")
        name = getattr(country, "common_name", None) or country.name
        if code in wgi.index:
            vals = wgi.loc[code, list(WGI_KEYS)].astype(float)
            rows.append((code, name, "country", *vals.round(4), "wb_wgi_2024", 2023,
                         "reported", ""))
        else:
            rows.append((code, name, "country", *([np.nan] * 6), "wb_wgi_2024", 2023,
                         "reported", "not covered by the WGI"))
    cols = ["region", "name", "kind", *(f"wgi_{k}" for k in WGI_KEYS), "source_id", "vintage",
            "status", "note"]
    return pd.DataFrame(rows, columns=cols)


def build_tables(raw_dir: Path | None = None, curated_dir: Path = CURATED_DIR,
                 base_year: int | None = None) -> dict[str, pd.DataFrame]:
    """Every table of the dataset, built from the raw files and the curated notes; with
    `base_year` one of BASE_YEAR_VARIANTS, the chain as it was that year."""
    raw_dir = Path(raw_dir) if raw_dir is not None else raw.default_raw_dir()
    if not raw_dir.is_dir():
        raise raw.RawDataError(
            f"raw data folder {raw_dir} does not exist: set OREFLOW_RAW_DIR or pass --raw-dir"
        )
    past = base_year
    if past is not None:
        if past not in BASE_YEAR_VARIANTS:
            raise raw.RawDataError(f"no curated base year {past}; available: "
                                   f"{', '.join(map(str, BASE_YEAR_VARIANTS))}")
        today = build_tables(raw_dir, curated_dir)
        curated_dir = (curated_dir / BASE_YEAR_VARIANTS[past], curated_dir)
    t: dict[str, pd.DataFrame] = {}
    cur = {n: _curated(n, curated_dir) for n in (
        "sources", "blocs", "deposits", "mine_source_split", "concentrate_routing",
        "stage_parameters", "china_domestic_prices", "market_parameters", "risk_parameters",
        "export_controls", "market_behaviour", "sector_value", "stockpile_forms",
        "stockpile_parameters", "network_parameters", "trade_agreements", "eu_criticality",
        "market_regions", "demand_response", "validation_targets",
    )}
    t.update(cur)
    market = cur["market_parameters"]
    base_year = int(float(market.set_index("parameter").loc["base_year", "value"]))

    t["elements"] = build_elements(curated_dir)

    mcs = raw.read_mcs2026_rare_earths(raw_dir)
    mine = _sourced(mcs["mine_production"], "usgs_mcs2026", 2026, mcs["mine_production"]["status"])
    mine["note"] = mcs["mine_production"]["note"].fillna("")
    myb = raw.read_myb2022_world_mine_production(raw_dir)
    myb = myb[myb["year"] < mine["year"].min()]
    myb = _sourced(myb, "usgs_myb2022", 2022, "reported", myb["note"].fillna(""))
    myb["qualifier"] = ""
    t["mine_production"] = pd.concat([mine, myb], ignore_index=True)
    if past is not None:
        t["mine_production"] = pd.concat(
            [t["mine_production"], mine_from_history(_curated("mine_production", curated_dir),
                                                     raw_dir, base_year)], ignore_index=True)
    res = mcs["reserves"]
    t["reserves"] = _sourced(res, "usgs_mcs2026", 2026, res["status"], res["note"].fillna(""))

    net_par = cur["network_parameters"].set_index("parameter")["value"].astype(float)
    ct = raw.read_comtrade_china_imports_2846(raw_dir)
    t["mine_production"] = pd.concat(
        [t["mine_production"], mine_from_customs(ct, t["mine_production"], base_year,
                                                 net_par["hs2846_reo_content"])],
        ignore_index=True)
    producers = sorted(
        set(t["mine_production"].query("year == @base_year and t_reo > 0")["region"]) - {"WLD"}
    )
    t["mine_source_split"] = _expand_wildcard(cur["mine_source_split"], "region", producers)
    t["concentrate_routing"] = _expand_wildcard(cur["concentrate_routing"], "origin", producers)
    t["deposit_composition"] = build_deposit_composition(curated_dir)

    meta = ["sector", "source_id", "vintage", "status", "note"]
    t.update(build_demand_tables(curated_dir))
    t["sectors"] = build_sectors(curated_dir, t["magnet_demand"])
    t["stage_shares"] = _expand_items(_curated("stage_shares", curated_dir), "items", "item")
    t["separation_capability"] = _expand_items(_curated("separation_capability", curated_dir),
                                               "elements", "element")
    sr = _curated("sector_regions", curated_dir)
    t["sector_regions"] = sr.melt(id_vars=meta, var_name="region", value_name="share")

    t["prices"] = build_prices(mcs, raw_dir)
    if _has_curated("base_prices_fob", curated_dir):
        t["base_prices"] = base_prices_from_fob(_curated("base_prices_fob", curated_dir),
                                                today["base_prices"], market)
    else:
        t["base_prices"] = build_base_prices(t["prices"], t["elements"],
                                             cur["china_domestic_prices"], market, base_year)

    sal = mcs["us_salient"].copy()
    sal = sal.drop(columns=["statistic"], errors="ignore")
    t["us_salient"] = _sourced(sal, "usgs_mcs2026", 2026, sal["status"])

    ctl = raw.read_mcs2026_export_controls(raw_dir)
    t["export_controls_usgs"] = _sourced(ctl, "usgs_mcs2026_t4", 2026, "reported",
                                         ctl.get("notes", ""))

    t["trade_china_imports_2846"] = _sourced(
        ct, "un_comtrade", 2024, np.where(ct["qty_estimated"], "estimate", "reported"),
        np.where(ct["qty_estimated"], "net weight estimated by UN Comtrade", ""),
    )
    us = raw.read_usitc(raw_dir, "imports")
    us = us[us["hts4"].isin(["2805", "2846", "8505"])].copy()
    us["t"] = np.where(us["quantity_unit"].str.lower().str.startswith("kilo"),
                       us["quantity"] / 1000.0, np.nan)
    t["trade_us_imports"] = _sourced(
        us, "usitc_dataweb", 2026, np.where(us["partial_year"], "estimate", "reported"),
        np.where(us["partial_year"], "partial year (January-April)", ""),
    )

    t["trade_routes"] = pd.concat(
        [_expand_items(_curated("trade_routes", curated_dir), "elements", "element"),
         routes_from_us_imports(t["trade_us_imports"], base_year)], ignore_index=True)
    if past is None:
        t.update(build_stock_tables(curated_dir, t["sectors"], sr, base_year))
        t.update(build_chain_tables(raw_dir, curated_dir))
    else:  # magnets in use: today's history cut at the past year; other chains as today
        for name in ("magnet_history", "magnet_sector_history", "magnet_lifetimes",
                     "recycling"):
            df = today[name]
            t[name] = df[df["year"] <= past] if "year" in df.columns else df
        t.update({n: today[n] for n in today if n.startswith("chain")
                  or n in ("coproduction", "stockpile_chain_forms", "stockpile_scenarios")})

    referenced: set[str] = set()
    for name, table in TABLES.items():
        if name not in t or name == "regions":
            continue
        for col in table.all_columns():
            if col.ref == "regions.region" and col.name in t[name].columns:
                referenced |= set(t[name][col.name].astype(str))
    eu = list(cur["blocs"].query("bloc == 'EU'")["region"])
    t["regions"] = build_regions(raw_dir, referenced | {"XOT", "XEU"}, eu)

    return {name: _tidy(name, t[name]) for name in TABLES}


def _tidy(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Schema column order, rows sorted by key: the same input always gives the same bytes."""
    table = TABLES[name]
    cols = [c.name for c in table.all_columns()]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise raw.RawDataError(f"build of {table.file} produced no column(s) {missing}")
    out = df[cols].copy()
    for c in table.all_columns():
        if c.kind == "int":
            out[c.name] = pd.to_numeric(out[c.name]).astype("Int64")
        elif c.kind == "float":
            out[c.name] = pd.to_numeric(out[c.name])
    return out.sort_values(list(table.key), kind="stable").reset_index(drop=True)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path,
                 replace: bool = False) -> list[Path]:
    """Write each table atomically (temp file then rename): no half-written CSV survives.
    `replace`: also remove table files of `out_dir` not written now (a past year's overlay)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if replace:
        keep = {TABLES[n].file for n in tables}
        for f in out_dir.glob("*.csv"):
            if f.name not in keep:
                f.unlink()
    written = []
    for name, df in tables.items():
        target = out_dir / TABLES[name].file
        text = df.to_csv(index=False, float_format="%.10g", lineterminator="\n")
        atomic_write_text(target, text)
        written.append(target)
    return written


# ---- magnets in use and recycling (oreflow.stocks) ------------------------------------------
STATUS_RANK = {"reported": 0, "estimate": 1, "assumption": 2}


def _interpolate_years(anchors: pd.DataFrame, value: str, log: bool) -> pd.DataFrame:
    """Annual rows between sourced anchor years: anchors keep their source; a year between
    two anchors is linear (or log-linear) between them, sourced as derived, with the weaker
    status of the two (an estimate between reported and estimate rows, and so on)."""
    a = anchors.assign(year=anchors["year"].astype(int)).sort_values("year")
    a = a.reset_index(drop=True)
    years = np.arange(a["year"].iloc[0], a["year"].iloc[-1] + 1)
    v = a[value].astype(float).to_numpy()
    y = np.exp(np.interp(years, a["year"], np.log(v))) if log else np.interp(years, a["year"], v)
    hi = np.searchsorted(a["year"].to_numpy(), years)
    lo = np.maximum(hi - 1, 0)
    rank = np.maximum(a["status"].map(STATUS_RANK).to_numpy()[lo],
                      a["status"].map(STATUS_RANK).to_numpy()[hi])
    status = np.array(list(STATUS_RANK))[rank]
    out = pd.DataFrame({"year": years, value: y, "source_id": "oreflow_derived",
                        "vintage": str(years[-1]), "status": status})
    out["note"] = [f"{'log-' if log else ''}linear between {a['year'].iloc[i]} and "
                   f"{a['year'].iloc[j]}" for i, j in zip(lo, hi, strict=True)]
    exact = np.isin(years, a["year"])
    keep = a.set_index("year").loc[years[exact]]
    for col in ("source_id", "vintage", "status", "note"):
        out.loc[exact, col] = keep[col].to_numpy()
    out.loc[exact, value] = keep[value].astype(float).to_numpy()
    return out


def build_stock_tables(curated_dir: Curated, sectors: pd.DataFrame, sector_regions: pd.DataFrame,
                       base_year: int) -> dict[str, pd.DataFrame]:
    """magnet_history and magnet_sector_history made annual up to the base year, lifetimes
    as curated, and recycling parameters with '*' rows expanded to every magnet-use region."""
    out: dict[str, pd.DataFrame] = {}
    hist = _curated("magnet_history", curated_dir)
    parts = []
    for q, rows in hist.groupby("quantity", sort=True):
        if int(rows["year"].astype(int).max()) != base_year:
            raise raw.RawDataError(f"magnet_history.csv: {q} needs a row for the base year "
                                   f"{base_year}")
        part = _interpolate_years(rows, "value", log=q == "world_output_t_magnet")
        parts.append(part.assign(quantity=q, unit=rows["unit"].iloc[0]))
    out["magnet_history"] = pd.concat(parts, ignore_index=True)

    wide = _curated("magnet_sector_history", curated_dir)
    meta = ["year", "source_id", "vintage", "status", "note"]
    mag = sectors[sectors["magnet_mass_share"].astype(float) > 0]
    base = mag.set_index("sector")["magnet_mass_share"]
    last = pd.DataFrame([{"year": str(base_year), **base.to_dict(), "source_id":
                          mag["source_id"].iloc[0], "vintage": str(base_year), "status":
                          "assumption", "note": "sectors.csv magnet_mass_share (base year)"}])
    wide = pd.concat([wide, last], ignore_index=True)
    if set(wide.columns) - set(meta) != set(base.index):
        raise raw.RawDataError("magnet_sector_history.csv: columns must be the magnet sectors "
                               f"of sectors.csv ({', '.join(base.index)})")
    parts = []
    for s in base.index:
        rows = wide[meta[:1] + [s] + meta[1:]].rename(columns={s: "share"})
        parts.append(_interpolate_years(rows, "share", log=False).assign(sector=s))
    share = pd.concat(parts, ignore_index=True)
    share["share"] = (share["share"] / share.groupby("year")["share"].transform("sum")).round(8)
    out["magnet_sector_history"] = share

    out["magnet_lifetimes"] = _curated("magnet_lifetimes", curated_dir)
    rec = _curated("recycling", curated_dir)
    meta_cols = {"sector", "source_id", "vintage", "status", "note"}
    regions = [c for c in sector_regions.columns if c not in meta_cols]
    explicit = rec[rec["region"] != "*"]
    wild = rec[rec["region"] == "*"]
    expanded = [wild.assign(region=r) for r in regions]
    rec = pd.concat([explicit, *expanded], ignore_index=True)
    out["recycling"] = rec.drop_duplicates(["region", "parameter"], keep="first")
    return out
