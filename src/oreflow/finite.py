"""Checks that a finished stress result holds finite numbers, so a NaN that slipped into the
model fails the run loudly instead of showing up as "done" with zero shortfall.

`check_result_finite` looks only at the result Dataset (variables, their dimensions and the
run's attributes), never at the engine's internals, so it survives changes to the engine.
Where a non-finite value has a meaning it is allowed, and only there:

- `first_shortfall_week`, `first_stoppage_week`: +inf means "never short"; NaN means no
  shock to count from (a scenario without shocks);
- `price_peak_ratio`, `price_low_ratio`: NaN for an element and zone without a base price
  (nothing to divide by); where the base price is positive they must be finite.
Every other float variable, and the `max_rel_balance_residual` attribute, must be finite.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

ALLOWED_NON_FINITE = {"first_shortfall_week", "first_stoppage_week"}
RATIO_VARS = {"price_peak_ratio": "base_price_usd_per_kg",
              "price_low_ratio": "base_price_usd_per_kg"}


class NonFiniteResultError(ValueError):
    """The model produced NaN or infinity where a number is required."""


def _where(da: xr.DataArray, bad: np.ndarray) -> str:
    """The coordinates of the first bad cell, e.g. 'zone=ROW, element=Dy, month=3'."""
    idx = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
    parts = []
    for dim, i in zip(da.dims, idx, strict=True):
        if dim == "path":
            continue
        label = da[dim].values[i] if dim in da.coords else i
        parts.append(f"{dim}={label}")
    return ", ".join(parts)


def check_result_finite(ds: xr.Dataset, label: str = "the run") -> xr.Dataset:
    """Raise NonFiniteResultError naming the variable, the first bad cell and how many cells
    are bad if `ds` holds NaN or infinity where a number is required; else return `ds`."""
    problems = []
    for name, da in ds.data_vars.items():
        if name in ALLOWED_NON_FINITE or not np.issubdtype(da.dtype, np.floating):
            continue
        values = np.asarray(da.values)
        bad = ~np.isfinite(values)
        if name in RATIO_VARS and RATIO_VARS[name] in ds:
            priced = ds[RATIO_VARS[name]] > 0  # NaN is fine where there is no base price
            bad &= np.asarray(priced.broadcast_like(da).transpose(*da.dims).values)
        if bad.any():
            kinds = [k for k, f in (("NaN", np.isnan), ("infinity", np.isinf))
                     if f(values[bad]).any()]
            paths = ""
            if "path" in da.dims:
                axis = tuple(i for i, d in enumerate(da.dims) if d != "path")
                n = int(bad.any(axis=axis).sum()) if axis else int(bad.sum())
                paths = f" on {n:,} of {da.sizes['path']:,} paths"
            problems.append(f"{name} has {int(bad.sum()):,} {' and '.join(kinds)} value(s)"
                            f"{paths}, first at {_where(da, bad)}")
    resid = ds.attrs.get("max_rel_balance_residual")
    if resid is not None and not np.isfinite(float(resid)):
        problems.append(f"max_rel_balance_residual is {float(resid)}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more variable(s)" if len(problems) > 5 else ""
        raise NonFiniteResultError(
            f"{label} produced non-finite numbers, so its result is not reported: {shown}{more}. "
            "A scenario or dataset value outside what the model handles is the usual cause; "
            "check them with `oreflow scenario validate` and `oreflow data check`")
    return ds
