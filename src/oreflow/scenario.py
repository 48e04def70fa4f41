"""Scenario files: a declarative list of shocks and policies over a monthly horizon.

A scenario is YAML validated by pydantic. Times are months after the scenario's `start`
(0 = the first simulated month). Any magnitude or duration may be a fixed number or a
distribution (`{dist: uniform, low: .., high: ..}`), sampled once per Monte Carlo path.
Names (elements, stages, regions, sectors) are checked against the dataset, and every error
names the file, the field and what is allowed.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oreflow import safe_yaml
from oreflow.safe_yaml import excerpt


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names file and field."""


class _Strict(BaseModel):
    # NaN and infinity are refused in every number (YAML's .nan, .inf, 1e999)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_TONNES = 1e7
"""Largest tonnage a scenario may give (world rare-earth mine output is about 4e5 t/yr)."""
MAX_NAME = 200


class Fixed(_Strict):
    dist: Literal["fixed"]
    value: float


class Uniform(_Strict):
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class Triangular(_Strict):
    dist: Literal["triangular"]
    low: float
    mode: float
    high: float

    @model_validator(mode="after")
    def _order(self):
        if not self.low <= self.mode <= self.high:
            raise ValueError("need low <= mode <= high")
        return self


Dist = Annotated[Fixed | Uniform | Triangular, Field(discriminator="dist")]
Quantity = float | Dist


def sample(q: Quantity | None, rng: np.random.Generator, n: int, default: float = np.nan
           ) -> np.ndarray:
    """`n` draws of a quantity (a fixed number gives `n` copies)."""
    if q is None:
        return np.full(n, default)
    if isinstance(q, int | float):
        return np.full(n, float(q))
    if isinstance(q, Fixed):
        return np.full(n, q.value)
    if isinstance(q, Uniform):
        return rng.uniform(q.low, q.high, n)
    return rng.triangular(q.low, q.mode, q.high, n) if q.high > q.low else np.full(n, q.low)


def _bounds(q: Quantity | None) -> tuple[float, float] | None:
    if q is None:
        return None
    if isinstance(q, int | float):
        return float(q), float(q)
    if isinstance(q, Fixed):
        return q.value, q.value
    return q.low, q.high


def _check_range(q: Quantity | None, lo: float, hi: float, what: str) -> None:
    b = _bounds(q)
    if b is not None and (b[0] < lo or b[1] > hi):
        got = f"{b[0]:g}" if b[0] == b[1] else f"a range {b[0]:g}..{b[1]:g}"
        raise ValueError(f"{what} must lie in [{lo:g}, {hi:g}], got {got}")


class _Shock(_Strict):
    start: Quantity = 0.0
    duration: Quantity | None = None  # months; None = to the end of the horizon

    @model_validator(mode="after")
    def _times(self):
        _check_range(self.start, 0, 1200, "start (months after the scenario start)")
        _check_range(self.duration, 0, 1200, "duration (months)")
        return self


class ExportControl(_Shock):
    """Exports from `origin` of `elements` at `stages` to `destinations` need licences; a share
    of the base-year flow is approved, following `approval` (month after start -> share,
    stepwise), scaled by `approval_scale`, and arrives `processing_delay` months late."""

    type: Literal["export_control"]
    origin: str = "CHN"
    elements: list[str] | Literal["all"]
    stages: list[Literal["separation", "metal", "magnet"]] = ["separation", "metal", "magnet"]
    destinations: list[str] | Literal["all"] = "all"
    approval: list[tuple[float, float]] = [(0.0, 0.0)]
    approval_scale: Quantity = 1.0
    processing_delay: Quantity = 0.0
    whole_magnets: bool = True
    """A licence on magnets containing a controlled element covers the whole magnet, its Nd
    and Pr included (MOFCOM No. 18: "magnets containing them")."""

    @field_validator("approval")
    @classmethod
    def _approval(cls, v):
        if not v:
            raise ValueError("approval needs at least one [month, share] point")
        months = [m for m, _ in v]
        if months != sorted(months) or months[0] != 0:
            raise ValueError("approval months must start at 0 and increase")
        if months[-1] > 1200:
            raise ValueError(f"approval months must lie in [0, 1200], got {months[-1]:g}")
        if any(not 0.0 <= s <= 1.0 for _, s in v):
            raise ValueError("approval shares must lie in [0, 1]")
        return v

    @model_validator(mode="after")
    def _scale(self):
        _check_range(self.approval_scale, 0, 10, "approval_scale")
        _check_range(self.processing_delay, 0, 24, "processing_delay (months)")
        return self


class Outage(_Shock):
    """A share of a region's capacity at a stage is lost for a while."""

    type: Literal["outage"]
    region: str
    stage: Literal["mining", "separation", "metal", "magnet"]
    elements: list[str] | Literal["all"] = "all"
    share_lost: Quantity

    @model_validator(mode="after")
    def _share(self):
        _check_range(self.share_lost, 0, 1, "share_lost")
        return self


class DemandShift(_Shock):
    type: Literal["demand_shift"]
    sector: str
    region: str = "all"
    factor: Quantity

    @model_validator(mode="after")
    def _factor(self):
        _check_range(self.factor, 0, 100, "factor")
        return self


class NewCapacity(_Strict):
    """Capacity outside the controlling country that starts at `start`, ramps linearly over
    `ramp_months`, and with `delay_probability` is late by `delay_months`."""

    type: Literal["new_capacity"]
    region: str
    stage: Literal["separation", "metal", "magnet"]
    elements: list[str] | Literal["all"] = "all"
    t_per_year: float = Field(ge=0, le=MAX_TONNES)
    start: Quantity = 0.0
    ramp_months: float = Field(12.0, ge=0, le=1200)
    delay_probability: float = Field(0.0, ge=0, le=1)
    delay_months: Quantity = 0.0

    @model_validator(mode="after")
    def _times(self):
        _check_range(self.start, 0, 1200, "start (months after the scenario start)")
        _check_range(self.delay_months, 0, 1200, "delay_months")
        return self


class Stockpile(_Strict):
    """A holding released when the outside price exceeds `release_price_ratio` x base."""

    type: Literal["stockpile"]
    holder: str
    element: str
    form: Literal["oxide", "metal", "magnet"] = "oxide"
    t: float = Field(ge=0, le=MAX_TONNES)
    release_price_ratio: float = Field(1.5, gt=0, le=1000)
    max_release_t_per_month: float | None = Field(None, gt=0, le=MAX_TONNES)


class Recycling(_Strict):
    """End-of-life magnet recycling policy in a region outside the controlling country: from
    `start` its collection rate, pre-processing yield and capacity move linearly from their
    base-year values (recycling.csv) to the targets given here over `ramp_months`. Capacity is
    in tonnes of magnets processed a year, or a multiple of the base-year capacity."""

    type: Literal["recycling"]
    region: str
    start: Quantity = 0.0
    ramp_months: float = Field(0.0, ge=0, le=600)
    collection_rate: float | None = Field(None, ge=0, le=1)
    preprocessing_yield: float | None = Field(None, ge=0, le=1)
    capacity_t_magnet_per_year: float | None = Field(None, ge=0, le=MAX_TONNES)
    capacity_factor: float | None = Field(None, ge=0, le=1000)

    @model_validator(mode="after")
    def _targets(self):
        _check_range(self.start, 0, 1200, "start (months after the scenario start)")
        if self.capacity_t_magnet_per_year is not None and self.capacity_factor is not None:
            raise ValueError("give capacity_t_magnet_per_year or capacity_factor, not both")
        if all(v is None for v in (self.collection_rate, self.preprocessing_yield,
                                   self.capacity_t_magnet_per_year, self.capacity_factor)):
            raise ValueError("recycling needs at least one target: collection_rate, "
                             "preprocessing_yield, capacity_t_magnet_per_year or capacity_factor")
        return self


Shock = Annotated[
    ExportControl | Outage | DemandShift | NewCapacity | Stockpile | Recycling,
    Field(discriminator="type"),
]


class Scenario(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field("", max_length=20_000)
    sources: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field([], max_length=100)
    start: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="first month, YYYY-MM")
    months: int = Field(36, ge=1, le=600)
    controller: str = "CHN"
    shocks: list[Shock] = Field([], max_length=500)

    def check_names(self, elements: set[str], regions: set[str], sectors: set[str],
                    sources: set[str] | None = None) -> None:
        """Raise ValueError naming the shock and field if a name is not in the dataset."""

        def need(value, allowed: set[str], where: str, extra: tuple[str, ...] = ()):
            values = [value] if isinstance(value, str) else list(value)
            for v in values:
                if v not in allowed and v not in extra:
                    shown = ", ".join(sorted(allowed)[:40])
                    more = f" or {', '.join(extra)}" if extra else ""
                    raise ValueError(f"{where}: unknown name {excerpt(v)}; allowed: "
                                     f"{shown}{more}")

        need(self.controller, regions, "controller")
        if sources is not None:
            need(self.sources, sources, "sources")
        for i, s in enumerate(self.shocks):
            where = f"shocks[{i}] ({s.type})"
            for field in ("elements",):
                v = getattr(s, field, None)
                if v is not None and v != "all":
                    need(v, elements, f"{where}.{field}")
            if isinstance(s, Stockpile):
                need(s.element, elements, f"{where}.element")
                need(s.holder, regions, f"{where}.holder")
            if isinstance(s, ExportControl):
                need(s.origin, regions, f"{where}.origin")
                if s.destinations != "all":
                    need(s.destinations, regions, f"{where}.destinations")
                    if s.origin in s.destinations:
                        raise ValueError(f"{where}.destinations: the origin {s.origin} cannot "
                                         "control exports to itself")
            if isinstance(s, Outage | NewCapacity | Recycling):
                need(s.region, regions, f"{where}.region")
            if isinstance(s, DemandShift):
                need(s.sector, sectors, f"{where}.sector")
                need(s.region, regions, f"{where}.region", ("all",))
            if isinstance(s, NewCapacity) and s.region == self.controller:
                raise ValueError(f"{where}.region: new capacity is modelled outside the "
                                 f"controlling country ({self.controller})")


BUILTIN = "oreflow.scenarios"


def builtin_names() -> list[str]:
    files = resources.files(BUILTIN).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


_ECHO = ("literal_error", "extra_forbidden", "union_tag_invalid", "finite_number",
         "float_type", "float_parsing", "int_type", "int_parsing", "string_type")
_MAX_ERRORS = 8


def _branch(x) -> bool:
    return str(x) == "float" or str(x).startswith(("tagged-union", "function-"))


def _format_validation(e: ValidationError) -> str:
    """One short line per error, field first; the input appears only as a short excerpt.

    A value where `float | {dist: ...}` is allowed fails both alternatives; only the error of
    the alternative the value was meant for is kept: a mapping's for a mapping, else the
    number's (`share_lost: Input should be a finite number (got nan)`)."""
    lines: list[str] = []
    for err in e.errors(include_url=False):
        loc = err["loc"]
        if loc and str(loc[-1]) == "float" and isinstance(err["input"], dict):
            continue  # meant as a distribution: its own errors say what is wrong
        if loc and str(loc[-1]).startswith("tagged-union") and \
                err["type"] == "model_attributes_type":
            continue  # meant as a number: the float alternative's error says what is wrong
        where = ".".join(str(x) for x in loc if not _branch(x))
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {excerpt(err['input'])})" if err["type"] in _ECHO else ""
        line = f"{where}: {msg}{got}" if where else f"{msg}{got}"
        if line not in lines:
            lines.append(line)
    more = f"; and {len(lines) - _MAX_ERRORS} more error(s)" if len(lines) > _MAX_ERRORS else ""
    return "; ".join(lines[:_MAX_ERRORS]) + more


def scenario_text(name_or_path: str | Path) -> tuple[str, str]:
    """(label, YAML text) of a built-in scenario name or a file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ScenarioError(f"{p}: no such scenario file")
        try:
            with open(p, "rb") as fh:  # never more than the limit into memory
                raw = fh.read(safe_yaml.MAX_BYTES + 1)
        except OSError as e:
            raise ScenarioError(f"{p}: cannot read: {e.strerror}") from None
        if len(raw) > safe_yaml.MAX_BYTES:
            raise ScenarioError(f"{p}: larger than the {safe_yaml.MAX_BYTES:,}-byte limit of "
                                "a scenario file")
        try:
            return str(p), raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ScenarioError(f"{p}: not UTF-8 text (byte {e.start})") from None
    name = str(name_or_path)
    if name not in builtin_names():
        raise ScenarioError(f"unknown scenario {name!r}; built-in: {', '.join(builtin_names())}"
                            " (or give a path to a .yaml file)")
    return name, resources.files(BUILTIN).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def parse_scenario(text: str, label: str = "<scenario>", network=None) -> Scenario:
    try:
        data = safe_yaml.load(text, label)
    except safe_yaml.YamlError as e:
        raise ScenarioError(str(e)) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{label}: expected a mapping with name, start, months, shocks")
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(f"{label}: {_format_validation(e)}") from None
    if network is not None:
        ds = network.dataset
        try:
            sc.check_names(set(network.elements), set(ds["regions"]["region"]),
                           set(network.sectors), set(ds["sources"]["source_id"]))
        except ValueError as e:
            raise ScenarioError(f"{label}: {e}") from None
    return sc


def load_scenario(name_or_path: str | Path, network=None) -> tuple[Scenario, str]:
    """The validated scenario and the SHA-256 of its text (recorded with every result)."""
    label, text = scenario_text(name_or_path)
    sc = parse_scenario(text, label, network)
    return sc, hashlib.sha256(text.encode("utf-8")).hexdigest()
