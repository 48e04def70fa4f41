"""How the month kernel and the functions it calls are compiled (numba).

Numba caches the kernel's machine code with the functions of balance.py, totals.py and
vecmath.py compiled in, and checks only kernel.py's date: after editing one of those files,
delete src/oreflow/simulate/__pycache__ (otherwise the old code keeps running).
"""

JIT = {"cache": True, "error_model": "numpy"}
"""Compilation options of every phase. error_model "numpy": a float division by zero gives
inf or nan instead of raising, which spares a test and a branch on every division (every
division here is guarded, so the results are those of the default model)."""
