"""The last step of `oreflow data check`: build the model from a dataset that passed the
schema, so a dataset that passes the check is one the model runs on.

The schema (oreflow.data.schema) catches what can be said table by table: types, ranges,
references, the parameters the model reads by name, the rows its lookups need. Some of the
engine's assumptions only show once the base year is assembled (the base year must balance
market by market); these steps build the network, the market regions, the stock model,
the stockpile terms and the risk indicators, and run two tiny stress tests, and report any
error as a problem naming the step, not as a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

from oreflow.data.load import Dataset
from oreflow.data.schema import Problem

SMOKE_SCENARIOS = ("baseline", "licensing-2025-04")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else "no detail"
    return f"{type(e).__name__}: {msg[:400]}"


def check_model(dataset: Dataset, controller: str = "CHN") -> list[Problem]:
    """Problems met building and running the model from `dataset` (empty when it runs)."""
    from oreflow.network import Network
    from oreflow.risk import indicator_table
    from oreflow.simulate import run_stress
    from oreflow.simulate.engine import Behaviour
    from oreflow.simulate.market import market_base
    from oreflow.stockpile import Terms
    from oreflow.stocks import magnet_stocks

    state: dict = {}

    def network():
        net = Network.from_dataset(dataset)
        _ = net.trade_t
        net.check_balance()
        state["net"] = net

    def zones():
        market_base(state["net"], controller)
        state["zones"] = True

    steps: list[tuple[str, Callable[[], object]]] = [
        ("the base-year network", network),
        ("the market regions of the stress engine", zones),
        ("the market behaviour parameters", lambda: Behaviour.from_dataset(dataset)),
        ("the stock model (magnets in use)", lambda: magnet_stocks(state["net"])),
        ("the stockpile terms", lambda: Terms.from_dataset(dataset)),
        ("the risk indicators", lambda: indicator_table(state["net"], "USA")),
        *((f"a stress run of {name}",
           (lambda n=name: run_stress(n, paths=3, months=3, network=state["net"])))
          for name in SMOKE_SCENARIOS),
    ]
    problems = []
    for what, step in steps:
        if "net" not in state and what != "the base-year network":
            break  # nothing else can be built
        if what.startswith("a stress run") and "zones" not in state:
            continue  # the zones' problem is the one to fix
        try:
            step()
        except Exception as e:  # noqa: BLE001  every failure becomes a reported problem
            problems.append(Problem("model", None, None,
                                    f"building {what} failed: {_first_line(e)}"))
    return problems
