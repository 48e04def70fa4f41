"""The kernel's vector exp (oreflow.simulate.vecmath) against exact values and against the
platform's libm exp, whose results every published figure was made with."""

from __future__ import annotations

import math
import platform
from decimal import Decimal, localcontext

import numpy as np
import pytest
from numba import njit

from oreflow.simulate.vecmath import INV_LN2_N, exp_lanes


@njit
def _exp_all(x):
    out = np.empty_like(x)
    exp_lanes(x, out, x.shape[0])
    return out


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


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                    or platform.libc_ver()[0] != "glibc",
                    reason="bit-identity is with glibc's exp on x86-64")
def test_exp_gives_libms_bits():
    x = _inputs()
    got = _exp_all(x)
    want = np.array([math.exp(v) if not v >= 709.8 else math.inf for v in x])
    same = (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]


def test_exp_of_zero_is_one_and_the_ends_are_libms():
    got = _exp_all(np.array([0.0, -0.0, -np.inf, np.inf, np.nan, 1e4, -1e4]))
    assert got[0] == got[1] == 1.0 and got[2] == 0.0 and got[3] == np.inf
    assert np.isnan(got[4]) and got[5] == np.inf and got[6] == 0.0
