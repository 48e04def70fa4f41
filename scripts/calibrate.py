"""Fit the price parameters to the 2010-11 rare-earth crisis (in-sample targets only).

Fitted, by grid search with everything else at its sourced or assumed value:
`price_rationing_elasticity` (how much of an expected shortage is rationed by quantity rather
than price) and `price_horizon_months` (how far ahead holders look). Targets: the
`validation_targets.csv` rows with role `fit`: the outside-China peak multiples of Dy and Nd
oxide over Q1 2010 (14.7x and 9.4x), on `quota-2010` (the 2010 network, recorded exports).
The statistic is the one `oreflow stress` reports (median over paths of each path's peak).
Every other target is out-of-sample: `oreflow validate` checks them and writes
docs/validation.md.

Each seed is fitted on its own: the spread of the best values over seeds is the parameter
uncertainty the fit reports. The chosen values (best on the pooled seeds) are written into
src/oreflow/data/curated/market_behaviour.csv; then run `oreflow data build`.

Run: .venv/bin/python scripts/calibrate.py   (the grid table goes to docs/calibration-2010.csv)
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from oreflow.io import atomic_write_text
from oreflow.network import Network
from oreflow.simulate import Behaviour
from oreflow.validate import simulate, table

ROOT = Path(__file__).resolve().parents[1]
CURATED = ROOT / "src" / "oreflow" / "data" / "curated" / "market_behaviour.csv"
TABLE = ROOT / "docs" / "calibration-2010.csv"
SEEDS, PATHS = (1, 2, 3), 200
GRID = {
    "price_rationing_elasticity": [0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8],
    "price_horizon_months": [1.0, 1.5, 2.0, 3.0],
}


def main() -> None:
    net = Network.from_dataset()
    targets = net.dataset["validation_targets"].query("role == 'fit'")
    rows = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        beh = Behaviour.from_dataset(net.dataset, **params)
        for seed in SEEDS:
            tab = table(targets, simulate(targets, beh, seeds=(seed,), paths=PATHS,
                                          network=net))
            row = {**params, "seed": seed}
            row.update({f"{t}_median": m for t, m in zip(tab["target"],
                                                          tab["simulated_median"],
                                                          strict=True)})
            row["loss"] = float((np.log(tab["simulated_median"] / tab["observed"]) ** 2).sum())
            rows.append(row)
        print(params, f"loss {np.mean([r['loss'] for r in rows[-len(SEEDS):]]):.3f}",
              flush=True)
    grid = pd.DataFrame(rows)
    atomic_write_text(TABLE, grid.to_csv(index=False, float_format="%.4g"))
    keys = list(GRID)
    pooled = grid.groupby(keys)["loss"].mean()
    best = dict(zip(keys, pooled.idxmin(), strict=True))
    per_seed = grid.loc[grid.groupby("seed")["loss"].idxmin(), ["seed", *keys, "loss"]]
    print("best (pooled seeds):", best, f"loss {pooled.min():.3f}")
    print("best per seed (the parameter uncertainty):")
    print(per_seed.to_string(index=False))
    spread = {k: (per_seed[k].min(), per_seed[k].max()) for k in keys}
    _write_curated(best, spread)


def _write_curated(best: dict[str, float], spread: dict[str, tuple[float, float]]) -> None:
    text = CURATED.read_text()
    for name, value in best.items():
        lo, hi = spread[name]
        note = (f"fitted by scripts/calibrate.py to the 2010-11 Dy and Nd outside peaks "
                f"(in-sample; best per seed {lo:g}-{hi:g}; docs/calibration-2010.csv)")
        pattern = re.compile(rf"^{name},[^,]*,([^,]*),[^,]*,[^,]*,[^,]*,.*$", re.M)
        if not pattern.search(text):
            raise SystemExit(f"{CURATED}: no row for {name}")
        text = pattern.sub(lambda m, n=name, v=value, nt=note:
                           f"{n},{v:g},{m.group(1)},oreflow_calibration,2026,estimate,\"{nt}\"",
                           text)
    atomic_write_text(CURATED, text)
    print(f"wrote {', '.join(best)} into {CURATED}; now run `oreflow data build`")


if __name__ == "__main__":
    main()
