"""Path-indexed random numbers: path i's draws depend only on (seed, stream, i).

A run's paths can then be split into chunks, or into blocks run on different machines, and
every path sees the same draws. Each scenario field sampled per path is a stream, numbered in
a fixed order (shock by shock, field by field), so two scenarios that differ only in a
magnitude share their draws (common random numbers).

The generator is SplitMix64 (Steele, Lea and Flood 2014) applied to a counter built from
seed, stream and path index: a well-mixed 64-bit hash, vectorised over paths in numpy.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, stream: int, paths: np.ndarray) -> np.ndarray:
    """U[0, 1) draws, one per path index in `paths`."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + _GOLDEN)
        key = _mix(key ^ (np.uint64(stream & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN))
        z = _mix(key + np.asarray(paths, dtype=np.uint64) * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
