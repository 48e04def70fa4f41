"""Readers of the raw public files (../shared/data) into tidy DataFrames.

Pure functions: no writing, no caching. Each names the file it reads in every error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pycountry


class RawDataError(ValueError):
    """A raw file is missing or not as expected; the message names the file."""


def default_raw_dir() -> Path:
    env = os.environ.get("OREFLOW_RAW_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "data"


_NAMES = {
    "burma": "MMR", "myanmar": "MMR", "myanmar (burma)": "MMR",
    "korea, republic of": "KOR", "korea, rep.": "KOR",
    "south korea": "KOR", "korea, dem. people's rep.": "PRK", "north korea": "PRK",
    "korea, north": "PRK",
    "russia": "RUS", "russian federation": "RUS", "vietnam": "VNM", "viet nam": "VNM",
    "laos": "LAO", "lao pdr": "LAO", "lao people's democratic republic": "LAO",
    "turkey": "TUR", "türkiye": "TUR", "turkiye": "TUR", "taiwan": "TWN",
    "taiwan, china": "TWN", "hong kong": "HKG", "hong kong sar, china": "HKG",
    "macao sar, china": "MAC", "iran": "IRN", "iran, islamic rep.": "IRN",
    "egypt, arab rep.": "EGY", "venezuela, rb": "VEN", "venezuela": "VEN",
    "bolivia": "BOL", "tanzania": "TZA", "congo, dem. rep.": "COD",
    "congo (kinshasa)": "COD", "congo, rep.": "COG", "congo (brazzaville)": "COG",
    "gambia, the": "GMB", "bahamas, the": "BHS", "yemen, rep.": "YEM",
    "micronesia, fed. sts.": "FSM", "st. kitts and nevis": "KNA", "st. lucia": "LCA",
    "st. vincent and the grenadines": "VCT", "kyrgyz republic": "KGZ",
    "slovak republic": "SVK", "czech republic": "CZE", "czechia": "CZE",
    "west bank and gaza": "PSE", "kosovo": "XKX", "cabo verde": "CPV",
    "cote d'ivoire": "CIV", "côte d'ivoire": "CIV", "curacao": "CUW", "curaçao": "CUW",
    "sao tome and principe": "STP", "são tomé and príncipe": "STP",
    "virgin islands (u.s.)": "VIR", "united states": "USA", "united kingdom": "GBR",
    "world total": "WLD", "world": "WLD", "other countries": "XOT", "other": "XOT",
    "democratic republic of the congo": "COD", "republic of the congo": "COG",
    "cape verde": "CPV", "korea, dem. rep.": "PRK", "são tomé and principe": "STP",
    "moldova": "MDA", "syria": "SYR", "syrian arab republic": "SYR", "brunei": "BRN",
    "brunei darussalam": "BRN", "macedonia, fyr": "MKD", "north macedonia": "MKD",
    "eswatini": "SWZ", "swaziland": "SWZ", "netherlands antilles (former)": "ANT",
    "jersey, channel islands": "JEY", "channel islands": "XCI", "somalia, fed. rep.": "SOM",
    "turkiye, republic of": "TUR", "timor-leste": "TLS", "reunion": "REU",
}
# Codes outside ISO 3166-1 used by sources; kept, with the reason, rather than dropped.
NON_ISO = {"XKX": "Kosovo (World Bank code)", "ANT": "Netherlands Antilles (former)",
           "XCI": "Channel Islands (World Bank aggregate of JEY and GGY)"}


def to_iso3(name: str) -> str:
    """ISO 3166 alpha-3 code of a country name as written in USGS, Comtrade or WGI files."""
    raw = str(name).strip()
    key = re.sub(r"(?<=[a-z\)])[\d,\s]*$", "", raw).strip().lower()
    key = re.sub(r"\s+", " ", key)
    for k in (key, key.rstrip("e") if key.endswith("e") and key not in _NAMES else key):
        if k in _NAMES:
            return _NAMES[k]
        try:
            return pycountry.countries.lookup(k).alpha_3
        except LookupError:
            continue
    raise RawDataError(f"unknown country name {name!r}: add it to oreflow.data.raw._NAMES")


def _need(path: Path) -> Path:
    if not path.is_file():
        raise RawDataError(f"{path}: raw file not found (set OREFLOW_RAW_DIR)")
    return path


def _parse_value(text) -> tuple[float, str]:
    """USGS text value -> (number, qualifier). 'W', 'NA', '' -> NaN; '—' -> 0."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return np.nan, ""
    s = str(text).strip()
    if s in ("", "NA", "W", "XX", "E", "--"):
        return np.nan, ""
    if s in ("—", "-", "–"):
        return 0.0, ""
    q = ""
    if s[0] in "<>":
        q, s = s[0], s[1:]
    s = s.replace(",", "")
    if "–" in s:  # a range like 660–670: midpoint
        lo, hi = s.split("–")
        return (float(lo) + float(hi)) / 2, "range"
    try:
        return float(s), q
    except ValueError:
        return np.nan, ""


def _mcs(raw_dir: Path) -> pd.DataFrame:
    f = _need(raw_dir / "usgs_mcs2026" / "usgs_mcs2026_commodities_data.csv")
    df = pd.read_csv(f, encoding="cp1252", dtype=str, keep_default_na=False)
    need = ["MCS chapter", "Section", "Country", "Statistics", "Statistics_detail", "Unit",
            "Year", "Value", "Notes"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise RawDataError(f"{f}: missing column(s) {miss}")
    return df


_ERRATA_13 = {("BRA", "11000000"), ("WLD", ">75000000")}


def read_mcs2026_rare_earths(raw_dir: Path) -> dict[str, pd.DataFrame]:
    df = _mcs(raw_dir)
    re_ = df[df["MCS chapter"].isin(["RARE EARTHS", "RARE EARTHS (Heavy)"])]
    world = re_[re_["Section"].str.startswith("World")]
    out = {}
    for stat, key in (("Production", "mine_production"), ("Reserves", "reserves")):
        rows = world[world["Statistics"] == stat]
        recs = []
        for r in rows.itertuples():
            v, q = _parse_value(r.Value)
            note = r.Notes
            region = to_iso3(r.Country)
            if key == "reserves" and region == "BRA" and v == 21_000_000:
                v, note = 11_000_000.0, "errata v1.3 (2026-05-27): 21,000,000 -> 11,000,000"
            if key == "reserves" and region == "WLD" and v == 85_000_000:
                v, note = 75_000_000.0, "errata v1.3 (2026-05-27): >85,000,000 -> >75,000,000"
            if np.isnan(v):
                continue
            year = int(r.Year)
            status = ("estimate" if r.Notes.startswith("Estimated") or year == 2025
                      else "reported")
            recs.append((region, year, v, q, note, status))
        out[key] = pd.DataFrame(recs, columns=["region", "year", "t_reo", "qualifier", "note",
                                               "status"])
    sal = re_[re_["Section"].str.startswith("Salient")]
    prices, salient = [], []
    for r in sal.itertuples():
        v, _ = _parse_value(r.Value)
        year = int(r.Year)
        status = "estimate" if year == 2025 else "reported"
        salient.append((r._1, r.Statistics, r.Statistics_detail, r.Unit, year, v, r.Value,
                        status))
        if r.Statistics == "Price":
            product, form, purity = _price_product(r.Statistics_detail)
            if product:
                prices.append((product, form, purity, year, v, status, r.Statistics_detail))
    out["prices"] = pd.DataFrame(prices, columns=["product", "form", "purity", "year",
                                                  "usd_per_kg", "status", "detail"])
    out["us_salient"] = pd.DataFrame(salient, columns=["chapter", "statistic", "detail", "unit",
                                                       "year", "value", "value_text", "status"])
    src = re_[re_["Section"].str.startswith("Import")]
    out["us_import_sources"] = pd.DataFrame(
        [(r._1, r.Statistics_detail, to_iso3(r.Country), r.Year,
          _parse_value(r.Value)[0] / 100) for r in src.itertuples()],
        columns=["chapter", "commodity_detail", "region", "period", "share"])
    return out


_OXIDES = {"lanthanum": "La", "cerium": "Ce", "praseodymium": "Pr", "neodymium": "Nd",
           "samarium": "Sm", "europium": "Eu", "gadolinium": "Gd", "terbium": "Tb",
           "dysprosium": "Dy", "holmium": "Ho", "erbium": "Er", "ytterbium": "Yb",
           "lutetium": "Lu", "y2o3": "Y", "yttrium": "Y", "scandium": "Sc"}


def _price_product(detail: str) -> tuple[str, str, str]:
    d = detail.split(":", 1)[-1].strip().lower()
    purity = (re.search(r"(\d+(\.\d+)?%)", d) or [None, ""])[1] if "%" in d else ""
    if "ndpr" in d or "neodymium-praseodymium" in d:
        return "NdPr", "oxide", purity
    if "mischmetal" in d:
        return "", "", ""
    form = "metal" if "metal" in d else ("alloy" if "alloy" in d else "oxide")
    for word, sym in _OXIDES.items():
        if d.startswith(word):
            return sym, form, purity
    return "", "", ""


def read_mcs2026_other_prices(raw_dir: Path) -> pd.DataFrame:
    """Yttrium and scandium oxide prices (their own MCS chapters), zone ROW."""
    df = _mcs(raw_dir)
    rows = df[df["MCS chapter"].isin(["YTTRIUM", "SCANDIUM"])
              & df["Statistics_detail"].str.contains("Price", case=False)]
    recs = []
    for r in rows.itertuples():
        product, form, purity = _price_product(r.Statistics_detail)
        if not product or form != "oxide":
            continue
        v, q = _parse_value(r.Value)
        year = int(r.Year)
        note = r.Statistics_detail + (" (midpoint of the range)" if q == "range" else "")
        recs.append((product, form, "ROW", year, v, "usgs_mcs2026", 2026,
                     "estimate" if year == 2025 else "reported", note))
    return pd.DataFrame(recs, columns=["product", "form", "zone", "year", "usd_per_kg",
                                       "source_id", "vintage", "status", "note"])


def read_myb2022_world_mine_production(raw_dir: Path) -> pd.DataFrame:
    f = _need(raw_dir / "usgs_re_history" / "usgs_myb2022_rare_earths_tables.xlsx")
    try:
        t8 = pd.read_excel(f, sheet_name="T8", header=None)
    except ValueError as e:
        raise RawDataError(f"{f}: no sheet T8 ({e})") from None
    header = t8.index[t8[0].astype(str).str.startswith("Country")]
    if len(header) != 1:
        raise RawDataError(f"{f}: T8 has no 'Country or locality' header row")
    h = header[0]
    years = {c: int(t8.iloc[h, c]) for c in range(1, t8.shape[1])
             if pd.notna(t8.iloc[h, c]) and str(t8.iloc[h, c]).strip().isdigit()
             or isinstance(t8.iloc[h, c], float) and pd.notna(t8.iloc[h, c])}
    recs = []
    for i in range(h + 1, t8.shape[0]):
        label = str(t8.iloc[i, 0]).strip()
        if label.startswith("e") and "Estimated" in label or label == "nan":
            break
        region = "WLD" if label == "Total" else to_iso3(_strip_footnote_letters(label))
        for c, year in years.items():
            v, _ = _parse_value(t8.iloc[i, c])
            if np.isnan(v):
                continue
            marker = t8.iloc[i, c + 1] if c + 1 < t8.shape[1] else None
            note = {"e": "estimated", "r": "revised"}.get(str(marker).strip(), "")
            recs.append((region, year, v, note))
    return pd.DataFrame(recs, columns=["region", "year", "t_reo", "note"])


def read_ds140(raw_dir: Path) -> pd.DataFrame:
    """USGS Data Series 140 (tidy copy): production by year for the world (WLD) and the US."""
    f = _need(raw_dir / "usgs_re_history" / "usgs_rare_earths_historical.csv")
    df = pd.read_csv(f)
    need = {"year", "geography_code", "metric", "value"}
    if not need <= set(df.columns):
        raise RawDataError(f"{f}: expected columns {sorted(need)}")
    out = df[df["metric"] == "production"][["year", "geography_code", "value"]].dropna()
    return out.astype({"year": int, "value": float})


def _strip_footnote_letters(label: str) -> str:
    """'Australiae' -> 'Australia', 'Indiae, 4' -> 'India', 'China3' -> 'China'."""
    base = re.sub(r"[\d,\s]+$", "", label)
    try:
        pycountry.countries.lookup(base)
        return base
    except LookupError:
        pass
    if base.lower() in _NAMES:
        return base
    return base[:-1] if base.endswith("e") else base


def comtrade_expected_years(folder: Path) -> list[int]:
    """The years the download's manifest.json lists as expected (validation.expected_years)."""
    f = _need(folder / "manifest.json")
    try:
        years = json.loads(f.read_text())["validation"]["expected_years"]
        return sorted(int(y) for y in years)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RawDataError(f"{f}: no list validation.expected_years ({e})") from None


def read_comtrade_china_imports_2846(raw_dir: Path) -> pd.DataFrame:
    """Every year the manifest expects, one JSON file each: a missing year is an error, not a
    gap in the table (a missing 2024.json once dropped the base year's trade silently)."""
    folder = raw_dir / "comtrade_china_2846"
    expected = comtrade_expected_years(folder)
    missing = [y for y in expected if not (folder / f"{y}.json").is_file()]
    if missing:
        raise RawDataError(f"{folder}: raw file(s) missing for year(s) "
                           f"{', '.join(map(str, missing))} (manifest.json expects "
                           f"{expected[0]}-{expected[-1]})")
    files = [folder / f"{y}.json" for y in expected]
    recs = []
    for f in files:
        try:
            data = json.loads(f.read_text())["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise RawDataError(f"{f}: not a Comtrade response with a 'data' list ({e})") from None
        for d in data:
            if d.get("customsCode") != "C00" or d.get("motCode") != 0 or d.get(
                    "partner2Code") != 0:
                continue
            origin = "WLD" if d["partnerCode"] == 0 else d["partnerISO"]
            if origin != "WLD" and (not isinstance(origin, str)
                                    or pycountry.countries.get(alpha_3=origin) is None):
                origin = "XOT"  # 'Asia, nes', 'Areas, nes' and other non-country partners
            recs.append((int(d["refYear"]), origin, (d.get("netWgt") or 0) / 1000,
                         float(d.get("primaryValue") or 0), bool(d.get("isNetWgtEstimated"))))
    df = pd.DataFrame(recs, columns=["year", "origin", "t", "usd", "qty_estimated"])
    return df.groupby(["year", "origin"], as_index=False).agg(
        t=("t", "sum"), usd=("usd", "sum"), qty_estimated=("qty_estimated", "any"))


def read_usitc(raw_dir: Path, flow: Literal["imports", "exports"]) -> pd.DataFrame:
    """US trade by partner and HTS-4 heading, the lines whose quantity is in kilograms.

    DataWeb splits each heading's value by the unit its lines are counted in ('Value for:
    kilograms', 'number', ...). Only the kilogram lines have a mass, so `usd` and `quantity`
    here cover those lines (for 8505 these are the permanent magnets, 8505.11/19)."""
    name = {"imports": "us_imports_for_consumption_1993-2026.xlsx",
            "exports": "us_domestic_exports_1993-2026.xlsx"}[flow]
    f = _need(raw_dir / "usitc_dataweb_re" / name)
    sheets = pd.ExcelFile(f).sheet_names
    value_sheet = next((s for s in sheets if "Value" in s and "YTD" not in s), None)
    if value_sheet is None or "First Unit of Quantity" not in sheets:
        raise RawDataError(f"{f}: expected a value sheet and 'First Unit of Quantity'")
    frames = {}
    for key, sheet in (("usd", value_sheet), ("quantity", "First Unit of Quantity")):
        df = pd.read_excel(f, sheet_name=sheet, header=2, dtype={"HTS Number": str})
        missing = {"Country", "HTS Number", "Quantity Description"} - set(df.columns)
        if missing:
            raise RawDataError(f"{f}, sheet {sheet!r}: missing column(s) {sorted(missing)}")
        df = df.dropna(subset=["Country", "HTS Number"])
        df["unit"] = (df["Quantity Description"].astype(str).str.replace("Value for:", "")
                      .str.strip().str.lower())
        df = df[df["unit"] == "kilograms"]
        years = [c for c in df.columns if str(c).isdigit()]
        frames[key] = df.melt(id_vars=["Country", "HTS Number"], value_vars=years,
                              var_name="year", value_name=key)
    out = frames["usd"].merge(frames["quantity"], on=["Country", "HTS Number", "year"],
                              how="outer")
    out["partner"] = out["Country"].map(to_iso3)
    out["hts4"] = out["HTS Number"].astype(str).str.zfill(4)
    out["year"] = out["year"].astype(int)
    out["partial_year"] = out["year"] == 2026
    out["quantity_unit"] = "kilograms"
    return out[["year", "hts4", "partner", "quantity", "quantity_unit", "usd",
                "partial_year"]].reset_index(drop=True)


def read_wgi(raw_dir: Path, year: int = 2023) -> pd.DataFrame:
    f = _need(raw_dir / "worldbank_wgi" / "wgidataset_2024update_1996-2023.xlsx")
    df = pd.read_excel(f)
    need = {"countryname", "year", "indicator", "estimate"}
    if not need <= set(df.columns):
        raise RawDataError(f"{f}: expected columns {sorted(need)}")
    df = df[df["year"] == year]
    if "code" in df.columns:
        df["region"] = df["code"]
    else:
        df["region"] = df["countryname"].map(to_iso3)
    df["estimate"] = pd.to_numeric(df["estimate"].replace("..", np.nan), errors="coerce")
    wide = df.pivot_table(index=["region"], columns="indicator", values="estimate",
                          aggfunc="first").reset_index()
    names = df.drop_duplicates("region").set_index("region")["countryname"]
    wide["name"] = wide["region"].map(names)
    return wide[["region", "name", "va", "pv", "ge", "rq", "rl", "cc"]]


def read_mcs2026_export_controls(raw_dir: Path) -> pd.DataFrame:
    f = _need(raw_dir / "usgs_mcs2026" / "trends_tables" / "MCS2026_T4_Country_Export_Control.csv")
    df = pd.read_csv(f, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    need = {"Country", "Control_Type", "Commodity_Year", "Data_source", "Notes"}
    if not need <= set(df.columns):
        raise RawDataError(f"{f}: expected columns {sorted(need)}")
    return pd.DataFrame({
        "region": df["Country"].map(to_iso3), "control_type": df["Control_Type"],
        "commodities": df["Commodity_Year"], "url": df["Data_source"], "notes": df["Notes"],
    })


def read_mcs2026_chapter(raw_dir: Path, chapter: str) -> pd.DataFrame:
    """Every row of one MCS 2026 chapter, values parsed: columns section, region (ISO3, XOT
    for 'Other countries', WLD for the world total), statistic, detail, unit, year (text:
    '2021-24' for import sources), value, qualifier ('<', '>', 'range' or ''), value_text,
    notes. 'W' (withheld), 'NA' and blanks give NaN; '—' gives 0."""
    df = _mcs(raw_dir)
    rows = df[df["MCS chapter"] == chapter]
    if rows.empty:
        chapters = sorted(df["MCS chapter"].unique())
        raise RawDataError(f"usgs_mcs2026_commodities_data.csv has no chapter {chapter!r}; "
                           f"chapters: {', '.join(chapters)}")
    recs = []
    for r in rows.itertuples():
        v, q = _parse_value(r.Value)
        recs.append((r.Section, to_iso3(r.Country), r.Statistics, r.Statistics_detail, r.Unit,
                     r.Year.replace("–", "-"), v, q, r.Value.strip(), r.Notes))
    return pd.DataFrame(recs, columns=["section", "region", "statistic", "detail", "unit",
                                       "year", "value", "qualifier", "value_text", "notes"])
