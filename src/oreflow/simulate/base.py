"""Base-year monthly quantities seen from two market zones: inside the controlling country
(IN) and outside it (OUT). The engine perturbs these; with no shock it reproduces them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from oreflow.network import Network

FORMS = ("oxide", "metal", "magnet")
_FORM_STAGE = {"oxide": "separation", "metal": "metal", "magnet": "magnet"}


@dataclass(frozen=True)
class ZoneBase:
    """Monthly base-year flows, t REO-eq per month; arrays indexed [element] unless noted."""

    elements: list[str]
    sectors: list[str]
    out_regions: list[str]  # demand regions outside the controller
    mine_regions: list[str]
    controller: str
    yields: dict[str, float]
    mine: np.ndarray  # [region, element] mine output
    to_in: np.ndarray  # [region] share of a region's concentrate separated inside
    sep_in: np.ndarray  # separation output inside
    sep_out: np.ndarray  # separation output outside
    sep_cap_out_region: np.ndarray  # [region, element] separation capacity of OUT regions
    sep_cap_in: np.ndarray  # separation capacity inside
    cap_out: dict[str, np.ndarray]  # OUT processing capacity by form (metal, magnet)
    out_region_share: dict[str, np.ndarray]  # [region, element] share of OUT output by form
    prod_out: dict[str, np.ndarray]  # OUT output by form
    imports: dict[str, np.ndarray]  # IN -> OUT flows by form (the controllable exports)
    imports_by_dest: dict[str, np.ndarray]  # [out_region, element] IN -> OUT flows by form
    demand_in: np.ndarray  # [form, element] IN end use
    demand_out: np.ndarray  # [form, element] OUT end use
    sector_demand_out: np.ndarray  # [element, sector, out_region] OUT end use by sector
    sector_demand_in: np.ndarray  # [element, sector] IN end use by sector
    sector_form: np.ndarray  # [sector] index into FORMS
    priority: np.ndarray  # [sector] 1 = served first
    world_demand: np.ndarray  # world end use (all forms)
    price_out: np.ndarray  # USD/kg oxide outside
    price_in: np.ndarray  # USD/kg oxide inside
    recycling: RecyclingBase | None = None  # end-of-life magnets outside the controller

    @property
    def n_elements(self) -> int:
        return len(self.elements)


@dataclass(frozen=True)
class RecyclingBase:
    """End-of-life magnets and recycling outside the controller in the base year, per month;
    arrays indexed [region] or [region, element] over `regions` (see oreflow.stocks)."""

    regions: list[str]
    eol_t: np.ndarray  # [region, element] t REO-eq a month in end-of-life magnets
    eol_t_magnet: np.ndarray  # [region] t magnet a month reaching end of life
    collection_rate: np.ndarray  # [region]
    preprocessing_yield: np.ndarray  # [region]
    recovery_yield: np.ndarray  # [region]
    capacity_t_magnet: np.ndarray  # [region] t magnet processed a month
    expansion_t_magnet: np.ndarray  # [region] capacity added a month, t magnet a month
    lead_months: np.ndarray  # [region] int, price signal -> new capacity

    def recovered_share(self, collection, preprocessing, capacity_t_magnet) -> np.ndarray:
        """Share of each region's end-of-life flow that comes back, [..., region]:
        recovery x collection x preprocessing x min(capacity, feed) / feed."""
        collected = np.asarray(collection, dtype=float) * preprocessing
        feed = collected * self.eol_t_magnet
        used = np.divide(np.minimum(capacity_t_magnet, feed), feed, out=np.ones_like(feed),
                         where=feed > 0)
        return self.recovery_yield * collected * used

    def secondary_t(self, collection, preprocessing, capacity_t_magnet) -> np.ndarray:
        """Secondary oxide a month, t REO-eq [..., element], from [..., region] settings."""
        return self.recovered_share(collection, preprocessing, capacity_t_magnet) @ self.eol_t


@dataclass(frozen=True)
class _NetworkKey:
    """A network identified by its dataset's content hash and base year (for caching)."""

    version: str
    year: int
    network: Network = field(compare=False, hash=False)


def recycling_base(network: Network, controller: str, elements: list[str]) -> RecyclingBase:
    """Base-year end-of-life flows (oreflow.stocks) and recycling settings of the regions
    outside the controller, as monthly arrays for the engine. Cached by dataset version (its
    content hash), base year, controller and elements: every stress run needs it, and the
    stock model takes longer than the rest of the base year."""
    key = _NetworkKey(network.dataset.version, network.year, network)
    return _recycling_base(key, controller, tuple(elements))


@lru_cache(maxsize=8)
def _recycling_base(key: _NetworkKey, controller: str, elements: tuple[str, ...]
                    ) -> RecyclingBase:
    from oreflow.stocks import magnet_stocks, recycling_parameters

    network, elements = key.network, list(elements)
    ds = network.dataset
    st = magnet_stocks(network).sel(year=network.year)
    regions = [str(r) for r in st["region"].values if r != controller]
    mpo = ds["elements"].set_index("element")["metal_per_oxide"]
    eol = st["eol_t_element"].sum("sector").sel(region=regions)  # t element a year
    eol = eol.reindex(element=elements, fill_value=0.0).transpose("region", "element")
    eol_reo = eol.to_numpy() / mpo.reindex(elements).to_numpy(float)[None, :] / 12.0
    par = recycling_parameters(ds).sel(region=regions)
    rb = RecyclingBase(
        regions=regions,
        eol_t=eol_reo,
        eol_t_magnet=st["eol_t_magnet"].sum("sector").sel(region=regions).to_numpy() / 12.0,
        collection_rate=par["collection_rate"].to_numpy(),
        preprocessing_yield=par["preprocessing_yield"].to_numpy(),
        recovery_yield=par["recovery_yield"].to_numpy(),
        capacity_t_magnet=par["capacity_t_magnet_per_year"].to_numpy() / 12.0,
        expansion_t_magnet=par["expansion_t_magnet_per_year"].to_numpy() / 144.0,
        lead_months=np.round(par["lead_time_months"].to_numpy()).astype(int),
    )
    for value in vars(rb).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)  # shared by every run through the cache
    return rb


def zone_base(network: Network, controller: str = "CHN") -> ZoneBase:
    """Aggregate the network's regions into inside/outside the controller, per month."""
    if controller not in network.regions:
        raise ValueError(f"controller {controller!r} is not a region of the network")
    m = 1.0 / 12.0
    regions = network.regions
    out_regions = [r for r in regions if r != controller]
    # elements with no base-year flow (promethium; scandium, absent from REO statistics)
    # are left out of the simulation
    flow = network.mine_t.sum("region") + network.demand_t.sum(("sector", "region"))
    keep = [e for e in network.elements if float(flow.sel(element=e)) > 0]
    prod = network.production_t.sel(element=keep) * m
    trade = network.trade_t.sel(element=keep) * m
    util = network.dataset["stage_parameters"].set_index("stage")["utilization"]

    def out_sum(da, dim="region"):
        return da.sel({dim: out_regions}).sum(dim).transpose("element").to_numpy()

    mine = network.mine_t.sel(element=keep).transpose("region", "element").to_numpy() * m
    to_in = network.routing.sel(dest=controller).to_numpy()

    sep_cap_out_region = (prod.sel(stage="separation").transpose("region", "element")
                          .to_numpy() / float(util["separation"]))
    sep_cap_out_region[regions.index(controller)] = 0.0

    own = network.routing.sel(region=controller).drop_sel(dest=controller)
    if float(own.sum()) > 0:
        raise ValueError(f"concentrate_routing sends {controller}'s own concentrate abroad: the "
                         "engine assumes the controller separates all of its own ore")
    imports, imports_by_dest, prod_out, cap_out, out_region_share = {}, {}, {}, {}, {}
    for form in FORMS:
        stage = _FORM_STAGE[form]
        t = trade.sel(stage=stage)
        by_dest = t.sel(origin=controller, dest=out_regions).transpose("dest", "element")
        back = t.sel(origin=out_regions, dest=controller).sum("origin").transpose("element")
        if float(back.sum()) > 1e-6 * max(float(by_dest.sum()), 1.0):
            raise ValueError(f"the base year has {float(back.sum()) * 12:,.0f} t/yr of {form} "
                             f"flowing into {controller}: the engine assumes the controller is a "
                             "net exporter of every form")
        imports_by_dest[form] = by_dest.to_numpy()
        imports[form] = imports_by_dest[form].sum(0)
        prod_out[form] = out_sum(prod.sel(stage=stage))
        by_region = prod.sel(stage=stage).transpose("region", "element").to_numpy().copy()
        by_region[regions.index(controller)] = 0.0
        out_region_share[form] = np.divide(by_region, prod_out[form][None, :],
                                           out=np.zeros_like(by_region),
                                           where=prod_out[form][None, :] > 0)
        cap_out[form] = prod_out[form] / float(util[stage])

    demand = network.demand_t.sel(element=keep) * m  # element, sector, region
    forms_of = network.dataset["sectors"].set_index("sector")["form"].reindex(network.sectors)
    sector_form = np.array([FORMS.index(f) for f in forms_of])
    d_out = demand.sel(region=out_regions).transpose("element", "sector", "region").to_numpy()
    d_in = demand.sel(region=controller).transpose("element", "sector").to_numpy()
    demand_out = np.stack([d_out[:, sector_form == i].sum((1, 2)) for i in range(3)])
    demand_in = np.stack([d_in[:, sector_form == i].sum(1) for i in range(3)])

    bp = network.dataset["base_prices"].pivot(index="element", columns="zone", values="usd_per_kg")
    bp = bp.reindex(keep)
    priority = (network.dataset["sectors"].set_index("sector")["priority"]
                .reindex(network.sectors).to_numpy(int))
    return ZoneBase(
        elements=keep,
        sectors=list(network.sectors),
        out_regions=out_regions,
        mine_regions=list(regions),
        controller=controller,
        yields=dict(network.yields),
        mine=mine,
        to_in=to_in,
        sep_in=prod.sel(stage="separation", region=controller).transpose("element").to_numpy(),
        sep_out=out_sum(prod.sel(stage="separation")),
        sep_cap_out_region=sep_cap_out_region,
        sep_cap_in=prod.sel(stage="separation", region=controller).transpose("element")
        .to_numpy() / float(util["separation"]),
        cap_out=cap_out,
        out_region_share=out_region_share,
        prod_out=prod_out,
        imports=imports,
        imports_by_dest=imports_by_dest,
        demand_in=demand_in,
        demand_out=demand_out,
        sector_demand_out=d_out,
        sector_demand_in=d_in,
        sector_form=sector_form,
        priority=priority,
        world_demand=demand.sum(("sector", "region")).to_numpy(),
        price_out=bp["ROW"].to_numpy(float),
        price_in=bp["CHN"].to_numpy(float),
        recycling=recycling_base(network, controller, keep),
    )
