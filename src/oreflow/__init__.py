"""oreflow: stress-test critical-mineral supply chains, rare earths first."""

from oreflow.data import Dataset, DatasetError, check_dataset, load_dataset
from oreflow.network import Network
from oreflow.risk import chokepoints, indicator_table, perspective_regions
from oreflow.stockpile import PlanError, StockpilePlan, plan_stockpile
from oreflow.stocks import magnet_inflows, magnet_stocks, secondary_supply

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "DatasetError",
    "Network",
    "PlanError",
    "StockpilePlan",
    "check_dataset",
    "chokepoints",
    "indicator_table",
    "load_dataset",
    "perspective_regions",
    "plan_stockpile",
    "magnet_inflows",
    "magnet_stocks",
    "secondary_supply",
]
