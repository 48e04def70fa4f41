# %% [markdown]
# # How to: where is the chain concentrated, from my country's point of view?
#
# Load the embedded dataset, build the base-year network and compute the indicators for a
# perspective (a country code or a bloc: EU, G7, QUAD, MSP). Run it with
# `.venv/bin/python docs/howto/concentration.py`; the test suite runs it too.

# %%
from oreflow import Network, chokepoints, indicator_table

network = Network.from_dataset()
table = indicator_table(network, perspective="EU", elements=["REO", "Dy", "Tb", "Nd"])
print(table[["element", "stage", "world_t", "china_share", "hhi", "import_reliance",
             "eu_sr"]].round(2).to_string(index=False))

# %% [markdown]
# The same table for every element, ranked by concentration x reliance:

# %%
top = chokepoints(indicator_table(network, "EU"), n=5)
print(top[["element", "stage", "china_share", "import_reliance", "chokepoint"]].round(2))

# %% [markdown]
# Where do the numbers come from? Every row of every table names its source:

# %%
mine = network.dataset["mine_production"].query("year == 2024 and region == 'CHN'")
print(mine[["region", "year", "t_reo", "source_id", "status", "note"]].to_string(index=False))
assert float(mine["t_reo"].iloc[0]) == 270_000
