"""Build the chain tables (chains, stages, production, demand, prices, US statistics) from the
USGS MCS 2026 data release and the curated notes.

Every number the MCS file holds is read from it here, never typed into a curated file: world
production by country of the stage each chain declares (`chains.usgs_stage`), the US salient
statistics (net import reliance as USGS reports it), US consumption (`chains.usgs_consumption`),
US import sources and prices (`curated/chain_price_series.csv` names the series and the factor
that puts each per kg of the chain's basis). Curated rows add what the MCS lacks (refining and
processing shares, China's use), each with its source and status.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from oreflow.data import raw

UNIT_TO_T = {"kilograms": 1e-3, "metric tons": 1.0}
"""MCS quantity units to tonnes (gallium and germanium are reported in kilograms)."""

USGS_ID, USGS_VINTAGE = "usgs_mcs2026", 2026


def _curated(name: str, curated_dir: Path) -> pd.DataFrame:
    return pd.read_csv(curated_dir / f"{name}.csv", dtype=str, keep_default_na=False)


def _status(year: str, notes: str) -> str:
    """USGS 2025 figures and rows marked 'Estimated' are estimates; the rest reported."""
    return "estimate" if str(year) == "2025" or str(notes).startswith("Estimated") else "reported"


def _to_t(df: pd.DataFrame, what: str) -> pd.Series:
    bad = sorted(set(df["unit"]) - set(UNIT_TO_T))
    if bad:
        raise raw.RawDataError(f"usgs_mcs2026_commodities_data.csv: {what} in unit(s) {bad}; "
                               f"known: {', '.join(UNIT_TO_T)}")
    return df["value"] * df["unit"].map(UNIT_TO_T)


def build_chain_tables(raw_dir: Path, curated_dir: Path) -> dict[str, pd.DataFrame]:
    chains = _curated("chains", curated_dir)
    series = _curated("chain_price_series", curated_dir)
    par = _curated("chain_parameters", curated_dir).set_index("parameter")["value"].astype(float)
    prod, salient, imports, prices, demand = [], [], [], [], []
    for c in chains.itertuples():
        if not c.usgs_chapter:
            continue
        ch = raw.read_mcs2026_chapter(raw_dir, c.usgs_chapter)
        sal = ch[ch["section"].str.startswith("Salient")].copy()
        salient.append(sal.assign(chain=c.chain))
        world = ch[ch["section"].str.startswith("World") & (ch["statistic"] == "Production")]
        if c.usgs_stage and not world.empty:
            w = world[world["value"].notna()].copy()
            w["value"] = _to_t(w, f"{c.usgs_chapter} world production")
            w["status"] = [_status(y, n) for y, n in zip(w["year"], w["notes"], strict=True)]
            w = w.assign(chain=c.chain, stage=c.usgs_stage, unit="t",
                         qualifier=w["qualifier"].where(w["qualifier"].isin(["<", ">"]), ""),
                         source_id=USGS_ID, vintage=USGS_VINTAGE,
                         note=(w["detail"] + "; " + w["notes"]).str.strip("; "))
            prod.append(w)
        src = ch[ch["section"].str.startswith("Import") & (ch["detail"] == c.usgs_import_detail)]
        if c.usgs_import_detail and src.empty:
            raise raw.RawDataError(f"{c.usgs_chapter}: no import sources {c.usgs_import_detail!r}"
                                   " (chains.csv usgs_import_detail)")
        imports.append(src.assign(chain=c.chain, share=src["value"] / 100.0))
        for s in series[series["chain"] == c.chain].itertuples():
            p = sal[sal["detail"] == s.detail]
            if p.empty:
                raise raw.RawDataError(f"{c.usgs_chapter}: no price series {s.detail!r} "
                                       "(chain_price_series.csv)")
            p = p[p["value"].notna()]
            k = float(s.kg_basis_per_unit)
            prices.append(pd.DataFrame({
                "chain": c.chain, "form": s.form, "zone": s.zone, "year": p["year"],
                "value": p["value"], "unit": p["unit"],
                "usd_per_kg_basis": (p["value"] / k).round(6), "source_id": s.source_id,
                "vintage": USGS_VINTAGE,
                "status": [_status(y, n) for y, n in zip(p["year"], p["notes"], strict=True)],
                "note": s.note}))
        demand.append(_us_use(c, sal, par["us_reliance_where_withheld"]))
    t: dict[str, pd.DataFrame] = {}
    t["chains"] = chains
    t["chain_stages"] = _curated("chain_stages", curated_dir)
    t["coproduction"] = _curated("coproduction", curated_dir)
    t["chain_end_uses"] = _curated("chain_end_uses", curated_dir)
    t["chain_parameters"] = _curated("chain_parameters", curated_dir)
    for name in ("chain_sector_value", "stockpile_chain_forms", "stockpile_scenarios"):
        t[name] = _curated(name, curated_dir)
    cols = ["chain", "stage", "region", "year", "value", "unit", "qualifier", "source_id",
            "vintage", "status", "note"]
    t["chain_production"] = pd.concat(
        [*(p[cols] for p in prod), _curated("chain_production", curated_dir)],
        ignore_index=True)
    sal = pd.concat(salient, ignore_index=True)
    sal = sal.assign(source_id=USGS_ID, vintage=USGS_VINTAGE,
                     status=[_status(y, n) for y, n in zip(sal["year"], sal["notes"],
                                                             strict=True)],
                     note=sal["notes"])
    t["chain_us_salient"] = sal
    imp = pd.concat(imports, ignore_index=True)
    t["chain_import_sources"] = imp.assign(period=imp["year"], source_id=USGS_ID,
                                           vintage=USGS_VINTAGE, status="reported",
                                           note=imp["notes"])
    t["chain_prices"] = pd.concat([*prices, _curated("chain_prices", curated_dir)],
                                  ignore_index=True)
    t["chain_demand"] = pd.concat([*demand, _curated("chain_demand", curated_dir)],
                                  ignore_index=True)
    return t


def _us_use(c, sal: pd.DataFrame, reliance: float) -> pd.DataFrame:
    """US use of a chain's products by year: USGS's consumption where it publishes one; where
    it withholds consumption, net imports (imports - exports) / an assumed reliance (USGS
    reports '>50')."""
    cols = ["chain", "region", "year", "value", "unit", "source_id", "vintage", "status",
            "note"]
    if c.usgs_consumption:
        u = sal[(sal["detail"] == c.usgs_consumption) & sal["value"].notna()].copy()
        if u.empty:
            raise raw.RawDataError(f"{c.usgs_chapter}: no US consumption "
                                   f"{c.usgs_consumption!r} (chains.csv usgs_consumption)")
        u["value"] = _to_t(u, "US consumption").round(6)
        u = u.assign(chain=c.chain, region="USA", unit="t", source_id=USGS_ID,
                     vintage=USGS_VINTAGE,
                     status=[_status(y, n) for y, n in zip(u["year"], u["notes"],
                                                           strict=True)],
                     note=u["detail"])
        return u[cols]
    trade = sal[sal["statistic"].isin(["Import", "Export"]) & sal["value"].notna()].copy()
    trade["t"] = _to_t(trade, "US trade") * np.where(trade["statistic"] == "Import", 1, -1)
    net = trade.groupby("year")["t"].sum()
    net = net[net > 0]
    return pd.DataFrame({
        "chain": c.chain, "region": "USA", "year": net.index, "value": (net / reliance).round(3),
        "unit": "t", "source_id": "oreflow_derived", "vintage": USGS_VINTAGE,
        "status": "assumption",
        "note": [f"USGS withholds US consumption: net imports {v:,.1f} t (USGS MCS 2026, all "
                 f"import and export rows) / chain_parameters.us_reliance_where_withheld "
                 f"({reliance:g})" for v in net],
    })[cols]
