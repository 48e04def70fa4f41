"""One place that turns the names a user types into regions and element symbols.

`oreflow risk`, `stocks`, `stockpile`, scenario files and the web API all resolve names here,
so `EU`, `eu`, `G7`, `ita` or `dy` mean the same thing everywhere:

- a bloc of `blocs.csv` (EU, G7, QUAD, MSP) stands for its members that are in scope;
- a region in scope (by default: a region of the base-year network with output or use)
  stands for itself;
- a member state of a bloc that has no flow of its own stands for the region that holds its
  demand: the pseudo-region of its bloc (XEU holds the EU-27's demand), else XOT (the rest
  of the world); the returned note says so;
- anything else is an error that lists every allowed code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TOTAL = "REO"
"""Label of the all-rare-earths total (accepted where `allow_total`)."""

REST_OF_WORLD = "XOT"


class UnknownNameError(ValueError):
    """A name that resolves to nothing; the message lists every allowed code."""

    def __init__(self, message: str, allowed: Sequence[str] = (), name: str = "",
                 detail: str = ""):
        super().__init__(message)
        self.allowed = list(allowed)
        self.name = name
        self.detail = detail  # "allowed (any case): ...", for callers that word it their way


class UnknownPerspectiveError(UnknownNameError):
    pass


class UnknownElementError(UnknownNameError):
    pass


@dataclass(frozen=True)
class Perspective:
    """A resolved name: its canonical code, the regions it stands for, and a note when the
    mapping is not one-to-one (a member state mapped to XEU, bloc members left out)."""

    code: str
    regions: tuple[str, ...]
    note: str = ""
    kind: str = "region"  # "region" | "bloc" | "member"



def _network(source):
    from oreflow.data.load import Dataset
    from oreflow.network import Network

    if isinstance(source, Network):
        return source
    if isinstance(source, Dataset):
        return Network.from_dataset(source)
    raise TypeError(f"expected a Network or a Dataset, got {type(source).__name__}")


def _dataset(source):
    from oreflow.data.load import Dataset

    return source if isinstance(source, Dataset) else source.dataset


def flow_regions(network) -> list[str]:
    """Regions of the network with any output or use in the base year (network order)."""
    prod = network.production_t.sum(("element", "stage")).to_numpy()
    use = network.use_t.sum(("element", "stage")).to_numpy()
    return [r for r, p, u in zip(network.regions, prod, use, strict=True) if p > 0 or u > 0]


def _blocs(ds) -> dict[str, list[str]]:
    b = ds["blocs"]
    return {k: list(v) for k, v in b.groupby("bloc", sort=True)["region"]}


def demand_holders(ds, scope: Sequence[str]) -> dict[str, str]:
    """Member state -> the region in `scope` that holds its demand. A pseudo-region of
    regions.csv holds the demand of the members of the smallest bloc that contains it (XEU:
    the EU); other bloc members map to XOT when it is in scope."""
    blocs = _blocs(ds)
    kind = ds["regions"].set_index("region")["kind"]
    out: dict[str, str] = {}
    for p in sorted(r for r in scope if kind.get(r) == "pseudo"):
        homes = [b for b, m in blocs.items() if p in m]
        if homes:
            home = min(homes, key=lambda b: (len(blocs[b]), b))
            out.update({m: p for m in blocs[home] if m not in scope})
    if REST_OF_WORLD in scope:
        for members in blocs.values():
            for m in members:
                if m not in scope and m not in out:
                    out[m] = REST_OF_WORLD
    return out


def _home_holder(ds, region: str, scope: Sequence[str]) -> str | None:
    """The pseudo-region in scope that holds the end-use demand of `region` (in scope)."""
    holders = demand_holders(ds, [r for r in scope if r != region])
    h = holders.get(region)
    return h if h and h != REST_OF_WORLD and h in scope else None


def allowed_codes(source, within: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Every code a perspective may be: blocs, regions in scope, member states mapped."""
    ds = _dataset(source)
    scope = list(within) if within is not None else flow_regions(_network(source))
    return {"blocs": sorted(_blocs(ds)), "regions": sorted(scope),
            "member states": sorted(demand_holders(ds, scope))}


def _unknown(name: str, allowed: dict[str, list[str]], what: str, extra: str = ""
             ) -> UnknownPerspectiveError:
    codes = [c for v in allowed.values() for c in v]
    text = "; ".join(f"{k}: {', '.join(v)}" for k, v in
                     [("regions", allowed["regions"]), ("blocs", allowed["blocs"]),
                      ("member states (mapped to the region that holds their demand)",
                       allowed["member states"])] if v)
    detail = f"allowed (any case): {text}{extra}"
    return UnknownPerspectiveError(f"unknown {what} {name!r}; {detail}", codes, name, detail)


def resolve_perspective(name: str, source, within: Sequence[str] | None = None,
                        what: str = "perspective") -> Perspective:
    """The regions `name` stands for, case-insensitive. `source` is a Network or a Dataset;
    `within` is the scope (default: the network's regions with flows; `stocks` passes its
    regions of use). `what` names the argument in the error message."""
    ds = _dataset(source)
    scope = list(within) if within is not None else flow_regions(_network(source))
    key = str(name).strip().upper()
    blocs = _blocs(ds)
    holders = demand_holders(ds, scope)
    if key in blocs:
        members = set(blocs[key])
        regions = tuple(r for r in scope if r in members)
        if not regions:
            raise _unknown(name, allowed_codes(ds, scope), what,
                           f" ({key} has no member in scope)")
        left = [m for m in sorted(members) if m not in scope]
        through = sorted({holders[m] for m in left if holders.get(m) in regions})
        out = [m for m in left if holders.get(m) not in regions]
        notes = []
        if through:
            n = sum(holders.get(m) in regions for m in left)
            notes.append(f"{n} {key} member(s) without a flow of their own are counted through "
                         f"{', '.join(through)}")
        if out:
            held = sorted({holders[m] for m in out if m in holders})
            notes.append(f"{key} member(s) {', '.join(out)} have no flow of their own"
                         + (f"; their demand sits in {', '.join(held)}, which also cover(s) "
                            f"non-members, so it is not counted in {key}" if held else ""))
        return Perspective(key, regions, "; ".join(notes), "bloc")
    if key in scope:
        home = _home_holder(ds, key, scope)
        note = (f"{key}'s own output and industrial use only: its end-use demand is part of "
                f"{home}" if home else "")
        return Perspective(key, (key,), note, "region")
    if key in holders:
        h = holders[key]
        return Perspective(key, (h,), f"{key} has no flow of its own in the base-year network: "
                                      f"its demand is part of {h}, which stands for it", "member")
    raise _unknown(name, allowed_codes(ds, scope), what)


def resolve_region(name: str, source, within: Sequence[str] | None = None,
                   what: str = "region") -> str:
    """One region code for `name`; a bloc that stands for several regions is an error."""
    p = resolve_perspective(name, source, within, what)
    if len(p.regions) != 1:
        detail = f"give one of them ({', '.join(p.regions)})"
        raise UnknownPerspectiveError(
            f"{what} {name!r} stands for several regions ({', '.join(p.regions)}); give one "
            "of them", list(p.regions), name, detail)
    return p.regions[0]


def resolve_elements(names: str | Iterable[str] | None, known: Sequence[str],
                     allow_total: bool = True, label: str = "") -> list[str]:
    """Element symbols among `known` (case-insensitive: `dy` -> `Dy`, `reo` -> `REO`),
    deduplicated in the order given; a string may hold several, comma-separated. None or an
    empty list gives []. `label` qualifies the allowed list in the error message."""
    if names is None:
        return []
    items = [names] if isinstance(names, str) else list(names)
    items = [s.strip() for it in items for s in str(it).split(",") if s.strip()]
    allowed = [*known, TOTAL] if allow_total else list(known)
    by_lower = {e.lower(): e for e in allowed}
    out = []
    for e in items:
        if e.lower() not in by_lower:
            qual = f" ({label})" if label else ""
            detail = f"allowed{qual}: {', '.join(allowed)} (any case)"
            raise UnknownElementError(f"unknown element {e!r}; {detail}", allowed, e, detail)
        out.append(by_lower[e.lower()])
    return list(dict.fromkeys(out))
