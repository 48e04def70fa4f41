"""Where the month kernel's time goes, phase by phase: cycles a tile-month in each phase.

Sampling profilers see numba's compiled code only as anonymous addresses, so this reads the
processor's cycle counter (LLVM's readcyclecounter: the time-stamp counter on x86-64)
between the phases instead. It copies the package into a temporary directory, inserts a
read of the counter after each phase call of `kernel.step_tile` and around the balance
check, the totals and the outside ratio in `kernel.step`, runs `licensing-2025-04` there in a
subprocess and prints each phase's cycles a tile-month and share. The project's own code is
not changed; the copy compiles into its own numba cache (the first run compiles, ~1 min).
Tiles of blocks run side by side on two threads share one row of counters, so a few
increments may be lost to races: read the shares, not the last cycle.

Run: .venv/bin/python benchmarks/profile_phases.py [--paths 20000] [--months 120]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from oreflow.simulate.kernel import LANES

SRC = Path(__file__).resolve().parents[1] / "src"
PHASES = ["month_prices", "demand", "orders", "licences", "produce", "ship", "arbitrage", "use",
          "shortfall", "prices"]
AFTER = ["balance", "totals", "outside_ratio"]  # in kernel.step, after the tile's month
STEP_TILE = len(PHASES) + len(AFTER)  # the whole step_tile call, its allocations included

COUNTER = '''
from numba.core.extending import intrinsic as _intrinsic
from numba import types as _types
from llvmlite import ir as _ir


@_intrinsic
def _cycles(typingctx):
    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic(
            "llvm.readcyclecounter", [], _ir.FunctionType(_ir.IntType(64), []))
        return builder.call(fn, [])
    return _types.int64(), codegen
'''


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"profile_phases: the simulation code changed, cannot find: "
                         f"{old[:60]!r}")
    return text.replace(old, new)


def instrument(kernel_src: str) -> str:
    """kernel.py with counter reads between the phases; the counts go to a `prof` field of
    Static ([thread, slot] int64)."""
    s = _replace_once(kernel_src, "    par: np.ndarray  # yields",
                      "    prof: np.ndarray\n    par: np.ndarray  # yields")
    s = _replace_once(s, "\nOX, MET, MAG = 0, 1, 2\n", COUNTER + "\nOX, MET, MAG = 0, 1, 2\n")
    start, end = s.index("def step_tile("), s.index("@njit(parallel=True, **JIT)\ndef step(")
    lines, out, i, seen = s[start:end].split("\n"), [], 0, 0
    while i < len(lines):
        m = re.match(r"    (\w+)\(", lines[i])
        if m and m.group(1) in PHASES:
            if not seen:
                out.append("    t0 = _cycles()")
            seen += 1
            out.append(lines[i])
            depth = lines[i].count("(") - lines[i].count(")")
            while depth > 0:  # the rest of the call
                i += 1
                out.append(lines[i])
                depth += lines[i].count("(") - lines[i].count(")")
            out.append(f"    t1 = _cycles()\n    st.prof[get_thread_id(), "
                       f"{PHASES.index(m.group(1))}] += t1 - t0\n    t0 = t1")
        else:
            out.append(lines[i])
        i += 1
    if seen != len(PHASES):
        raise SystemExit(f"profile_phases: found {seen} of the {len(PHASES)} phase calls")
    s = s[:start] + "\n".join(out) + s[end:]
    s = _replace_once(s, "        step_tile(st, ctl, S[b], C[b]",
                      "        ta = _cycles()\n        step_tile(st, ctl, S[b], C[b]")
    tick = "st.prof[get_thread_id(), {k}] += t1 - t0\n        t0 = t1\n"
    s = _replace_once(s, "        if check:\n",
                      f"        t0 = _cycles()\n        st.prof[get_thread_id(), {STEP_TILE}] "
                      "+= t0 - ta\n        if check:\n")
    s = _replace_once(s, "        if total:\n", "        t1 = _cycles()\n        "
                      + tick.format(k=len(PHASES)) + "        if total:\n")
    s = _replace_once(s, "        outside_ratio_tile(", "        t1 = _cycles()\n        "
                      + tick.format(k=len(PHASES) + 1) + "        outside_ratio_tile(")
    return _replace_once(
        s, "outside_ratio_out, np.empty(W))\n",
        "outside_ratio_out, np.empty(W))\n        st.prof[get_thread_id(), "
        f"{len(PHASES) + 2}] += _cycles() - t0\n")


RUN = '''
import json, sys
import numpy as np
from oreflow.simulate import engine, run_stress
paths, months = int(sys.argv[1]), int(sys.argv[2])
run_stress("licensing-2025-04", paths=128, months=3, bands=False, seed=2)  # compile
engine.PROF[:] = 0
run_stress("licensing-2025-04", paths=paths, months=months, bands=False, seed=2)
print(json.dumps(engine.PROF.sum(0).tolist()))
'''


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=_positive, default=20_000)
    ap.add_argument("--months", type=_positive, default=120)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="oreflow-phases-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
        sim = copy / "oreflow" / "simulate"
        (sim / "kernel.py").write_text(instrument((sim / "kernel.py").read_text()))
        eng = (sim / "engine.py").read_text()
        eng = _replace_once(eng, "    return kernel.Static(",
                            "    return kernel.Static(prof=PROF, ")
        eng = _replace_once(eng, "\nclass Engine:",
                            "\nPROF = np.zeros((256, 16), np.int64)\n\n\nclass Engine:")
        (sim / "engine.py").write_text(eng)
        env = {**os.environ, "PYTHONPATH": str(copy), "NUMBA_CACHE_DIR": str(Path(tmp) / "nbc")}
        out = subprocess.run([sys.executable, "-c", RUN, str(args.paths), str(args.months)],
                             env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"profile_phases: the instrumented run failed:\n{out.stderr[-3000:]}")
    cycles = [int(x) for x in out.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    tile_months = -(-args.paths // LANES) * args.months
    kernel = cycles[STEP_TILE] + sum(cycles[len(PHASES):STEP_TILE])
    rows = [*zip(PHASES + AFTER, cycles[:STEP_TILE], strict=True),
            ("step_tile's own", cycles[STEP_TILE] - sum(cycles[:len(PHASES)]))]
    print(f"licensing-2025-04, {args.paths} paths x {args.months} months: "
          f"{kernel / tile_months:,.0f} counter cycles a tile-month in the kernel")
    for name, c in sorted(rows, key=lambda r: -r[1]):
        print(f"  {name:16s} {c / tile_months:10,.0f}  {100 * c / kernel:5.1f}%")


if __name__ == "__main__":
    main()
