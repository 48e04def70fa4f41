"""Dynamic stock models (oreflow.mfa), checked against flodym 1.1 as an oracle and by hand.

Tolerance against flodym: relative 1e-9 with an absolute floor of 1e-12 x the largest
magnitude of the expected array. The floor is needed because both sides sum the same
products in a different order (and, for one shared lifetime, through BLAS): a cell that is
exactly 0 or ~1e-20 in one result can be ~1e-16 x the array's largest value in the other,
and a purely relative test would then compare rounding noise.
"""

from __future__ import annotations

import math

import flodym as fd
import numpy as np
import pytest
import scipy.stats
import xarray as xr

from oreflow import mfa
from oreflow.mfa import (
    FixedLifetime,
    FoldedNormalLifetime,
    LogNormalLifetime,
    MassBalanceError,
    MFAError,
    NegativeInflowError,
    NormalLifetime,
    StockResult,
    WeibullLifetime,
    check_mass_balance,
    inflow_driven,
    stock_driven,
)

RTOL = 1e-9
FLOOR = 1e-12

T, R, P = 40, 3, 4


def assert_close(actual, expected, rtol=RTOL):
    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert a.shape == e.shape
    atol = FLOOR * max(float(np.abs(e).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# flodym oracle


def _fd_dims(shape):
    letters = "rpsx"
    dim_list = [fd.Dimension(name="time", letter="t", items=list(range(2000, 2000 + shape[0])))]
    for i, n in enumerate(shape[1:]):
        dim_list.append(fd.Dimension(name=f"dim{i}", letter=letters[i], items=list(range(n))))
    return fd.DimensionSet(dim_list=dim_list)


def flodym_run(kind, values, fd_cls, params, inflow_at="middle"):
    """(inflow, outflow, stock) from flodym's InflowDrivenDSM or StockDrivenDSM."""
    dims = _fd_dims(values.shape)
    fd_params = {k: v if np.ndim(v) else float(v) for k, v in params.items()}
    lifetime = fd_cls(dims=dims, inflow_at=inflow_at, **fd_params)
    array = fd.StockArray(dims=dims, values=np.array(values, dtype=float))
    if kind == "inflow":
        dsm = fd.InflowDrivenDSM(dims=dims, lifetime_model=lifetime, inflow=array)
    else:
        dsm = fd.StockDrivenDSM(dims=dims, lifetime_model=lifetime, stock=array)
    dsm.compute()
    return dsm.inflow.values, dsm.outflow.values, dsm.stock.values


# name -> (oreflow class, flodym class, parameters from a mean array: (oreflow kw, flodym kw))
MODELS = {
    "fixed": (FixedLifetime, fd.FixedLifetime,
              lambda m: ({"mean": m}, {"mean": m})),
    "normal": (NormalLifetime, fd.NormalLifetime,
               lambda m: ({"mean": m, "std": 0.3 * m}, {"mean": m, "std": 0.3 * m})),
    "foldednormal": (FoldedNormalLifetime, fd.FoldedNormalLifetime,
                     lambda m: ({"mean": m, "std": 0.5 * m}, {"mean": m, "std": 0.5 * m})),
    "lognormal": (LogNormalLifetime, fd.LogNormalLifetime,
                  lambda m: ({"mean": m, "std": 0.4 * m}, {"mean": m, "std": 0.4 * m})),
    "weibull": (WeibullLifetime, fd.WeibullLifetime,
                lambda m: ({"shape": 2.5 + 0 * m, "scale": m},
                           {"weibull_shape": 2.5 + 0 * m, "weibull_scale": m})),
}


def make_mean(layout, rng):
    """Lifetime means for a layout: which path of oreflow it exercises is in the comment."""
    if layout == "1d":  # (T,) data, scalar lifetime: shared matrix path
        return np.float64(8.5)
    if layout == "3d-shared":  # (T, R, P) data, one lifetime: shared matrix path
        return np.float64(12.0)
    if layout == "3d":  # a mean per region x product: per-series convolution path
        return rng.uniform(3.0, 25.0, (R, P))
    if layout == "3d-cohort":  # a mean per cohort x region x product: dense cohort path
        return rng.uniform(3.0, 25.0, (T, R, P))
    raise AssertionError(layout)


def make_inflow(shape, rng):
    growth = np.linspace(1.0, 4.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    return rng.uniform(0.2, 2.0, shape) * growth


LAYOUTS = ["1d", "3d-shared", "3d", "3d-cohort"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", list(MODELS))
def test_matches_flodym(model, layout):
    rng = np.random.default_rng([list(MODELS).index(model), LAYOUTS.index(layout)])
    ore_cls, fd_cls, make_params = MODELS[model]
    shape = (T,) if layout == "1d" else (T, R, P)
    inflow = make_inflow(shape, rng)
    ore_params, fd_params = make_params(make_mean(layout, rng))
    lifetime = ore_cls(**ore_params)

    _, fd_out, fd_stock = flodym_run("inflow", inflow, fd_cls, fd_params)
    res = inflow_driven(inflow, lifetime)
    assert_close(res.stock, fd_stock)
    assert_close(res.outflow, fd_out)
    check_mass_balance(res.inflow, res.outflow, res.stock)

    fd_in, fd_out2, _ = flodym_run("stock", fd_stock, fd_cls, fd_params)
    res2 = stock_driven(fd_stock, lifetime)
    assert_close(res2.inflow, fd_in)
    assert_close(res2.outflow, fd_out2)
    assert_close(res2.stock, fd_stock)
    check_mass_balance(res2.inflow, res2.outflow, res2.stock)
    # and the stock-driven model recovers the inflow that built the stock
    assert_close(res2.inflow, inflow)
    assert_close(res2.outflow, res.outflow)


@pytest.mark.parametrize("inflow_at", ["start", "end"])
def test_inflow_at_matches_flodym(inflow_at):
    rng = np.random.default_rng(3)
    inflow = make_inflow((T, R, P), rng)
    mean = rng.uniform(2.0, 15.0, (R, P))
    _, fd_out, fd_stock = flodym_run("inflow", inflow, fd.LogNormalLifetime,
                                     {"mean": mean, "std": 0.5 * mean}, inflow_at=inflow_at)
    res = inflow_driven(inflow, LogNormalLifetime(mean, 0.5 * mean), inflow_at=inflow_at)
    assert_close(res.stock, fd_stock)
    assert_close(res.outflow, fd_out)
    fd_in, fd_out2, _ = flodym_run("stock", fd_stock, fd.FixedLifetime, {"mean": mean},
                                   inflow_at=inflow_at)
    res2 = stock_driven(fd_stock, FixedLifetime(mean), inflow_at=inflow_at)
    assert_close(res2.inflow, fd_in)
    assert_close(res2.outflow, fd_out2)


def test_samples_axis_matches_flodym():
    """A 4-d (time, region, product, sample) stock with a mean per region x sample."""
    rng = np.random.default_rng(4)
    shape = (30, 3, 2, 5)
    inflow = make_inflow(shape, rng)
    mean = rng.uniform(4.0, 20.0, (3, 1, 5))
    _, fd_out, fd_stock = flodym_run("inflow", inflow, fd.NormalLifetime,
                                     {"mean": mean, "std": 0.3 * mean})
    res = inflow_driven(inflow, NormalLifetime(mean, 0.3 * mean))
    assert_close(res.stock, fd_stock)
    assert_close(res.outflow, fd_out)


# --------------------------------------------------------------------------------------------
# by hand


def test_fixed_lifetime_by_hand():
    # inflow enters mid-year: the cohort is 0.5 and 1.5 years old at the end of years 0 and 1
    # (< 2, in use) and 2.5 at the end of year 2 (gone)
    res = inflow_driven(np.array([1.0, 0.0, 0.0, 0.0]), FixedLifetime(2))
    np.testing.assert_array_equal(res.stock, [1, 1, 0, 0])
    np.testing.assert_array_equal(res.outflow, [0, 0, 1, 0])
    # entering at the start of the year it is 1 year old at the end of year 0: gone in year 1
    res = inflow_driven([1, 0, 0, 0], FixedLifetime(2), inflow_at="start")
    np.testing.assert_array_equal(res.stock, [1, 0, 0, 0])
    np.testing.assert_array_equal(res.outflow, [0, 1, 0, 0])
    # keeping 1 unit in use with 2-year products: buy one every other year
    res = stock_driven([1, 1, 1, 1, 1], FixedLifetime(2))
    np.testing.assert_allclose(res.inflow, [1, 0, 1, 0, 1], atol=1e-15)
    np.testing.assert_allclose(res.outflow, [0, 0, 1, 0, 1], atol=1e-15)


def test_normal_lifetime_by_hand():
    def phi(x):
        return 0.5 * math.erfc(-x / math.sqrt(2))

    res = inflow_driven([2.0, 0.0, 0.0], NormalLifetime(mean=1.0, std=1.0))
    # stock[t] = 2 * P(lifetime > t + 0.5)
    expected = [2 * phi(-(t + 0.5 - 1.0)) for t in range(3)]
    np.testing.assert_allclose(res.stock, expected, rtol=1e-14)
    np.testing.assert_allclose(res.outflow, [2 - expected[0], expected[0] - expected[1],
                                             expected[1] - expected[2]], rtol=1e-14)


def test_survival_functions_match_scipy():
    age = np.linspace(0.0, 40.0, 81)
    np.testing.assert_allclose(NormalLifetime(10, 3).sf(age),
                               scipy.stats.norm.sf(age, 10, 3), rtol=1e-14, atol=0)
    np.testing.assert_allclose(FoldedNormalLifetime(10, 4).sf(age),
                               scipy.stats.foldnorm.sf(age, 2.5, 0, 4), rtol=1e-14, atol=0)
    s = math.sqrt(math.log(1 + 0.25))
    np.testing.assert_allclose(LogNormalLifetime(10, 5).sf(age),
                               scipy.stats.lognorm.sf(age, s, 0, 10 / math.sqrt(1.25)),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(WeibullLifetime(2.0, 12.0).sf(age),
                               scipy.stats.weibull_min.sf(age, 2.0, 0, 12.0), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(FixedLifetime(3).sf([0, 2.5, 3, 3.5]), [1, 1, 0, 0])
    # broadcasting over parameter arrays
    assert NormalLifetime(np.array([5.0, 10.0]), 2.0).sf(age[:, None]).shape == (81, 2)


# --------------------------------------------------------------------------------------------
# paths agree


def _paths_data(rng):
    inflow = make_inflow((T, R, P), rng)
    inflow[5:9, 1, :] = 0.0  # a gap in inflow
    mean = rng.uniform(3.0, 25.0, (R, P))
    return inflow, mean


@pytest.mark.parametrize("kind", ["inflow", "stock"])
def test_cohort_path_equals_fast_path_for_constant_lifetimes(kind):
    rng = np.random.default_rng(5)
    inflow, mean = _paths_data(rng)
    data = inflow if kind == "inflow" else inflow_driven(inflow, NormalLifetime(mean, 3)).stock
    run = inflow_driven if kind == "inflow" else stock_driven
    fast = run(data, NormalLifetime(mean, 3.0), method="convolution")
    dense = run(data, NormalLifetime(mean, 3.0), method="cohort")
    per_cohort = np.broadcast_to(mean, (T, R, P)).copy()  # a cohort axis, but constant
    auto = run(data, NormalLifetime(per_cohort, 3.0))
    forced = run(data, NormalLifetime(per_cohort, 3.0), method="cohort")
    for other in (dense, auto, forced):
        assert_close(other.inflow, fast.inflow)
        assert_close(other.outflow, fast.outflow)
        assert_close(other.stock, fast.stock)


def test_shared_path_equals_series_path():
    rng = np.random.default_rng(6)
    inflow, _ = _paths_data(rng)
    shared = inflow_driven(inflow, WeibullLifetime(2.0, 9.0))
    series = inflow_driven(inflow, WeibullLifetime(np.full((R, P), 2.0), 9.0))
    assert_close(shared.stock, series.stock)
    assert_close(shared.outflow, series.outflow)
    s = stock_driven(shared.stock, WeibullLifetime(2.0, 9.0))
    s2 = stock_driven(shared.stock, WeibullLifetime(np.full((R, P), 2.0), 9.0))
    assert_close(s.inflow, s2.inflow)


def test_chunking_and_threads_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(7)
    inflow = make_inflow((15, 6, 7), rng)
    mean = rng.uniform(2.0, 10.0, (6, 7))
    cohort_mean = rng.uniform(2.0, 10.0, (15, 6, 7))
    cases = [NormalLifetime(mean, 2.0), NormalLifetime(cohort_mean, 2.0)]
    ref = [inflow_driven(inflow, lt, threads=1) for lt in cases]
    ref_s = [stock_driven(r.stock, lt, threads=1) for r, lt in zip(ref, cases, strict=True)]
    monkeypatch.setattr(mfa, "_CONV_CHUNK", 4)
    monkeypatch.setattr(mfa, "_DENSE_CHUNK_ELEMENTS", 15 * 15 * 3)
    for lt, r, rs in zip(cases, ref, ref_s, strict=True):
        for threads in (1, 3):
            got = inflow_driven(inflow, lt, threads=threads)
            np.testing.assert_array_equal(got.stock, r.stock)
            np.testing.assert_array_equal(got.outflow, r.outflow)
            got_s = stock_driven(r.stock, lt, threads=threads)
            np.testing.assert_array_equal(got_s.inflow, rs.inflow)


@pytest.mark.parametrize("mean", [np.float64(6.0), np.linspace(3, 9, R * P).reshape(R, P),
                                  np.linspace(3, 9, T * R * P).reshape(T, R, P)],
                         ids=["shared", "series", "cohort"])
def test_stock_by_cohort(mean):
    rng = np.random.default_rng(8)
    inflow = make_inflow((T, R, P), rng)
    res = inflow_driven(inflow, LogNormalLifetime(mean, 2.0), return_cohorts=True)
    cohorts = res.stock_by_cohort
    assert cohorts.shape == (T, T, R, P)
    assert_close(cohorts.sum(axis=1), res.stock)
    assert np.all(cohorts[np.triu_indices(T, 1)] == 0)  # no cohort before it enters
    # each cohort in its entry year: inflow x sf(0.5), with that cohort's lifetime
    entry = inflow * LogNormalLifetime(mean, 2.0).sf(0.5)
    np.testing.assert_allclose(np.moveaxis(np.diagonal(cohorts, 0, 0, 1), -1, 0), entry,
                               rtol=1e-14)


# --------------------------------------------------------------------------------------------
# xarray


def _da(values):
    coords = {"time": np.arange(2000, 2000 + values.shape[0]),
              "region": ["CN", "EU", "US"][: values.shape[1]],
              "product": [f"p{i}" for i in range(values.shape[2])]}
    return xr.DataArray(values, dims=("time", "region", "product"), coords=coords)


def test_dataarray_in_dataarray_out():
    rng = np.random.default_rng(9)
    inflow = make_inflow((T, R, P), rng)
    mean = rng.uniform(3.0, 20.0, (R, P))
    ref = inflow_driven(inflow, NormalLifetime(mean, 0.3 * mean), return_cohorts=True)
    da = _da(inflow)
    # a DataArray parameter in another dim order and label order aligns by name and label
    mean_da = _da(np.zeros((1, R, P)) + mean).isel(time=0, drop=True)
    mean_da = mean_da.transpose("product", "region").isel(region=[2, 0, 1])
    res = inflow_driven(da, NormalLifetime(mean_da, 0.3 * mean_da), return_cohorts=True)
    for name in ("inflow", "outflow", "stock"):
        out = getattr(res, name)
        assert isinstance(out, xr.DataArray)
        assert out.dims == da.dims
        xr.testing.assert_equal(out.coords.to_dataset(), da.coords.to_dataset())
        assert_close(out.values, getattr(ref, name))
    assert res.stock_by_cohort.dims == ("time", "cohort", "region", "product")
    assert list(res.stock_by_cohort.cohort.values) == list(da.time.values)
    assert_close(res.stock_by_cohort.values, ref.stock_by_cohort)
    resid = res.mass_balance_residual()
    assert isinstance(resid, xr.DataArray) and float(abs(resid).max()) < 1e-9

    back = stock_driven(res.stock, NormalLifetime(mean_da, 0.3 * mean_da))
    assert isinstance(back.inflow, xr.DataArray)
    assert_close(back.inflow.values, inflow)
    # a lifetime that varies by cohort, as a DataArray with a time dim
    cohort_mean = xr.DataArray(np.linspace(5, 15, T), dims="time", coords={"time": da.time})
    r1 = inflow_driven(da, FixedLifetime(cohort_mean))
    r2 = inflow_driven(inflow, FixedLifetime(np.linspace(5, 15, T)[:, None, None]))
    assert_close(r1.stock.values, r2.stock)


# --------------------------------------------------------------------------------------------
# mass balance


def test_mass_balance_residual_and_check():
    rng = np.random.default_rng(10)
    inflow = make_inflow((T, R, P), rng)
    res = inflow_driven(inflow, NormalLifetime(rng.uniform(3, 20, (R, P)), 2.0))
    resid = res.mass_balance_residual()
    assert resid.shape == inflow.shape
    assert np.abs(resid).max() <= 1e-12 * np.abs(res.stock).max()
    check_mass_balance(res.inflow, res.outflow, res.stock)

    bad_outflow = res.outflow.copy()
    bad_outflow[7, 2, 1] += 1e-6 * res.stock[:, 2, 1].max()
    with pytest.raises(MassBalanceError, match=r"time step 7 \(index \(7, 2, 1\)\)") as err:
        check_mass_balance(res.inflow, bad_outflow, res.stock)
    assert isinstance(err.value, ValueError)
    assert "1 cell(s)" in str(err.value)
    # within the tolerance passes
    ok_outflow = res.outflow.copy()
    ok_outflow[7, 2, 1] += 1e-11 * res.stock[:, 2, 1].max()
    check_mass_balance(res.inflow, ok_outflow, res.stock)
    # stock at t=-1 is 0: a stock that starts above inflow - outflow fails at time step 0
    with pytest.raises(MassBalanceError, match="time step 0"):
        check_mass_balance(res.inflow, res.outflow, res.stock + 1.0)
    # DataArrays: the message uses labels
    da = _da(res.stock)
    with pytest.raises(MassBalanceError, match="time=2007, region='US', product='p1'"):
        check_mass_balance(_da(res.inflow), _da(bad_outflow), da)


def test_stock_result_is_frozen():
    res = inflow_driven([1.0, 2.0], FixedLifetime(1))
    assert isinstance(res, StockResult)
    with pytest.raises(AttributeError):
        res.stock = np.zeros(2)


# --------------------------------------------------------------------------------------------
# negative inflow policies


FALLING = np.array([10.0, 10.0, 2.0, 2.0, 2.0, 5.0])


def test_negative_inflow_allow_keeps_exact_balance_like_flodym():
    res = stock_driven(FALLING, FixedLifetime(3))
    assert res.inflow[2] == pytest.approx(-8.0)
    check_mass_balance(res.inflow, res.outflow, res.stock)
    fd_in, fd_out, _ = flodym_run("stock", FALLING, fd.FixedLifetime, {"mean": 3.0})
    assert_close(res.inflow, fd_in)
    assert_close(res.outflow, fd_out)


def test_negative_inflow_raise_names_first_time_and_index():
    stock = np.stack([FALLING * 0 + 4.0, FALLING], axis=1)  # series 0 is fine, series 1 is not
    with pytest.raises(NegativeInflowError, match=r"time step 2 \(index \(2, 1\)\)") as err:
        stock_driven(stock, FixedLifetime(3), negative_inflow="raise")
    assert isinstance(err.value, ValueError) and "-8" in str(err.value)
    # rounding noise where the exact inflow is 0 does not raise
    rng = np.random.default_rng(11)
    inflow = make_inflow((T, R, P), rng)
    inflow[::3] = 0.0
    for lifetime in (LogNormalLifetime(rng.uniform(3, 20, (R, P)), 4.0), FixedLifetime(6)):
        built = inflow_driven(inflow, lifetime)
        back = stock_driven(built.stock, lifetime, negative_inflow="raise")
        assert_close(back.inflow, inflow)


@pytest.mark.parametrize("mean, method", [(3.0, "auto"), (np.array([3.0, 3.0]), "auto"),
                                          (np.array([3.0, 3.0]), "cohort")],
                         ids=["shared", "series", "cohort"])
def test_negative_inflow_zero_clips_and_retires_early(mean, method):
    ok = np.array([4.0, 4.0, 5.0, 5.0, 6.0, 6.0])
    stock = np.stack([ok, FALLING], axis=1)
    res = stock_driven(stock, FixedLifetime(mean), negative_inflow="zero", method=method)
    # by hand (3-year fixed lifetime): 10 bought in year 0; in year 2 only 2 may remain, so
    # nothing is bought and 8 retire early; the 2 left leave in year 3 with their cohort and
    # are replaced; 3 more are bought in year 5
    np.testing.assert_allclose(res.inflow[:, 1], [10, 0, 0, 2, 0, 3], atol=1e-12)
    np.testing.assert_allclose(res.outflow[:, 1], [0, 0, 8, 2, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(res.stock, stock)
    assert np.all(res.inflow >= 0)
    check_mass_balance(res.inflow, res.outflow, res.stock)
    # a series that never needs a negative inflow is unchanged from "allow"
    allow = stock_driven(stock, FixedLifetime(mean), method=method)
    np.testing.assert_allclose(res.inflow[:, 0], allow.inflow[:, 0], atol=1e-12)
    np.testing.assert_allclose(res.outflow[:, 0], allow.outflow[:, 0], atol=1e-12)


def test_negative_inflow_zero_with_smooth_lifetime_balances():
    rng = np.random.default_rng(12)
    stock = np.abs(np.cumsum(rng.normal(0, 3, (T, R, P)), axis=0)) + 1.0
    res = stock_driven(stock, NormalLifetime(rng.uniform(5, 20, (R, P)), 3.0),
                       negative_inflow="zero")
    assert np.all(res.inflow >= 0)
    check_mass_balance(res.inflow, res.outflow, res.stock)
    assert np.all(res.outflow >= -1e-9 * stock.max())


# --------------------------------------------------------------------------------------------
# bad input


GOOD = np.ones((5, 2))


@pytest.mark.parametrize("call, match", [
    (lambda: inflow_driven(np.array([1.0, np.nan, 1.0]), FixedLifetime(2)),
     r"inflow must be finite.*index \(1,\)"),
    (lambda: inflow_driven(np.array([1.0, -2.0]), FixedLifetime(2)),
     r"inflow must be >= 0.*\(-2\) at index \(1,\)"),
    (lambda: stock_driven(np.array([[1.0], [-1.0]]), FixedLifetime(2)), r"stock must be >= 0"),
    (lambda: stock_driven(np.array([1.0, np.inf]), FixedLifetime(2)), r"stock must be finite"),
    (lambda: inflow_driven(np.array(["a", "b"]), FixedLifetime(2)), r"inflow must be numeric"),
    (lambda: inflow_driven("abc", FixedLifetime(2)), r"inflow must be a numeric"),
    (lambda: inflow_driven(3.0, FixedLifetime(2)), r"inflow must have a time axis"),
    (lambda: inflow_driven(np.zeros((0, 2)), FixedLifetime(2)), r"inflow has an empty time"),
    (lambda: NormalLifetime(0.0, 1.0), r"NormalLifetime: mean must be finite and > 0"),
    (lambda: NormalLifetime(10.0, -1.0), r"NormalLifetime: std must be finite and > 0"),
    (lambda: LogNormalLifetime(np.array([5.0, np.nan]), 1.0),
     r"LogNormalLifetime: mean must be finite.*index \(1,\)"),
    (lambda: FoldedNormalLifetime(5.0, 0.0), r"FoldedNormalLifetime: std must be"),
    (lambda: WeibullLifetime(0.0, 5.0), r"WeibullLifetime: shape must be finite and > 0"),
    (lambda: WeibullLifetime(2.0, -5.0), r"WeibullLifetime: scale must be"),
    (lambda: FixedLifetime(-1.0), r"FixedLifetime: mean must be finite and >= 0"),
    (lambda: FixedLifetime("ten"), r"FixedLifetime: mean must be a number"),
    (lambda: NormalLifetime(np.ones(3), np.ones(4)), r"NormalLifetime: parameter shapes"),
    (lambda: inflow_driven(np.ones((5, 3, 4)), NormalLifetime(np.ones(5), 1.0)),
     r"NormalLifetime\.mean \(shape \(5,\)\) does not fit inflow of shape \(5, 3, 4\)"),
    (lambda: stock_driven(np.ones((5, 3)), FixedLifetime(np.ones((1, 5, 3)))),
     r"FixedLifetime\.mean has shape \(1, 5, 3\), more axes than stock"),
    (lambda: inflow_driven(GOOD, 10), r"lifetime must be a lifetime model"),
    (lambda: stock_driven(GOOD, FixedLifetime(2), negative_inflow="clip"),
     r"negative_inflow must be one of \('allow', 'raise', 'zero'\), got 'clip'"),
    (lambda: inflow_driven(GOOD, FixedLifetime(2), inflow_at="beginning"), r"inflow_at must be"),
    (lambda: inflow_driven(GOOD, FixedLifetime(2), method="fft"), r"method must be"),
    (lambda: inflow_driven(GOOD, FixedLifetime(np.arange(1.0, 6.0)[:, None]),
                           method="convolution"), r"method='convolution' needs a lifetime"),
    (lambda: inflow_driven(GOOD, FixedLifetime(2), threads=0), r"threads must be"),
    (lambda: stock_driven(GOOD, FixedLifetime(0.3)), r"lifetime: FixedLifetime keeps nothing"),
    (lambda: inflow_driven(_da(np.ones((5, 3, 2))).transpose("region", "time", "product"),
                           FixedLifetime(2)), r"inflow: the first dimension must be named 'time'"),
    (lambda: inflow_driven(_da(np.ones((5, 3, 2))).assign_coords(time=np.arange(5) * 5),
                           FixedLifetime(2)), r"inflow: the 'time' coordinate must be consecutive"),
    (lambda: inflow_driven(GOOD, FixedLifetime(xr.DataArray([2.0, 3.0], dims="x"))),
     r"FixedLifetime\.mean is a DataArray but inflow is a numpy array"),
    (lambda: inflow_driven(_da(np.ones((5, 3, 2))),
                           FixedLifetime(xr.DataArray([2.0, 3.0], dims="sector"))),
     r"FixedLifetime\.mean has dimension\(s\) \['sector'\]"),
    (lambda: inflow_driven(_da(np.ones((5, 3, 2))), FixedLifetime(
        xr.DataArray([2.0, 3.0], dims="region", coords={"region": ["CN", "EU"]}))),
     r"FixedLifetime\.mean lacks region labels \['US'\]"),
    (lambda: check_mass_balance(np.ones(4), np.ones(4), np.ones(5)), r"shapes differ"),
    (lambda: check_mass_balance(np.ones(4), np.ones(4), np.ones(4), rtol=-1), r"rtol must be"),
    (lambda: check_mass_balance(np.ones(4), [0, np.nan, 0, 0], np.ones(4)),
     r"outflow must be finite"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert isinstance(err.value, MFAError)


def test_edge_shapes():
    # integer input, a single time step, an empty non-time axis
    res = inflow_driven(np.array([3, 0, 0]), FixedLifetime(1))
    np.testing.assert_array_equal(res.stock, [3, 0, 0])
    assert res.stock.dtype == float
    res = stock_driven([5.0], NormalLifetime(10, 3))
    assert res.inflow[0] == pytest.approx(5.0 / NormalLifetime(10, 3).sf(0.5))
    for run in (inflow_driven, stock_driven):
        out = run(np.zeros((4, 0, 2)), NormalLifetime(10, 3))
        assert out.stock.shape == out.inflow.shape == out.outflow.shape == (4, 0, 2)
