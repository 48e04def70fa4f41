"""Shared fixtures: the embedded dataset and its network, loaded once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oreflow.data.load import TABLES_DIR, load_dataset
from oreflow.network import Network


@pytest.fixture(scope="session")
def dataset():
    return load_dataset()


@pytest.fixture(scope="session")
def network(dataset):
    return Network.from_dataset(dataset)


@pytest.fixture
def dataset_copy(tmp_path) -> Path:
    """A writable copy of the embedded tables, for corrupting."""
    dst = tmp_path / "tables"
    shutil.copytree(TABLES_DIR, dst)
    return dst
