"""Scenario paths for the stockpile planner drawn across a sweep's parameter distributions.

`oreflow stockpile plan --sweep SWEEP.yaml`: the paths to optimise over come from
`param_draws` parameter sets (a Latin hypercube over the sweep's distributions), each run on
the sweep's scenarios for its share of the paths, so the plan hedges the structural
uncertainty as well as the shocks' timing and depth. The out-of-sample score uses another
seed: fresh parameter sets and fresh paths. Every path carries probability 1 / paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oreflow.sweep.design import Sweep, apply_parameters, load_sweep, unit_design
from oreflow.sweep.errors import SweepError


def load_for_plan(sweep, network) -> Sweep:
    from oreflow.stockpile import PlanError

    if isinstance(sweep, Sweep):
        return sweep
    try:
        return load_sweep(Path(sweep), network)
    except SweepError as e:
        raise PlanError(str(e)) from None


def uncertain_unmet(sweep: Sweep, paths: int, seed: int, months: int, perspective: str,
                    network, param_draws: int):
    """UnmetPaths over `param_draws` parameter sets x the sweep's scenarios."""
    from oreflow.stockpile import PlanError, UnmetPaths, simulate_unmet

    if int(param_draws) != param_draws or param_draws < 1:
        raise PlanError(f"param_draws must be a whole number >= 1, got {param_draws}")
    K = int(min(param_draws, paths))
    ss = np.random.SeedSequence(seed).spawn(K + 1)
    unit = unit_design("lhs", K, len(sweep.params),
                       int(ss[0].generate_state(1)[0])) if sweep.params else np.zeros((K, 0))
    counts = np.full(K, paths // K)
    counts[:paths % K] += 1
    mix = dict.fromkeys(sweep.scenario_names, 1.0)
    by_name = dict(zip(sweep.scenario_names, sweep.scenarios, strict=True))
    parts = []
    for k in range(K):
        values = np.array([p.values(unit[k:k + 1, j])[0] for j, p in enumerate(sweep.params)])
        params = [p for p, _ in sweep.fixed] + list(sweep.params)
        values = np.concatenate([[v for _, v in sweep.fixed], values])
        try:
            beh, _ = apply_parameters(params, values, sweep.scenarios[0], network.dataset)
            prepared = {n: (apply_parameters(params, values, sc, network.dataset)[1],
                            sweep.sha256) for n, sc in by_name.items()}
        except SweepError as e:
            raise PlanError(str(e)) from None
        parts.append(simulate_unmet(mix, int(counts[k]), int(ss[k + 1].generate_state(1)[0]),
                                    months, perspective, network, behaviour=beh,
                                    prepare=prepared.__getitem__))
    n_total = sum(len(p.weight) for p in parts)
    return UnmetPaths(np.concatenate([p.unmet_t for p in parts]),
                      np.concatenate([p.weight * len(p.weight) / n_total for p in parts]),
                      np.concatenate([p.scenario for p in parts]), parts[0].base,
                      np.concatenate([p.price_response_usd for p in parts]))
