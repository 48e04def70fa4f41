"""The stress test: monthly Monte Carlo simulation of export controls, outages and policies."""

from oreflow.simulate.engine import Behaviour
from oreflow.simulate.run import run_stress, save_result, summary

__all__ = ["Behaviour", "run_stress", "save_result", "summary"]
