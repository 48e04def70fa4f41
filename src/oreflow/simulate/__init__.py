"""The stress test: monthly Monte Carlo simulation of export controls, outages and policies."""

from oreflow.simulate.engine import Behaviour
from oreflow.simulate.results import compare, load_result, save_result, summary
from oreflow.simulate.run import run_stress

__all__ = ["Behaviour", "compare", "load_result", "run_stress", "save_result", "summary"]
