"""Concentration and supply-risk indicators, stage by stage and element by element, and who
supplies a perspective at each stage.

Published formulas only:
- HHI = sum of squared production shares, shares in % (0-10,000).
- WGI-weighted HHI = sum_c s_c^2 * WGI_c, shares as fractions and WGI rescaled to 0-10
  (higher = worse governance): WGI_c = 5 - 2 * mean of the six WGI estimates, clipped.
- Net import reliance of a perspective = max(0, use - output) / use of the stage's product.
- EU supply risk (EC 2017 methodology, used for the 2020 and 2023 lists):
  SR = [HHI_WGI,t(global supply) * IR/2 + HHI_WGI,t(perspective sourcing) * (1 - IR/2)]
       * (1 - EoL_RIR) * SI_SR, with HHI_WGI,t = sum_c s_c^2 * WGI_c * t_c.
  SI_SR and EoL_RIR per element from `eu_criticality`; t_c from `trade_agreements` and the
  export restrictions in force under a setting (`ec` or `current`, see `trade_factor`). The
  EC reports the higher of extraction (mining) and processing (separation): `eu_sr_ec`.
- Chokepoint score = (HHI / 10,000) * net import reliance.

Perspective sourcing comes from the network's trade matrix; `sources_table` says for each
flow whether it is domestic, observed trade, a curated route or a pro-rata allocation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.network import Network
from oreflow.perspective import (
    TOTAL,
    Perspective,
    UnknownElementError,
    UnknownPerspectiveError,
    resolve_elements,
    resolve_perspective,
)

__all__ = [
    "BASIS",
    "TC_SETTINGS",
    "TOTAL",
    "UnknownElementError",
    "UnknownPerspectiveError",
    "chokepoints",
    "eu_sr_formula",
    "eu_supply_risk",
    "hhi",
    "import_reliance",
    "indicator_table",
    "perspective_regions",
    "sources_table",
    "sourcing_shares",
    "trade_factor",
]

TC_SETTINGS = ("ec", "current")
"""t_c settings: `ec` = agreements and export restrictions of the 2023 assessment's vintage;
`current` = every agreement in the dataset and the controls in force today."""

BASIS = ("domestic", "observed", "routed", "allocated")
"""How a sourcing flow is known: the perspective's own output (or a member's, for a bloc);
observed trade (a `trade_routes` row with a reported or estimated share: USITC import
shares, company shipments from customs data); a curated route (`concentrate_routing` at
mining, a `trade_routes` row that is an assumption); or the pro-rata pool (no data)."""

EC_STAGES = ("mining", "separation")
"""The EC assesses extraction and processing and reports the higher supply risk."""


def perspective_regions(network: Network, perspective: str) -> list[str]:
    """The network regions a perspective stands for (see `oreflow.perspective`)."""
    return list(resolve_perspective(perspective, network).regions)


def _perspective(network: Network, perspective: str | Perspective) -> Perspective:
    if isinstance(perspective, Perspective):
        return perspective
    return resolve_perspective(perspective, network)


def wgi_scaled(network: Network) -> xr.DataArray:
    """Governance score 0-10, higher = worse (EC rescaling of the mean of six WGI)."""
    reg = network.dataset["regions"].set_index("region")
    cols = [f"wgi_{k}" for k in ("va", "pv", "ge", "rq", "rl", "cc")]
    mean = reg[cols].mean(axis=1).reindex(network.regions)
    if mean.isna().any():
        missing = ", ".join(mean.index[mean.isna()])
        raise ValueError(f"regions.csv has no WGI scores for {missing}")
    score = np.clip(5.0 - 2.0 * mean.to_numpy(float), 0.0, 10.0)
    return xr.DataArray(score, dims="region", coords={"region": network.regions})


def with_total(da: xr.DataArray) -> xr.DataArray:
    """Append the all-rare-earths total along `element`."""
    total = da.sum("element").expand_dims(element=[TOTAL])
    return xr.concat([da, total], dim="element")


def hhi(shares: xr.DataArray, dim: str = "region") -> xr.DataArray:
    """Herfindahl-Hirschman index, 0-10,000, from shares that sum to 1 along `dim`."""
    return ((shares * 100.0) ** 2).sum(dim)


def production_shares(network: Network) -> xr.DataArray:
    prod = with_total(network.production_t)
    total = prod.sum("region")
    return prod / total.where(total > 0)


def sourcing_shares(network: Network, regions: list[str] | tuple[str, ...]) -> xr.DataArray:
    """Where the perspective's supply of each stage's product comes from (element, stage,
    origin): domestic output it keeps counts under its own regions. At mining: the
    concentrate its separators take."""
    flows = with_total(network.trade_t).sel(dest=list(regions)).sum("dest")
    total = flows.sum("origin")
    return flows / total.where(total > 0)


def new_scrap_t(network: Network) -> xr.DataArray:
    """Magnet swarf recovered where the magnet is made (element, stage, region): separated
    product that is new (prompt) scrap, at the separation stage only."""
    scrap = xr.zeros_like(network.production_t)
    scrap.loc[{"stage": "separation"}] = network.swarf_secondary_t
    return scrap


def import_reliance(network: Network, regions: list[str] | tuple[str, ...]) -> xr.DataArray:
    """Net imports / apparent consumption, the USGS definition: net imports = use - output;
    apparent consumption = use - new scrap. Swarf recovered in the plant that made it is new
    scrap, neither production nor consumption for USGS, so it nets out (a US magnet maker
    recovering its own Dy swarf does not make the US a Dy separator). 0 where the perspective
    uses only what it makes; n/a where it uses none."""
    regions = list(regions)
    prod = with_total(network.production_t).sel(region=regions).sum("region")
    use = with_total(network.use_t).sel(region=regions).sum("region")
    scrap = with_total(new_scrap_t(network)).sel(region=regions).sum("region")
    consumed = use - scrap
    ir = (np.maximum(use - prod, 0.0) / consumed.where(consumed > 0)).fillna(0.0)
    return ir.clip(0.0, 1.0).where(use > 0)


# ---- the EC's inputs ----------------------------------------------------------------------
def _check_setting(setting: str) -> str:
    if setting not in TC_SETTINGS:
        raise ValueError(f"trade factor setting {setting!r}: allowed {', '.join(TC_SETTINGS)}")
    return setting


def partners(network: Network, perspective: str | Perspective, setting: str = "current"
             ) -> set[str]:
    """Regions that have a trade agreement in force with the perspective (either party of a
    `trade_agreements` row; a bloc that is a party, the EU, speaks for its members), and the
    perspective's own regions. Setting `ec`: agreements in force by the 2023 assessment."""
    p = _perspective(network, perspective)
    ds = network.dataset
    ta = ds["trade_agreements"]
    if _check_setting(setting) == "ec":
        ta = ta[ta["in_force"] <= ds.parameter("risk_parameters", "ec_assessment_year")]
    blocs = {k: set(v) for k, v in ds["blocs"].groupby("bloc")["region"]}
    mine = set(p.regions)
    parties = {p.code, *mine} | {b for b, m in blocs.items() if m & mine}

    def expand(code: str) -> set[str]:
        return blocs.get(code, {code})

    out = set(mine)
    for party, partner in zip(ta["party"], ta["partner"], strict=True):
        if party in parties:
            out |= expand(partner)
        if partner in mine or partner == p.code:
            out |= expand(party)
    return out & set(network.regions) | mine


def _year(date: str) -> float:
    return float(str(date)[:4]) if str(date).strip() else np.inf


def _controls(network: Network, setting: str, regions: set[str]) -> pd.DataFrame:
    """Export restrictions that set t_c under the setting, for destinations in `regions`."""
    ds = network.dataset
    ctl = ds["export_controls"]
    if setting == "current":
        ctl = ctl[ctl["state"] == "in_force"]
    else:
        first = ds.parameter("risk_parameters", "ec_window_first_year")
        last = ds.parameter("risk_parameters", "ec_window_last_year")
        start = ctl["effective"].map(_year)
        end = ctl["ends"].map(_year)  # open-ended: still in force
        ctl = ctl[(start <= last) & (end > first)]
    to_us = ctl["destinations"].map(
        lambda d: d == "all" or bool(set(str(d).split(";")) & regions))
    return ctl[to_us]


def trade_factor(network: Network, perspective: str | Perspective,
                 setting: str = "current") -> xr.DataArray:
    """t_c of the EU formula per (element, stage, origin).

    Partners of the perspective (`partners`) get `trade_partner_factor`; an export licence,
    quota or ban in force on an element and stage multiplies it by its uplift. Setting
    `current`: `export_controls` rows in force today and the rare-earth export bans of USGS
    MCS 2026 Table 4 (on mining); `ec`: only restrictions in force at some time in the 2023
    assessment's data window (none for Chinese rare earths after the quotas ended in 2015),
    no Table 4 (a 2026 list with no start dates)."""
    p = _perspective(network, perspective)
    ds = network.dataset
    par = ds["risk_parameters"].set_index("parameter")["value"]
    elements = [*network.elements, TOTAL]
    stages = list(network.production_t["stage"].values)
    base = np.ones((len(elements), len(stages), len(network.regions)))
    near = [i for i, r in enumerate(network.regions) if r in partners(network, p, setting)]
    base[:, :, near] = par["trade_partner_factor"]
    factor = xr.DataArray(base, dims=("element", "stage", "origin"),
                          coords={"element": elements, "stage": stages,
                                  "origin": network.regions})
    for row in _controls(network, setting, set(p.regions)).itertuples():
        els = [e for e in str(row.elements).split(";") if e in network.elements]
        sts = [s for s in str(row.stages).split(";") if s in stages]
        if els and sts and row.origin in network.regions:
            sel = {"element": els, "stage": sts, "origin": row.origin}
            factor.loc[sel] = factor.loc[sel] * par[f"export_{row.instrument}_factor"]
    if setting == "current":
        usgs = ds["export_controls_usgs"]
        bans = usgs[usgs["commodities"].str.contains("rare earth", case=False)
                    & usgs["control_type"].str.contains("ban", case=False)]
        for origin in sorted(set(bans["region"]) & set(network.regions)):
            sel = {"element": network.elements, "stage": "mining", "origin": origin}
            factor.loc[sel] = factor.loc[sel] * par["export_ban_factor"]
    return factor


def eu_inputs(network: Network) -> dict[str, xr.DataArray]:
    """SI_SR and EoL-RIR per (element, stage) from `eu_criticality`. Elements with flows
    must have both; the REO row takes the world-output-weighted mean at each stage (the EC
    assesses no all-rare-earths total)."""
    crit = network.dataset["eu_criticality"]
    out = {}
    active = network.production_t.sum(("stage", "region")) > 0
    w = network.production_t.sum("region")
    for param in ("si_sr", "eol_rir"):
        v = crit[crit["parameter"] == param].set_index("element")["value"]
        v = v.reindex(network.elements)
        missing = [e for e, a in zip(network.elements, active.values, strict=True)
                   if a and not np.isfinite(v[e])]
        if missing:
            raise ValueError(f"eu_criticality.csv has no {param} for element(s) "
                             f"{', '.join(missing)}; every element with flows needs one")
        da = xr.DataArray(v.to_numpy(float), dims="element",
                          coords={"element": network.elements})
        da = da.broadcast_like(w)
        total = (da.fillna(0) * w).sum("element") / w.sum("element").where(w.sum("element") > 0)
        out[param] = xr.concat([da, total.expand_dims(element=[TOTAL])], dim="element")
    return out


def _eu_input_status(network: Network) -> dict[str, dict[str, str]]:
    """Status (reported / estimate / assumption) of each element's SI_SR and EoL-RIR in
    `eu_criticality`; the REO row carries the weakest status of the elements it averages."""
    crit = network.dataset["eu_criticality"]
    rank = {"reported": 0, "estimate": 1, "assumption": 2}
    out = {}
    for param in ("si_sr", "eol_rir"):
        st = crit[crit["parameter"] == param].set_index("element")["status"].to_dict()
        st[TOTAL] = max(st.values(), key=lambda x: rank.get(x, 3)) if st else "assumption"
        out[param] = st
    return out


def eu_sr_formula(global_shares, sourcing, wgi, t, ir, eol_rir, si_sr):
    """EC 2017: SR = [HHI_WGI,t(GS) * IR/2 + HHI_WGI,t(sourcing) * (1 - IR/2)]
    * (1 - EoL_RIR) * SI_SR; shares as fractions along `origin`, WGI on 0-10."""
    hhi_gs = (global_shares**2 * wgi * t).sum("origin", min_count=1)
    hhi_src = (sourcing**2 * wgi * t).sum("origin", min_count=1)
    sr = (hhi_gs * ir / 2 + hhi_src * (1 - ir / 2)) * (1 - eol_rir) * si_sr
    return sr.where(np.isfinite(sr))


def eu_supply_risk(network: Network, perspective: str | Perspective,
                   setting: str = "current") -> xr.DataArray:
    """EU supply risk of every (element, stage) for the perspective."""
    p = _perspective(network, perspective)
    ec = eu_inputs(network)
    return eu_sr_formula(
        production_shares(network).rename(region="origin"),
        sourcing_shares(network, p.regions),
        wgi_scaled(network).rename(region="origin"),
        trade_factor(network, p, setting),
        import_reliance(network, p.regions),
        ec["eol_rir"],
        ec["si_sr"],
    )


# ---- the indicator table ----------------------------------------------------------------------
def indicator_table(network: Network, perspective: str = "USA",
                    elements: list[str] | str | None = None,
                    trade_factors: str = "current") -> pd.DataFrame:
    """One row per (element, stage): world output, China's share, HHI, WGI-weighted HHI, the
    perspective's net import reliance, EU supply risk with the EC inputs used, the EC's
    summary (the higher of mining and separation: `eu_sr_ec`, `eu_sr_ec_stage`) and the
    chokepoint score. Names are case-insensitive; `df.attrs` carries the perspective's
    regions and note."""
    p = _perspective(network, perspective)
    wanted = resolve_elements(elements, network.elements)
    _check_setting(trade_factors)
    shares = production_shares(network)
    wgi = wgi_scaled(network)
    prod = with_total(network.production_t)
    ec = eu_inputs(network)
    sr = eu_supply_risk(network, p, trade_factors)
    ec_sr = sr.sel(stage=list(EC_STAGES))
    ec_max = ec_sr.max("stage", skipna=True)
    ec_at = ec_sr.fillna(-np.inf).argmax("stage")
    ec_stage = xr.DataArray(np.array(EC_STAGES, dtype=object)[ec_at.values],
                            dims="element", coords={"element": sr["element"]})
    ec_stage = ec_stage.where(np.isfinite(ec_max), "")
    cols = {
        "world_t": prod.sum("region"),
        "china_share": shares.sel(region="CHN", drop=True),
        "hhi": hhi(shares),
        "wgi_hhi": (shares**2 * wgi).sum("region"),
        "import_reliance": import_reliance(network, p.regions),
        "eu_sr": sr,
        "eu_sr_ec": ec_max.broadcast_like(sr),
        "eu_sr_ec_stage": ec_stage.broadcast_like(sr),
        "si_sr": ec["si_sr"],
        "eol_rir": ec["eol_rir"],
    }
    df = pd.DataFrame({k: v.to_series() for k, v in cols.items()}).reset_index()
    df["chokepoint"] = df["hhi"] / 10_000 * df["import_reliance"]
    df["tc_setting"] = trade_factors
    for param, status in _eu_input_status(network).items():  # say which inputs are assumed
        df[f"{param}_status"] = df["element"].map(status)
    df = df[df["world_t"] > 0]
    if wanted:
        df = df[df["element"].isin(wanted)]
    order = {e: i for i, e in enumerate([TOTAL, *network.elements])}
    stage_order = {s: i for i, s in enumerate(network.production_t["stage"].values)}
    df = df.sort_values(["element", "stage"],
                        key=lambda s: s.map(order if s.name == "element" else stage_order))
    df.insert(0, "perspective", p.code)
    df = df.reset_index(drop=True)
    df.attrs.update({"perspective": p.code, "regions": list(p.regions), "note": p.note,
                     "tc_setting": trade_factors})
    return df


def chokepoints(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The (element, stage) pairs with the highest concentration x reliance, ranked 1..n.

    Elements that share a stage's country split (Nd and Pr metal have one row in
    stage_shares) get the same score by construction; such exact ties are broken by world
    tonnage (the bigger flow first), then element and stage order, so the ranking is
    deterministic and no two rows share a rank."""
    rows = table[table["element"] != TOTAL].dropna(subset=["chokepoint"])
    rows = rows.assign(_e=np.arange(len(rows)))
    rows = rows.sort_values(["chokepoint", "world_t", "_e"], ascending=[False, False, True],
                            kind="stable").head(n).drop(columns="_e")
    return rows.assign(rank=np.arange(1, len(rows) + 1)).reset_index(drop=True)


# ---- who supplies the perspective ----------------------------------------------------------
def _route_status(network: Network, stage: str) -> np.ndarray:
    """[e, o, d] True where a trade_routes row at `stage` is an assumption."""
    r = network.dataset["trade_routes"]
    r = r[(r["stage"] == stage) & (r["status"] == "assumption")]
    E, R = len(network.elements), len(network.regions)
    out = np.zeros((E, R, R), bool)
    for row in r.itertuples():
        if row.origin not in network.regions or row.destination not in network.regions:
            continue
        els = range(E) if row.element == "*" else [network.elements.index(row.element)]
        out[list(els), network.regions.index(row.origin),
            network.regions.index(row.destination)] = True
    return out


def trade_parts(network: Network, stage: str) -> dict[str, np.ndarray]:
    """The trade flows of a stage split by how the network placed them, [e, o, d]: `own`,
    `committed`, `observed` and `pooled` (`Network.trade_parts`; they add up to trade_t)."""
    return network.trade_parts(stage)


def _stage_basis(network: Network, stage: str, members: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """Flows of a stage into the perspective by basis, [e, o] summed over its regions; what
    comes from one of its own regions (a bloc member's output included) is domestic."""
    if stage == "mining":
        flows = network.trade_t.sel(stage="mining").transpose("element", "origin", "dest")
        parts = {b: np.zeros(flows.shape) for b in BASIS}
        parts["routed"] = flows.to_numpy()
    else:
        tp = trade_parts(network, stage)
        assumed = _route_status(network, stage)
        known = tp["committed"] + tp["observed"]
        parts = {"domestic": tp["own"], "observed": known * ~assumed,
                 "routed": known * assumed, "allocated": tp["pooled"]}
    out = {k: v[:, :, members].sum(2) for k, v in parts.items()}
    dom = sum(v[:, members] for v in out.values())
    for v in out.values():
        v[:, members] = 0.0
    out["domestic"][:, members] = dom
    return out


def sources_table(network: Network, perspective: str | Perspective,
                  element: str | list[str] | None = None,
                  stages: list[str] | None = None) -> pd.DataFrame:
    """Who supplies the perspective at each stage: rows (perspective, stage, element, origin,
    basis, t, share), t REO-eq a year, share of the perspective's supply of that element at
    that stage (summing to 1 over origins and bases). `basis` is one of `BASIS`; a flow
    made of several parts (an observed share topped up from the pool) gives one row per
    part. The element `REO` sums every element. These shares are the sourcing of the EU
    supply-risk formula."""
    p = _perspective(network, perspective)
    wanted = resolve_elements(element, network.elements) or [TOTAL, *network.elements]
    all_stages = list(network.production_t["stage"].values)
    stages = stages or all_stages
    bad = [s for s in stages if s not in all_stages]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; allowed: {', '.join(all_stages)}")
    members = np.isin(network.regions, p.regions)
    frames = []
    for stage in stages:
        parts = _stage_basis(network, stage, members)
        for basis, arr in parts.items():
            da = xr.DataArray(arr, dims=("element", "origin"),
                              coords={"element": network.elements, "origin": network.regions})
            s = with_total(da).to_series().rename("t").reset_index()
            s["stage"], s["basis"] = stage, basis
            frames.append(s)
    df = pd.concat(frames, ignore_index=True)
    total = df.groupby(["stage", "element"])["t"].transform("sum")
    df["share"] = df["t"] / total.where(total > 0)
    df = df[(df["t"] > 1e-9) & df["element"].isin(wanted)]
    order = {e: i for i, e in enumerate([TOTAL, *network.elements])}
    st = {s: i for i, s in enumerate(all_stages)}
    df = df.assign(_s=df["stage"].map(st), _e=df["element"].map(order), _b=df["basis"].map(
        {b: i for i, b in enumerate(BASIS)}))
    df = df.sort_values(["_s", "_e", "t", "origin", "_b"],
                        ascending=[True, True, False, True, True], kind="stable")
    df.insert(0, "perspective", p.code)
    out = df[["perspective", "stage", "element", "origin", "basis", "t", "share"]]
    out = out.reset_index(drop=True)
    out.attrs.update({"perspective": p.code, "regions": list(p.regions), "note": p.note})
    return out
