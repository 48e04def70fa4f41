"""The how-tos in docs/ are executable and must keep working."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

HOWTOS = sorted((Path(__file__).resolve().parents[1] / "docs" / "howto").glob("*.py"))


@pytest.mark.parametrize("path", HOWTOS, ids=[p.stem for p in HOWTOS])
def test_howto_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_there_are_howtos():
    assert len(HOWTOS) >= 2
