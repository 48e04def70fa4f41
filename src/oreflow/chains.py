"""A commodity chain's base-year network, built from its declaration tables alone.

The rare earths keep their detailed element-by-element `oreflow.network.Network`; every other
chain of `chains.csv` (model `generic`) is built here from the same kind of rows, so adding a
commodity is adding rows (`tests/fixtures/toy_chain` does exactly that). Quantities are t of
the chain's basis (t Ga, t Li contained, t graphite...) per year.

How the base year is made (docs/model.md, "Chains as data"):
1. production by (stage, region): a stage's rows in t are taken for the base year; rows that
   are shares of the stage's world output are applied to the base year's world total whatever
   their vintage (the vintage stays in the row). The world total is the stage's `WLD` row, or
   else the quantified stage before it times this stage's yield. What the listed regions do not
   make is put in XOT (the rest of the world). A stage with no rows is declared but not
   quantified (a gap in public data) and is skipped.
2. use: each stage's product feeds the next quantified stage (its output / yield, where that
   stage makes it); what is left over at a stage whose product end users buy (`end_use`) is end
   use; at other stages it is an unsold stock change. World end use is split by region with
   `chain_demand` (t for the US from USGS; shares elsewhere; XOT takes the rest) and by sector
   with `chain_end_uses`. Assumption: a region's share of use is the same at every end-use stage
   of the chain.
3. trade at each stage: `oreflow.network.allocate_trade` (own use first, then US imports by the
   USGS import sources where the chain names them, then pro rata).
`balance()` shows output = use + stock change at every stage; `check_balance` enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.data.chain import Chain
from oreflow.data.load import Dataset, load_dataset
from oreflow.network import allocate_trade

BALANCE_RTOL = 1e-9
REST = "XOT"
WORLD = "WLD"


class ChainError(ValueError):
    """A chain's rows cannot be turned into a network; the message says which and why."""


def _pick_vintage(rows: pd.DataFrame, year: int) -> pd.DataFrame:
    """Per region, the row of the latest year <= `year`, else the earliest after it."""
    if rows.empty:
        return rows
    r = rows.assign(_after=rows["year"] > year, _dist=(rows["year"] - year).abs())
    r = r.sort_values(["region", "_after", "_dist"])
    return r.drop_duplicates("region", keep="first").drop(columns=["_after", "_dist"])


@dataclass(frozen=True)
class ChainNetwork:
    """Base-year network of one generic chain. Arrays are xarray with named dimensions
    (stage, region, origin, dest, sector)."""

    dataset: Dataset
    chain: Chain
    year: int

    @classmethod
    def from_dataset(cls, dataset: Dataset | None = None, chain: str = "Ga",
                     year: int | None = None) -> ChainNetwork:
        ds = dataset if dataset is not None else load_dataset()
        c = ds.chain(chain)
        if c.model != "generic":
            raise ChainError(f"{c.id} is modelled by the detailed network "
                             "(oreflow.network.Network), not by ChainNetwork")
        return cls(dataset=ds, chain=c, year=year if year is not None else ds.base_year)

    @property
    def id(self) -> str:
        return self.chain.id

    def _tol(self) -> float:
        return self.dataset.parameter("chain_parameters", "demand_share_tolerance")

    # ---- production ---------------------------------------------------------------------
    @cached_property
    def _rows(self) -> pd.DataFrame:
        p = self.dataset["chain_production"]
        return p[p["chain"] == self.id]

    def _stage_rows(self, stage: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(t rows of the base year, share rows of the nearest vintage) of one stage."""
        r = self._rows[self._rows["stage"] == stage]
        t = r[(r["unit"] == "t") & (r["year"] == self.year)]
        s = _pick_vintage(r[r["unit"] == "share"], self.year)
        return t, s

    @cached_property
    def stages(self) -> list[str]:
        """Quantified stages in chain order (a stage with production rows for the year)."""
        out = []
        for s in self.chain.stages:
            t, sh = self._stage_rows(s.stage)
            if len(t) or len(sh):
                out.append(s.stage)
        if not out:
            raise ChainError(f"chain_production.csv has no rows for chain {self.id} in "
                             f"{self.year}")
        return out

    @cached_property
    def unquantified_stages(self) -> list[str]:
        """Declared stages without production data (public data gaps)."""
        return [s for s in self.chain.stage_ids if s not in self.stages]

    @cached_property
    def _production(self) -> dict[str, pd.Series]:
        out: dict[str, pd.Series] = {}
        prev_world = None
        tol = self._tol()
        for stage in self.stages:
            t, sh = self._stage_rows(stage)
            world_row = t[t["region"] == WORLD]
            t = t[t["region"] != WORLD]
            listed = t.set_index("region")["value"].astype(float)
            if len(world_row):
                world = float(world_row["value"].iloc[0])
            elif prev_world is not None:
                world = prev_world * self.chain.stage(stage).yield_
                if not np.isfinite(world):
                    raise ChainError(f"chain_stages.csv: stage {stage!r} of {self.id} needs a "
                                     "yield to derive its world output from the stage before")
            elif len(sh) == 0:
                world = float(listed.sum())
            else:
                raise ChainError(f"chain_production.csv: stage {stage!r} of {self.id} gives "
                                 "shares but no world total (a WLD row in t) and no stage "
                                 "before it")
            shares = sh.set_index("region")["value"].astype(float)
            if shares.sum() > 1 + tol:
                raise ChainError(f"chain_production.csv: shares of stage {stage!r} of "
                                 f"{self.id} sum to {shares.sum():.4f} (> 1)")
            shares = shares / max(1.0, float(shares.sum()))  # within tolerance of 1
            v = pd.concat([listed, shares * world]).groupby(level=0).sum()
            world = max(world, float(v.sum()))  # country rows may exceed a rounded total
            rest = world - float(v.sum())
            if rest > 1e-9 * world:
                v[REST] = v.get(REST, 0.0) + rest
            out[stage] = v[v > 0] if (v > 0).any() else v
            prev_world = world
        return out

    @cached_property
    def regions(self) -> list[str]:
        names = set()
        for v in self._production.values():
            names |= set(v.index)
        names |= set(self.demand_share.index)
        return sorted(names - {WORLD})

    @cached_property
    def production_t(self) -> xr.DataArray:
        """Output by (stage, region), t basis a year."""
        arr = np.array([self._production[s].reindex(self.regions, fill_value=0.0).to_numpy()
                        for s in self.stages])
        return xr.DataArray(arr, dims=("stage", "region"),
                            coords={"stage": self.stages, "region": self.regions})

    # ---- use --------------------------------------------------------------------------------
    @cached_property
    def input_t(self) -> xr.DataArray:
        """What each stage takes of the stage before's product, by (stage, region): the next
        quantified stage's output / its yield (0 for the first stage)."""
        arr = np.zeros((len(self.stages), len(self.regions)))
        prod = self.production_t.to_numpy()
        for k in range(1, len(self.stages)):
            y = self.chain.stage(self.stages[k]).yield_
            if not np.isfinite(y):
                raise ChainError(f"chain_stages.csv: stage {self.stages[k]!r} of {self.id} "
                                 "has no yield")
            arr[k] = prod[k] / y
        return xr.DataArray(arr, dims=("stage", "region"),
                            coords={"stage": self.stages, "region": self.regions})

    @cached_property
    def world_end_use_t(self) -> xr.DataArray:
        """World end use of each stage's product (stage): the part of an end-use stage's
        output the next stage does not take."""
        prod = self.production_t.sum("region").to_numpy()
        feed = np.append(self.input_t.sum("region").to_numpy()[1:], 0.0)
        out = np.zeros(len(self.stages))
        for k, s in enumerate(self.stages):
            if feed[k] > prod[k] * (1 + 1e-9):
                raise ChainError(f"{self.id}: stage {self.stages[k + 1]!r} needs "
                                 f"{feed[k]:,.1f} t of {s!r} product but the world makes "
                                 f"{prod[k]:,.1f} t (check its yield and output rows)")
            if self.chain.stage(s).end_use:
                out[k] = prod[k] - feed[k]
        if out.sum() <= 0:
            raise ChainError(f"{self.id}: no end use (no stage with end_use = true has output "
                             "left after feeding the next stage)")
        return xr.DataArray(out, dims="stage", coords={"stage": self.stages})

    @cached_property
    def demand_share(self) -> pd.Series:
        """Each region's share of world end use (region); XOT takes what the rows leave."""
        d = self.dataset["chain_demand"]
        d = d[d["chain"] == self.id]
        world = float(self._world_end_use_total)
        t = _pick_vintage(d[(d["unit"] == "t") & (d["year"] <= self.year)], self.year)
        s = _pick_vintage(d[d["unit"] == "share"], self.year)
        shares = pd.concat([t.set_index("region")["value"].astype(float) / world,
                            s.set_index("region")["value"].astype(float)])
        shares = shares.groupby(level=0).sum()
        total = float(shares.sum())
        if total > 1 + self._tol():
            raise ChainError(f"chain_demand.csv: the shares of world use of {self.id} sum to "
                             f"{total:.4f} (> 1): {shares.round(4).to_dict()}")
        if 1 - total > self._tol():
            shares[REST] = shares.get(REST, 0.0) + 1 - total
        return shares[shares > 0].sort_index()

    @cached_property
    def _world_end_use_total(self) -> float:
        # world end use before the regional split (the split needs it; see demand_share)
        prod = {s: float(v.sum()) for s, v in self._production.items()}
        total = 0.0
        for k, s in enumerate(self.stages):
            if not self.chain.stage(s).end_use:
                continue
            nxt = self.stages[k + 1] if k + 1 < len(self.stages) else None
            feed = prod[nxt] / self.chain.stage(nxt).yield_ if nxt else 0.0
            total += max(prod[s] - feed, 0.0)
        if total <= 0:
            raise ChainError(f"{self.id}: no end use in the base year")
        return total

    @cached_property
    def end_use_t(self) -> xr.DataArray:
        """End use by (stage, region)."""
        share = xr.DataArray(self.demand_share.reindex(self.regions, fill_value=0.0)
                             .to_numpy(), dims="region", coords={"region": self.regions})
        return (self.world_end_use_t * share).transpose("stage", "region")

    @cached_property
    def sectors(self) -> list[str]:
        return list(dict.fromkeys([e.sector for e in self.chain.end_uses
                                   if e.stage in self.stages] or ["other"]))

    @cached_property
    def end_use_by_sector_t(self) -> xr.DataArray:
        """End use by (stage, sector, region): each stage's end use split by the sector shares
        of `chain_end_uses` at that stage (sector `other` where none is declared)."""
        arr = np.zeros((len(self.stages), len(self.sectors), len(self.regions)))
        eu = self.end_use_t.to_numpy()
        for k, s in enumerate(self.stages):
            rows = [e for e in self.chain.end_uses if e.stage == s]
            if not rows and eu[k].sum() > 0:
                if "other" not in self.sectors:
                    raise ChainError(f"chain_end_uses.csv: stage {s!r} of {self.id} has end "
                                     "use but no sector")
                rows = [type("E", (), {"sector": "other", "share": 1.0})()]
            for e in rows:
                arr[k, self.sectors.index(e.sector)] += eu[k] * e.share
        return xr.DataArray(arr, dims=("stage", "sector", "region"),
                            coords={"stage": self.stages, "sector": self.sectors,
                                    "region": self.regions})

    @cached_property
    def use_t(self) -> xr.DataArray:
        """What each region takes of each stage's product (stage, region): the next stage's
        input there plus end use."""
        feed = np.zeros((len(self.stages), len(self.regions)))
        feed[:-1] = self.input_t.to_numpy()[1:]
        return xr.DataArray(feed + self.end_use_t.to_numpy(), dims=("stage", "region"),
                            coords={"stage": self.stages, "region": self.regions})

    # ---- trade --------------------------------------------------------------------------------
    def _observed(self, stage: str) -> np.ndarray:
        """[origin, dest] shares of US imports by origin (USGS import sources) at the stage
        the chain names; zero elsewhere."""
        R = len(self.regions)
        out = np.zeros((R, R))
        if stage != self.chain.usgs_import_stage or "USA" not in self.regions:
            return out
        src = self.dataset["chain_import_sources"]
        src = src[(src["chain"] == self.id) & (src["detail"] == self.chain.usgs_import_detail)]
        d = self.regions.index("USA")
        for r in src.itertuples():
            if r.region in self.regions and r.region != "USA":
                out[self.regions.index(r.region), d] = r.share
        return out

    @cached_property
    def _trade(self) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
        prod, use = self.production_t.to_numpy(), self.use_t.to_numpy()
        R = len(self.regions)
        out = {}
        for k, s in enumerate(self.stages):
            parts: dict = {}
            flows, stock = allocate_trade(prod[k][None], use[k][None],
                                          self._observed(s)[None], np.zeros((1, R, R)), parts)
            out[s] = (flows[0], stock[0], {p: v[0] for p, v in parts.items()})
        return out

    @cached_property
    def trade_t(self) -> xr.DataArray:
        """Flows of each stage's product (stage, origin, dest), own use on the diagonal."""
        arr = np.array([self._trade[s][0] for s in self.stages])
        return xr.DataArray(arr, dims=("stage", "origin", "dest"),
                            coords={"stage": self.stages, "origin": self.regions,
                                    "dest": self.regions})

    def trade_parts(self, stage: str) -> dict[str, np.ndarray]:
        """A stage's flows split by how they were placed: own, committed, observed, pooled."""
        return self._trade[stage][2]

    @cached_property
    def stock_change_t(self) -> xr.DataArray:
        """Output a region could not sell and kept (stage, region)."""
        arr = np.array([self._trade[s][1] for s in self.stages])
        return xr.DataArray(arr, dims=("stage", "region"),
                            coords={"stage": self.stages, "region": self.regions})

    # ---- checks -------------------------------------------------------------------------------
    def balance(self) -> pd.DataFrame:
        """World balance per stage: output = use + stock change (t basis a year)."""
        prod = self.production_t.sum("region").to_series()
        use = self.use_t.sum("region").to_series()
        stock = self.stock_change_t.sum("region").to_series()
        df = pd.DataFrame({"output_t": prod, "use_t": use, "stock_change_t": stock,
                           "residual_t": prod - use - stock})
        df["rel_residual"] = (df["residual_t"] / df["output_t"].where(df["output_t"] > 0)
                              ).fillna(0.0)
        return df

    def check_balance(self, rtol: float = BALANCE_RTOL) -> None:
        b = self.balance()
        worst = float(b["rel_residual"].abs().max())
        if worst > rtol:
            raise AssertionError(f"{self.id}: base-year balance off by {worst:.2e} (> {rtol:g}) "
                                 f"at stage {b['rel_residual'].abs().idxmax()}")
        flows = self.trade_t
        if not np.allclose(flows.sum("origin").to_numpy(), self.use_t.to_numpy(),
                           rtol=1e-9, atol=1e-9):
            raise AssertionError(f"{self.id}: trade does not deliver every region's use")

    def flow_regions(self) -> list[str]:
        """Regions with any output or use."""
        p = self.production_t.sum("stage").to_numpy()
        u = self.use_t.sum("stage").to_numpy()
        return [r for r, a, b in zip(self.regions, p, u, strict=True) if a > 0 or b > 0]
