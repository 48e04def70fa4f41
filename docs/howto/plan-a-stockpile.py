# %% [markdown]
# # How to: plan a stockpile for the heavy rare earths under a budget
#
# A defense-minded planner wants to know what 100 M USD (purchase plus 15 years of carrying
# cost) buys against the export controls in force today, holding only the magnet elements,
# with at least 90 days of dysprosium. The CLI equivalent:
# `oreflow stockpile plan --budget-usd 1e8 --scenarios licensing-2025-04:3,heavy-embargo-usa-12m
#  --elements Nd,Pr,Dy,Tb --min-days Dy:90`. Few paths here to keep the how-to fast; use the
# defaults (2,000 + 2,000) for a real answer.

# %%
from oreflow import plan_stockpile

plan = plan_stockpile(
    budget_usd=1e8,
    perspective="USA",
    scenarios={"licensing-2025-04": 3.0, "heavy-embargo-usa-12m": 1.0},
    elements=["Nd", "Pr", "Dy", "Tb"],
    min_days={"Dy": 90},
    paths=60,
    eval_paths=60,
    months=36,
    seed=1,
)
print(plan.holdings().round(1).to_string(index=False))
print(f"purchase {plan.spent_usd / 1e6:.1f} M USD, "
      f"carry {plan.carry_usd_per_year / 1e6:.2f} M USD/yr")
days = dict(zip(plan.elements, plan.days_of_cover, strict=True))
print({e: round(float(days[e])) for e in ("Dy", "Tb")})

# %% [markdown]
# The budget binds: purchases plus 15 years of carry use the 100 M USD, and Dy sits at its
# 90-day floor. Much stays unserved: the other elements short in these scenarios (Gd, Lu,
# Y, Sm) are excluded by `elements`, and 100 M USD covers only part of the magnet elements.
# The evaluation scores the plan, the 60-day rule and no stockpile on fresh paths: expected
# value of unmet demand and its CVaR at 95%, in USD.

# %%
ev = plan.evaluation
for k in ("plan", "rule_60_days", "none"):
    print(f"{k:13s} expected {ev['expected_unserved_usd'][k] / 1e6:10.1f} M USD   "
          f"CVaR95 {ev['cvar95_unserved_usd'][k] / 1e6:10.1f} M USD")
assert plan.days_of_cover[plan.elements.index("Dy")] >= 90 - 1e-6
