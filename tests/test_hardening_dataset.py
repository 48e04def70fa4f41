"""Corrupted datasets are refused by `data check` instead of crashing the model (issue 11).

The cases below were found by corrupting copies of the embedded tables (emptying a table,
keeping one row, deleting a parameter, renaming it with a look-alike character, a huge or NaN
value) and running the model on every copy that `data check` passed: each crashed it with a
KeyError or ValueError, or made it produce NaN. They are validated in memory (no model run),
so the whole file takes a few seconds."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow.cli import app as cli
from oreflow.data import raw
from oreflow.data.load import TABLES_DIR, read_raw_tables, validate_tables
from oreflow.data.schema import REQUIREMENTS, TABLES


@pytest.fixture(scope="module")
def frames():
    f, problems = read_raw_tables(TABLES_DIR)
    assert problems == []
    return f


def problems_of(frames, edits) -> list[str]:
    """Problems of the embedded tables after `edits` {table: fn(df) -> df}."""
    copy = {k: v.copy() for k, v in frames.items()}
    for name, fn in edits.items():
        copy[name] = fn(copy[name])
    return [str(p) for p in validate_tables(copy)[1]]


def empty(df):
    return df.iloc[0:0]


def first_row(df):
    return df.iloc[:1]


def without(col, value):
    return lambda df: df[df[col] != value]


def renamed(col, value, new):
    def fn(df):
        df.loc[df[col] == value, col] = new
        return df
    return fn


def setting(col, value, row=0):
    def fn(df):
        df.loc[df.index[row], col] = value
        return df
    return fn


CYR_A = "\u0430"  # CYRILLIC SMALL LETTER A, looks like 'a'

CASES = {
    # an empty parameter table: KeyError 'base_year' in the model
    "market_parameters empty": ({"market_parameters": empty}, "has 0 data row(s)"),
    "market_behaviour empty": ({"market_behaviour": empty}, "has 0 data row(s)"),
    "risk_parameters empty": ({"risk_parameters": empty}, "has 0 data row(s)"),
    "stockpile_parameters empty": ({"stockpile_parameters": empty}, "has 0 data row(s)"),
    "stage_parameters empty": ({"stage_parameters": empty}, "has 0 data row(s)"),
    "stockpile_forms empty": ({"stockpile_forms": empty}, "has 0 data row(s)"),
    "mine_production empty": ({"mine_production": empty}, "has 0 data row(s)"),
    "deposit_composition empty": ({"deposit_composition": empty}, "has 0 data row(s)"),
    "magnet_history empty": ({"magnet_history": empty}, "has 0 data row(s)"),
    # a parameter renamed with a look-alike character: KeyError in the model
    "base_year look-alike": ({"market_parameters": renamed("parameter", "base_year",
                                                           "b" + CYR_A + "se_year")},
                             "U+0430 (CYRILLIC SMALL LETTER A), not 'a'; names must match"),
    "substitution_max look-alike": (
        {"market_behaviour": renamed("parameter", "substitution_max", "substitution_m" + CYR_A
                                     + "x")}, "is not the required parameter 'substitution_max'"),
    "trade_partner_factor with a zero-width space": (
        {"risk_parameters": renamed("parameter", "trade_partner_factor",
                                    "trade_partner_factor\u200b")},
        "U+200B (ZERO WIDTH SPACE)"),
    "tenor_years in upper case": (
        {"stockpile_parameters": renamed("parameter", "tenor_years", "Tenor_years")},
        "differs in upper/lower case"),
    # a parameter deleted
    "target_cover_months missing": ({"market_behaviour": without("parameter",
                                                                 "target_cover_months")},
                                    "required parameter 'target_cover_months' is missing"),
    "export_ban_factor missing": ({"risk_parameters": without("parameter", "export_ban_factor")},
                                  "required parameter 'export_ban_factor' is missing"),
    "price_blocks missing": ({"stockpile_parameters": without("parameter", "price_blocks")},
                             "required parameter 'price_blocks' is missing"),
    "magnet stage missing": ({"stage_parameters": without("stage", "magnet")},
                             "required stage 'magnet' is missing"),
    "metal form missing": ({"stockpile_forms": without("form", "metal")}, "form='metal'"),
    # lookups that find nothing
    "base-year mine output gone": ({"mine_production": first_row},
                                   "no row for (year='2024')"),
    "base-year China imports gone": ({"trade_china_imports_2846": without("year", "2024")},
                                     "trade_china_imports_2846.csv"),
    "producers without mining sources": ({"mine_source_split": first_row},
                                         "mine_source_split.csv"),
    "producers without routing": ({"concentrate_routing": empty}, "concentrate_routing.csv"),
    "an element without a base price": ({"base_prices": lambda df: df.iloc[1:]},
                                        "base_prices.csv"),
    "a magnet sector without composition": ({"magnet_composition": first_row},
                                            "magnet_composition.csv"),
    "a sector without regions": ({"sector_regions": first_row}, "sector_regions.csv"),
    "a magnet sector without lifetime": ({"magnet_lifetimes": lambda df: df.iloc[1:]},
                                         "magnet_lifetimes.csv"),
    "a region without recycling": ({"recycling": lambda df: df.iloc[1:]}, "recycling.csv"),
    "a year of magnet history gone": ({"magnet_history": lambda df: df.iloc[1:]},
                                      "magnet_history.csv"),
    "EU bloc gone": ({"blocs": without("bloc", "EU")}, "bloc='EU'"),
    # values out of range: the model overflowed or divided by zero
    "base_year huge": ({"market_parameters": lambda df: setting(
        "value", "1e300", int(np.flatnonzero(df["parameter"] == "base_year")[0]))(df)},
        "base_year = 1e+300 is outside its range [1990, 2100]"),
    "base_year zero": ({"market_parameters": lambda df: setting(
        "value", "0", int(np.flatnonzero(df["parameter"] == "base_year")[0]))(df)},
        "base_year = 0 is outside its range"),
    "behaviour huge": ({"market_behaviour": setting("value", "1e300")},
                       "is outside its range"),
    "full-price ratio 1 (division by zero)": (
        {"market_behaviour": lambda df: setting("value", "1", int(np.flatnonzero(
            df["parameter"] == "substitution_full_price_ratio")[0]))(df)},
        "substitution_full_price_ratio = 1 is outside its range [1.01, 100]"),
    "base price huge": ({"base_prices": setting("usd_per_kg", "1e300")},
                        "above the maximum 1e+06 USD/kg"),
    "mine output huge": ({"mine_production": setting("t_reo", "1e300")},
                         "above the maximum 1e+08 t REO"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_corrupted_dataset_refused(frames, case):
    edits, expected = CASES[case]
    found = problems_of(frames, edits)
    assert found, f"{case}: passed validation"
    assert any(expected in p for p in found), "\n".join(found[:5])
    assert all(p.split(":")[0].endswith(".csv") or ".csv, " in p for p in found)


def test_nan_in_every_numeric_column_is_named(frames):
    """One copy with NaN in the first row of every numeric column: each column is named."""
    edits, expected = {}, []
    for name, t in TABLES.items():
        cols = [c.name for c in t.all_columns() if c.kind in ("int", "float")
                and c.name in frames[name].columns]
        if cols and len(frames[name]):
            edits[name] = (lambda cs: lambda df: df.assign(**{c: ["nan", *df[c].iloc[1:]]
                                                              for c in cs}))(cols)
            expected += [(t.file, c) for c in cols]
    found = problems_of(frames, edits)
    for file, col in expected:
        assert any(p.startswith(f"{file}, line 2, column '{col}'") and "not a finite number" in p
                   for p in found), (file, col)


def test_huge_value_in_every_numeric_column_is_refused(frames):
    edits, expected = {}, []
    for name, t in TABLES.items():
        cols = [c.name for c in t.all_columns() if c.kind in ("int", "float")
                and c.name in frames[name].columns]
        if cols and len(frames[name]):
            edits[name] = (lambda cs: lambda df: df.assign(**{c: ["1e300", *df[c].iloc[1:]]
                                                              for c in cs}))(cols)
            expected += [(t.file, c) for c in cols]
    found = problems_of(frames, edits)
    for file, col in expected:
        assert any(p.startswith(f"{file}, line 2, column '{col}'") for p in found), (file, col)


def test_every_numeric_column_has_a_range():
    for t in TABLES.values():
        for c in t.all_columns():
            if c.kind in ("int", "float"):
                assert c.min is not None and c.max is not None, f"{t.file}: {c.name}"


def test_schema_declares_what_the_model_reads():
    """The parameters the engine, the planner and the risk formula read by name are declared
    (a parameter added to the model without its declaration fails here)."""
    from oreflow.simulate.engine import Behaviour

    declared = {n: {p.name for p in r.get("params", ())} for n, r in REQUIREMENTS.items()}
    assert {f.name for f in fields(Behaviour)} <= declared["market_behaviour"]
    assert {"loan_rate_per_year", "tenor_years", "price_blocks", "rule_days",
            "conversion_capacity_share"} <= declared["stockpile_parameters"]
    assert {"trade_partner_factor", "export_ban_factor", "export_licence_factor",
            "export_quota_factor", "ec_assessment_year"} <= declared["risk_parameters"]
    assert declared["stage_parameters"] == {"mining", "separation", "metal", "magnet"}


@pytest.mark.parametrize("end", ["min", "max"])
def test_behaviour_ranges_keep_the_engine_finite(network, end):
    """Every market_behaviour parameter at the edge of its declared range still gives a
    finite result (the ranges are what the engine handles, not guesses)."""
    from oreflow.simulate import run_stress
    from oreflow.simulate.engine import Behaviour

    params = {p.name: getattr(p, end) for p in TABLES["market_behaviour"].params}
    for name, value in params.items():
        beh = Behaviour.from_dataset(network.dataset, **{name: float(value)})
        run_stress("licensing-2025-04", paths=4, months=6, network=network, behaviour=beh)


def test_recycling_fraction_out_of_range_refused(frames):
    """Found by fuzzing: a collection rate of 18717 passed the schema, then the stock model
    refused it."""
    found = problems_of(frames, {"recycling": lambda df: setting(
        "value", "18717", int(np.flatnonzero(df["parameter"] == "collection_rate")[0]))(df)})
    assert any("recycling.csv, line" in p and "collection_rate = 18717 is outside its range "
               "[0, 1]" in p for p in found), found


def test_data_check_builds_the_model(dataset_copy):
    """A dataset can pass every table check and still describe a chain the model cannot
    build: here Malaysia's heavy fraction is forwarded to the US, which separates no heavy
    rare earths either. `data check` builds the model and reports that as a problem naming
    the step, instead of passing (and the run crashing later)."""
    f = dataset_copy / "separation_capability.csv"
    text = f.read_text(encoding="utf-8")
    assert "\nMYS,*,0,CHN," in text
    f.write_text(text.replace("\nMYS,*,0,CHN,", "\nMYS,*,0,USA,"), encoding="utf-8")
    r = CliRunner().invoke(cli, ["data", "check", "--path", str(dataset_copy)])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "model: building the base-year network" in out
    assert "cannot separate it either" in out and "Traceback" not in out


def test_data_check_passes_the_embedded_dataset():
    r = CliRunner().invoke(cli, ["data", "check"])
    assert r.exit_code == 0 and "ok:" in r.output


def test_data_check_cli_refuses_a_lookalike(dataset_copy):
    f = dataset_copy / "market_parameters.csv"
    text = f.read_text(encoding="utf-8")
    f.write_text(text.replace("base_year", "b" + CYR_A + "se_year"), encoding="utf-8")
    r = CliRunner().invoke(cli, ["data", "check", "--path", str(dataset_copy)])
    assert r.exit_code == 1
    assert "market_parameters.csv, line 2, column 'parameter'" in r.output
    assert "U+0430" in r.output


def _raw_copy(tmp_path, drop_year: int | None):
    """A raw folder whose Comtrade download lacks `drop_year` (other folders linked)."""
    src = raw.default_raw_dir()
    if not src.is_dir():
        pytest.skip("raw data folder not present")
    dst = tmp_path / "raw"
    dst.mkdir()
    for sub in src.iterdir():
        if sub.name != "comtrade_china_2846":
            (dst / sub.name).symlink_to(sub)
    shutil.copytree(src / "comtrade_china_2846", dst / "comtrade_china_2846")
    if drop_year is not None:
        (dst / "comtrade_china_2846" / f"{drop_year}.json").unlink()
    return dst


def test_comtrade_year_missing_is_an_error(tmp_path):
    d = _raw_copy(tmp_path, 2024)
    with pytest.raises(raw.RawDataError, match=r"missing for year\(s\) 2024"):
        raw.read_comtrade_china_imports_2846(d)


def test_comtrade_manifest_required(tmp_path):
    d = _raw_copy(tmp_path, None)
    (d / "comtrade_china_2846" / "manifest.json").unlink()
    with pytest.raises(raw.RawDataError, match="manifest.json: raw file not found"):
        raw.read_comtrade_china_imports_2846(d)
    (d / "comtrade_china_2846" / "manifest.json").write_text(json.dumps({"validation": {}}))
    with pytest.raises(raw.RawDataError, match="expected_years"):
        raw.read_comtrade_china_imports_2846(d)


def test_data_build_fails_without_a_raw_file(tmp_path):
    d = _raw_copy(tmp_path, 2024)
    out = tmp_path / "tables"
    r = CliRunner().invoke(cli, ["data", "build", "--raw-dir", str(d), "--out", str(out)])
    assert r.exit_code == 2 and "2024" in r.output and "missing" in r.output
    assert not out.exists()


def test_parameter_value_in_range_message_names_file_line_and_range(frames):
    found = problems_of(frames, {"stockpile_parameters": lambda df: setting(
        "value", "0.5", int(np.flatnonzero(df["parameter"] == "price_blocks")[0]))(df)})
    assert any("stockpile_parameters.csv, line" in p and "price_blocks = 0.5" in p
               for p in found), found


def test_embedded_dataset_still_validates(frames):
    assert problems_of(frames, {}) == []
