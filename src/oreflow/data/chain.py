"""Typed views of a commodity chain's declaration tables (`chains`, `chain_stages`,
`coproduction`, `chain_end_uses`, `chain_us_salient`): what new code reads instead of
indexing tables by name. `Dataset.chain("Ga")` returns a `Chain`.

Nothing here imports `oreflow.data.load` (the dataset module imports this one)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


class UnknownChainError(ValueError):
    """A commodity id that is not in chains.csv; the message lists the allowed ids."""

    def __init__(self, name: str, allowed: list[str]):
        self.name, self.allowed = name, list(allowed)
        super().__init__(f"unknown commodity {name!r}; allowed (any case): "
                         f"{', '.join(self.allowed)}")


@dataclass(frozen=True)
class ChainStage:
    stage: str
    order: int
    name: str
    form: str
    engine_slot: str  # "" when the stage has no slot in the stress engine
    basis_per_t_form: float  # NaN when it depends on the item (REE metal, magnets)
    yield_: float  # output / input in the chain's basis; NaN if not declared
    end_use: bool  # end users buy this stage's product


@dataclass(frozen=True)
class Coproduct:
    stage: str
    host: str
    host_chain: str
    share: float  # NaN where no figure exists


@dataclass(frozen=True)
class EndUse:
    stage: str
    sector: str
    name: str
    share: float
    scope: str
    status: str


@dataclass(frozen=True)
class Reliance:
    """US net import reliance as USGS reports it: percent, its qualifier ('>' for '>50'),
    the text printed by USGS and its definition."""

    year: int
    percent: float
    qualifier: str
    text: str
    definition: str
    status: str

    @property
    def fraction(self) -> float:
        return self.percent / 100.0


@dataclass(frozen=True)
class Chain:
    """One commodity's chain as declared in the dataset."""

    id: str
    name: str
    basis: str
    unit: str
    model: str  # "network": the detailed rare-earth Network; "generic": ChainNetwork
    usgs_chapter: str
    usgs_stage: str
    usgs_import_detail: str
    usgs_import_stage: str
    stages: tuple[ChainStage, ...]
    coproducts: tuple[Coproduct, ...]
    end_uses: tuple[EndUse, ...]
    _salient: pd.DataFrame

    @property
    def stage_ids(self) -> list[str]:
        return [s.stage for s in self.stages]

    def stage(self, stage: str) -> ChainStage:
        for s in self.stages:
            if s.stage == stage:
                return s
        raise ValueError(f"chain {self.id} has no stage {stage!r}; stages: "
                         f"{', '.join(self.stage_ids)}")

    def slot(self, slot: str) -> ChainStage | None:
        """The stage mapped onto an engine slot, or None."""
        hits = [s for s in self.stages if s.engine_slot == slot]
        return hits[0] if hits else None

    def us_net_import_reliance(self, year: int) -> Reliance | None:
        """USGS's US net import reliance for `year` (None if USGS gives none)."""
        s = self._salient
        r = s[(s["statistic"] == "Net import reliance") & (s["year"] == year)]
        if r.empty:
            return None
        row = r.iloc[0]
        pct = float(row["value"]) if np.isfinite(row["value"]) else np.nan
        return Reliance(year, pct, str(row["qualifier"]), str(row["value_text"]),
                        str(row["detail"]), str(row["status"]))


def chain_ids(tables) -> list[str]:
    """Commodity ids: the detailed-network chain (REE) first, then the others sorted."""
    c = tables["chains"]
    return sorted(c["chain"], key=lambda x: (c.set_index("chain").loc[x, "model"] != "network",
                                             x.lower()))


def resolve_chain_id(name: str, tables) -> str:
    """The chain id for `name`, case-insensitive, by id or alias ('ga', 'gallium' -> 'Ga';
    'graphite' -> 'graphite_natural', as chains.csv declares)."""
    ids = chain_ids(tables)
    names = {c.lower(): c for c in ids}
    al = tables["chains"].set_index("chain")["aliases"]
    for c in ids:
        for a in str(al.get(c, "")).split(";"):
            if a.strip():
                names.setdefault(a.strip().lower(), c)
    key = str(name).strip().lower()
    if key not in names:
        raise UnknownChainError(str(name), ids)
    return names[key]


def build_chain(tables, name: str) -> Chain:
    cid = resolve_chain_id(name, tables)
    c = tables["chains"].set_index("chain").loc[cid]
    st = tables["chain_stages"]
    st = st[st["chain"] == cid].sort_values("order")
    stages = tuple(
        ChainStage(r["stage"], int(r["order"]), r["name"], r["form"], r["engine_slot"] or "",
                   float(r["basis_per_t_form"]), float(r["yield"]), bool(r["end_use"]))
        for _, r in st.iterrows())
    if not stages:
        raise ValueError(f"chain_stages.csv declares no stage for chain {cid}")
    cp = tables["coproduction"]
    cops = tuple(Coproduct(r.stage, r.host, r.host_chain or "", float(r.share))
                 for r in cp[cp["chain"] == cid].itertuples())
    eu = tables["chain_end_uses"]
    ends = tuple(EndUse(r.stage, r.sector, r.name, float(r.share), r.scope, r.status)
                 for r in eu[eu["chain"] == cid].itertuples())
    sal = tables["chain_us_salient"]
    return Chain(cid, c["name"], c["basis"], c["unit"], c["model"], c["usgs_chapter"],
                 c["usgs_stage"], c["usgs_import_detail"], c["usgs_import_stage"], stages,
                 cops, ends, sal[sal["chain"] == cid].reset_index(drop=True))
