"""Sweep files, parameters and designs.

A sweep file (YAML) names scenarios, a number of paths, a design method and the uncertain
parameters, each with a distribution:

- a behavioural parameter: any field of `oreflow.simulate.engine.Behaviour`, by its bare
  name (`leakage`, `buyer_cover_months`). The list is read from the dataclass at run time,
  so a parameter the engine gains or drops needs no change here;
- a scenario parameter: a numeric field of a shock, addressed as `shocks[0].approval_scale`
  or `shocks[0].review_months`; it applies to every scenario of the sweep and is set through
  the pydantic model, so the scenario's own checks (ranges) apply to every value drawn.

Designs live on the unit hypercube (SALib's Saltelli/Sobol sequence for Sobol indices, Latin
hypercube, or a full grid) and map to parameter values through each distribution's inverse
CDF (`oreflow.scenario.sample`): Sobol indices do not depend on that monotone map, and the
values are exactly reproducible from the unit design stored with the results.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oreflow.scenario import Fixed, Triangular, Uniform, sample
from oreflow.sweep.errors import SweepError

ParamDist = Annotated[Uniform | Triangular, Field(discriminator="dist")]
SHOCK_FIELD = re.compile(r"^shocks\[(\d+)\]\.([A-Za-z_][A-Za-z0-9_]*)$")
MAX_POINTS = 100_000
"""Largest design a sweep file may ask (points x scenarios x blocks are tasks)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignSpec(_Strict):
    """`saltelli`: N x (parameters + 2) points (first and total Sobol indices; N a power of
    two); `lhs`: N points; `grid`: N levels per parameter (N ** parameters points)."""

    method: Literal["saltelli", "lhs", "grid"] = "saltelli"
    n: int = Field(ge=1, le=MAX_POINTS)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _power_of_two(self):
        if self.method == "saltelli" and self.n & (self.n - 1):
            raise ValueError(f"design.n must be a power of two for a saltelli design (the "
                             f"Sobol sequence's balance), got {self.n}")
        return self


class SweepSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    scenarios: list[str] = Field(min_length=1)
    paths: int = Field(ge=1, le=10_000_000)
    block_paths: int = Field(250, ge=1, le=1_000_000)
    months: int | None = Field(None, ge=1, le=600)
    seed: int = Field(0, ge=0)
    perspective: str | None = None
    design: DesignSpec
    parameters: dict[str, ParamDist] = Field(min_length=1)
    fixed: dict[str, float] = {}
    headlines: list[str] = []
    """Headlines to show first in tables and reports (e.g. price_peak_ratio_outside_p50:Dy)."""


# ---- parameters ---------------------------------------------------------------------------
def behaviour_fields() -> list[str]:
    """Behavioural parameters the engine has now (fields of its `Behaviour` dataclass)."""
    from oreflow.simulate.engine import Behaviour

    return [f.name for f in fields(Behaviour)]


@dataclass(frozen=True)
class Parameter:
    """One uncertain parameter: its name, where it goes and its distribution."""

    name: str
    kind: str  # "behaviour" or "scenario"
    dist: Uniform | Triangular | None  # None: fixed
    shock: int = -1
    field: str = ""

    def values(self, u: np.ndarray) -> np.ndarray:
        return sample(self.dist, np.asarray(u, float))

    @property
    def bounds(self) -> tuple[float, float]:
        return float(self.dist.low), float(self.dist.high)


def parse_parameter(name: str, dist, scenarios: dict, where: str) -> Parameter:
    """A parameter by name, checked against the engine's behaviour fields and every
    scenario's shocks; errors list what is allowed."""
    allowed = behaviour_fields()
    if name in allowed:
        return Parameter(name, "behaviour", dist)
    m = SHOCK_FIELD.match(name)
    if not m:
        raise SweepError(f"{where}: unknown parameter {name!r}; allowed: the behavioural "
                         f"parameters {', '.join(allowed)}; or a scenario field such as "
                         "shocks[0].approval_scale")
    k, fld = int(m.group(1)), m.group(2)
    for label, sc in scenarios.items():
        if k >= len(sc.shocks):
            raise SweepError(f"{where}: {name}: scenario {label} has {len(sc.shocks)} "
                             f"shock(s) (indices 0..{len(sc.shocks) - 1})")
        shock = sc.shocks[k]
        numeric = _numeric_fields(type(shock))
        if fld not in numeric:
            raise SweepError(f"{where}: {name}: shocks[{k}] of {label} is a {shock.type} "
                             f"with no numeric field {fld!r}; allowed: {', '.join(numeric)}")
    p = Parameter(name, "scenario", dist, k, fld)
    # every value the distribution can give must pass the scenario's own checks
    lo_hi = [dist.value] if dist is not None and not hasattr(dist, "low") else (
        list(p.bounds) if dist is not None else [])
    for label, sc in scenarios.items():
        for v in lo_hi:
            try:
                set_shock_field(sc, k, fld, v)
            except SweepError as e:
                raise SweepError(f"{where}: {name} = {v:g} in {label}: {e}") from None
    return p


def _numeric_fields(model: type[BaseModel]) -> list[str]:
    """Fields of a shock model that take a number (or a distribution)."""
    out = []
    for fname, info in model.model_fields.items():
        text = str(info.annotation)
        if "float" in text and "list" not in text and "dict" not in text:
            out.append(fname)
    return out


def set_shock_field(sc, k: int, fld: str, value: float):
    """The scenario with shocks[k].fld = value, validated by the shock's model."""
    shock = sc.shocks[k]
    data = shock.model_dump()
    data[fld] = float(value)
    if fld == "review_months":
        data["processing_delay"] = None
    try:
        new = type(shock).model_validate(data)
    except ValidationError as e:
        msgs = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
        raise SweepError(msgs) from None
    shocks = list(sc.shocks)
    shocks[k] = new
    return sc.model_copy(update={"shocks": shocks})


def apply_parameters(params: list[Parameter], values: np.ndarray, scenario, dataset):
    """(Behaviour, scenario) for one design point: defaults from the dataset, then the
    point's values."""
    from oreflow.simulate.engine import Behaviour

    override = {}
    sc = scenario
    for p, v in zip(params, values, strict=True):
        if p.kind == "behaviour":
            override[p.name] = float(v)
        else:
            try:
                sc = set_shock_field(sc, p.shock, p.field, float(v))
            except SweepError as e:
                raise SweepError(f"{p.name} = {float(v):g}: {e}") from None
    return Behaviour.from_dataset(dataset, **override), sc


# ---- designs ------------------------------------------------------------------------------
def unit_design(method: str, n: int, dims: int, seed: int) -> np.ndarray:
    """[points, dims] design on the unit hypercube."""
    problem = {"num_vars": dims, "names": [f"x{i}" for i in range(dims)],
               "bounds": [[0.0, 1.0]] * dims}
    if method == "saltelli":
        from SALib.sample import sobol

        return np.asarray(sobol.sample(problem, n, calc_second_order=False, scramble=True,
                                       seed=seed), float)
    if method == "lhs":
        from SALib.sample import latin

        return np.asarray(latin.sample(problem, n, seed=seed), float)
    if method == "grid":
        levels = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
        return np.array(list(itertools.product(levels, repeat=dims)), float).reshape(-1, dims)
    raise SweepError(f"design.method {method!r}: allowed saltelli, lhs, grid")


def design_points(method: str, n: int, dims: int) -> int:
    return {"saltelli": n * (dims + 2), "lhs": n, "grid": n ** dims}[method]


# ---- a loaded sweep -----------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its spec, the scenarios' YAML texts and parsed models, the
    parameters in design order, the unit design and the parameter values."""

    spec: SweepSpec
    label: str
    scenario_names: list[str]
    scenario_texts: list[str]
    scenarios: list  # validated Scenario models (names resolved)
    params: list[Parameter]
    unit: np.ndarray  # [point, param]
    values: np.ndarray  # [point, param]
    months: int
    sha256: str
    fixed: list  # [(Parameter, value)] set at every point, not swept

    @property
    def points(self) -> int:
        return len(self.unit)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        b = self.spec.block_paths
        return [(lo, min(lo + b, self.spec.paths)) for lo in range(0, self.spec.paths, b)]

    def point_values(self, point: int) -> tuple[list[Parameter], np.ndarray]:
        """Every parameter set at a design point: the fixed ones, then the swept ones."""
        return ([p for p, _ in self.fixed] + self.params,
                np.concatenate([[v for _, v in self.fixed], self.values[point]]))


def load_sweep(path: str | Path, network=None) -> Sweep:
    """Read, validate and expand a sweep file; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise SweepError(f"{p}: no such sweep file")
    text = p.read_text(encoding="utf-8")
    return parse_sweep(text, str(p), p.parent, network)


def parse_sweep(text: str, label: str = "<sweep>", base_dir: Path | None = None,
                network=None) -> Sweep:
    from oreflow.network import Network
    from oreflow.scenario import ScenarioError, parse_scenario, scenario_text

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SweepError(f"{label}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{label}: expected a mapping with name, scenarios, paths, design, "
                         "parameters")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msgs.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
        raise SweepError(f"{label}: {'; '.join(msgs)}") from None
    net = network if network is not None else Network.from_dataset()
    names, texts, scs = [], [], {}
    for i, s in enumerate(spec.scenarios):
        ref = s
        if base_dir is not None and s.endswith((".yaml", ".yml")) and not Path(s).is_absolute():
            ref = str(base_dir / s)
        try:
            slabel, stext = scenario_text(ref)
            sc = parse_scenario(stext, slabel, net)
        except ScenarioError as e:
            raise SweepError(f"{label}: scenarios[{i}]: {e}") from None
        if spec.months is not None:
            sc = sc.model_copy(update={"months": spec.months})
        names.append(sc.name if sc.name not in scs else f"{sc.name}#{i}")
        texts.append(stext)
        scs[names[-1]] = sc
    months = {sc.months for sc in scs.values()}
    if len(months) > 1:
        raise SweepError(f"{label}: the scenarios have different horizons "
                         f"({', '.join(str(m) for m in sorted(months))} months): set months:")
    swept = [parse_parameter(n, d, scs, f"{label}: parameters") for n, d in
             spec.parameters.items()]
    fixed = []
    for n, v in spec.fixed.items():
        if n in spec.parameters:
            raise SweepError(f"{label}: fixed: {n} is also swept in parameters")
        fixed.append((parse_parameter(n, Fixed(dist="fixed", value=v), scs,
                                      f"{label}: fixed"), float(v)))
    d = spec.design
    npts = design_points(d.method, d.n, len(swept))
    if npts > MAX_POINTS:
        raise SweepError(f"{label}: design: {d.method} with n={d.n} over {len(swept)} "
                         f"parameters gives {npts:,} points; at most {MAX_POINTS:,}")
    unit = unit_design(d.method, d.n, len(swept), d.seed)
    values = np.stack([p.values(unit[:, j]) for j, p in enumerate(swept)], 1)
    canonical = json.dumps({"spec": spec.model_dump(mode="json"), "scenarios": texts},
                           sort_keys=True)
    return Sweep(spec, label, names, texts, list(scs.values()), swept, unit, values,
                 months.pop(), hashlib.sha256(canonical.encode()).hexdigest(), fixed)
