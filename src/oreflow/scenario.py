"""Scenario files: a declarative list of shocks and policies over a monthly horizon.

A scenario is YAML validated by pydantic. Times are months after the scenario's `start`
(0 = the first simulated month). Any magnitude or duration may be a fixed number or a
distribution (`{dist: uniform, low: .., high: ..}`), sampled once per Monte Carlo path.
Names (elements, stages, regions, sectors) are checked against the dataset, and every error
names the file, the field and what is allowed. Element and region names are case-insensitive
and resolve through `oreflow.perspective`: `destinations: [EU]` means the EU's regions.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oreflow import safe_yaml
from oreflow.data.schema import DatasetError
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


def sample(q: Quantity | None, u: np.ndarray, default: float = np.nan) -> np.ndarray:
    """Draws of a quantity from uniforms `u` (one per path; a fixed number ignores them).
    Triangular draws use the inverse CDF, so a path's value depends on its uniform only."""
    n = len(u)
    if q is None:
        return np.full(n, default)
    if isinstance(q, int | float):
        return np.full(n, float(q))
    if isinstance(q, Fixed):
        return np.full(n, q.value)
    if isinstance(q, Uniform):
        return q.low + (q.high - q.low) * u
    lo, mode, hi = q.low, q.mode, q.high
    if hi <= lo:
        return np.full(n, lo)
    c = (mode - lo) / (hi - lo)
    return np.where(u < c, lo + np.sqrt(u * (hi - lo) * (mode - lo)),
                    hi - np.sqrt((1 - u) * (hi - lo) * (hi - mode)))


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
    """Exports from `origin` of `elements` at `stages` to `destinations` need licences.

    Requests join a queue; an application is decided `review_months` after it is filed
    (fractional: split between the two neighbouring months) and the share `approval` of what
    is decided is approved (month since the control started -> share, stepwise; scaled by
    `approval_scale`). `approval_by_stage` gives a stage its own path (e.g. magnets). A control
    on magnets covers the magnet grades that contain a controlled element (MOFCOM No. 18:
    "magnets containing them"). `leakage` (0-1) overrides the share of a control that leaks
    through re-exports and transshipment (market_behaviour.csv). With `approval_basis:
    base_year` the control is a quota: what a link ships may not exceed `approval` times its
    base-year flow (shares may exceed 1), the way China's 2010-14 export quotas worked and the
    way a replay puts recorded export quantities in."""

    type: Literal["export_control"]
    origin: str = "CHN"
    elements: list[str] | Literal["all"]
    stages: list[Literal["separation", "metal", "magnet"]] = ["separation", "metal", "magnet"]
    destinations: list[str] | Literal["all"] = "all"
    approval: list[tuple[float, float]] = [(0.0, 0.0)]
    approval_by_stage: dict[Literal["separation", "metal", "magnet"],
                            list[tuple[float, float]]] = {}
    approval_scale: Quantity = 1.0
    approval_basis: Literal["requests", "base_year"] = "requests"
    review_months: Quantity | None = None
    processing_delay: Quantity | None = None
    """Former name of `review_months`, still read."""
    leakage: float | None = Field(None, ge=0, le=1)
    announced_months: float = Field(0.0, ge=0, le=36)
    """Months before `start` the control is announced: from then, buyers price in the
    approval path they expect."""
    expected_approval: list[tuple[float, float]] | None = None
    """The path buyers expect, when it differs from what is approved (a quota announced
    tighter than what was then shipped); default: the approval path."""

    @model_validator(mode="after")
    def _scale(self):
        top = QUOTA_MAX_SHARE if self.approval_basis == "base_year" else 1.0
        _check_path(self.approval, top, "approval")
        for stage, p in self.approval_by_stage.items():
            _check_path(p, top, f"approval_by_stage.{stage}")
        if self.expected_approval is not None:
            _check_path(self.expected_approval, top, "expected_approval")
        _check_range(self.approval_scale, 0, 10, "approval_scale")
        if self.review_months is not None and self.processing_delay is not None:
            raise ValueError("give review_months or its former name processing_delay, not both")
        _check_range(self.review_delay, 0, 24, "review_months")
        return self

    @property
    def review_delay(self) -> Quantity:
        if self.review_months is not None:
            return self.review_months
        return self.processing_delay if self.processing_delay is not None else 0.0

    def approval_path(self, stage: str) -> list[tuple[float, float]]:
        return self.approval_by_stage.get(stage, self.approval)


QUOTA_MAX_SHARE = 5.0
"""Largest quota share of a link's base-year flow (`approval_basis: base_year`)."""


def _check_path(v, top: float = 1.0, what: str = "approval"):
    if not v:
        raise ValueError(f"{what} needs at least one [month, share] point")
    months = [m for m, _ in v]
    if months != sorted(months) or months[0] != 0:
        raise ValueError(f"{what} months must start at 0 and increase")
    if months[-1] > 1200:
        raise ValueError(f"{what} months must lie in [0, 1200], got {months[-1]:g}")
    if any(not 0.0 <= s <= top for _, s in v):
        raise ValueError(f"{what} shares must lie in [0, {top:g}]"
                         + (" (above 1 only with approval_basis: base_year)" if top == 1 else ""))
    return v


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
    commodity: str | list[str] = "REE"
    """The chain(s) of chains.csv the scenario is about (REE: the rare earths, whose
    `elements` are element symbols; for another commodity a shock's `elements` name
    commodities and its `stages` are the engine slots the chain maps, chain_stages.csv)."""
    sources: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field([], max_length=100)
    start: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="first month, YYYY-MM")
    months: int = Field(36, ge=1, le=600)
    controller: str = "CHN"
    base_year: int | None = None
    """The network the run starts from: the dataset's base year (default, today) or a past
    year it also describes (2010)."""
    shocks: list[Shock] = Field([], max_length=500)

    @property
    def commodities(self) -> list[str]:
        return [self.commodity] if isinstance(self.commodity, str) else list(self.commodity)

    @property
    def is_ree(self) -> bool:
        return self.commodities == ["REE"]

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


def resolve_names(sc: Scenario, network) -> Scenario:
    """The scenario with every name resolved through `oreflow.perspective` (any case):
    element symbols; single-region fields (controller, origin, region, holder) to one region
    code (recycling, demand-shift and stockpile regions among the regions of end use, so
    `EU` means XEU there); export-control `destinations` to regions, a bloc expanded to its
    members with flows (`destinations: [EU]`) and a member state without flows to the region
    that holds its demand. Errors name the shock and field and list what is allowed."""
    from oreflow.perspective import (
        UnknownNameError,
        UnknownPerspectiveError,
        resolve_elements,
        resolve_perspective,
        resolve_region,
    )

    users = list(dict.fromkeys(network.dataset["sector_regions"]["region"]))
    from oreflow.simulate.market import market_codes

    markets = market_codes(network.dataset)

    def market_or_one(value: str, where: str) -> str:
        """A controller or control origin: a market region of the engine (any case), else
        a region code."""
        key = value.strip().upper()
        return key if key in markets else one(value, where)

    def fail(where: str, e: UnknownNameError) -> ValueError:
        if isinstance(e, UnknownPerspectiveError) and e.detail.startswith("give one"):
            return ValueError(f"{where}: {excerpt(e.name)} stands for several regions; {e.detail}")
        return ValueError(f"{where}: unknown name {excerpt(e.name)}; {e.detail}")

    def one(value: str, where: str, within=None) -> str:
        try:
            return resolve_region(value, network, within=within, what=where)
        except UnknownNameError as e:
            raise fail(where, e) from None

    def els(value, where: str):
        if value == "all":
            return value
        try:
            return resolve_elements(value, network.elements, allow_total=False)
        except UnknownNameError as e:
            raise fail(where, e) from None

    shocks = []
    for i, s in enumerate(sc.shocks):
        where = f"shocks[{i}] ({s.type})"
        update = {}
        if getattr(s, "elements", None) is not None:
            update["elements"] = els(s.elements, f"{where}.elements")
        if isinstance(s, Stockpile):
            update["element"] = els([s.element], f"{where}.element")[0]
            update["holder"] = one(s.holder, f"{where}.holder", users)
        if isinstance(s, ExportControl):
            update["origin"] = market_or_one(s.origin, f"{where}.origin")
            if s.destinations != "all":
                dest: list[str] = []
                for d in s.destinations:
                    try:
                        dest += resolve_perspective(d, network).regions
                    except UnknownNameError as e:
                        if d.strip().upper() in markets:  # a market region of the engine
                            dest.append(d.strip().upper())
                            continue
                        raise fail(f"{where}.destinations", e) from None
                update["destinations"] = list(dict.fromkeys(dest))
        if isinstance(s, Outage | NewCapacity):
            update["region"] = one(s.region, f"{where}.region")
        if isinstance(s, Recycling):
            update["region"] = one(s.region, f"{where}.region", users)
        if isinstance(s, DemandShift) and s.region.strip().lower() != "all":
            update["region"] = one(s.region, f"{where}.region", users)
        shocks.append(s.model_copy(update=update))
    return sc.model_copy(update={"shocks": shocks,
                                 "controller": market_or_one(sc.controller, "controller")})


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
    if network is not None and not sc.is_ree:
        try:
            sc = check_chain_scenario(sc, network.dataset)
        except ValueError as e:
            raise ScenarioError(f"{label}: {e}") from None
    elif network is not None:
        try:
            network = network.at_year(sc.base_year)
        except DatasetError as e:
            raise ScenarioError(f"{label}: base_year: {e}") from None
        ds = network.dataset
        from oreflow.simulate.market import market_codes

        markets = market_codes(ds)
        try:
            sc = resolve_names(sc, network)
            sc.check_names(set(network.elements), set(ds["regions"]["region"]) | set(markets),
                           set(network.sectors), set(ds["sources"]["source_id"]))
        except ValueError as e:
            raise ScenarioError(f"{label}: {e}") from None
        if sc.controller not in markets:
            raise ScenarioError(f"{label}: controller {sc.controller!r}: the engine models "
                                f"controls by a market region; allowed: {', '.join(markets)} "
                                "(market_regions.csv)")
    return sc


def load_scenario(name_or_path: str | Path, network=None) -> tuple[Scenario, str]:
    """The validated scenario and the SHA-256 of its text (recorded with every result)."""
    label, text = scenario_text(name_or_path)
    sc = parse_scenario(text, label, network)
    return sc, hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_chain_scenario(sc: Scenario, dataset) -> Scenario:
    """Validate and resolve a scenario about commodities other than the rare earths: the
    commodities are chains of chains.csv (any case or alias), a shock's `elements` are among
    them, its stages are engine slots every named chain maps (chain_stages.csv), regions are
    region codes of regions.csv or market regions (a bloc in `destinations` stands for its
    members), and sources are in sources.csv. Errors name the shock and field and list what is
    allowed."""
    from oreflow.data.chain import UnknownChainError, resolve_chain_id
    from oreflow.simulate.market import market_codes

    try:
        ids = [resolve_chain_id(c, dataset) for c in sc.commodities]
    except UnknownChainError as e:
        raise ValueError(f"commodity: {e}") from None
    if "REE" in ids and len(ids) > 1:
        raise ValueError("commodity: the rare earths (REE) run on their own network; give REE "
                         "alone or other commodities only")
    chains = {c: dataset.chain(c) for c in ids}
    markets = market_codes(dataset)
    regions = set(dataset["regions"]["region"])
    blocs = {k: list(v) for k, v in dataset["blocs"].groupby("bloc")["region"]}

    def region(value: str, where: str) -> str:
        key = value.strip().upper()
        if key in markets or key in regions:
            return key
        raise ValueError(f"{where}: unknown region {value!r}; allowed: market regions "
                         f"{', '.join(markets)} or a region code of regions.csv")

    def commodities(value, where: str):
        if value == "all":
            return value
        out = []
        for v in value:
            try:
                c = resolve_chain_id(v, dataset)
            except UnknownChainError:
                c = None
            if c not in ids:
                raise ValueError(f"{where}: {v!r} is not a commodity of this scenario; "
                                 f"allowed: {', '.join(ids)}")
            out.append(c)
        return out

    def slots(stages, els, where: str) -> None:
        """Each stage (engine slot) must be mapped by at least one of the named chains (a
        control on Ga and Ge at 'metal' covers refined gallium; Ge has no 'metal' slot)."""
        named = ids if els == "all" else els
        mapped = {c: [s.engine_slot for s in chains[c].stages if s.engine_slot] for c in named}
        for st in stages:
            if not any(st in m for m in mapped.values()):
                shown = "; ".join(f"{c}: {', '.join(m)}" for c, m in mapped.items())
                raise ValueError(f"{where}: no chain of {', '.join(named)} maps a stage onto "
                                 f"engine slot {st!r}; their slots: {shown} (chain_stages.csv)")

    known_sources = set(dataset["sources"]["source_id"])
    for src in sc.sources:
        if src not in known_sources:
            raise ValueError(f"sources: unknown source id {src!r}: not in sources.csv")
    shocks = []
    for i, s in enumerate(sc.shocks):
        where = f"shocks[{i}] ({s.type})"
        update = {}
        if getattr(s, "elements", None) is not None:
            update["elements"] = commodities(s.elements, f"{where}.elements")
        if isinstance(s, ExportControl):
            update["origin"] = region(s.origin, f"{where}.origin")
            slots(s.stages, update["elements"], f"{where}.stages")
            if s.destinations != "all":
                dest: list[str] = []
                for d in s.destinations:
                    key = d.strip().upper()
                    dest += blocs[key] if key in blocs else [region(d, f"{where}.destinations")]
                if update["origin"] in dest:
                    raise ValueError(f"{where}.destinations: the origin {update['origin']} "
                                     "cannot control exports to itself")
                update["destinations"] = list(dict.fromkeys(dest))
        if isinstance(s, Outage | NewCapacity):
            update["region"] = region(s.region, f"{where}.region")
            slots([s.stage], update.get("elements", "all"), f"{where}.stage")
        if isinstance(s, Stockpile):
            update["element"] = commodities([s.element], f"{where}.element")[0]
            update["holder"] = region(s.holder, f"{where}.holder")
        if isinstance(s, Recycling):
            raise ValueError(f"{where}: recycling shocks model rare-earth magnets only")
        if isinstance(s, DemandShift):
            sectors = {e.sector for c in ids for e in chains[c].end_uses}
            if s.sector not in sectors:
                raise ValueError(f"{where}.sector: unknown sector {s.sector!r}; allowed: "
                                 f"{', '.join(sorted(sectors))}")
            if s.region.strip().lower() != "all":
                update["region"] = region(s.region, f"{where}.region")
        shocks.append(s.model_copy(update=update))
    return sc.model_copy(update={"shocks": shocks, "commodity": ids,
                                 "controller": region(sc.controller, "controller")})


def scenario_warnings(sc: Scenario, network) -> list[str]:
    """Shocks that will do nothing: they start after the horizon, or touch no base-year
    flow (a control on elements the origin does not export at those stages, an outage of a
    stage the region does not run, a demand shift of a sector with no use there)."""
    out = []
    if not sc.is_ree:
        return out  # chain scenarios: checked by check_chain_scenario
    network = network.at_year(sc.base_year)
    prod = network.production_t
    trade = network.trade_t
    for i, s in enumerate(sc.shocks):
        where = f"shocks[{i}] ({s.type})"
        start = getattr(s, "start", 0.0)
        b = _bounds(start)
        if b is not None and b[0] >= sc.months:
            out.append(f"{where}: starts at month {b[0]:g}, after the {sc.months}-month horizon")
            continue
        els = (network.elements if getattr(s, "elements", "all") == "all"
               else [e for e in s.elements if e in network.elements])
        if isinstance(s, ExportControl) and s.origin in network.regions:
            dest = [r for r in network.regions if r != s.origin] \
                if s.destinations == "all" else [r for r in s.destinations
                                                  if r in network.regions and r != s.origin]
            shipped = float(trade.sel(stage=list(s.stages), element=els, origin=s.origin,
                                      dest=dest).sum()) if dest else 0.0
            if shipped <= 0:
                out.append(f"{where}: {s.origin} exports none of {', '.join(els)} at "
                           f"{', '.join(s.stages)} to those destinations in the base year")
        if isinstance(s, Outage) and s.region in network.regions:
            if float(prod.sel(stage=s.stage, region=s.region, element=els).sum()) <= 0:
                out.append(f"{where}: {s.region} has no base-year {s.stage} output of "
                           f"{'those elements' if els != network.elements else 'any element'}")
        if isinstance(s, DemandShift) and s.sector in network.sectors:
            regions = network.regions if s.region == "all" else [s.region]
            regions = [r for r in regions if r in network.regions]
            if not regions or float(network.demand_t.sel(sector=s.sector,
                                                         region=regions).sum()) <= 0:
                out.append(f"{where}: sector {s.sector} has no base-year use in {s.region}")
    return out
