"""The stress engine's base year for commodity chains other than the rare earths.

The engine (`engine.py`, `kernel.py`) runs on a `MarketBase` whose "elements" are
commodities here: one element per chain of the scenario (`commodity: [Ga, Ge]` gives two).
Each chain's stages sit in the engine's slots as `chain_stages.csv` declares them:
- `mining`: ore that feeds the next stage along fixed routes (the chain network's trade at
  that stage); not licensable. A chain without a quantified mining stage (gallium from
  alumina liquor, germanium from residues) gets its feed where its first traded stage is
  made (co-located; assumption).
- `separation`: the first traded and licensable item (the engine's "oxide" item);
- `metal`: the second traded item (zeros where the chain has none);
- `magnet`: unused (no grades: G = 0).
End use of a stage's product becomes demand lines of that item; stages without a slot are
not run. The engine's stage yields are one number per slot, so the chains of one run must
share them (they do: 1 everywhere except natural graphite's anode stage, run on its own).
Prices start at the chain's base-year price outside China (USGS), inside China at a quote
of the same year where there is one, else at the price outside.
Behaviour, rationing and elasticity follow `chain_parameters.csv` (assumptions: every chain
sector is served with the same priority; short-run substitution elasticity, no cost-share
term). The unchanged engine then runs the scenario and its JSON has the same keys as for the
rare earths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import xarray as xr

from oreflow.chains import ChainNetwork
from oreflow.data.load import Dataset
from oreflow.simulate.market import (
    MONTHS_PER_YEAR,
    MarketBase,
    MarketError,
    _check,
    market_codes,
    market_map,
)

SLOTS = ("separation", "metal")


@dataclass(frozen=True)
class ChainMarkets:
    """What the engine and the shocks read from a "network" for chain runs: the dataset,
    the base year, the network regions and their use (for destination shares)."""

    dataset: Dataset
    year: int
    chains: tuple[str, ...]
    networks: tuple[ChainNetwork, ...] = field(repr=False, compare=False)

    @cached_property
    def regions(self) -> list[str]:
        return sorted(set().union(*(n.regions for n in self.networks)))

    @cached_property
    def use_t(self) -> xr.DataArray:
        """Use by (element = commodity, stage = slot, region), t basis a year."""
        arr = np.zeros((len(self.chains), len(SLOTS), len(self.regions)))
        for e, n in enumerate(self.networks):
            for k, slot in enumerate(SLOTS):
                st = n.chain.slot(slot)
                if st is not None and st.stage in n.stages:
                    u = n.use_t.sel(stage=st.stage)
                    arr[e, k] = u.reindex(region=self.regions, fill_value=0.0).to_numpy()
        return xr.DataArray(arr, dims=("element", "stage", "region"),
                            coords={"element": list(self.chains), "stage": list(SLOTS),
                                    "region": self.regions})


def chain_markets(dataset: Dataset, commodities: list[str]) -> ChainMarkets:
    ids = tuple(dataset.chain(c).id for c in commodities)
    nets = tuple(ChainNetwork.from_dataset(dataset, c) for c in ids)
    return ChainMarkets(dataset, dataset.base_year, ids, nets)


def _par(ds: Dataset, name: str) -> float:
    return ds.parameter("chain_parameters", name)


def chain_market_base(markets: ChainMarkets, controller: str = "CHN") -> MarketBase:
    """The engine's base year for the chains of `markets` (cached by dataset version)."""
    codes = market_codes(markets.dataset)
    if controller not in codes:
        raise MarketError(f"controller {controller!r}: the engine models controls by a market "
                          f"region; allowed: {', '.join(codes)} (market_regions.csv)")
    return _chain_market_base(_Key(markets.dataset.version, markets.chains, controller,
                                   markets))


@dataclass(frozen=True)
class _Key:
    version: str
    chains: tuple[str, ...]
    controller: str
    markets: ChainMarkets = field(compare=False, hash=False)


def _slot_stage(net: ChainNetwork, slot: str) -> str | None:
    st = net.chain.slot(slot)
    return st.stage if st is not None and st.stage in net.stages else None


@lru_cache(maxsize=8)
def _chain_market_base(key: _Key) -> MarketBase:
    cm, controller = key.markets, key.controller
    ds = cm.dataset
    m = 1.0 / MONTHS_PER_YEAR
    nets = cm.regions
    regions, onehot = market_map(ds, nets)
    R, M, E = len(nets), len(regions), len(cm.chains)
    I = 2 * E
    yields = {"separation": [], "metal": []}
    mine = np.zeros((R, E))
    feed_share = np.zeros((R, M, E))
    shipped = np.zeros((R, I))
    use = np.zeros((R, I))
    flows = np.zeros((I, R, R))
    lines, demand0, sectors, prio, eps = [], [], [], [], []
    price0 = np.zeros((M, E))
    util = _par(ds, "utilization")
    multi = E > 1
    for e, net in enumerate(cm.networks):
        ridx = [nets.index(r) for r in net.regions]
        sep, met = _slot_stage(net, "separation"), _slot_stage(net, "metal")
        if sep is None:
            raise MarketError(f"chain {net.id}: no quantified stage in the engine's "
                              "'separation' slot (chain_stages.csv), so the engine cannot run it")
        for slot, stage in (("separation", sep), ("metal", met)):
            if stage is not None:
                yields[slot].append(net.chain.stage(stage).yield_)
        for k, stage in enumerate((sep, met)):
            if stage is None:
                continue
            item = k * E + e
            p = net.production_t.sel(stage=stage).to_numpy()
            stock = net.stock_change_t.sel(stage=stage).to_numpy()
            shipped[ridx, item] = p - stock
            use[ridx, item] = net.use_t.sel(stage=stage).to_numpy()
            flows[item][np.ix_(ridx, ridx)] = net.trade_t.sel(stage=stage).to_numpy()
        # mining: the chain's mining slot feeds its separation stage along its trade routes
        mst = _slot_stage(net, "mining")
        y_sep = net.chain.stage(sep).yield_
        if mst is not None and net.stages.index(mst) == net.stages.index(sep) - 1:
            mined = net.production_t.sel(stage=mst).to_numpy()
            fl = net.trade_t.sel(stage=mst).to_numpy()  # [origin, dest]
            mine[ridx, e] = mined * m
            share = np.divide(fl, mined[:, None], out=np.zeros_like(fl),
                              where=mined[:, None] > 0)
            feed_share[ridx, :, e] = share @ onehot[ridx]
        else:  # co-located feed (assumption): what the separation stage makes, / its yield
            made = net.production_t.sel(stage=sep).to_numpy()
            mine[ridx, e] = made / y_sep * m
            feed_share[ridx, :, e] = onehot[ridx] * (made > 0)[:, None]
        # demand lines: end use of the two slots' products, by sector
        eu = net.end_use_by_sector_t
        for k, stage in enumerate((sep, met)):
            if stage is None:
                continue
            for s in net.sectors:
                d = eu.sel(stage=stage, sector=s).to_numpy()
                if d.sum() <= 0:
                    continue
                name = f"{net.id}_{s}" if multi else s
                if name not in sectors:
                    sectors.append(name)
                    prio.append(int(_par(ds, "sector_priority")))
                    eps.append(-_par(ds, "substitution_elasticity"))
                lines.append((sectors.index(name), k * E + e))
                dm = np.zeros(M)
                np.add.at(dm, onehot[[nets.index(r) for r in net.regions]].argmax(1), d * m)
                demand0.append(dm)
        unused = [st for st in net.stages if st not in (sep, met)
                  and float(net.end_use_t.sel(stage=st).sum()) > 0]
        if unused:
            raise MarketError(f"chain {net.id}: stage(s) {', '.join(unused)} have end use but "
                              "no engine slot (chain_stages.csv)")
        row, chn = _prices(ds, net.id)
        price0[:, e] = row
        if controller == "CHN" and "CHN" in regions and np.isfinite(chn):
            price0[regions.index("CHN"), e] = chn
    for slot, ys in yields.items():
        if len(set(np.round(ys, 9))) > 1:
            raise MarketError(f"the chains {', '.join(cm.chains)} have different yields at the "
                              f"engine's '{slot}' slot ({ys}): run them separately")
    y = {"separation": yields["separation"][0],
         "metal": yields["metal"][0] if yields["metal"] else 1.0,
         "sintering": 1.0, "machining": 1.0, "swarf_recovery": 0.0}
    prod0 = (shipped.T @ onehot).T * m  # [M, I]
    use0 = (use.T @ onehot).T * m
    cap_r = shipped * m / util  # [R, I]
    cap0 = (cap_r.T @ onehot).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cap_share = np.nan_to_num(cap_r / (onehot @ cap0))
    fm = np.einsum("iod,om,dn->imn", flows, onehot, onehot) * m  # [I, M, M]
    with np.errstate(invalid="ignore", divide="ignore"):
        source_share = np.nan_to_num(fm / fm.sum(1, keepdims=True)).transpose(1, 2, 0)
    beh = ds["market_behaviour"].set_index("parameter")["value"].astype(float)
    exports = fm.sum(2) - np.einsum("imm->im", fm)
    stock0 = float(beh["target_cover_months"]) * (use0 + exports.T)
    demand0 = np.array(demand0).T  # [M, L]
    line_sector = np.array([s for s, _ in lines])
    line_item = np.array([i for _, i in lines])
    # a region outside the controller that uses a commodity in no form (neither end use nor
    # the next stage's input) has no buyers' price: the chains' data (USGS) record use for a
    # few countries and count the rest in XOT (OTH), so EU, JPN, KOR or IND may appear only as
    # producers; a price multiple there would describe no buyer (the result reports none)
    end_use = np.zeros((M, E))
    for n_, (_, item) in enumerate(lines):
        end_use[:, item % E] += demand0[:, n_]
    no_buyers = (end_use <= 0) & (use0[:, :E] + use0[:, E:] <= 0)
    no_buyers[regions.index(controller)] = False
    price0[no_buyers] = 0.0
    base = MarketBase(
        regions=regions, controller=controller, elements=list(cm.chains), grades=[],
        sectors=sectors, network_regions=list(nets), region_market=onehot.argmax(1),
        grade_reo=np.zeros((0, E)), yields=y, mine=mine, feed_share=feed_share,
        to_controller=feed_share[:, regions.index(controller)], prod0=prod0, cap0=cap0,
        cap_share=cap_share, use0=use0, source_share=source_share, stock0=stock0,
        line_sector=line_sector, line_item=line_item,
        line_priority=np.array(prio)[line_sector],
        line_elasticity=np.array(eps)[line_sector], demand0=demand0,
        buyer_stock0=float(beh["buyer_cover_months"]) * demand0, price0=price0,
        metal_per_oxide=np.ones(E), swarf_share=np.zeros((M, M, E)),
        swarf_per_magnet=np.zeros((0, E)), metal_per_magnet=np.zeros((0, E)),
        ore_group=np.arange(E),  # each commodity mined from its own ores
    )
    _check(base, np.zeros((M, E)), np.zeros((M, E)), I)
    for v in vars(base).values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return base


def _prices(ds: Dataset, chain: str) -> tuple[float, float]:
    """Base-year USD per kg of the chain's basis outside China (USGS first) and inside China
    (a quote of the base year, else NaN)."""
    p = ds["chain_prices"]
    p = p[(p["chain"] == chain) & (p["year"] == ds.base_year)]
    row = p[p["zone"] == "ROW"].sort_values("source_id", key=lambda s: s != "usgs_mcs2026",
                                            kind="stable")
    if row.empty:
        raise MarketError(f"chain_prices.csv has no {ds.base_year} price outside China (ROW) "
                          f"for {chain}: the engine needs a base price")
    chn = p[p["zone"] == "CHN"]
    return (float(row["usd_per_kg_basis"].iloc[0]),
            float(chn["usd_per_kg_basis"].iloc[0]) if len(chn) else np.nan)
