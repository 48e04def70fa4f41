"""The base year as the stress engine sees it: market regions, traded items, monthly flows.

The network's ~30 regions are grouped into market regions (`market_regions.csv`: CHN, USA,
EU, JPN, KOR, IND and the rest of the world). Every market region mines, separates, makes
metal and magnets, trades and uses them, with its own stocks and prices; the controller of a
scenario is simply the region whose exports are licensed.

Items are what is traded and stocked: the separated product (oxide) of each element, its
metal, and finished magnets by grade. Oxide and metal are counted in t REO-eq, magnets in t of
finished magnet (`grade_reo` converts). Everything is per month (the network's year / 12).
With no shock the engine reproduces these flows month after month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import xarray as xr

from oreflow.network import UNRECORDED_REGION, Network

OX, MET, MAG = 0, 1, 2
FORMS = ("oxide", "metal", "magnet")
MONTHS_PER_YEAR = 12.0


class MarketError(ValueError):
    """The dataset cannot be turned into the engine's markets; the message says why."""


def market_of(dataset, regions: list[str]) -> dict[str, str]:
    """Each network region's market region (`market_regions.csv`, row '*' for the rest)."""
    t = dataset["market_regions"].set_index("region")["market"]
    default = t.get("*")
    out = {}
    for r in regions:
        if r in t.index:
            out[r] = str(t[r])
        elif default is not None:
            out[r] = str(default)
        else:
            raise MarketError(f"market_regions.csv: region {r!r} has no market and there is no "
                              "'*' row")
    return out


PREFERRED_ORDER = ("CHN", "USA", "EU", "JPN", "KOR", "IND")
"""Order of the market regions in results: these first, others alphabetically, the '*' market
(the rest of the world) last."""


def market_codes(dataset) -> list[str]:
    """Market region codes in result order."""
    t = dataset["market_regions"]
    rest = set(t.loc[t["region"] == "*", "market"])
    codes = sorted(set(t["market"]) - rest,
                   key=lambda c: (PREFERRED_ORDER.index(c) if c in PREFERRED_ORDER
                                  else len(PREFERRED_ORDER), c))
    return codes + sorted(rest)


@dataclass(frozen=True)
class MarketBase:
    """Monthly base-year flows by market region and item. Arrays are numpy with the axes
    named in each comment; `I = 2E + G` items (oxide of each element, metal of each element,
    magnets of each grade)."""

    regions: list[str]  # [M] market regions
    controller: str
    elements: list[str]  # [E]
    grades: list[str]  # [G]
    sectors: list[str]  # [S]
    network_regions: list[str]  # [R] network regions (for shocks named by country)
    region_market: np.ndarray  # [R] index of each network region's market
    grade_reo: np.ndarray  # [G, E] t REO-eq per t finished magnet
    yields: dict[str, float]  # separation, metal, sintering, machining, swarf_recovery
    # mining: network regions' mines feed market regions' separators
    mine: np.ndarray  # [R, E] t REO a month mined (incl. unrecorded supply, row of CHN)
    feed_share: np.ndarray  # [R, M, E] share of mined e separated in market m (rest: kept)
    to_controller: np.ndarray  # [R, E] share of mined e separated by the controller
    # production, capacity, use and sourcing of each item
    prod0: np.ndarray  # [M, I] base output shipped or used (unsold surplus not produced)
    cap0: np.ndarray  # [M, I] capacity: base-year output / utilisation
    cap_share: np.ndarray  # [R, I] network region's share of its market's capacity
    use0: np.ndarray  # [M, I] base use: final use plus the next stage's input
    source_share: np.ndarray  # [M_origin, M_dest, I] share of dest's use supplied by origin
    stock0: np.ndarray  # [M, I] merchant stock target (months of throughput)
    # final demand: one line per (sector, item)
    line_sector: np.ndarray  # [L]
    line_item: np.ndarray  # [L]
    line_priority: np.ndarray  # [L] 1 = served first
    line_elasticity: np.ndarray  # [L] derived-demand price elasticity (<= 0)
    demand0: np.ndarray  # [M, L] t a month (REO-eq; magnets: t magnet)
    buyer_stock0: np.ndarray  # [M, L] buyers' own stocks at the start
    price0: np.ndarray  # [M, E] USD/kg oxide
    metal_per_oxide: np.ndarray  # [E] t element per t REO-eq
    swarf_share: np.ndarray  # [M_src, M_dst, E] where swarf made in src is recycled (rest: lost)
    swarf_per_magnet: np.ndarray = field(repr=False)  # [G, E] oxide recovered per t magnet
    metal_per_magnet: np.ndarray = field(repr=False)  # [G, E] t REO-eq metal per t magnet
    ore_group: np.ndarray = field(repr=False)  # [E] the ore of each element (rare earths: one)

    @property
    def n_items(self) -> int:
        return 2 * len(self.elements) + len(self.grades)

    @property
    def item_form(self) -> np.ndarray:
        E, G = len(self.elements), len(self.grades)
        return np.array([OX] * E + [MET] * E + [MAG] * G)

    @property
    def item_names(self) -> list[str]:
        return ([f"{e} oxide" for e in self.elements] + [f"{e} metal" for e in self.elements]
                + [f"{g} magnets" for g in self.grades])

    def item_reo(self) -> np.ndarray:
        """[I, E] t REO-eq of each element per unit of each item."""
        E = len(self.elements)
        return np.concatenate([np.eye(E), np.eye(E), self.grade_reo], 0)

    @property
    def controller_index(self) -> int:
        return self.regions.index(self.controller)

    def item_element_t(self) -> np.ndarray:
        """[I, E] t of element (metal basis) per unit of each item."""
        return self.item_reo() * self.metal_per_oxide[None, :]


@dataclass(frozen=True)
class _Key:
    version: str
    year: int
    controller: str
    network: Network = field(compare=False, hash=False)


def market_base(network: Network, controller: str = "CHN") -> MarketBase:
    """The engine's base year for `controller` (a market region code), cached by dataset
    version: every stress run needs it."""
    codes = market_codes(network.dataset)
    if controller not in codes:
        raise MarketError(f"controller {controller!r}: the engine models controls by a market "
                          f"region; allowed: {', '.join(codes)} (market_regions.csv)")
    return _market_base(_Key(network.dataset.version, network.year, controller, network))


def market_map(dataset, nets: list[str]) -> tuple[list[str], np.ndarray]:
    """The market regions in result order and the [R, M] one-hot map of the network's
    regions `nets` onto them."""
    regions = market_codes(dataset)
    of = market_of(dataset, nets)
    onehot = np.zeros((len(nets), len(regions)))
    onehot[np.arange(len(nets)), [regions.index(of[r]) for r in nets]] = 1.0
    return regions, onehot


def _agg(matrix: np.ndarray, onehot: np.ndarray, axis: int) -> np.ndarray:
    """Sum a network-region axis into market regions: onehot [R, M]."""
    return np.moveaxis(np.tensordot(np.moveaxis(matrix, axis, -1), onehot, axes=1), -1, axis)


@lru_cache(maxsize=8)
def _market_base(key: _Key) -> MarketBase:
    net, controller = key.network, key.controller
    ds = net.dataset
    m = 1.0 / MONTHS_PER_YEAR
    nets = net.regions
    regions, onehot = market_map(ds, nets)
    R, M = len(nets), len(regions)
    # elements with a base-year flow (Pm and Sc have none)
    flow = net.mine_t.sum("region") + net.demand_t.sum(("sector", "region"))
    elements = [e for e in net.elements if float(flow.sel(element=e)) > 0]
    E, G = len(elements), len(net.grades)
    grade_reo = net.grade_reo_t_per_t.sel(element=elements).transpose("grade", "element")
    grade_reo = grade_reo.to_numpy()
    p = {k: net.parameter(k) for k in ("machining_yield", "swarf_recovery_yield")}
    y = {"separation": net.yields["separation"], "metal": net.yields["metal"],
         "sintering": net.yields["magnet"], "machining": p["machining_yield"],
         "swarf_recovery": p["swarf_recovery_yield"]}
    util = ds["stage_parameters"].set_index("stage")["utilization"]

    def el(da, *dims):
        return da.sel(element=elements).transpose("element", *dims).to_numpy()

    # ---- mining: each network region's mine feeds separators in market regions ---------
    legs = net._feed_legs
    mined = el(net.mine_t, "region")  # [E, R]
    routed = el(net.mine_t * net.routing, "region", "dest")  # [E, R, R']
    sep_share = el(net.separable, "region")  # [E, R']
    fwd = el(net.forward_to, "region", "dest")  # [E, R', R'']
    own = np.eye(R)[None]
    separated_direct = routed * sep_share[:, None, :]  # [E, R(origin), R'(separator)]
    onward = np.einsum("eoa,ea,eab->eob", routed, 1 - sep_share, fwd * (1 - own))
    sep_by_origin = separated_direct + onward  # [E, origin, separator]
    unrec = net.unrecorded_t.sel(element=elements).to_numpy()
    c = nets.index(UNRECORDED_REGION)
    ys = y["separation"]
    mine = mined.T * m  # [R, E]
    mine[c] += unrec / ys * m  # unrecorded supply enters as feed of the controller region's
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(mined[:, :, None] > 0,
                         sep_by_origin / np.where(mined > 0, mined, 1.0)[:, :, None], 0.0)
    share = share.transpose(1, 2, 0)  # [R, R', E]
    share[c] = share[c] * (mined[:, c] / np.maximum(mined[:, c] + unrec / ys, 1e-300)) + \
        np.eye(R)[c][:, None] * (unrec / ys / np.maximum(mined[:, c] + unrec / ys, 1e-300))
    feed_share = np.einsum("rae,am->rme", share, onehot)  # [R, M, E]
    del legs
    # ---- production, use and trade by item -------------------------------------------
    prod_sep = el(net.separation_t, "region")
    stock_sep = el(net.stock_change_t.sel(stage="separation"), "region")
    shipped = {  # [item rows, R]: output less unsold surplus (not produced in the engine)
        OX: prod_sep - stock_sep,
        MET: el(net.metal_t, "region") - el(net.stock_change_t.sel(stage="metal"), "region"),
        MAG: net.magnet_grade_t.transpose("grade", "region").to_numpy(),
    }
    use = {
        OX: el(net.oxide_use_t, "region"),
        MET: el(net.metal_for_magnets_t + net.enduse_by_form_t("metal"), "region"),
        MAG: net.magnet_grade_use_t.transpose("grade", "region").to_numpy(),
    }
    tr = net.trade_t
    trade = {
        OX: el(tr.sel(stage="separation"), "origin", "dest"),
        MET: el(tr.sel(stage="metal"), "origin", "dest"),
        MAG: net.magnet_grade_trade_t.transpose("grade", "origin", "dest").to_numpy(),
    }
    cap_net = {OX: el(net.separation_feed_t, "region") * ys / float(util["separation"]),
               MET: el(net.metal_t, "region") / float(util["metal"]),
               MAG: net.magnet_grade_t.transpose("grade", "region").to_numpy()
               / float(util["magnet"])}
    prod0 = np.concatenate([_agg(shipped[f], onehot, 1) for f in (OX, MET, MAG)]).T * m
    use0 = np.concatenate([_agg(use[f], onehot, 1) for f in (OX, MET, MAG)]).T * m
    cap_m = np.concatenate([_agg(cap_net[f], onehot, 1) for f in (OX, MET, MAG)]).T * m
    cap_r = np.concatenate([cap_net[f] for f in (OX, MET, MAG)]).T * m  # [R, I]
    with np.errstate(invalid="ignore", divide="ignore"):
        cap_share = np.nan_to_num(cap_r / (onehot @ cap_m))
    flows = np.concatenate([np.einsum("iod,om,dn->imn", trade[f], onehot, onehot)
                            for f in (OX, MET, MAG)]) * m  # [I, M, M]
    with np.errstate(invalid="ignore", divide="ignore"):
        source_share = np.nan_to_num(flows / flows.sum(1, keepdims=True)).transpose(1, 2, 0)
    # engine capacities hold at least the base output (oxide: primary separation capacity
    # only, swarf and unrecorded supply come on top)
    swarf_m = _agg(el(net.swarf_secondary_t, "region"), onehot, 1).T * m  # [M, E]
    unrec_m = np.zeros((M, E))
    unrec_m[onehot[nets.index(UNRECORDED_REGION)].argmax()] = unrec * m
    cap0 = cap_m.copy()
    cap0[:, :E] += unrec_m / float(util["separation"])
    I = 2 * E + G
    # ---- final demand lines ------------------------------------------------------------
    sectors = list(net.sectors)
    form = ds["sectors"].set_index("sector")["form"].reindex(sectors)
    prio = ds["sectors"].set_index("sector")["priority"].reindex(sectors).to_numpy(int)
    dem = el(net.demand_t, "sector", "region")  # [E, S, R] t REO-eq a year
    dem_m = _agg(dem, onehot, 2) * m  # [E, S, M]
    mag_m = np.einsum("sg,sr,rm->gsm", net.magnet_demand_t.to_numpy(),
                      net.sector_region_share.to_numpy(), onehot) * m  # [G, S, M]
    lines, demand0 = [], []
    for s, sector in enumerate(sectors):
        if form[sector] == "magnet":
            for g in range(G):
                if mag_m[g, s].sum() > 0:
                    lines.append((s, 2 * E + g))
                    demand0.append(mag_m[g, s])
        else:
            off = E if form[sector] == "metal" else 0
            for e in range(E):
                if dem_m[e, s].sum() > 0:
                    lines.append((s, off + e))
                    demand0.append(dem_m[e, s])
    line_sector = np.array([s for s, _ in lines])
    line_item = np.array([i for _, i in lines])
    demand0 = np.array(demand0).T  # [M, L]
    beh = ds["market_behaviour"].set_index("parameter")["value"].astype(float)
    cover = float(beh["target_cover_months"])
    # merchant stocks: months of throughput (what a region's traders and producers turn
    # over: its use plus its exports)
    exports = flows.sum(2) - np.einsum("imm->im", flows)  # [I, M]
    stock0 = cover * (use0 + exports.T)
    buyer0 = float(beh["buyer_cover_months"]) * demand0
    elasticity = _line_elasticity(net, elements, sectors, line_sector, line_item, E, G,
                                  grade_reo)
    bp = ds["base_prices"].pivot(index="element", columns="zone", values="usd_per_kg")
    bp = bp.reindex(elements)
    price0 = np.tile(bp["ROW"].to_numpy(float), (M, 1))
    if controller == "CHN":
        price0[regions.index("CHN")] = bp["CHN"].to_numpy(float)
    else:  # only China has quotes inside: elsewhere both zones start at the export price
        pass
    base = MarketBase(
        regions=regions, controller=controller, elements=elements, grades=list(net.grades),
        sectors=sectors, network_regions=list(nets),
        region_market=onehot.argmax(1), grade_reo=grade_reo, yields=y,
        mine=mine, feed_share=feed_share,
        to_controller=feed_share[:, regions.index(controller)],
        prod0=prod0, cap0=cap0, cap_share=cap_share, use0=use0, source_share=source_share,
        stock0=stock0, line_sector=line_sector, line_item=line_item,
        line_priority=prio[line_sector], line_elasticity=elasticity, demand0=demand0,
        buyer_stock0=buyer0, price0=price0,
        metal_per_oxide=net.metal_per_oxide.sel(element=elements).to_numpy(),
        swarf_share=_swarf_share(net, elements, onehot),
        swarf_per_magnet=grade_reo * (1 / y["machining"] - 1) * y["swarf_recovery"],
        metal_per_magnet=grade_reo / (y["machining"] * y["sintering"]),
        ore_group=np.zeros(len(elements), np.int64),  # co-products of one ore
    )
    _check(base, swarf_m, unrec_m, I)
    for v in vars(base).values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)  # shared by every run through the cache
    return base


def _swarf_share(net: Network, elements, onehot: np.ndarray) -> np.ndarray:
    """[M_src, M_dst, E] share of the swarf made in a market that is recycled in another (or
    in itself); swarf kept unprocessed is the rest."""
    sw = net.swarf_t.sel(element=elements).transpose("element", "region").to_numpy()  # [E, R]
    route = net.swarf_route.sel(element=elements).transpose("element", "region", "dest")
    kept = ((net.separable.sel(element=elements) <= 0)
            * xr.DataArray(np.eye(len(net.regions)), dims=("region", "dest"),
                           coords={"region": net.regions, "dest": net.regions}))
    eff = (route * (1 - kept)).transpose("element", "region", "dest").to_numpy()
    flow = np.einsum("er,erd,rm,dn->mne", sw, eff, onehot, onehot)
    made = np.einsum("er,rm->me", sw, onehot)
    return np.divide(flow, made[:, None, :], out=np.zeros_like(flow), where=made[:, None] > 0)


def _line_elasticity(net: Network, elements, sectors, line_sector, line_item, E, G,
                     grade_reo) -> np.ndarray:
    """Derived-demand elasticity of each line (Hicks-Marshall): eta = s x eta_final
    - (1 - s) x sigma, with s the rare earth's cost share in the sector's product
    (`sector_value`: kg of rare earth per unit x price / unit value), eta_final the
    elasticity of the product's demand and sigma the short-run elasticity of substitution
    (`demand_response`). Sectors served first (priority 1) carry 0 there."""
    ds = net.dataset
    resp = ds["demand_response"].set_index("sector").reindex(sectors)
    if resp.isna().any().any():
        missing = resp.index[resp.isna().any(axis=1)].tolist()
        raise MarketError(f"demand_response.csv has no row for sector(s) {', '.join(missing)}")
    sv = ds["sector_value"].set_index("sector").reindex(sectors)
    price = (ds["base_prices"].query("zone == 'ROW'").set_index("element")["usd_per_kg"]
             .reindex(elements).fillna(0.0).to_numpy(float))
    d = net.world_demand_t.sel(element=elements).transpose("sector", "element").to_numpy()
    mix_price = np.divide((d * price).sum(1), d.sum(1), out=np.zeros(len(d)),
                          where=d.sum(1) > 0)
    share = (sv["re_kg_per_unit"].to_numpy(float) * mix_price
             / sv["unit_value_usd"].to_numpy(float))
    share = np.clip(np.nan_to_num(share), 0.0, 1.0)
    eta = resp["final_demand_elasticity"].to_numpy(float)
    sigma = resp["substitution_elasticity"].to_numpy(float)
    s = share[line_sector]
    return s * eta[line_sector] - (1 - s) * sigma[line_sector]


def _check(b: MarketBase, swarf: np.ndarray, unrec: np.ndarray, I: int) -> None:
    """The base year must be a steady state: output + imports = use + exports per region
    and item, and the separators' feed must cover their primary output."""
    flows = b.source_share * b.use0[None]  # [M_o, M_d, I]
    out = flows.sum(1)
    inn = flows.sum(0)
    if not np.allclose(out, b.prod0, rtol=1e-6, atol=1e-6):
        worst = np.unravel_index(np.abs(out - b.prod0).argmax(), out.shape)
        raise MarketError(f"market base year does not close: output of {b.item_names[worst[1]]}"
                          f" in {b.regions[worst[0]]} is {b.prod0[worst]:.3f} t a month but "
                          f"{out[worst]:.3f} t is shipped")
    if not np.allclose(inn, b.use0, rtol=1e-6, atol=1e-6):
        raise MarketError("market base year does not close: imports do not meet use")
    E = len(b.elements)
    feed = np.einsum("re,rme->me", b.mine, b.feed_share) * b.yields["separation"]
    primary = b.prod0[:, :E] - swarf  # unrecorded supply is in the feed
    short = primary - feed
    if np.any(short > 1e-6 * np.maximum(b.prod0[:, :E], 1.0)):
        m_, e_ = np.unravel_index(short.argmax(), short.shape)
        raise MarketError(f"market base year: separation of {b.elements[e_]} in {b.regions[m_]} "
                          "needs more feed than its mines supply")


def perspective_markets(base: MarketBase, dataset, perspective: str) -> tuple[list[str], str]:
    """The market regions a perspective reads (a market code, a network region or a bloc of
    `blocs.csv`, any case) and a note when the mapping is not one to one."""
    key = perspective.strip().upper()
    if key in base.regions:
        return [key], ""
    if key in base.network_regions:
        m = base.regions[base.region_market[base.network_regions.index(key)]]
        return [m], f"{key} is part of market region {m}: its figures are {m}'s"
    blocs = dataset["blocs"]
    if key in set(blocs["bloc"]):
        members = set(blocs.loc[blocs["bloc"] == key, "region"])
        markets = [m for m in base.regions
                   if any(base.network_regions[i] in members and base.regions[
                       base.region_market[i]] == m for i in range(len(base.network_regions)))]
        whole = [m for m in markets if all(
            base.network_regions[i] in members for i in range(len(base.network_regions))
            if base.regions[base.region_market[i]] == m)]
        part = [m for m in markets if m not in whole]
        note = f"{key}: market regions {', '.join(markets)}"
        if part:
            note += f" ({', '.join(part)} only in part: its figures are for the whole market)"
        return markets, note
    allowed = sorted(set(base.regions) | set(blocs["bloc"]) | set(base.network_regions))
    raise MarketError(f"unknown perspective {perspective!r}; allowed: {', '.join(allowed)}")
