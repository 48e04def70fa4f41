"""How the month kernel and the functions it calls are compiled (numba).

Numba caches the kernel's machine code with the functions of balance.py, totals.py and
vecmath.py compiled in, and checks only kernel.py's date: after editing one of those files
or this one, delete src/oreflow/simulate/__pycache__ (otherwise the old code keeps running).
"""

from numba.core.compiler import Compiler


class NoOverlap(Compiler):
    """Numba's pipeline, with every pointer argument of the compiled function marked
    `noalias` for LLVM (numba's own flag, which it sets for its parallel loops' bodies when
    it can prove it): the arrays a phase is given never overlap, so LLVM need not check at
    run time, loop by loop, whether a store into one changes another before it vectorises.
    The promise binds the callers: never give one of these functions two views of the same
    memory when it writes to one of them (read-only arrays may be shared)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


JIT = {"cache": True, "error_model": "numpy", "pipeline_class": NoOverlap}
"""Compilation options of every phase. error_model "numpy": a float division by zero gives
inf or nan instead of raising, which spares a test and a branch on every division (every
division here is guarded, so the results are those of the default model). `NoOverlap`:
array arguments declared not to overlap (measured with the phases' constant lane count,
`kernel`: 0.92x the time)."""
