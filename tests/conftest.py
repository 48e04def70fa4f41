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


TOY_DIR = Path(__file__).parent / "fixtures" / "toy_chain"


def add_rows(tables_dir: Path, rows_dir: Path) -> None:
    """Append each CSV of `rows_dir` to the table of the same name in `tables_dir` (same
    columns, any order): adding a commodity touches data files only."""
    import pandas as pd

    for f in sorted(rows_dir.glob("*.csv")):
        target = tables_dir / f.name
        base = pd.read_csv(target, dtype=str, keep_default_na=False)
        extra = pd.read_csv(f, dtype=str, keep_default_na=False)
        if set(extra.columns) != set(base.columns):
            raise ValueError(f"{f}: columns {sorted(extra.columns)} differ from {target}")
        pd.concat([base, extra[base.columns]], ignore_index=True).to_csv(
            target, index=False, lineterminator="\n")


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """The embedded dataset plus the invented toy commodity TOY (tests/fixtures/toy_chain)."""
    dst = tmp_path_factory.mktemp("toy") / "tables"
    shutil.copytree(TABLES_DIR, dst)
    add_rows(dst, TOY_DIR)
    return load_dataset(dst)
