"""The risk endpoints and page: the same numbers as `oreflow risk`, names in any case, and
bad names answered with a 400 that lists what is allowed. No stress run needed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from oreflow.cli import app as cli
from oreflow.web import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_TestClient = pytest.importorskip("fastapi.testclient").TestClient


def TestClient(app, **kw):  # noqa: N802  the app answers only to local host names
    return _TestClient(app, base_url="http://localhost", **kw)


@pytest.fixture(scope="module")
def client(tmp_path_factory, network):
    with TestClient(create_app(tmp_path_factory.mktemp("risk"), network=network)) as c:
        yield c


def _cli(*args) -> list[dict]:
    res = CliRunner().invoke(cli, ["risk", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("tc", ["current", "ec"])
def test_risk_rows_are_the_cli_rows(client, tc):
    r = client.get("/api/risk", params={"perspective": "eu", "element": "dy",
                                        "trade_factors": tc})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["perspective"] == "EU" and body["regions"] == ["DEU", "EST", "FRA", "XEU"]
    assert body["tc_setting"] == tc and "XEU" in body["note"]
    assert body["rows"] == _cli("-p", "EU", "-e", "Dy", "--trade-factors", tc)
    assert [c["rank"] for c in body["chokepoints"]] == list(range(1, 11))


def test_risk_without_element_gives_every_row(client):
    body = client.get("/api/risk", params={"perspective": "USA"}).json()
    assert body["rows"] == _cli("-p", "USA")
    dy = {r["stage"]: r for r in body["rows"] if r["element"] == "Dy"}
    assert dy["separation"]["import_reliance"] == 1.0


def test_sources_are_the_cli_sources(client):
    r = client.get("/api/risk/sources", params={"perspective": "Eu", "element": "ND"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == _cli("-p", "EU", "-e", "Nd", "--sources")
    assert body["basis"] == ["domestic", "observed", "routed", "allocated"]
    mining = [x for x in body["rows"] if x["stage"] == "mining"]
    assert {x["origin"] for x in mining} == {"USA", "XOT"}  # Silmet and La Rochelle feed


def test_member_state_maps_with_a_note(client):
    body = client.get("/api/risk", params={"perspective": "ita", "element": "Nd"}).json()
    assert body["perspective"] == "ITA" and body["regions"] == ["XEU"]
    assert "ITA has no flow of its own" in body["note"]


@pytest.mark.parametrize("url, params, words", [
    ("/api/risk", {"perspective": "Atlantis"},
     ["unknown perspective 'Atlantis'", "blocs: EU, G7, MSP, QUAD", "USA", "ITA"]),
    ("/api/risk", {"perspective": "EU", "element": "Xx"},
     ["unknown element 'Xx'; allowed: Ce, Dy", "REO"]),
    ("/api/risk/sources", {"perspective": "mars"}, ["unknown perspective 'mars'", "XEU"]),
    ("/api/risk/sources", {"perspective": "EU", "element": "kr"}, ["unknown element 'kr'"]),
])
def test_bad_names_are_400_with_the_allowed_codes(client, url, params, words):
    r = client.get(url, params=params)
    assert r.status_code == 400, r.text
    for w in words:
        assert w in r.json()["detail"], (w, r.json()["detail"])


def test_bad_trade_factor_setting_is_422(client):
    r = client.get("/api/risk", params={"perspective": "EU", "trade_factors": "2017"})
    assert r.status_code == 422 and "trade_factors" in r.json()["detail"]


def test_risk_page(client):
    r = client.get("/risk", params={"perspective": "eu", "element": "dy"})
    assert r.status_code == 200
    for div in ("chart-src-mining", "chart-src-separation", "chart-src-metal", "chart-src-magnet",
                "chart-src-flow", "risk-table", "chokepoint-table", "risk-form"):
        assert f'id="{div}"' in r.text
    assert "/static/plotly.min.js" in r.text and "cdn" not in r.text.lower()
    assert '<option value="EU" selected>' in r.text
    assert '<option value="Dy" selected>' in r.text
    assert 'href="/risk"' in client.get("/stockpile").text  # in the navigation


def test_risk_page_bad_name(client):
    r = client.get("/risk", params={"perspective": "<b>mars</b>"})
    assert r.status_code == 400
    assert 'id="risk-error"' in r.text and "&lt;b&gt;mars&lt;/b&gt;" in r.text
    assert "<b>mars</b>" not in r.text
