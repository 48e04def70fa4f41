"""Sobol indices of sweep headlines with SALib (Saltelli's design, Jansen's total effect).

First-order S1 is the share of an output's variance explained by one parameter alone; total
ST adds every interaction it takes part in. Confidence intervals (95%) are bootstrap
half-widths over the design's base samples (SALib, fixed seed: the same store gives the same
intervals). An output that does not vary across the design (e.g. a sector never short) has
no indices: NaN, not zero.
"""

from __future__ import annotations

import warnings

import numpy as np

CONF_LEVEL = 0.95
RESAMPLES = 200


def sobol_indices(Y: np.ndarray, dims: int, seed: int = 0,
                  conf_level: float = CONF_LEVEL) -> dict[str, np.ndarray]:
    """Y [points, outputs] on a saltelli design (calc_second_order=False) over `dims`
    parameters -> S1, S1_conf, ST, ST_conf, each [outputs, dims]."""
    from SALib.analyze import sobol

    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[:, None]
    problem = {"num_vars": dims, "names": [f"x{i}" for i in range(dims)],
               "bounds": [[0.0, 1.0]] * dims}
    out = {k: np.full((Y.shape[1], dims), np.nan) for k in ("S1", "S1_conf", "ST", "ST_conf")}
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if not np.isfinite(y).all() or np.ptp(y) <= 1e-12 * max(1.0, np.abs(y).max()):
            continue
        with warnings.catch_warnings():
            # bootstrap resamples of an output that is constant on most points; the
            # indices are still defined (the output varies over the whole design)
            warnings.filterwarnings("ignore", message="Constant values encountered")
            # seed + 1: SALib treats a seed of 0 as "no seed" and resamples at random
            r = sobol.analyze(problem, y, calc_second_order=False, num_resamples=RESAMPLES,
                              conf_level=conf_level, seed=seed + 1)
        for k in out:
            out[k][j] = np.asarray(r[k], float)
    return out
