"""Concentration and exposure by (commodity, stage) for a perspective, for every chain.

One row per quantified stage of a chain (`ChainNetwork`); the rare earths contribute their
all-rare-earths (REO) rows from the detailed network (`oreflow.risk.indicator_table`), so
`all_commodities_table` ranks every (commodity, stage) on the same columns:

- `china_share`: China's share of the stage's world output; `hhi` (0-10,000) and `wgi_hhi`
  (shares as fractions x WGI rescaled 0-10, higher = worse governance), as in oreflow.risk;
- `top_producer`, `top_share`: the largest producer of the stage and its share;
- `import_reliance`: the perspective's net imports / use of the stage's product (network);
- `usgs_import_reliance`: for the US, the net import reliance USGS reports (text: '100',
  '>50'), on the row of the stage USGS's figure refers to (`chains.usgs_import_stage`);
- `supply_from_china`, `supply_from_top`: the share of the perspective's supply of the
  stage's product shipped from China, and from the stage's top producer (the network's trade
  allocation: own output first, then US import sources where USGS gives them, then pro rata);
- `exposure`: the share of the perspective's supply of the stage's product that passed
  through China at this or any earlier stage (`traced_share`): gallium refined in Canada from
  Chinese primary metal counts, although none of it is shipped from China;
- `chokepoint` = hhi / 10,000 x import_reliance (the ranking of `--all`, as in oreflow.risk);
- `controls`: export-control regimes in force on the commodity and stage that reach the
  perspective (`export_controls`); `hosts`: by-product hosts (`coproduction`);
- `data_status`: the weakest status among the stage's production rows (reported < estimate <
  assumption): how far the stage's shares can be trusted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oreflow.chains import ChainNetwork
from oreflow.data.load import Dataset
from oreflow.perspective import Perspective, UnknownPerspectiveError, resolve_perspective

STATUS_ORDER = ("reported", "estimate", "assumption")
COLUMNS = ["commodity", "stage", "stage_name", "form", "basis", "year", "world_t",
           "china_share", "hhi", "wgi_hhi", "top_producer", "top_share", "perspective",
           "import_reliance", "usgs_import_reliance", "supply_from_china", "supply_from_top",
           "exposure", "chokepoint", "controls", "hosts", "data_status"]


def wgi_scores(dataset: Dataset, regions: list[str]) -> tuple[np.ndarray, list[str]]:
    """Governance 0-10 (higher = worse; EC rescaling 5 - 2 x mean of the six WGI) per region.
    Regions without WGI scores (e.g. New Caledonia) take the mean over all economies, the
    convention of XOT; they are returned so the caller can say so."""
    reg = dataset["regions"].set_index("region")
    cols = [f"wgi_{k}" for k in ("va", "pv", "ge", "rq", "rl", "cc")]
    mean = reg[cols].mean(axis=1)
    fill = float(mean.get("XOT", mean.mean()))
    m = mean.reindex(regions)
    missing = [r for r in regions if not np.isfinite(m.get(r, np.nan))]
    score = np.clip(5.0 - 2.0 * m.fillna(fill).to_numpy(float), 0.0, 10.0)
    return score, missing


def traced_share(flows: np.ndarray, region: int) -> np.ndarray:
    """[K, R] share of each region's output of stage k that passed through `region` at stage
    k or before: 1 for the region itself; elsewhere, the share of what it received of stage
    k-1's product (flows[k-1][o, r], own use included) weighted by the origins' traced shares.
    Stage 0 is made where it is made. `flows` is [K, origin, dest] in chain order."""
    K, R, _ = flows.shape
    out = np.zeros((K, R))
    out[0, region] = 1.0
    for k in range(1, K):
        got = flows[k - 1].sum(0)
        traced = flows[k - 1].T @ out[k - 1]
        out[k] = np.divide(traced, got, out=np.zeros(R), where=got > 0)
        out[k, region] = 1.0
    return out


def _controls(dataset: Dataset, commodity: str, stage: str, regions: tuple[str, ...]) -> str:
    ctl = dataset["export_controls"]
    ctl = ctl[ctl["state"] == "in_force"]
    hits = []
    for r in ctl.itertuples():
        if commodity not in str(r.commodities).split(";"):
            continue
        if stage not in str(r.stages).split(";"):
            continue
        dest = str(r.destinations)
        if dest == "all" or set(dest.split(";")) & set(regions):
            hits.append(r.regime)
    return ";".join(hits)


def _hosts(dataset: Dataset, commodity: str, stage: str) -> str:
    cp = dataset["coproduction"]
    cp = cp[(cp["chain"] == commodity) & (cp["stage"] == stage)]
    return "; ".join(cp["host"])


def _weakest(statuses) -> str:
    ranks = [STATUS_ORDER.index(s) for s in statuses if s in STATUS_ORDER]
    return STATUS_ORDER[max(ranks)] if ranks else ""


def _perspective(net, perspective: str | Perspective, regions: list[str]) -> Perspective:
    if isinstance(perspective, Perspective):
        return perspective
    return resolve_perspective(perspective, net.dataset, within=regions)


def chain_indicator_table(net: ChainNetwork, perspective: str | Perspective = "USA"
                          ) -> pd.DataFrame:
    """One row per quantified stage of a generic chain (see the module notes). `attrs`
    carries the perspective's regions, notes and the chain's unquantified stages."""
    ds = net.dataset
    try:
        p = _perspective(net, perspective, net.flow_regions())
    except UnknownPerspectiveError as e:
        raise UnknownPerspectiveError(f"{e} (in the {net.id} network, whose regions with "
                                      f"flows are {', '.join(net.flow_regions())}; use outside "
                                      "China and the US is not split by region: XOT)",
                                      e.allowed, e.name, e.detail) from None
    members = [r for r in net.regions if r in p.regions]
    prod = net.production_t.to_numpy()  # [K, R]
    world = prod.sum(1)
    shares = np.divide(prod, world[:, None], out=np.zeros_like(prod), where=world[:, None] > 0)
    wgi, no_wgi = wgi_scores(ds, net.regions)
    use = net.use_t.to_numpy()
    flows = net.trade_t.to_numpy()  # [K, O, D]
    idx = [net.regions.index(r) for r in members]
    chn = net.regions.index("CHN") if "CHN" in net.regions else None
    traced = (traced_share(flows, chn) if chn is not None
              else np.zeros((len(net.stages), len(net.regions))))
    reliance = ds.chain(net.id).us_net_import_reliance(net.year)
    rows_used = net._rows
    rows = []
    for k, s in enumerate(net.stages):
        st = net.chain.stage(s)
        top = int(np.argmax(shares[k]))
        u = use[k, idx].sum()
        own = prod[k, idx].sum()
        into = flows[k][:, idx].sum(1)  # [O] what the perspective receives from each origin
        got = into.sum()
        ir = max(u - own, 0.0) / u if u > 0 else np.nan
        usgs = ""
        if (p.regions == ("USA",) and reliance is not None
                and s == net.chain.usgs_import_stage):
            usgs = reliance.text
        used = rows_used[rows_used["stage"] == s]
        rows.append({
            "commodity": net.id, "stage": s, "stage_name": st.name, "form": st.form,
            "basis": net.chain.basis, "year": net.year, "world_t": float(world[k]),
            "china_share": float(shares[k, chn]) if chn is not None else 0.0,
            "hhi": float(((shares[k] * 100) ** 2).sum()),
            "wgi_hhi": float((shares[k] ** 2 * wgi).sum()),
            "top_producer": net.regions[top], "top_share": float(shares[k, top]),
            "perspective": p.code, "import_reliance": float(ir),
            "usgs_import_reliance": usgs,
            "supply_from_china": float(into[chn] / got) if chn is not None and got > 0
            else (0.0 if got > 0 else np.nan),
            "supply_from_top": float(into[top] / got) if got > 0 else np.nan,
            "exposure": float(into @ traced[k] / got) if got > 0 else np.nan,
            "chokepoint": float(((shares[k] * 100) ** 2).sum() / 10_000 * ir),
            "controls": _controls(ds, net.id, s, p.regions),
            "hosts": _hosts(ds, net.id, s),
            "data_status": _weakest(used["status"]),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    notes = [p.note] if p.note else []
    if no_wgi:
        notes.append(f"no WGI score for {', '.join(no_wgi)}: the mean over all economies is "
                     "used")
    if net.unquantified_stages:
        notes.append(f"stage(s) {', '.join(net.unquantified_stages)} declared but not "
                     "quantified (no public output by country)")
    df.attrs.update({"perspective": p.code, "regions": list(p.regions),
                     "note": "; ".join(notes), "unquantified": net.unquantified_stages})
    return df


def ree_rows(network, perspective: str | Perspective = "USA",
             trade_factors: str = "current") -> pd.DataFrame:
    """The rare earths on the same columns: the REO (all-rare-earths) rows of
    `oreflow.risk.indicator_table`, with top producer, exposure and controls added."""
    from oreflow.risk import TOTAL, indicator_table, sourcing_shares

    ds = network.dataset
    p = perspective if isinstance(perspective, Perspective) else resolve_perspective(
        perspective, network)
    t = indicator_table(network, p, [TOTAL], trade_factors)
    prod = network.production_t.sum("element")
    src = sourcing_shares(network, p.regions).sel(element=TOTAL)
    stages = list(prod["stage"].values)
    flows = network.trade_t.sum("element").transpose("stage", "origin", "dest").to_numpy()
    traced = traced_share(flows, network.regions.index("CHN"))
    members = [network.regions.index(r) for r in p.regions]
    chain = ds.chain("REE")
    reliance = chain.us_net_import_reliance(network.year)
    rows = []
    for r in t.itertuples():
        st = chain.stage(r.stage)
        s = prod.sel(stage=r.stage)
        top = str(s.idxmax("region").item())
        sup = src.sel(stage=r.stage)
        usgs = (reliance.text if p.regions == ("USA",) and reliance is not None
                and r.stage == chain.usgs_import_stage else "")
        rows.append({
            "commodity": "REE", "stage": r.stage, "stage_name": st.name, "form": st.form,
            "basis": chain.basis, "year": network.year, "world_t": r.world_t,
            "china_share": r.china_share, "hhi": r.hhi, "wgi_hhi": r.wgi_hhi,
            "top_producer": top, "top_share": float(s.sel(region=top) / s.sum()),
            "perspective": p.code, "import_reliance": r.import_reliance,
            "usgs_import_reliance": usgs,
            "supply_from_china": float(sup.sel(origin="CHN")),
            "supply_from_top": float(sup.sel(origin=top)),
            "exposure": _traced_into(flows, traced, stages.index(r.stage), members),
            "chokepoint": r.chokepoint,
            "controls": _controls(ds, "REE", r.stage, p.regions),
            "hosts": _hosts(ds, "REE", r.stage),
            "data_status": "",
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs.update({"perspective": p.code, "regions": list(p.regions), "note": p.note})
    return df


def _traced_into(flows: np.ndarray, traced: np.ndarray, k: int, members: list[int]) -> float:
    into = flows[k][:, members].sum(1)
    got = into.sum()
    return float(into @ traced[k] / got) if got > 0 else np.nan


def all_commodities_table(dataset: Dataset, perspective: str = "USA",
                          trade_factors: str = "current") -> pd.DataFrame:
    """Every (commodity, stage) ranked by chokepoint (HHI x the perspective's reliance), then
    China's share. Chains in which the perspective has no flow of its own are left out and
    named in `attrs['skipped']`."""
    from oreflow.network import Network

    frames, skipped, notes = [], {}, []
    net = Network.from_dataset(dataset)
    ree = ree_rows(net, perspective, trade_factors)
    frames.append(ree)
    if ree.attrs.get("note"):
        notes.append(f"REE: {ree.attrs['note']}")
    for cid in dataset.chain_ids:
        if dataset.chain(cid).model != "generic":
            continue
        cn = ChainNetwork.from_dataset(dataset, cid)
        try:
            t = chain_indicator_table(cn, perspective)
        except UnknownPerspectiveError as e:
            skipped[cid] = str(e)
            continue
        frames.append(t)
        if t.attrs.get("note"):
            notes.append(f"{cid}: {t.attrs['note']}")
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["chokepoint", "china_share", "world_t"],
                        ascending=[False, False, False], na_position="last", kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df = df.reset_index(drop=True)
    df.attrs.update({"perspective": str(perspective).upper(), "skipped": skipped,
                     "note": "; ".join(notes)})
    return df
