# %% [markdown]
# # How to: magnets in use, end of life and what recycling could return
#
# Stocks of Nd, Pr, Dy and Tb in magnets in use by sector and region since 1990, the
# end-of-life flow, and secondary supply under a collection rate and a recycling capacity;
# then the same lever in the stress test. Run it with
# `.venv/bin/python docs/howto/magnets-in-use.py`; the test suite runs it too.

# %%
from oreflow import Network, magnet_stocks
from oreflow.scenario import parse_scenario
from oreflow.simulate import run_stress

network = Network.from_dataset()
stocks = magnet_stocks(network)  # xarray Dataset: year x region x sector x element
eu = stocks.sel(region="XEU", year=network.year, element=["Nd", "Dy", "Tb"])
print(eu[["stock_t_element", "eol_t_element", "secondary_potential_t"]]
      .sum("sector").to_dataframe().round(1))

# %% [markdown]
# By sector, for Dy: wind and EV magnets are young, so little of them reaches end of life yet.

# %%
dy = stocks.sel(region="XEU", year=network.year, element="Dy")
print(dy[["inflow_t_element", "stock_t_element", "eol_t_element"]].to_dataframe()
      .drop(columns=["region", "year", "element"]).round(1))

# %% [markdown]
# What would 25% collection in the EU return? Below capacity, secondary supply is
# proportional to the collection rate; above it, capacity binds.

# %%
for rate in (0.01, 0.25, 0.9):
    s = magnet_stocks(network, start_year=2000, collection_rate={"XEU": rate})
    sel = s.sel(region="XEU", year=network.year)
    print(f"collection {rate:4.0%}: feed {float(sel['feed_t_magnet']):7,.0f} t magnets, "
          f"processed {float(sel['processed_t_magnet']):7,.0f} t, secondary Dy "
          f"{float(sel['secondary_potential_t'].sel(element='Dy').sum()):5.2f} t/yr")

# %% [markdown]
# In the stress test: the same long licensing regime with and without much higher
# collection outside China (same seed: common random numbers).

# %%
def scenario(collection: float | None) -> str:
    text = """
name: howto-recycling
start: "2025-04"
months: 60
shocks:
  - type: export_control
    elements: [Sm, Gd, Tb, Dy, Lu, Y]
    approval: [[0, 0.1], [2, 0.5], [6, 0.7]]
"""
    if collection is not None:
        for region in ("USA", "XEU", "JPN"):
            text += f"""
  - type: recycling
    region: {region}
    ramp_months: 24
    collection_rate: {collection}
    capacity_t_magnet_per_year: 10000
"""
    return text


for collection in (None, 0.5):
    ds = run_stress(parse_scenario(scenario(collection), network=network), paths=40, seed=1,
                    network=network)
    short = float(ds["unmet_physical_t"].drop_sel(region="CHN").sum(("region", "sector"))
                  .mean())
    added = float(ds["secondary_added_t"].sel(element="Dy").mean())
    print(f"collection {collection or 'today'}: physical shortage outside China {short:,.0f} t "
          "per path, "
          f"recycled Dy added {added:.1f} t; balance residual "
          f"{ds.attrs['max_rel_balance_residual']:.1e}")
