"""Turn a scenario's shocks into per-path, per-month arrays the engine multiplies in.

Sampling happens once per path, in a fixed order (shock by shock, field by field), so two
scenarios that differ only in a magnitude see the same random draws (common random numbers).
A shock is active in month t when start <= t + 0.5 < start + duration (month midpoints).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oreflow.scenario import (
    DemandShift,
    ExportControl,
    NewCapacity,
    Outage,
    Recycling,
    Scenario,
    Stockpile,
    sample,
)
from oreflow.simulate.base import FORMS, ZoneBase


def _mask(names, universe: list[str]) -> np.ndarray:
    if names == "all":
        return np.ones(len(universe), bool)
    return np.isin(universe, list(names))


@dataclass
class SampledControl:
    start: np.ndarray  # [P]
    end: np.ndarray  # [P]
    delay: np.ndarray  # [P]
    scale: np.ndarray  # [P]
    points: np.ndarray  # [K] month offsets of the approval path
    shares: np.ndarray  # [K]
    affected: np.ndarray  # [form, element] share of the base import flow under control


@dataclass
class SampledOutage:
    start: np.ndarray
    end: np.ndarray
    share: np.ndarray
    region: int
    stage: str
    elements: np.ndarray  # [E] bool


@dataclass
class SampledShift:
    start: np.ndarray
    end: np.ndarray
    factor: np.ndarray
    sectors: np.ndarray  # [S] bool
    regions_out: np.ndarray  # [R_out] bool
    inside: bool  # applies to the controller's demand too


@dataclass
class SampledCapacity:
    start: np.ndarray  # [P] after any delay
    ramp: float
    t_per_month: float
    form: str  # "oxide" for separation
    element_mix: np.ndarray  # [E] split of the capacity among elements


@dataclass
class SampledRecycling:
    """A recycling policy: targets (NaN = keep the value) reached linearly from `start`."""

    start: np.ndarray  # [P]
    ramp: float  # months
    region: int  # index into ZoneBase.recycling.regions
    collection_rate: float
    preprocessing_yield: float
    capacity_t_magnet: float  # t magnet a month


@dataclass
class SampledShocks:
    controls: list[SampledControl]
    outages: list[SampledOutage]
    shifts: list[SampledShift]
    capacities: list[SampledCapacity]
    stockpiles: list[Stockpile]
    recycling: list[SampledRecycling]


def _sample_recycling(shock: Recycling, base: ZoneBase, rng: np.random.Generator,
                      n: int) -> SampledRecycling:
    rb = base.recycling
    if rb is None or shock.region not in rb.regions:
        allowed = ", ".join(rb.regions) if rb is not None else "none"
        raise ValueError(f"recycling.region {shock.region!r}: recycling is modelled in the "
                         f"regions of recycling.csv outside the controller ({base.controller}); "
                         f"allowed: {allowed}")
    r = rb.regions.index(shock.region)
    cap = np.nan
    if shock.capacity_t_magnet_per_year is not None:
        cap = shock.capacity_t_magnet_per_year / 12.0
    elif shock.capacity_factor is not None:
        cap = shock.capacity_factor * rb.capacity_t_magnet[r]
    base_values = {"collection_rate": (shock.collection_rate, rb.collection_rate[r]),
                   "preprocessing_yield": (shock.preprocessing_yield,
                                           rb.preprocessing_yield[r]),
                   "capacity": (None if np.isnan(cap) else cap, rb.capacity_t_magnet[r])}
    for name, (target, today) in base_values.items():
        if target is not None and target < today - 1e-12:
            raise ValueError(f"recycling ({shock.region}).{name}: {target:g} is below the "
                             f"base-year value {today:g} (recycling.csv); the engine models "
                             "recycling at or above today's level")
    nan = float("nan")
    return SampledRecycling(
        start=sample(shock.start, rng, n), ramp=float(shock.ramp_months), region=r,
        collection_rate=nan if shock.collection_rate is None else float(shock.collection_rate),
        preprocessing_yield=(nan if shock.preprocessing_yield is None
                             else float(shock.preprocessing_yield)),
        capacity_t_magnet=float(cap))


def sample_shocks(scenario: Scenario, base: ZoneBase, regions_all: list[str],
                  rng: np.random.Generator, n: int) -> SampledShocks:
    horizon = float(scenario.months)
    out = SampledShocks([], [], [], [], [], [])
    for shock in scenario.shocks:
        if isinstance(shock, Stockpile):
            out.stockpiles.append(shock)
            continue
        if isinstance(shock, Recycling):
            out.recycling.append(_sample_recycling(shock, base, rng, n))
            continue
        if isinstance(shock, NewCapacity):
            start = sample(shock.start, rng, n)
            late = rng.random(n) < shock.delay_probability
            start = start + np.where(late, sample(shock.delay_months, rng, n), 0.0)
            form = "oxide" if shock.stage == "separation" else shock.stage
            fi = FORMS.index(form)
            mix = base.demand_out[fi] + base.demand_in[fi]
            mix = mix * _mask(shock.elements, base.elements)
            if mix.sum() <= 0:
                raise ValueError(f"new_capacity at {shock.region} {shock.stage}: none of its "
                                 "elements has base-year use of that form")
            out.capacities.append(SampledCapacity(start, shock.ramp_months,
                                                  shock.t_per_year / 12.0, form,
                                                  mix / mix.sum()))
            continue
        start = sample(shock.start, rng, n)
        end = start + sample(shock.duration, rng, n, default=np.inf)
        end = np.minimum(end, horizon + 1.0)
        if isinstance(shock, ExportControl):
            if shock.origin != base.controller:
                raise ValueError(f"export_control.origin {shock.origin!r}: the engine models "
                                 f"controls by the scenario's controller ({base.controller})")
            el = _mask(shock.elements, base.elements)
            affected = np.zeros((len(FORMS), base.n_elements))
            for fi, form in enumerate(FORMS):
                stage = "separation" if form == "oxide" else form
                if stage not in shock.stages:
                    continue
                by_dest = base.imports_by_dest[form]  # [R_out, E]
                if shock.destinations == "all":
                    dest_share = np.ones(base.n_elements)
                else:
                    d = np.isin(base.out_regions, shock.destinations)
                    total = by_dest.sum(0)
                    dest_share = np.divide(by_dest[d].sum(0), total, out=np.zeros_like(total),
                                           where=total > 0)
                covered = el
                if form == "magnet" and shock.whole_magnets:
                    # every magnet grade in the dataset contains Dy or Tb: controlling one
                    # element that magnets carry controls the magnets, all their elements
                    carried = by_dest.sum(0) > 0
                    covered = np.where(carried, float((el * carried).any()), el)
                affected[fi] = covered * dest_share
            pts = np.array([p for p, _ in shock.approval], float)
            shs = np.array([s for _, s in shock.approval], float)
            out.controls.append(SampledControl(start, end, sample(shock.processing_delay, rng, n),
                                               sample(shock.approval_scale, rng, n), pts, shs,
                                               affected))
        elif isinstance(shock, Outage):
            if shock.region == base.controller and shock.stage in ("metal", "magnet"):
                raise ValueError("outages of the controller's metal or magnet plants are not "
                                 "modelled; use an export_control or a separation outage")
            out.outages.append(SampledOutage(start, end, sample(shock.share_lost, rng, n),
                                             regions_all.index(shock.region), shock.stage,
                                             _mask(shock.elements, base.elements)))
        elif isinstance(shock, DemandShift):
            sectors = _mask([shock.sector], base.sectors)
            if shock.region == "all":
                regs, inside = np.ones(len(base.out_regions), bool), True
            else:
                regs, inside = np.isin(base.out_regions, [shock.region]), (
                    shock.region == base.controller)
            out.shifts.append(SampledShift(start, end, sample(shock.factor, rng, n), sectors,
                                           regs, inside))
    return out
