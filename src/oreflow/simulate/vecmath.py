"""exp over a tile's lanes in vector registers, with the results of glibc's exp.

The month kernel calls exp some 700 times a path-month. A call to libm's exp cannot be
vectorised by numba (pip's llvmlite ships no vector math library) and costs ~3 ns; this one
runs in the kernel's lane loops. It is the published algorithm of ARM's optimized-routines
(math/exp.c, MIT licence), which glibc (2.28 and later) uses for `exp`: x = k ln2/128 + r,
exp(x) = 2^(k/128) (1 + tail + poly(r)), a table of 2^(j/128) rebuilt here from its definition,
and the fused multiply-adds glibc's x86-64 build makes. So results are those of glibc's exp on
x86-64 with FMA to the last bit (tests/test_vecmath.py), and on every machine the same: the
fused multiply-add is exact by definition, wherever it runs.

Numba caches the kernel's machine code with this module's functions compiled in, and checks
only kernel.py's date: after editing this file, delete src/oreflow/simulate/__pycache__.
"""

from __future__ import annotations

import struct
from decimal import Decimal, localcontext

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic

JIT = {"cache": True, "error_model": "numpy"}


def _exp_table() -> np.ndarray:
    """[256] uint64: for j < 128, the bits of tail_j and of H_j less j << 45, where H_j is
    the double nearest 2^(j/128) and tail_j = (2^(j/128) - H_j) / H_j, rounded to double
    (optimized-routines' `__exp_data.tab`)."""
    tab = np.zeros(256, np.uint64)
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        for j in range(128):
            exact = (ln2 * j / 128).exp()
            head = float(exact)
            tail = float((exact - Decimal(head)) / Decimal(head))
            tab[2 * j] = struct.unpack("<Q", struct.pack("<d", tail))[0]
            tab[2 * j + 1] = (struct.unpack("<Q", struct.pack("<d", head))[0] - (j << 45)) % 2**64
    return tab


EXP_TABLE = _exp_table()
INV_LN2_N = float.fromhex("0x1.71547652b82fep0") * 128  # 128 / ln 2
SHIFT = float.fromhex("0x1.8p52")  # adding it rounds to an integer
NEG_LN2_HI_N = float.fromhex("-0x1.62e42fefa0000p-8")  # -ln 2 / 128, in two parts
NEG_LN2_LO_N = float.fromhex("-0x1.cf79abc9e3b3ap-47")
C2, C3, C4, C5 = (float.fromhex(h) for h in (  # exp(r) - 1 - r ~ r^2 (C2 + r C3 + ...)
    "0x1.ffffffffffdbdp-2", "0x1.555555555543cp-3", "0x1.55555cf172b91p-5",
    "0x1.1111167a4d017p-7"))
FAST_ABSTOP = 0x408
"""Inputs with a biased exponent below this (|x| < 512) take the table path; larger ones,
inf and nan go to libm's exp."""


@intrinsic
def fma(typingctx, a, b, c):
    """a x b + c rounded once (LLVM's llvm.fma: an FMA instruction where there is one)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _bits(typingctx, x):
    """The bits of a double as uint64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _double(typingctx, u):
    """The double whose bits are u."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@njit(inline="always", **JIT)
def _exp_table_path(x):
    """exp(x) for |x| < 512 (garbage elsewhere): optimized-routines' exp_inline, with the
    contractions of glibc's FMA build."""
    kd = fma(INV_LN2_N, x, SHIFT)
    ki = _bits(kd)
    kd -= SHIFT
    r = fma(kd, NEG_LN2_LO_N, fma(kd, NEG_LN2_HI_N, x))
    idx = np.uint64(2) * (ki & np.uint64(127))
    tail = _double(EXP_TABLE[idx])
    scale = _double(EXP_TABLE[idx + np.uint64(1)] + (ki << np.uint64(45)))
    r2 = r * r
    tmp = fma(r2 * r2, fma(r, C5, C4), fma(r2, fma(r, C3, C2), tail + r))
    return fma(scale, tmp, scale)


@njit(inline="always", **JIT)
def _off_table(x):
    return ((_bits(x) >> np.uint64(52)) & np.uint64(0x7FF)) >= np.uint64(FAST_ABSTOP)


@njit(inline="always", **JIT)
def exp_lanes(x, out, n):
    """out[q] = exp(x[q]) for q < n, as glibc's exp gives it: one vector loop, and libm's
    exp for the rare lanes beyond the table's range (|x| >= 512, inf, nan)."""
    off = False
    for q in range(n):
        out[q] = _exp_table_path(x[q])
        off |= _off_table(x[q])
    if off:
        for q in range(n):
            if _off_table(x[q]):
                out[q] = np.exp(x[q])
