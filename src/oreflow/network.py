"""The base-year supply network as labelled arrays: who mines, separates, makes metal and
magnets, who uses them, and what flows between them.

Quantities are tonnes of rare-earth-oxide equivalent per year (`t REO-eq`): a tonne of Nd
metal counts as 1/0.857 t of Nd2O3. One unit across stages makes mass balance a sum.

The base year is built from demand (docs/model.md, section 1):
1. demand: magnets are one product per grade, so each sector's finished-magnet tonnage by
   grade x the grade's composition gives its demand for every element (the same tonnage
   whichever element counts it); other sectors' use per element comes from `enduse_demand`;
2. magnets: world output of each grade is made where `stage_shares` puts it; finished
   magnets are machined from sintered blanks (`machining_yield`), and the swarf goes back to
   separation where the magnet is made (secondary supply, `swarf_recovery_yield`);
3. metal: each element's metal is made where `stage_shares` puts that element's metal;
4. supply: USGS mine output x the element mix of each country's mining sources; concentrate
   goes where `concentrate_routing` sends it; a country separates only the elements its plants
   can (`separation_capability`) and ships the rest on, unseparated, to `forward_to`;
5. separated supply beyond what the world uses stays where it was made as an unsold surplus
   (`stock_change_t`, mostly La and Ce in China); a shortfall is covered by unrecorded supply
   in China (`unrecorded_t`: USGS's figure for China is the quota, which "does not include
   undocumented production");
6. trade at each stage: a country's output meets its own use first; known routes come next
   (observed US import shares, sourced company routes: `trade_routes`); what is left is pooled
   pro rata.
`balance()` reports the residual of every stage's balance and `consistency_checks()` compares
published figures with what the network implies, on the same basis.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.data.load import Dataset, load_dataset
from oreflow.data.schema import STAGES

BALANCE_RTOL = 1e-9
"""Every stage balance closes by construction: the residual is floating-point error only."""

UNRECORDED_REGION = "CHN"
"""Where unrecorded supply closes a shortfall of separated product (see the module notes)."""


def _grid(df: pd.DataFrame, rows: str, cols: str, value: str,
          row_labels: list[str], col_labels: list[str]) -> xr.DataArray:
    """A dense (rows x cols) array from a long table; absent pairs are 0."""
    wide = df.pivot_table(index=rows, columns=cols, values=value, aggfunc="sum", fill_value=0.0)
    wide = wide.reindex(index=row_labels, columns=col_labels, fill_value=0.0)
    return xr.DataArray(wide.to_numpy(dtype=float), dims=(rows, cols),
                        coords={rows: row_labels, cols: col_labels})


def _stack_stages(arrs: list[xr.DataArray]) -> xr.DataArray:
    da = xr.concat(arrs, dim="stage", coords="minimal")
    return da.assign_coords(stage=np.array(STAGES, dtype=object))


def _item_shares(table: pd.DataFrame, stage: str, items: list[str],
                 regions: list[str], dim: str) -> xr.DataArray:
    """stage_shares of one stage as (item, region); items without rows take the '*' row."""
    s = table[table["stage"] == stage]
    wide = s.pivot_table(index="item", columns="region", values="share", aggfunc="sum",
                         fill_value=0.0).reindex(columns=regions, fill_value=0.0)
    default = wide.loc["*"] if "*" in wide.index else None
    rows = []
    for it in items:
        if it in wide.index:
            rows.append(wide.loc[it].to_numpy(float))
        elif default is not None:
            rows.append(default.to_numpy(float))
        else:
            raise ValueError(f"stage_shares.csv has no {stage} row for {it!r} and no '*' row")
    return xr.DataArray(np.array(rows), dims=(dim, "region"),
                        coords={dim: items, "region": regions})


def allocate_trade(prod: np.ndarray, use: np.ndarray, by_destination: np.ndarray,
                   by_origin: np.ndarray, parts: dict | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Flows [e, origin, dest] that move each region's output to where it is used.

    Each region serves its own use first. Committed routes come next (`by_origin[e, o, d]`, a
    share of what the origin does not use itself): they ship whatever the destination needs,
    and at the destination they displace its own output, which it then exports or keeps (so
    China can import Malaysian La and Ce while it has La and Ce to spare). Then destinations
    with observed sourcing split their remaining imports by the observed shares
    (`by_destination[e, o, d]`, over origins with something left to export); the rest is
    pooled pro rata. Returns the flows (own use on the diagonal) and what each region keeps
    unsold (its stock change), [e, r]. If `parts` is a dict, it receives the flows split by
    how they were placed: `own`, `committed`, `observed` and `pooled` ([e, o, d])."""
    x0 = prod - np.minimum(prod, use)
    committed = x0[:, :, None] * by_origin
    c_in, c_out = committed.sum(1), committed.sum(2)
    use_left = np.maximum(use - c_in, 0.0)
    kept_imports = np.maximum(c_in - use, 0.0)
    own = np.minimum(prod - c_out, use_left)
    x = prod - c_out - own
    m = use_left - own
    flows = committed.copy()
    observed = np.zeros_like(flows)

    w = by_destination * (x[:, :, None] > 1e-12)
    tot = w.sum(1, keepdims=True)
    w = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    want = m[:, None, :] * w
    asked = want.sum(2)
    want *= np.minimum(1.0, np.divide(x, asked, out=np.ones_like(x), where=asked > 0))[:, :, None]
    flows += want
    observed += want
    x -= want.sum(2)
    m -= want.sum(1)

    sx, sm = x.sum(1, keepdims=True), m.sum(1, keepdims=True)
    moved = np.minimum(sx, sm)
    fx = np.divide(x, sx, out=np.zeros_like(x), where=sx > 0)
    fm = np.divide(m, sm, out=np.zeros_like(m), where=sm > 0)
    pooled = fx[:, :, None] * fm[:, None, :] * moved[:, :, None]
    flows += pooled
    x -= pooled.sum(2)
    m -= pooled.sum(1)
    idx = np.arange(prod.shape[-1])
    flows[:, idx, idx] += own
    if parts is not None:
        diag = np.zeros_like(flows)
        diag[:, idx, idx] = own
        parts.update(own=diag, committed=committed, observed=observed, pooled=pooled)
    if np.any(m > 1e-6 * np.maximum(use, 1.0)):
        raise ValueError("trade allocation left a region's use unserved; the stage's supply "
                         "is short of its use")
    return flows, np.maximum(x, 0.0) + kept_imports


@lru_cache(maxsize=4)
def _network_of(path, year: int) -> Network:
    return Network.from_dataset(load_dataset(path, base_year=year))


@dataclass(frozen=True)
class Network:
    """Base-year network built from a dataset. Arrays are xarray with named dimensions."""

    dataset: Dataset
    year: int

    @classmethod
    def from_dataset(cls, dataset: Dataset | None = None, year: int | None = None) -> Network:
        ds = dataset if dataset is not None else load_dataset()
        return cls(dataset=ds, year=year if year is not None else ds.base_year)

    def at_year(self, year: int | None) -> Network:
        """This network, or the same dataset's network of a past base year (a scenario's
        `base_year`: 2010 for the 2010-11 calibration)."""
        if year is None or year == self.year:
            return self
        return _network_of(self.dataset.path, year)

    # ---- labels and parameters ----------------------------------------------------------
    @cached_property
    def elements(self) -> list[str]:
        return list(self.dataset["elements"]["element"])

    @cached_property
    def sectors(self) -> list[str]:
        return list(self.dataset["sectors"]["sector"])

    @cached_property
    def grades(self) -> list[str]:
        return list(self.dataset["magnet_grades"]["grade"])

    @cached_property
    def regions(self) -> list[str]:
        """Every region that mines, processes or uses something in the base year."""
        ds = self.dataset
        mine = ds["mine_production"].query("year == @self.year and region != 'WLD'")
        if mine.empty:
            raise ValueError(f"mine_production.csv has no rows for year {self.year}")
        names = set(mine["region"])
        names |= set(ds["concentrate_routing"]["destination"])
        names |= set(ds["separation_capability"]["forward_to"])
        names |= set(ds["stage_shares"]["region"]) | set(ds["sector_regions"]["region"])
        return sorted(names)

    @cached_property
    def yields(self) -> dict[str, float]:
        """Output / input of each stage; for magnets, sintered blank / alloy."""
        p = self.dataset["stage_parameters"].set_index("stage")["yield"]
        return {s: float(p[s]) for s in STAGES}

    def parameter(self, name: str) -> float:
        return self.dataset.parameter("network_parameters", name)

    @cached_property
    def metal_per_oxide(self) -> xr.DataArray:
        e = self.dataset["elements"].set_index("element")["metal_per_oxide"]
        return xr.DataArray(e.reindex(self.elements).to_numpy(float), dims="element",
                            coords={"element": self.elements})

    # ---- demand ----------------------------------------------------------------------------
    @cached_property
    def grade_composition(self) -> xr.DataArray:
        """t element per t finished magnet (grade, element)."""
        return _grid(self.dataset["magnet_grade_composition"], "grade", "element",
                     "t_per_t_magnet", self.grades, self.elements)

    @cached_property
    def magnet_demand_t(self) -> xr.DataArray:
        """World use of finished magnets, t magnet (sector, grade)."""
        return _grid(self.dataset["magnet_demand"], "sector", "grade", "t_magnet_per_year",
                     self.sectors, self.grades)

    @cached_property
    def grade_reo_t_per_t(self) -> xr.DataArray:
        """t REO-eq per t finished magnet (grade, element)."""
        return self.grade_composition / self.metal_per_oxide

    @cached_property
    def sector_region_share(self) -> xr.DataArray:
        return _grid(self.dataset["sector_regions"], "sector", "region", "share", self.sectors,
                     self.regions)

    @cached_property
    def world_demand_t(self) -> xr.DataArray:
        """End use by element and sector, t REO-eq of product delivered (element, sector)."""
        magnets = xr.dot(self.magnet_demand_t, self.grade_reo_t_per_t, dim="grade")
        other = _grid(self.dataset["enduse_demand"], "element", "sector", "t_reo_per_year",
                      self.elements, self.sectors)
        return (magnets.transpose("element", "sector") + other).transpose("element", "sector")

    @cached_property
    def demand_t(self) -> xr.DataArray:
        """End use by element, sector and region (element, sector, region)."""
        return self.world_demand_t * self.sector_region_share

    @cached_property
    def _sector_form(self) -> pd.Series:
        return self.dataset["sectors"].set_index("sector")["form"]

    def _form_mask(self, form: str) -> xr.DataArray:
        return xr.DataArray((self._sector_form.reindex(self.sectors) == form).to_numpy(),
                            dims="sector", coords={"sector": self.sectors})

    def enduse_by_form_t(self, form: str) -> xr.DataArray:
        return self.demand_t.where(self._form_mask(form), 0.0).sum("sector")

    # ---- magnet stage --------------------------------------------------------------------
    @cached_property
    def magnet_grade_t(self) -> xr.DataArray:
        """Finished magnets made, t magnet (grade, region)."""
        world = self.magnet_demand_t.sum("sector")
        share = _item_shares(self.dataset["stage_shares"], "magnet", self.grades, self.regions,
                             "grade")
        return world * share

    @cached_property
    def magnet_grade_use_t(self) -> xr.DataArray:
        """Finished magnets used, t magnet (grade, region)."""
        return xr.dot(self.magnet_demand_t, self.sector_region_share, dim="sector")

    @cached_property
    def _grade_trade(self) -> tuple[np.ndarray, np.ndarray]:
        """Magnets are traded as grades: flows [grade, origin, dest] and unsold stock."""
        by_dest, by_origin = self._routes["magnet"]
        G = len(self.grades)
        # magnet routes are given for every element ('*') or none: take the first element's
        prod = self.magnet_grade_t.transpose("grade", "region").to_numpy()
        use = self.magnet_grade_use_t.transpose("grade", "region").to_numpy()
        parts: dict = {}
        flows, stock = allocate_trade(prod, use, np.repeat(by_dest[:1], G, 0),
                                      np.repeat(by_origin[:1], G, 0), parts)
        return flows, stock, parts

    @cached_property
    def magnet_grade_trade_t(self) -> xr.DataArray:
        """Finished magnets shipped, t magnet (grade, origin, dest), own use on the diagonal."""
        return xr.DataArray(self._grade_trade[0], dims=("grade", "origin", "dest"),
                            coords={"grade": self.grades, "origin": self.regions,
                                    "dest": self.regions})

    @cached_property
    def magnet_t(self) -> xr.DataArray:
        """Rare earths in the finished magnets each region makes (element, region)."""
        return xr.dot(self.magnet_grade_t, self.grade_reo_t_per_t, dim="grade").transpose(
            "element", "region")

    @cached_property
    def magnet_blank_t(self) -> xr.DataArray:
        """Rare earths in the sintered blanks machined into those magnets (element, region)."""
        return self.magnet_t / self.parameter("machining_yield")

    @cached_property
    def swarf_t(self) -> xr.DataArray:
        """Swarf recoverable where magnets are machined, t REO-eq (element, region)."""
        return (self.magnet_blank_t - self.magnet_t) * self.parameter("swarf_recovery_yield")

    @cached_property
    def swarf_route(self) -> xr.DataArray:
        """Where swarf is recycled (element, region, dest): where the magnet is made if that
        country separates the element, else where it sends the feed it cannot separate (the
        country itself: kept unprocessed)."""
        own = xr.DataArray(np.eye(len(self.regions)), dims=("region", "dest"),
                           coords={"region": self.regions, "dest": self.regions})
        local = (self.separable > 0).astype(float)
        return (local * own + (1 - local) * self.forward_to).transpose("element", "region",
                                                                        "dest")

    @cached_property
    def swarf_secondary_t(self) -> xr.DataArray:
        """Swarf recovered as separated product where it is recycled (element, region)."""
        own = xr.DataArray(np.eye(len(self.regions)), dims=("region", "dest"),
                           coords={"region": self.regions, "dest": self.regions})
        kept = (self.separable <= 0) * own
        moved = self.swarf_t * self.swarf_route * (1 - kept)
        return moved.sum("region").rename(dest="region").transpose("element", "region")

    @cached_property
    def swarf_kept_t(self) -> xr.DataArray:
        """Swarf a country keeps unprocessed: it separates none of that element and sends its
        unseparable feed nowhere else (element, region)."""
        own = xr.DataArray(np.eye(len(self.regions)), dims=("region", "dest"),
                           coords={"region": self.regions, "dest": self.regions})
        kept = ((self.separable <= 0) * own * self.swarf_route).sum("dest")
        return (self.swarf_t * kept).transpose("element", "region")

    @cached_property
    def metal_for_magnets_t(self) -> xr.DataArray:
        return self.magnet_blank_t / self.yields["magnet"]

    # ---- metal stage ---------------------------------------------------------------------
    @cached_property
    def metal_t(self) -> xr.DataArray:
        world = (self.metal_for_magnets_t.sum("region")
                 + self.enduse_by_form_t("metal").sum("region"))
        share = _item_shares(self.dataset["stage_shares"], "metal", self.elements, self.regions,
                             "element")
        return (world * share).transpose("element", "region")

    # ---- mining and separation ---------------------------------------------------------------
    @cached_property
    def mine_mix(self) -> xr.DataArray:
        """Element share of each region's mine output (region, element)."""
        ds = self.dataset
        deposits = list(ds["deposits"]["deposit"])
        split = _grid(ds["mine_source_split"], "region", "deposit", "share", self.regions,
                      deposits)
        comp = _grid(ds["deposit_composition"], "deposit", "element", "share", deposits,
                     self.elements)
        return xr.dot(split, comp, dim="deposit")

    @cached_property
    def mine_t(self) -> xr.DataArray:
        mine = self.dataset["mine_production"].query("year == @self.year and region != 'WLD'")
        reo = mine.set_index("region")["t_reo"].reindex(self.regions, fill_value=0.0)
        reo_da = xr.DataArray(reo.to_numpy(dtype=float), dims="region",
                              coords={"region": self.regions})
        return (reo_da * self.mine_mix).transpose("element", "region")

    @cached_property
    def routing(self) -> xr.DataArray:
        r = self.dataset["concentrate_routing"].rename(columns={"origin": "region"})
        da = _grid(r, "region", "destination", "share", self.regions, self.regions)
        return da.rename(destination="dest")

    @cached_property
    def separable(self) -> xr.DataArray:
        """Share of each element of its feed a region separates itself (element, region)."""
        cap = self.dataset["separation_capability"]
        out = np.ones((len(self.elements), len(self.regions)))
        for region, rows in cap.groupby("region"):
            if region not in self.regions:
                continue
            by_el = rows.set_index("element")["separated_share"]
            default = float(by_el.get("*", 1.0))
            r = self.regions.index(region)
            out[:, r] = [float(by_el.get(e, default)) for e in self.elements]
        return xr.DataArray(out, dims=("element", "region"),
                            coords={"element": self.elements, "region": self.regions})

    @cached_property
    def forward_to(self) -> xr.DataArray:
        """Where each region sends the feed it does not separate (element, region, dest), one-hot:
        another region (shipped on, unseparated) or the region itself (kept in stock)."""
        cap = self.dataset["separation_capability"]
        E, R = len(self.elements), len(self.regions)
        dest = np.full((E, R), self.regions.index(UNRECORDED_REGION))
        for region, rows in cap.groupby("region"):
            if region not in self.regions:
                continue
            by_el = rows.set_index("element")["forward_to"]
            default = by_el.get("*", UNRECORDED_REGION)
            dest[:, self.regions.index(region)] = [
                self.regions.index(by_el.get(e, default)) for e in self.elements]
        out = np.zeros((E, R, R))
        out[np.arange(E)[:, None], np.arange(R)[None, :], dest] = 1.0
        return xr.DataArray(out, dims=("element", "region", "dest"),
                            coords={"element": self.elements, "region": self.regions,
                                    "dest": self.regions})

    @cached_property
    def _feed_legs(self) -> dict[str, xr.DataArray]:
        """Concentrate received from mines, the part separated where received, the part
        shipped on and the part kept in stock."""
        received = (self.mine_t * self.routing).sum("region").rename(dest="region")
        rest = received * (1 - self.separable)
        own = xr.DataArray(np.eye(len(self.regions)), dims=("region", "dest"),
                           coords={"region": self.regions, "dest": self.regions})
        onward = rest * self.forward_to * (1 - own)
        kept = (rest * self.forward_to * own).sum("dest")
        arrived = onward.sum("region").rename(dest="region")
        if float((arrived * (1 - self.separable)).sum()) > 1e-9:
            raise ValueError("separation_capability.csv forwards feed to a region that cannot "
                             "separate it either")
        return {"received": received, "separated": received * self.separable + arrived,
                "onward": onward, "kept": kept}

    @cached_property
    def concentrate_flow_t(self) -> xr.DataArray:
        """Concentrate and unseparated intermediates shipped between regions (element, origin,
        dest): mine -> separation country as routed, then the part that country cannot
        separate on to `forward_to` (Malaysia's heavy fraction to China, say)."""
        first = self.mine_t * self.routing  # element, region (origin), dest
        own = xr.DataArray(np.eye(len(self.regions)), dims=("region", "dest"),
                           coords={"region": self.regions, "dest": self.regions})
        swarf = self.swarf_t * self.swarf_route * (1 - own)
        legs = first + self._feed_legs["onward"] + swarf
        return legs.rename(region="origin").transpose("element", "origin", "dest")

    @cached_property
    def separation_feed_t(self) -> xr.DataArray:
        """What each region's plants separate (element, region)."""
        return self._feed_legs["separated"].transpose("element", "region")

    @cached_property
    def concentrate_stock_t(self) -> xr.DataArray:
        """Concentrate kept unseparated where it was received (element, region)."""
        return self._feed_legs["kept"].transpose("element", "region")

    @cached_property
    def oxide_use_t(self) -> xr.DataArray:
        """Separated product each region uses: its metal making and its oxide end use."""
        return self.metal_t / self.yields["metal"] + self.enduse_by_form_t("oxide")

    @cached_property
    def unrecorded_t(self) -> xr.DataArray:
        """Separated supply the recorded mines and swarf do not explain (element), placed in
        UNRECORDED_REGION: world use of separated product beyond recorded supply."""
        recorded = (self.separation_feed_t * self.yields["separation"]
                    + self.swarf_secondary_t).sum("region")
        gap = self.oxide_use_t.sum("region") - recorded
        return np.maximum(gap, 0.0)

    @cached_property
    def separation_t(self) -> xr.DataArray:
        """Separated output by region: primary separation, swarf recovered, and unrecorded
        supply (element, region)."""
        unrec = xr.zeros_like(self.swarf_secondary_t)
        unrec.loc[{"region": UNRECORDED_REGION}] = self.unrecorded_t
        return (self.separation_feed_t * self.yields["separation"] + self.swarf_secondary_t
                + unrec).transpose("element", "region")

    # ---- production, use, trade ---------------------------------------------------------------
    @cached_property
    def production_t(self) -> xr.DataArray:
        """Output of each stage (element, stage, region)."""
        arrs = [self.mine_t, self.separation_t, self.metal_t, self.magnet_t]
        return _stack_stages(arrs).transpose("element", "stage", "region")

    @cached_property
    def use_t(self) -> xr.DataArray:
        """What each region takes of each stage's product (element, stage, region): the input of
        the next stage there plus end use of that form."""
        arrs = [
            self.separation_feed_t,
            self.oxide_use_t,
            self.metal_for_magnets_t + self.enduse_by_form_t("metal"),
            self.enduse_by_form_t("magnet"),
        ]
        return _stack_stages(arrs).transpose("element", "stage", "region")

    @cached_property
    def _routes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """trade_routes as dense arrays per stage: (by destination, by origin) [e, o, d]."""
        routes = self.dataset["trade_routes"]
        R, E = len(self.regions), len(self.elements)
        out = {}
        for stage in STAGES[1:]:
            arrs = {"destination": np.zeros((E, R, R)), "origin": np.zeros((E, R, R))}
            s = routes[(routes["stage"] == stage) & routes["origin"].isin(self.regions)
                       & routes["destination"].isin(self.regions)]
            for row in s.itertuples():
                els = range(E) if row.element == "*" else [self.elements.index(row.element)]
                o, d = self.regions.index(row.origin), self.regions.index(row.destination)
                arrs[row.basis][list(els), o, d] = row.share
            out[stage] = (arrs["destination"], arrs["origin"])
        return out

    @cached_property
    def _trade(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        prod, use = self.production_t, self.use_t
        out = {}
        for stage in ("separation", "metal"):
            p = prod.sel(stage=stage).transpose("element", "region").to_numpy()
            u = use.sel(stage=stage).transpose("element", "region").to_numpy()
            parts: dict = {}
            out[stage] = (*allocate_trade(p, u, *self._routes[stage], parts), parts)
        comp = self.grade_reo_t_per_t.transpose("grade", "element").to_numpy()
        flows, stock, parts = self._grade_trade
        out["magnet"] = (np.einsum("god,ge->eod", flows, comp),
                         np.einsum("gr,ge->er", stock, comp),
                         {k: np.einsum("god,ge->eod", v, comp) for k, v in parts.items()})
        return out

    def trade_parts(self, stage: str) -> dict[str, np.ndarray]:
        """A stage's trade flows split by how they were placed, [e, o, d]: `own` (the
        diagonal), `committed` (routes by origin), `observed` (shares of a destination's
        imports) and `pooled` (the rest); they add up to `trade_t` (magnets: by grade,
        converted by composition)."""
        return self._trade[stage][2]

    @cached_property
    def trade_t(self) -> xr.DataArray:
        """Flows of each stage's product from origin to dest, domestic use on the diagonal
        (element, stage, origin, dest). Mining: concentrate and unseparated intermediates."""
        coords = {"element": self.elements, "origin": self.regions, "dest": self.regions}
        arrs = [self.concentrate_flow_t.transpose("element", "origin", "dest")]
        for stage in STAGES[1:]:
            arrs.append(xr.DataArray(self._trade[stage][0], dims=("element", "origin", "dest"),
                                     coords=coords))
        return _stack_stages(arrs).transpose("element", "stage", "origin", "dest")

    @cached_property
    def stock_change_t(self) -> xr.DataArray:
        """Output a region could not sell and kept: the unsold surplus (element, stage, region)."""
        coords = {"element": self.elements, "region": self.regions}
        arrs = [self.concentrate_stock_t]
        for stage in STAGES[1:]:
            arrs.append(xr.DataArray(self._trade[stage][1], dims=("element", "region"),
                                     coords=coords))
        return _stack_stages(arrs).transpose("element", "stage", "region")

    @cached_property
    def losses_t(self) -> xr.DataArray:
        """Process losses of each stage where it happens (element, stage, region); magnets:
        sintering losses, swarf not recovered and swarf kept unprocessed."""
        y = self.yields
        swarf = self.magnet_blank_t - self.magnet_t
        magnet = (self.metal_for_magnets_t - self.magnet_blank_t
                  + swarf * (1 - self.parameter("swarf_recovery_yield")) + self.swarf_kept_t)
        arrs = [xr.zeros_like(self.mine_t), self.separation_feed_t * (1 - y["separation"]),
                self.metal_t * (1 / y["metal"] - 1), magnet]
        return _stack_stages(arrs).transpose("element", "stage", "region")

    # ---- checks -----------------------------------------------------------------------------
    def balance(self) -> pd.DataFrame:
        """World balance per element and stage: output = use + stock change.

        Mining output is mined concentrate and its use the separation feed; separation output
        includes swarf recovered and unrecorded supply; the relative residual is against output.
        """
        prod = self.production_t.sum("region")
        use = self.use_t.sum("region")
        stock = self.stock_change_t.sum("region")
        df = pd.DataFrame({
            "output_t": prod.to_series(),
            "use_t": use.to_series(),
            "stock_change_t": stock.to_series(),
            "residual_t": (prod - use - stock).to_series(),
        })
        df["rel_residual"] = (df["residual_t"] / df["output_t"].where(df["output_t"] > 0)).fillna(0)
        return df

    def check_balance(self, rtol: float = BALANCE_RTOL) -> None:
        b = self.balance()
        worst = b["rel_residual"].abs().max()
        if worst > rtol:
            at = b["rel_residual"].abs().idxmax()
            raise AssertionError(f"base-year balance off by {worst:.2e} (> {rtol:g}) at {at}")

    def surplus(self) -> pd.DataFrame:
        """Per element: separated supply (primary, swarf, unrecorded), use, and the unsold
        surplus with where it sits (t REO-eq a year)."""
        sep = self.separation_t.sum("region")
        stock = self.stock_change_t.sel(stage="separation")
        df = pd.DataFrame({
            "primary_t": (self.separation_feed_t * self.yields["separation"]).sum("region")
            .to_series(),
            "swarf_t": self.swarf_secondary_t.sum("region").to_series(),
            "unrecorded_t": self.unrecorded_t.to_series(),
            "use_t": self.oxide_use_t.sum("region").to_series(),
            "surplus_t": stock.sum("region").to_series(),
            "surplus_in_china_t": stock.sel(region="CHN").to_series(),
        })
        df["surplus_share"] = (df["surplus_t"] / sep.to_series().where(sep.to_series() > 0))
        return df

    def magnet_tonnage_by_element(self, elements=("Nd", "Pr", "Dy", "Tb")) -> pd.Series:
        """World finished-magnet tonnage implied by each element's flow into magnets: that
        element in the magnet sectors' end use / its average content per tonne of magnet.
        One product per grade makes every element give the same tonnage."""
        enduse = self.enduse_by_form_t("magnet").sum("region") * self.metal_per_oxide
        grade_t = self.magnet_demand_t.sum("sector")
        content = (grade_t * self.grade_composition).sum("grade") / grade_t.sum()
        return pd.Series({e: float(enduse.sel(element=e) / content.sel(element=e))
                          for e in elements}, name="t_magnet")

    def consistency_checks(self) -> pd.DataFrame:
        """Published figures against what the network implies, on the same basis (they are
        not inputs; the basis of each is in the `basis` column)."""
        prod = self.production_t
        world = prod.sum("region").sum("element")
        chn = prod.sel(region="CHN").sum("element")
        sintered = [g for g in self.grades if g not in ("ndfeb_bonded", "smco")]
        blanks_kt = float(self.magnet_grade_t.sel(grade=sintered).sum()
                          / self.parameter("machining_yield")) / 1000
        magnet_reo = float(self.metal_for_magnets_t.sum()) / self.yields["metal"]
        reo_use = float(self.oxide_use_t.sum())
        us_use = float(self.use_t.sel(stage="separation", region="USA").sum()
                       + self.enduse_by_form_t("metal").sel(region="USA").sum())
        flows = self.trade_t.sum("element")
        reo_per_t = self.parameter("hs2846_reo_content")
        ct = self.dataset["trade_china_imports_2846"].query("year == @self.year")
        ct = ct.set_index("origin")["t"]

        def into_china(origin: str) -> float:
            return float(flows.sel(origin=origin, dest="CHN", stage=["mining", "separation"])
                         .sum())

        if self.year == 2010:
            return self._checks_2010(chn, world, blanks_kt, magnet_reo / reo_use, us_use)
        rows = [
            ("China share of separation (REO)",
             float(chn.sel(stage="separation") / world.sel(stage="separation")), 0.92,
             "IEA GCMO 2024: 92% of refining (2023)", "separated output incl. swarf recycling"),
            ("China share of magnet output (REO in magnets)",
             float(chn.sel(stage="magnet") / world.sel(stage="magnet")), 0.92,
             "~90% (Bloomberg) to ~94% (IEA)", "rare earths in finished magnets"),
            ("World sintered NdFeB blanks, kt", blanks_kt, 275.0,
             "~250-300 kt/yr sintered NdFeB (reference notes, approx)",
             "sintered blanks = finished sintered magnets / machining yield"),
            ("Magnets share of REO use by volume", magnet_reo / reo_use, 0.29,
             "Roskill 2021: 29% (2020), towards ~40% by 2030",
             "REO-eq into magnet alloy / REO-eq into every use"),
            ("US use of compounds and metals, t", us_use, 9010.0,
             "USGS MCS 2026: apparent consumption 2024",
             "US separated-product and metal use, t REO-eq"),
        ]
        for origin in ("MMR", "LAO", "MYS"):
            rows.append((f"{origin} -> CHN concentrate and compounds, t REO",
                         into_china(origin), float(ct.get(origin, np.nan)) * reo_per_t,
                         f"UN Comtrade 2024: China's HS 2846 imports from {origin} "
                         f"({float(ct.get(origin, np.nan)):,.0f} t) x {reo_per_t:g} t REO/t",
                         "t REO-eq, mining and separation stages"))
        return pd.DataFrame(rows, columns=["check", "network", "published", "source", "basis"])

    def _checks_2010(self, chn, world, blanks_kt, magnet_share, us_use) -> pd.DataFrame:
        """The 2010 network against the 2010 record (the calibration base year)."""
        flows = self.trade_t.sel(stage=["separation", "metal"]).sum(["element", "stage"])
        out_of_china = float(flows.sel(origin="CHN").sum() - flows.sel(origin="CHN", dest="CHN"))
        to_japan = float(flows.sel(origin="CHN", dest="JPN"))
        rows = [
            ("China share of separation (REO)",
             float(chn.sel(stage="separation") / world.sel(stage="separation")), 0.97,
             "USGS MCS 2011: China ~97% of world output (2010)",
             "separated output incl. swarf recycling"),
            ("World sintered NdFeB blanks, kt", blanks_kt, 98.2,
             "china.org.cn: 98,200 t in 2010 (an input: magnet_demand.csv is sized to it)",
             "sintered blanks = finished sintered magnets / machining yield"),
            ("Magnets share of REO use by volume", magnet_share, 0.21,
             "IMCOA 2010: magnets 21% of 125,000 t",
             "REO-eq into magnet alloy / REO-eq into every use"),
            ("China's exports of separated products and metals, t", out_of_china, 39813.0,
             "CCSIC: 39,813 t exported in 2010 (customs product weight, not REO)",
             "t REO-eq, separation and metal stages"),
            ("Japan's imports from China, t", to_japan, 23310.0,
             "Japan customs via Reuters/SMM: 23,310 t in 2010 (product weight)",
             "t REO-eq, separation and metal stages"),
            ("US use of compounds and metals, t", us_use, 5050.0,
             "USGS DS140: apparent consumption 2010, t REO",
             "US separated-product and metal use, t REO-eq"),
        ]
        return pd.DataFrame(rows, columns=["check", "network", "published", "source", "basis"])
