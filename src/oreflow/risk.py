"""Concentration and supply-risk indicators, stage by stage and element by element.

Published formulas only:
- HHI = sum of squared production shares, shares in % (0-10,000).
- WGI-weighted HHI = sum_c s_c^2 * WGI_c, shares as fractions and WGI rescaled to 0-10
  (higher = worse governance): WGI_c = 5 - 2 * mean of the six WGI estimates, clipped.
- Net import reliance of a perspective = max(0, use - output) / use of the stage's product.
- EU supply risk (EC 2017 methodology, used for the 2020 and 2023 lists):
  SR = [HHI_WGI,t(global supply) * IR/2 + HHI_WGI,t(perspective sourcing) * (1 - IR/2)]
       * (1 - EoL_RIR) * SI_SR, with HHI_WGI,t = sum_c s_c^2 * WGI_c * t_c.
- Chokepoint score = (HHI / 10,000) * net import reliance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.network import Network

TOTAL = "REO"
"""Label of the all-rare-earths row."""


class UnknownPerspectiveError(ValueError):
    pass


def perspective_regions(network: Network, perspective: str) -> list[str]:
    """The network regions a perspective stands for: one region, or a bloc's members."""
    blocs = network.dataset["blocs"]
    key = perspective.strip().upper()
    if key in set(blocs["bloc"]):
        members = set(blocs.loc[blocs["bloc"] == key, "region"])
        return [r for r in network.regions if r in members]
    if key in network.regions:
        return [key]
    known = set(network.dataset["regions"]["region"])
    hint = (f"{key} is a known region but has no base-year production or use"
            if key in known else f"unknown perspective {perspective!r}")
    raise UnknownPerspectiveError(
        f"{hint}; use a region with use in the network ({', '.join(_users(network))}) "
        f"or a bloc ({', '.join(sorted(set(blocs['bloc'])))})"
    )


def _users(network: Network) -> list[str]:
    use = network.use_t.sum(("element", "stage"))
    return [str(r) for r in use["region"].values if float(use.sel(region=r)) > 0]


def partners(network: Network, regions: list[str]) -> set[str]:
    """Regions that share a bloc with any of `regions` (and the regions themselves)."""
    blocs = network.dataset["blocs"]
    mine = set(blocs.loc[blocs["region"].isin(regions), "bloc"])
    return set(regions) | set(blocs.loc[blocs["bloc"].isin(mine), "region"])


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


def sourcing_shares(network: Network, regions: list[str]) -> xr.DataArray:
    """Where the perspective's supply of each stage's product comes from (element, stage,
    origin): domestic output it keeps counts under its own regions."""
    flows = with_total(network.trade_t).sel(dest=regions).sum("dest")
    total = flows.sum("origin")
    return flows / total.where(total > 0)


def import_reliance(network: Network, regions: list[str]) -> xr.DataArray:
    prod = with_total(network.production_t).sel(region=regions).sum("region")
    use = with_total(network.use_t).sel(region=regions).sum("region")
    return (np.maximum(use - prod, 0.0) / use.where(use > 0)).clip(0.0, 1.0)


def trade_factor(network: Network, regions: list[str]) -> xr.DataArray:
    """t_c of the EU formula per (element, stage, origin): partners of the perspective get the
    trade-partner factor; export licences, quotas and bans in force raise it."""
    ds = network.dataset
    p = ds["risk_parameters"].set_index("parameter")["value"]
    elements = [*network.elements, TOTAL]
    stages = list(network.production_t["stage"].values)
    base = np.ones((len(elements), len(stages), len(network.regions)))
    near = [i for i, r in enumerate(network.regions) if r in partners(network, regions)]
    base[:, :, near] = p["trade_partner_factor"]
    factor = xr.DataArray(base, dims=("element", "stage", "origin"),
                          coords={"element": elements, "stage": stages,
                                  "origin": network.regions})
    ctl = ds["export_controls"].query("state == 'in_force'")
    for row in ctl.itertuples():
        els = [e for e in row.elements.split(";") if e in network.elements]
        sts = [s for s in row.stages.split(";") if s in stages]
        if els and sts and row.origin in network.regions:
            up = p[f"export_{row.instrument}_factor"]
            sel = {"element": els, "stage": sts, "origin": row.origin}
            factor.loc[sel] = factor.loc[sel] * up
    usgs = ds["export_controls_usgs"]
    bans = usgs[usgs["commodities"].str.contains("rare earth", case=False)
                & usgs["control_type"].str.contains("ban", case=False)]
    for origin in set(bans["region"]) & set(network.regions):
        sel = {"element": network.elements, "stage": "mining", "origin": origin}
        factor.loc[sel] = factor.loc[sel] * p["export_ban_factor"]
    return factor


def eu_sr_formula(global_shares, sourcing, wgi, t, ir, eol_rir: float, si_sr: float):
    """EC 2017: SR = [HHI_WGI,t(GS) * IR/2 + HHI_WGI,t(sourcing) * (1 - IR/2)]
    * (1 - EoL_RIR) * SI_SR; shares as fractions along `origin`, WGI on 0-10."""
    hhi_gs = (global_shares**2 * wgi * t).sum("origin", min_count=1)
    hhi_src = (sourcing**2 * wgi * t).sum("origin", min_count=1)
    sr = (hhi_gs * ir / 2 + hhi_src * (1 - ir / 2)) * (1 - eol_rir) * si_sr
    return sr.where(np.isfinite(sr))


def eu_supply_risk(network: Network, regions: list[str]) -> xr.DataArray:
    p = network.dataset["risk_parameters"].set_index("parameter")["value"]
    return eu_sr_formula(
        production_shares(network).rename(region="origin"),
        sourcing_shares(network, regions),
        wgi_scaled(network).rename(region="origin"),
        trade_factor(network, regions),
        import_reliance(network, regions),
        p["eol_rir"],
        p["si_sr"],
    )


def indicator_table(network: Network, perspective: str = "USA",
                    elements: list[str] | None = None) -> pd.DataFrame:
    """One row per (element, stage): world output, China's share, HHI, WGI-weighted HHI, the
    perspective's net import reliance, EU supply risk and the chokepoint score."""
    regions = perspective_regions(network, perspective)
    shares = production_shares(network)
    wgi = wgi_scaled(network)
    prod = with_total(network.production_t)
    cols = {
        "world_t": prod.sum("region"),
        "china_share": shares.sel(region="CHN", drop=True),
        "hhi": hhi(shares),
        "wgi_hhi": (shares**2 * wgi).sum("region"),
        "import_reliance": import_reliance(network, regions),
        "eu_sr": eu_supply_risk(network, regions),
    }
    df = pd.DataFrame({k: v.to_series() for k, v in cols.items()}).reset_index()
    df["chokepoint"] = df["hhi"] / 10_000 * df["import_reliance"]
    df = df[df["world_t"] > 0]
    if elements:
        wanted = [e for e in elements]
        unknown = set(wanted) - set(network.elements) - {TOTAL}
        if unknown:
            raise ValueError(f"unknown element(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(network.elements)} or {TOTAL}")
        df = df[df["element"].isin(wanted)]
    order = {e: i for i, e in enumerate([TOTAL, *network.elements])}
    stage_order = {s: i for i, s in enumerate(network.production_t["stage"].values)}
    df = df.sort_values(["element", "stage"],
                        key=lambda s: s.map(order if s.name == "element" else stage_order))
    df.insert(0, "perspective", perspective.upper())
    return df.reset_index(drop=True)


def chokepoints(table: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The (element, stage) pairs with the highest concentration x reliance."""
    rows = table[table["element"] != TOTAL].dropna(subset=["chokepoint"])
    return rows.nlargest(n, "chokepoint").reset_index(drop=True)
