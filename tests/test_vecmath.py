"""The kernel's vector exp and log (oreflow.simulate.vecmath) against exact values and against
the platform's libm, whose results every published figure was made with."""

from __future__ import annotations

import math
import platform
from decimal import Decimal, localcontext

import numpy as np
import pytest
from numba import njit

from oreflow.simulate.vecmath import INV_LN2_N, exp_lanes, log_lanes, times_exp_lanes


@njit
def _exp_all(x):
    out = np.empty_like(x)
    exp_lanes(x, out, x.shape[0])
    return out


@njit
def _times_exp_all(b, a, x):
    out = np.empty_like(x)
    times_exp_lanes(b, a, x, out, x.shape[0])
    return out


@njit
def _log_all(x):
    out = np.empty_like(x)
    log_lanes(x, out, x.shape[0])
    return out


GLIBC_X86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                               or platform.libc_ver()[0] != "glibc",
                               reason="bit-identity is with glibc's exp and log on x86-64")


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    k = rng.integers(-60_000, 60_000, 50_000) + 0.5  # x / (ln2 / 128) within an ulp of a
    halfway = k / INV_LN2_N  # half-integer: where a missing fused multiply-add shows
    return np.concatenate([
        rng.uniform(-20, 20, 200_000), rng.uniform(-745, 709, 20_000),
        rng.normal(0, 1e-3, 20_000), np.nextafter(halfway, np.inf), halfway,
        np.nextafter(halfway, -np.inf),
        [0.0, -0.0, 1e-300, -1e-20, 511.9, -511.9, 512.0, -600.0, 709.7, -745.1, 800.0,
         np.inf, -np.inf, np.nan]])


def test_exp_is_within_half_an_ulp_and_a_bit_of_the_exact_value():
    x = np.random.default_rng(3).uniform(-30, 30, 3_000)
    got = _exp_all(x)
    with localcontext() as ctx:
        ctx.prec = 40
        exact = [Decimal(v).exp() for v in x]
    err = [abs(Decimal(g) - e) / Decimal(math.ulp(g)) for g, e in zip(got, exact, strict=True)]
    assert max(err) < Decimal("0.52")  # the algorithm's bound is 0.509 ulp


@GLIBC_X86
def test_exp_gives_libms_bits():
    x = _inputs()
    got = _exp_all(x)
    want = np.array([math.exp(v) if not v >= 709.8 else math.inf for v in x])
    same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]


def test_exp_times_a_factor_in_one_loop_is_the_product_of_exp_lanes():
    """b x exp(a x), computed without storing a x (the demand phase's want): the bits of
    b x exp_lanes(a x), beyond the table's range (libm's lanes) included."""
    x = _inputs()
    b = np.random.default_rng(4).uniform(0, 50, x.shape[0])
    for a in (-0.3, 2.5, -1.0):
        with np.errstate(over="ignore", invalid="ignore"):  # inf and nan among the inputs
            got, want = _times_exp_all(b, a, x), b * _exp_all(a * x)
        same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), x[~same][:5]


def test_exp_of_zero_is_one_and_the_ends_are_libms():
    got = _exp_all(np.array([0.0, -0.0, -np.inf, np.inf, np.nan, 1e4, -1e4]))
    assert got[0] == got[1] == 1.0 and got[2] == 0.0 and got[3] == np.inf
    assert np.isnan(got[4]) and got[5] == np.inf and got[6] == 0.0


def _log_inputs() -> np.ndarray:
    rng = np.random.default_rng(12)
    return np.concatenate([
        1 + rng.uniform(-0.07, 0.07, 200_000),  # both sides of the near-1 interval's ends
        1 + rng.normal(0, 1e-7, 20_000), np.exp(rng.uniform(-700, 700, 50_000)),
        rng.uniform(1e-12, 100, 100_000),
        [1.0, 1 - 2**-4, np.nextafter(1 - 2**-4, 0), 1 + float.fromhex("0x1.09p-4"),
         np.nextafter(1 + float.fromhex("0x1.09p-4"), 0), 5e-324, 2.2250738585072014e-308,
         1e-310, 0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1.7976931348623157e308]])


def test_log_is_within_half_an_ulp_and_a_bit_of_the_exact_value():
    rng = np.random.default_rng(4)
    x = np.concatenate([1 + rng.uniform(-0.06, 0.06, 1_500), np.exp(rng.uniform(-30, 30, 1_500))])
    got = _log_all(x)
    with localcontext() as ctx:
        ctx.prec = 40
        exact = [Decimal(v).ln() for v in x]
    err = [abs(Decimal(g) - e) / Decimal(math.ulp(g)) for g, e in zip(got, exact, strict=True)
           if g != 0]
    assert max(err) < Decimal("0.52")  # the algorithm's bound is ~0.52 ulp


@GLIBC_X86
def test_log_gives_libms_bits():
    x = _log_inputs()
    got = _log_all(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.array([math.log(v) if v > 0 and np.isfinite(v) else np.log(v) for v in x])
    same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]
