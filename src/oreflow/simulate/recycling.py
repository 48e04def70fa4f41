"""End-of-life magnets and recycling outside the controller, per month, for the engine
(secondary supply above the base-year level; docs/model.md, section 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from oreflow.network import Network


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
    if not isinstance(network, Network):  # a chain run (chain_market.ChainMarkets): no magnets
        E = len(elements)
        z = np.zeros(0)
        return RecyclingBase([], np.zeros((0, E)), z, z, z, z, z, z, np.zeros(0, int))
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
