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
class SampledShocks:
    controls: list[SampledControl]
    outages: list[SampledOutage]
    shifts: list[SampledShift]
    capacities: list[SampledCapacity]
    stockpiles: list[Stockpile]
    recycling: list[Recycling]


def sample_shocks(scenario: Scenario, base: ZoneBase, regions_all: list[str],
                  rng: np.random.Generator, n: int) -> SampledShocks:
    horizon = float(scenario.months)
    out = SampledShocks([], [], [], [], [], [])
    for shock in scenario.shocks:
        if isinstance(shock, Stockpile):
            out.stockpiles.append(shock)
            continue
        if isinstance(shock, Recycling):
            out.recycling.append(shock)
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
                affected[fi] = el * dest_share
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
