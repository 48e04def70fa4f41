"""The base-year supply network as labelled arrays: who mines, separates, makes metal and
magnets, who uses them, and what flows between them.

All quantities are tonnes of rare-earth-oxide equivalent per year (`t REO-eq`): a tonne of
Nd metal counts as 1/0.857 t of Nd2O3. One unit across stages makes mass balance a sum.

How the base year is assembled (each step is documented in docs/model.md):
1. mining: USGS mine output by country x the element mix of its mining sources;
2. separation: each country's concentrate is separated where `concentrate_routing` sends it,
   at the separation yield;
3. use: each element's separated output is split among uses (`enduse_shares`); metal and
   magnet uses go through the metal and magnet stages at their yields; magnets are split
   among magnet sectors by sector magnet mass x element content;
4. metal and magnet output by country: world output x the country's stage share;
5. regional demand: sector demand x the sector's regional split;
6. trade at each stage: a country's output meets its own use first; surpluses meet
   deficits pro rata (pooled market), except concentrate, which follows the routing.
The world balance then closes by construction; `balance()` reports the residual and
`consistency_checks()` compares independent published figures with what the network implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.data.load import Dataset, load_dataset
from oreflow.data.schema import STAGES

BALANCE_RTOL = 1e-9
"""The base year is closed by construction, so the only residual is floating-point error."""

_STAGE_INPUT = {"separation": "mining", "metal": "separation", "magnet": "metal"}


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


@dataclass(frozen=True)
class Network:
    """Base-year network built from a dataset. Arrays are xarray with named dimensions."""

    dataset: Dataset
    year: int

    @classmethod
    def from_dataset(cls, dataset: Dataset | None = None, year: int | None = None) -> Network:
        ds = dataset if dataset is not None else load_dataset()
        return cls(dataset=ds, year=year if year is not None else ds.base_year)

    # ---- labels -------------------------------------------------------------------------
    @cached_property
    def elements(self) -> list[str]:
        return list(self.dataset["elements"]["element"])

    @cached_property
    def sectors(self) -> list[str]:
        return list(self.dataset["sectors"]["sector"])

    @cached_property
    def regions(self) -> list[str]:
        """Every region that mines, processes or uses something in the base year."""
        ds = self.dataset
        mine = ds["mine_production"].query("year == @self.year and region != 'WLD'")
        if mine.empty:
            raise ValueError(f"mine_production.csv has no rows for year {self.year}")
        names = set(mine["region"])
        names |= set(ds["concentrate_routing"]["destination"])
        names |= set(ds["stage_shares"]["region"]) | set(ds["sector_regions"]["region"])
        return sorted(names)

    def _param(self, stage: str, col: str) -> float:
        p = self.dataset["stage_parameters"].set_index("stage")
        return float(p.loc[stage, col])

    @cached_property
    def yields(self) -> dict[str, float]:
        return {s: self._param(s, "yield") for s in STAGES}

    # ---- mining and separation ------------------------------------------------------------
    @cached_property
    def mine_mix(self) -> xr.DataArray:
        """Element share of each region's mine output (region, element)."""
        ds = self.dataset
        split = _grid(ds["mine_source_split"], "region", "deposit", "share", self.regions,
                      list(ds["deposits"]["deposit"]))
        comp = _grid(ds["deposit_composition"], "deposit", "element", "share",
                     list(ds["deposits"]["deposit"]), self.elements)
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
    def concentrate_flow_t(self) -> xr.DataArray:
        """Concentrate shipped from mine country (origin) to separation country (dest)."""
        return (self.mine_t * self.routing).rename(region="origin")

    @cached_property
    def separation_feed_t(self) -> xr.DataArray:
        return self.concentrate_flow_t.sum("origin").rename(dest="region")

    @cached_property
    def separation_t(self) -> xr.DataArray:
        return self.separation_feed_t * self.yields["separation"]

    # ---- uses -----------------------------------------------------------------------------
    @cached_property
    def oxide_by_use_t(self) -> xr.DataArray:
        """World separated oxide of each element by use ('magnets' or a sector) (element, use)."""
        shares = self.dataset["enduse_shares"]
        uses = sorted(set(shares["use"]))
        grid = _grid(shares, "element", "use", "share", self.elements, uses)
        return self.separation_t.sum("region") * grid

    @cached_property
    def _sector_form(self) -> pd.Series:
        return self.dataset["sectors"].set_index("sector")["form"]

    @cached_property
    def magnet_sector_weights(self) -> xr.DataArray:
        """How each element's magnet use splits among magnet sectors (element, sector)."""
        sec = self.dataset["sectors"].set_index("sector")
        comp = _grid(self.dataset["magnet_composition"], "sector", "element", "t_per_t_magnet",
                     self.sectors, self.elements)
        mass = xr.DataArray(sec["magnet_mass_share"].reindex(self.sectors).to_numpy(float),
                            dims="sector", coords={"sector": self.sectors})
        w = comp * mass
        total = w.sum("sector")
        return (w / total.where(total > 0)).fillna(0.0).transpose("element", "sector")

    @cached_property
    def world_demand_t(self) -> xr.DataArray:
        """End use by element and sector, t REO-eq of product delivered (element, sector)."""
        ox = self.oxide_by_use_t
        y = self.yields
        unknown = set(ox["use"].values) - set(self.sectors) - {"magnets"}
        if unknown:
            raise ValueError(f"enduse_shares.csv names unknown use(s) {sorted(unknown)}; "
                             f"allowed: 'magnets' or a sector in sectors.csv")
        out = xr.zeros_like(self.magnet_sector_weights)
        for sector in self.sectors:
            form = self._sector_form[sector]
            if sector in ox["use"].values and form != "magnet":
                factor = y["metal"] if form == "metal" else 1.0
                out.loc[{"sector": sector}] = ox.sel(use=sector) * factor
        if "magnets" in ox["use"].values:
            magnets = ox.sel(use="magnets", drop=True) * y["metal"] * y["magnet"]
            out = out + magnets * self.magnet_sector_weights
        return out

    @cached_property
    def sector_region_share(self) -> xr.DataArray:
        return _grid(self.dataset["sector_regions"], "sector", "region", "share", self.sectors,
                     self.regions)

    @cached_property
    def demand_t(self) -> xr.DataArray:
        """End use by element, sector and region (element, sector, region)."""
        return self.world_demand_t * self.sector_region_share

    def _form_mask(self, form: str) -> xr.DataArray:
        return xr.DataArray((self._sector_form.reindex(self.sectors) == form).to_numpy(),
                            dims="sector", coords={"sector": self.sectors})

    def enduse_by_form_t(self, form: str) -> xr.DataArray:
        return self.demand_t.where(self._form_mask(form), 0.0).sum("sector")

    # ---- metal and magnet stages ------------------------------------------------------------
    def _stage_share(self, stage: str) -> xr.DataArray:
        s = self.dataset["stage_shares"].query("stage == @stage")
        vals = s.set_index("region")["share"].reindex(self.regions, fill_value=0.0)
        return xr.DataArray(vals.to_numpy(float), dims="region", coords={"region": self.regions})

    @cached_property
    def magnet_t(self) -> xr.DataArray:
        world = self.enduse_by_form_t("magnet").sum("region")
        return world * self._stage_share("magnet")

    @cached_property
    def metal_t(self) -> xr.DataArray:
        world = (self.magnet_t.sum("region") / self.yields["magnet"]
                 + self.enduse_by_form_t("metal").sum("region"))
        return world * self._stage_share("metal")

    # ---- production, use, trade ---------------------------------------------------------------
    @cached_property
    def production_t(self) -> xr.DataArray:
        """Output of each stage (element, stage, region)."""
        arrs = [self.mine_t, self.separation_t, self.metal_t, self.magnet_t]
        da = _stack_stages(arrs)
        return da.transpose("element", "stage", "region")

    @cached_property
    def use_t(self) -> xr.DataArray:
        """What each region consumes of each stage's product (element, stage, region):
        inputs of the next stage there plus end use of that form."""
        y = self.yields
        arrs = [
            self.separation_feed_t,
            self.metal_t / y["metal"] + self.enduse_by_form_t("oxide"),
            self.magnet_t / y["magnet"] + self.enduse_by_form_t("metal"),
            self.enduse_by_form_t("magnet"),
        ]
        da = _stack_stages(arrs)
        return da.transpose("element", "stage", "region")

    @cached_property
    def losses_t(self) -> xr.DataArray:
        """Process losses of each stage where it happens (element, stage, region)."""
        inputs = {
            "mining": xr.zeros_like(self.mine_t),
            "separation": self.separation_feed_t,
            "metal": self.metal_t / self.yields["metal"],
            "magnet": self.magnet_t / self.yields["magnet"],
        }
        arrs = [inputs[s] * (1 - self.yields[s]) for s in STAGES]
        da = _stack_stages(arrs)
        return da.transpose("element", "stage", "region")

    @cached_property
    def trade_t(self) -> xr.DataArray:
        """Flows of each stage's product from origin to dest, domestic use included on the
        diagonal (element, stage, origin, dest)."""
        prod = self.production_t
        use = self.use_t
        own = np.minimum(prod, use)
        surplus = prod - own
        deficit = use - own
        total = deficit.sum("region")
        share_of_deficit = (deficit / total.where(total > 0)).fillna(0.0)
        pooled = surplus.rename(region="origin") * share_of_deficit.rename(region="dest")
        eye = xr.DataArray(np.eye(len(self.regions)), dims=("origin", "dest"),
                           coords={"origin": self.regions, "dest": self.regions})
        flows = pooled + own.rename(region="origin") * eye
        mining = self.concentrate_flow_t.expand_dims(stage=["mining"])
        flows = xr.concat([mining, flows.drop_sel(stage="mining")], dim="stage")
        return flows.sel(stage=list(STAGES)).transpose("element", "stage", "origin", "dest")

    # ---- checks -----------------------------------------------------------------------------
    def balance(self) -> pd.DataFrame:
        """World balance per element and stage: output vs what the next stage and end use take.

        residual_t = output - (input of the next stage + end use of this form); for the last
        stage, output - magnet end use. Relative residual is against output.
        """
        prod = self.production_t.sum("region")
        use = self.use_t.sum("region")
        resid = prod - use
        df = pd.DataFrame({
            "output_t": prod.to_series(),
            "use_t": use.to_series(),
            "residual_t": resid.to_series(),
        })
        df["rel_residual"] = (df["residual_t"] / df["output_t"].where(df["output_t"] > 0)).fillna(0)
        return df

    def check_balance(self, rtol: float = BALANCE_RTOL) -> None:
        b = self.balance()
        worst = b["rel_residual"].abs().max()
        if worst > rtol:
            at = b["rel_residual"].abs().idxmax()
            raise AssertionError(f"base-year balance off by {worst:.2e} (> {rtol:g}) at {at}")

    def consistency_checks(self) -> pd.DataFrame:
        """Published figures against what the network implies (they are not inputs)."""
        prod = self.production_t
        world = prod.sum("region")
        reo = world.sum("element")
        chn = prod.sel(region="CHN").sum("element")
        magnet_el = ["Nd", "Pr", "Dy", "Tb", "Gd", "Ho"]
        mpo = self.dataset["elements"].set_index("element")["metal_per_oxide"]
        magnet_metal_t = sum(
            float(self.enduse_by_form_t("magnet").sel(element=e).sum()) * mpo[e]
            for e in magnet_el
        )
        re_frac = 0.30  # NdFeB is ~29-32 wt% rare earth (reference notes)
        us_use = float(self.use_t.sel(stage="separation", region="USA").sum()
                       + self.enduse_by_form_t("metal").sel(region="USA").sum())
        rows = [
            ("China share of separation (REO)", float(chn.sel(stage="separation")
                                                      / reo.sel(stage="separation")),
             0.92, "IEA GCMO 2024: 92% of refining (2023)"),
            ("China share of magnet output", float(chn.sel(stage="magnet")
                                                   / reo.sel(stage="magnet")),
             0.92, "~90% (Bloomberg) to ~94% (IEA)"),
            ("World NdFeB output implied, kt", magnet_metal_t / re_frac / 1000, 275.0,
             "~250-300 kt/yr sintered (reference notes, approx)"),
            ("Magnets share of REO use by volume",
             float(self.oxide_by_use_t.sel(use="magnets").sum()
                   / self.oxide_by_use_t.sum()), 0.29, "Roskill 2021: 29% (2020)"),
            ("US use of compounds and metals, t", us_use, 9010.0,
             "USGS MCS 2026: apparent consumption 2024"),
        ]
        return pd.DataFrame(rows, columns=["check", "network", "published", "source"])
