"""oreflow: stress-test critical-mineral supply chains, rare earths first.

The public API is imported lazily (PEP 562): `import oreflow` and `oreflow --help` stay fast,
and each name loads its module the first time it is used."""

from __future__ import annotations

import importlib

_API = {
    "Dataset": "oreflow.data",
    "DatasetError": "oreflow.data",
    "check_dataset": "oreflow.data",
    "load_dataset": "oreflow.data",
    "Network": "oreflow.network",
    "chokepoints": "oreflow.risk",
    "indicator_table": "oreflow.risk",
    "perspective_regions": "oreflow.risk",
    "PlanError": "oreflow.stockpile",
    "StockpilePlan": "oreflow.stockpile",
    "plan_stockpile": "oreflow.stockpile",
    "magnet_inflows": "oreflow.stocks",
    "magnet_stocks": "oreflow.stocks",
    "secondary_supply": "oreflow.stocks",
    "Behaviour": "oreflow.simulate.engine",
    "run_stress": "oreflow.simulate",
    "summary": "oreflow.simulate",
    "compare": "oreflow.simulate",
    "load_result": "oreflow.simulate",
    "save_result": "oreflow.simulate",
    "run_validation": "oreflow.validate",
    "ChainNetwork": "oreflow.chains",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("oreflow")
        except PackageNotFoundError:
            return "unknown"
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'oreflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
