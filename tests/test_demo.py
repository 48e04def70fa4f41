"""`make demo` runs `oreflow demo`: it must keep writing its three results."""

from __future__ import annotations

import pandas as pd
import xarray as xr
from typer.testing import CliRunner

from oreflow.cli import app


def test_demo_writes_risk_table_result_and_report(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    risk = pd.read_csv(tmp_path / "risk_USA.csv")
    assert {"element", "stage", "china_share"} <= set(risk.columns)
    with xr.open_dataset(tmp_path / "licensing-2025-04.nc", engine="h5netcdf") as ds:
        assert ds.attrs["paths"] == 2000
        version = ds.attrs["dataset_version"]
        # results carry monthly bands of physical shortage by sector for the report
        band = ds["unmet_sector_t"]
        assert bool((band.sel(quantile=0.05) <= band.sel(quantile=0.95) + 1e-9).all())
    html = (tmp_path / "licensing-2025-04.html").read_text(encoding="utf-8")
    assert version in html
    assert "Physical shortage per month by sector" in html
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
