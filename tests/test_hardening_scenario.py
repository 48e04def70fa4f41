"""Hostile scenario input: alias bombs, deep nesting, huge input and non-finite numbers are
refused fast, with a short message naming the field (issue 11, regression tests)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from oreflow import safe_yaml
from oreflow.cli import app as cli
from oreflow.scenario import ScenarioError, parse_scenario

HEAD = 'name: t\nstart: "2025-04"\nmonths: 12\nshocks:\n'
OUTAGE = ("  - {type: outage, region: CHN, stage: separation, start: 0, duration: 3, "
          "share_lost: 0.5}\n")


def alias_bomb(levels: int = 9) -> str:
    """A ~480-byte "billion laughs" like the issue's (9 levels: 9**9 = 387 million leaves)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nname: bomb\n"


def refused(text: str, label: str = "f.yaml") -> tuple[str, float]:
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, label)
    return str(exc.value), time.perf_counter() - t0


def test_alias_bomb_refused_fast_and_short():
    text = alias_bomb()
    assert len(text.encode()) < 500
    msg, secs = refused(text)
    assert secs < 1.0
    assert len(msg.encode()) < 1000
    assert msg.startswith("f.yaml: line 1") and "anchor 'a0' is not allowed" in msg


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                        # a plain alias
    "base: &b {start: 0}\nother:\n  <<: *b\n",  # merge key
    "name: *undefined\n",                      # alias without anchor
])
def test_anchors_aliases_and_merge_keys_refused(text):
    msg, _ = refused(text)
    assert "is not allowed" in msg and len(msg) < 1000


@pytest.mark.parametrize("text", [
    "[" * 1000 + "]" * 1000,
    "{a: " * 1000 + "1" + "}" * 1000,
    "x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 120)) + "  " * 120 + "v: 1\n",
    HEAD + "  - " + "[" * 490 + "]" * 490 + "\n",  # the ~490 levels that gave HTTP 500
])
def test_deep_nesting_refused_fast(text):
    msg, secs = refused(text)
    assert secs < 1.0 and len(msg.encode()) < 1000
    assert f"nesting deeper than {safe_yaml.MAX_DEPTH} levels" in msg


def test_input_size_capped_and_never_echoed():
    big = HEAD + OUTAGE + "description: " + "z" * (safe_yaml.MAX_BYTES + 10) + "\n"
    msg, secs = refused(big)
    assert "the limit is 262,144" in msg and "zzzz" not in msg and secs < 1.0


def test_error_quotes_only_an_excerpt_of_the_input(network):
    # a long unknown name, a long bad value and a broken line: each quoted in under ~100 chars
    for text in (HEAD + "  - {type: outage, region: " + "Q" * 5000 + ", stage: mining, "
                 "share_lost: 1}\n",
                 HEAD + "  - {type: outage, region: CHN, stage: " + "m" * 5000 + ", "
                 "share_lost: 1}\n",
                 "name: x\nbad: [" + "y" * 5000 + "\n"):
        with pytest.raises(ScenarioError) as exc:
            parse_scenario(text, "f.yaml", network)
        assert len(str(exc.value)) < 1000, str(exc.value)[:300]


def test_excerpt_cuts_long_values():
    assert safe_yaml.excerpt("a" * 1000).endswith("(1,000 characters)'")
    assert len(safe_yaml.excerpt("a" * 1000)) < 120
    assert safe_yaml.excerpt("short") == "'short'"


def test_huge_integer_and_python_tags_refused():
    assert "not usable YAML" in refused("months: " + "9" * 5000 + "\n")[0]
    assert "could not determine a constructor" in refused("a: !!python/object:os.system x")[0]


NUMBER_FIELDS = [
    ("outage", "share_lost", "region: CHN, stage: separation, share_lost: {v}"),
    ("outage", "start", "region: CHN, stage: separation, share_lost: 0.5, start: {v}"),
    ("outage", "duration", "region: CHN, stage: separation, share_lost: 0.5, duration: {v}"),
    ("export_control", "approval_scale", "elements: [Dy], approval_scale: {v}"),
    ("export_control", "processing_delay", "elements: [Dy], processing_delay: {v}"),
    ("export_control", "approval.0.1", "elements: [Dy], approval: [[0, {v}]]"),
    ("demand_shift", "factor", "sector: wind, factor: {v}"),
    ("new_capacity", "t_per_year", "region: USA, stage: metal, t_per_year: {v}"),
    ("new_capacity", "ramp_months", "region: USA, stage: metal, t_per_year: 1, ramp_months: {v}"),
    ("new_capacity", "delay_probability",
     "region: USA, stage: metal, t_per_year: 1, delay_probability: {v}"),
    ("new_capacity", "delay_months", "region: USA, stage: metal, t_per_year: 1, "
                                     "delay_months: {v}"),
    ("stockpile", "t", "holder: USA, element: Dy, t: {v}"),
    ("stockpile", "release_price_ratio", "holder: USA, element: Dy, t: 1, "
                                         "release_price_ratio: {v}"),
    ("stockpile", "max_release_t_per_month", "holder: USA, element: Dy, t: 1, "
                                             "max_release_t_per_month: {v}"),
    ("recycling", "collection_rate", "region: USA, collection_rate: {v}"),
    ("recycling", "capacity_factor", "region: USA, capacity_factor: {v}"),
    ("recycling", "capacity_t_magnet_per_year", "region: USA, capacity_t_magnet_per_year: {v}"),
]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e999", ".NaN"])
@pytest.mark.parametrize(("kind", "field", "body"), NUMBER_FIELDS,
                         ids=[f"{k}.{f}" for k, f, _ in NUMBER_FIELDS])
def test_non_finite_numbers_refused_with_field_named(kind, field, body, value):
    text = HEAD + f"  - {{type: {kind}, {body.format(v=value)}}}\n"
    msg, _ = refused(text)
    assert f"shocks.0.{kind}.{field}" in msg, msg
    assert "finite" in msg or "must lie in" in msg, msg


@pytest.mark.parametrize("dist", ["{dist: uniform, low: .nan, high: 1}",
                                  "{dist: triangular, low: 0, mode: .inf, high: 1}",
                                  "{dist: fixed, value: .nan}"])
def test_non_finite_distribution_parameters_refused(dist):
    msg, _ = refused(HEAD + "  - {type: outage, region: CHN, stage: separation, "
                            f"share_lost: {dist}}}\n")
    assert "shocks.0.outage.share_lost." in msg and "finite number" in msg


@pytest.mark.parametrize(("body", "field"), [
    ("region: USA, stage: metal, t_per_year: 1e300", "t_per_year"),
    ("holder: USA, element: Dy, t: 1e300", "t"),
    ("elements: [Dy], approval: [[0, 0], [1e300, 1]]", "approval"),
    ("region: USA, stage: metal, t_per_year: 1, delay_months: 1e300", "delay_months"),
])
def test_huge_numbers_refused(body, field):
    kind = "stockpile" if "holder" in body else ("export_control" if "approval" in body
                                                  else "new_capacity")
    msg, _ = refused(HEAD + f"  - {{type: {kind}, {body}}}\n")
    assert field in msg


def test_cli_validate_refuses_bomb_and_nan(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    nan = tmp_path / "nan.yaml"
    nan.write_text(HEAD + OUTAGE.replace("0.5", ".nan"))
    for f, expect in ((bomb, "not allowed"), (nan, "share_lost")):
        r = CliRunner().invoke(cli, ["scenario", "validate", str(f)])
        assert r.exit_code == 1 and expect in r.output and len(r.output) < 2000


def test_valid_scenario_still_accepted():
    sc = parse_scenario(HEAD + OUTAGE)
    assert sc.shocks[0].share_lost == 0.5
