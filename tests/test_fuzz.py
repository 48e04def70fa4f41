"""Fuzzing (issue 11): property-based tests of the scenario parser and the dataset loader
(hypothesis), and schemathesis against the web app's OpenAPI schema, in-process. Budgets are
bounded (`max_examples`) so the file runs in well under a minute; set OREFLOW_FUZZ_EXAMPLES
to search longer, e.g. OREFLOW_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shutil
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oreflow.scenario import ScenarioError, builtin_names, parse_scenario, scenario_text

EXAMPLES = int(os.environ.get("OREFLOW_FUZZ_EXAMPLES", "0")) or None
FAST = settings(max_examples=EXAMPLES or 100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=EXAMPLES or 12, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _numbers(obj):
    """Every float in a (model-dumped) structure."""
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _numbers(v)


def _accepts_or_refuses_cleanly(text: str, network=None):
    try:
        sc = parse_scenario(text, "fuzz.yaml", network)
    except ScenarioError as e:
        assert len(str(e).encode()) < 2000, str(e)[:300]
        assert str(e).startswith("fuzz.yaml")
        return None
    assert all(math.isfinite(x) for x in _numbers(sc.model_dump()))
    return sc


# ---- the scenario parser ----------------------------------------------------------------------
@FAST
@given(st.text(max_size=400))
def test_any_text_is_parsed_or_refused_cleanly(text):
    _accepts_or_refuses_cleanly(text)


YAML_TOKENS = st.sampled_from(["&a ", "*a ", "<<: ", "[", "]", "{", "}", ": ", "- ", "\n", "  ",
                               ".nan", ".inf", "-.inf", "1e999", "!!python/object:x ", "? ",
                               "'", '"', "#", "name", "shocks", "type", "outage", "0", "1.5",
                               "!!binary ", "|\n", ">\n", "%YAML 1.1\n", "---\n", "...\n"])


@FAST
@given(st.lists(YAML_TOKENS, max_size=80).map("".join))
def test_yaml_token_soup_is_parsed_or_refused_cleanly(text):
    _accepts_or_refuses_cleanly(text)


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                   st.sampled_from([0, 1, -1, 0.5, 1e300, -1e300, 1200, 1201]))
LEAF = st.one_of(NUMBER, st.text(max_size=12), st.booleans(), st.none(),
                 st.sampled_from(["CHN", "USA", "Dy", "all", "wind", "magnet", "uniform",
                                  "fixed", "triangular", "outage", "export_control"]))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["dist", "low", "high", "mode", "value"]), inner,
                    max_size=4)), max_leaves=12)
FIELDS = ["type", "start", "duration", "share_lost", "region", "stage", "elements", "factor",
          "sector", "approval", "approval_scale", "processing_delay", "t_per_year", "holder",
          "element", "t", "release_price_ratio", "collection_rate", "capacity_factor",
          "ramp_months", "delay_months", "delay_probability", "origin", "destinations"]
SHOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["export_control", "outage", "demand_shift", "new_capacity",
                              "stockpile", "recycling", "other"])},
    optional={f: VALUE for f in FIELDS[1:]})
SCENARIO = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=20), "start": st.sampled_from(["2025-04", "2025-13",
                                                                          "x", 2025])},
    optional={"months": NUMBER, "controller": st.sampled_from(["CHN", "USA", "XXX"]),
              "shocks": st.lists(SHOCK, max_size=4)})


@FAST
@given(SCENARIO)
def test_structured_scenarios_validate_or_name_the_field(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    _accepts_or_refuses_cleanly(text)


@pytest.fixture(scope="module")
def builtin_texts():
    return [scenario_text(n)[1] for n in builtin_names()]


NUM_RE = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w.-])")


@SLOW
@given(st.data())
def test_mutated_builtin_scenarios_run_finite_or_are_refused(builtin_texts, network, data):
    """Replace one number of a built-in scenario by a hostile one: the scenario is refused
    with a short message, or it runs and its result is finite (run_stress checks that), or
    the engine refuses it with a ValueError that names the shock (e.g. a recycling target
    below today's level) - never a KeyError, an IndexError or a non-finite result."""
    from oreflow.finite import NonFiniteResultError
    from oreflow.simulate import run_stress

    text = data.draw(st.sampled_from(builtin_texts))
    spots = list(NUM_RE.finditer(text))
    m = data.draw(st.sampled_from(spots))
    new = data.draw(st.sampled_from([".nan", ".inf", "-.inf", "1e300", "-1", "0", "1e-300",
                                     "600", "601", "1200", "0.999999", "2"]))
    mutated = text[:m.start()] + new + text[m.end():]
    sc = _accepts_or_refuses_cleanly(mutated, network)
    if sc is not None:
        try:
            run_stress(sc, paths=3, months=min(sc.months, 4), network=network)
        except NonFiniteResultError:
            raise
        except ValueError as e:  # a refusal the engine words itself
            assert len(str(e)) < 1000 and re.search(r"\w+ \(|\.\w+|shock", str(e)), str(e)


# ---- the dataset loader -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw_frames():
    from oreflow.data.load import TABLES_DIR, read_raw_tables

    frames, problems = read_raw_tables(TABLES_DIR)
    assert problems == []
    return frames


CELL = st.one_of(st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e308", "1e309", "-1",
                                  "0", "1e300", "true", "maybe", "b\u0430se_year", "\u200b",
                                  "CHN", "2024", "2024.5", "-0", "0x10", " 1 "]),
                 st.text(max_size=8), st.floats().map(repr))


@settings(FAST, max_examples=EXAMPLES or 30)
@given(st.data())
def test_corrupted_cells_give_problems_not_exceptions(raw_frames, data):
    """Any value in any cell: validation returns problems naming the file, never raises."""
    from oreflow.data.load import validate_tables

    name = data.draw(st.sampled_from(sorted(raw_frames)))
    df = raw_frames[name].copy()
    if len(df) == 0:
        return
    row = data.draw(st.integers(0, len(df) - 1))
    col = data.draw(st.sampled_from(list(df.columns)))
    df.loc[df.index[row], col] = data.draw(CELL)
    drop = data.draw(st.booleans())
    if drop:
        df = df.drop(index=df.index[row])
    frames = {**raw_frames, name: df}
    _, problems = validate_tables(frames)
    for p in problems:
        assert p.file.endswith(".csv") and len(str(p)) < 1000


@SLOW
@given(st.data())
def test_a_dataset_that_passes_data_check_runs(raw_frames, data):
    """A numeric cell set to any value inside or outside its range: `data check` (the schema,
    then the model build) refuses the dataset with problems, or the model runs on it: a
    stress run of a scenario the check does not try finishes with a finite result."""
    from oreflow.data.load import Dataset, validate_tables
    from oreflow.data.modelcheck import SMOKE_SCENARIOS, check_model
    from oreflow.data.schema import TABLES
    from oreflow.network import Network
    from oreflow.simulate import run_stress

    name = data.draw(st.sampled_from(["mine_production", "stage_parameters", "base_prices",
                                      "market_behaviour", "sectors", "magnet_composition",
                                      "recycling", "magnet_lifetimes", "enduse_demand",
                                      "concentrate_routing", "stage_shares"]))
    df = raw_frames[name].copy()
    cols = [c.name for c in TABLES[name].all_columns() if c.kind == "float"
            and c.name in df.columns]
    row = data.draw(st.integers(0, len(df) - 1))
    col = data.draw(st.sampled_from(cols))
    df.loc[df.index[row], col] = repr(data.draw(st.floats(-1e12, 1e12) | st.sampled_from(
        [0.0, 1e-300, 1.0, 0.01, 1e8, 1e9])))
    tables, problems = validate_tables({**raw_frames, name: df})
    if problems:
        return
    ds = Dataset(tables=tables, path=TABLES[name].file, version=f"fuzz-{name}-{row}-{col}")
    problems = check_model(ds)
    if problems:
        assert all(p.file == "model" and "failed" in p.message for p in problems)
        return
    scenario = data.draw(st.sampled_from(["heavy-embargo-usa-12m", "eu-recycling-2030",
                                          "myanmar-halt-6m"]))
    assert scenario not in SMOKE_SCENARIOS
    run_stress(scenario, paths=3, months=3, network=Network.from_dataset(ds))


# ---- the web API, against its own OpenAPI schema ------------------------------------------------
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

from oreflow.web import create_app  # noqa: E402
from oreflow.web.security import DEFAULT_ALLOWED_HOSTS  # noqa: E402

_DATA = tempfile.mkdtemp(prefix="oreflow-fuzz-")
atexit.register(shutil.rmtree, _DATA, True)
# Tiny limits: what is fuzzed is request handling, not long simulations (a run of 1 path x 1
# month may start; anything larger is refused with 422). Schemathesis's test client sends
# Host: testserver, so that name is allowed here beside the default local names.
APP = create_app(_DATA, max_path_months=1, max_concurrent_runs=1,
                 allowed_hosts=[*DEFAULT_ALLOWED_HOSTS, "testserver"])
atexit.register(APP.state.manager.close)


class _OneLifespan:
    """The app for the whole module: schemathesis ends an ASGI app's lifespan after every
    test item and starts it again, and a server's run manager is not made to reopen."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return


schema = schemathesis.openapi.from_asgi("/openapi.json", _OneLifespan(APP))


@schema.parametrize()
@settings(max_examples=EXAMPLES or 25, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case):
    case.call_and_validate(checks=[not_a_server_error])
