# %% [markdown]
# # How to: write a scenario and run the stress test
#
# A scenario is YAML: a start month, a horizon and a list of shocks. Any start, duration or
# magnitude may be a distribution, sampled once per Monte Carlo path. Here: China licenses
# Dy and Tb exports for 6-12 months, approving 30% of requests after a 1-2 month delay,
# while a US separation plant comes online. Save it as a file and run
# `oreflow scenario validate my.yaml` and `oreflow stress my.yaml --paths 10000 --perspective
# USA`, or do the same from Python as below. Applications wait `review_months` (fractional:
# split between two months) before a share of them is approved.

# %%
from oreflow import Network
from oreflow.scenario import parse_scenario
from oreflow.simulate import run_stress, summary

text = """
name: dy-tb-licences
description: Dy and Tb licences for 6-12 months; a new US separation line.
start: "2026-01"
months: 24
shocks:
  - type: export_control
    origin: CHN
    elements: [Dy, Tb]
    stages: [separation, metal, magnet]
    start: 0
    duration: {dist: uniform, low: 6, high: 12}
    approval: [[0, 0.3]]
    review_months: {dist: uniform, low: 1, high: 2}
  - type: new_capacity
    region: USA
    stage: separation
    elements: [Dy, Tb]
    t_per_year: 200
    start: 6
    ramp_months: 12
    delay_probability: 0.4
    delay_months: 9
"""
network = Network.from_dataset()
scenario = parse_scenario(text, "dy-tb-licences.yaml", network)

# %% [markdown]
# Run 2,000 paths with a fixed seed (same seed, same result) and read the headline numbers:

# %%
result = run_stress(scenario, paths=2000, seed=42, network=network)
s = summary(result, "USA", ["USA"])  # sector figures for the US market
print("Dy peak price x base by zone and region:", s["price_peak_ratio"]["Dy"])
print("US physical shortage, t of element (median):",
      {k: round(v) for k, v in s["unmet_physical_t"].items() if v})
print("US demand given up because of price (median):",
      {k: round(v) for k, v in s["demand_reduction_t"].items() if v})
print("physical shortage by region (median):", s["unmet_physical_t_by_region"])

# %% [markdown]
# The result is an xarray Dataset: monthly bands by region and element, per-path totals.

# %%
dy = result["price_usd_per_kg"].sel(element="Dy", region="USA")
print(dy.sel(quantile=[0.05, 0.5, 0.95]).isel(month=slice(0, 12)).round(0).to_pandas())
assert result.attrs["max_rel_balance_residual"] < 1e-9

# %% [markdown]
# ## A replay: recorded quantities in, prices out
#
# For a past event, put in what was shipped instead of a licence approval rate:
# `approval_basis: base_year` makes the approval path a quota on each trade link's
# base-year monthly flow (shares may exceed 1), and `expected_approval` is what buyers
# expected when it differs (a quota announced tighter than what was then shipped). Here
# Dy exports fall to nothing for two months and come back at half the 2024 rate, while the
# market expected a fifth; `quota-2010` and `licensing-2025-04` are built this way from
# customs figures (`oreflow scenario show licensing-2025-04`).

# %%
replay = parse_scenario("""
name: dy-replay
start: "2025-04"
months: 12
shocks:
  - type: export_control
    elements: [Dy]
    stages: [separation, metal]
    approval_basis: base_year
    approval: [[0, 0.0], [2, 0.5]]
    expected_approval: [[0, 0.2]]
""", "dy-replay.yaml", network)
r = run_stress(replay, paths=200, seed=1, network=network)
print("Dy peak x base, replay:", summary(r)["price_peak_ratio"]["Dy"]["ROW"])

# %% [markdown]
# ## Does the plant help? The same paths without it
#
# `compare` (or `oreflow stress my.yaml --against other.yaml`) runs both scenarios on the
# same paths and seed and reports each path's own difference. The licence shock comes first
# in both, so every path draws the same licence duration and review time with and without the
# plant: the change is the plant's alone.

# %%
from oreflow.simulate import compare

without = parse_scenario(text.split("  - type: new_capacity")[0], "no-plant.yaml", network)
result_without = run_stress(without, paths=2000, seed=42, network=network)
change = compare(result, result_without, "USA", ["USA"])
print("US physical shortage, with the plant minus without, t (p5/p50/p95):",
      change["unmet_physical_t_change_by_region"]["USA"])
print("Dy peak price in the US, with / without (median over paths):",
      change["price_peak_ratio_change"]["Dy"]["USA"])
assert change["unmet_physical_t_change_by_region"]["USA"]["p50"] <= 1e-6

# %% [markdown]
# Here it hardly helps: on the median path the US runs short in months 5-8, while the plant
# ramps up from month 6 over a year (later on 40% of paths). A plant that is to close this
# gap has to be running before the licences bite.
