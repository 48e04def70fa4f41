"""The embedded dataset: tidy tables with a source for every number."""

from oreflow.data.load import Dataset, check_dataset, load_dataset
from oreflow.data.schema import TABLES, DatasetError, Problem

__all__ = ["TABLES", "Dataset", "DatasetError", "Problem", "check_dataset", "load_dataset"]
