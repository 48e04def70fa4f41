"""End to end in a real headless Chromium: open the dashboard, start a run, watch it finish
and find a chart with data; a bad scenario shows its message. Skips without Chromium unless
OREFLOW_REQUIRE_E2E=1 (set by .ci/run), in which case a missing browser fails."""

from __future__ import annotations

import os

import pytest

from oreflow.web import create_app
from oreflow.web.browser import browser, chromium_missing, serve_in_thread

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, network):
    why = chromium_missing()
    if why:
        if os.environ.get("OREFLOW_REQUIRE_E2E") == "1":
            pytest.fail(f"OREFLOW_REQUIRE_E2E=1 but {why}")
        pytest.skip(why)
    app = create_app(tmp_path_factory.mktemp("e2e"), network=network)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def page(base_url):
    with browser() as b:
        ctx = b.new_context(viewport={"width": 1280, "height": 900})
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.requests = []
        pg.on("request", lambda r: pg.requests.append(r.url))
        yield pg
        ctx.close()


def test_run_from_the_page_and_see_a_chart(base_url, page):
    page.goto(base_url + "/")
    page.select_option("#scenario", "licensing-2025-04")
    page.fill("#paths", "200")
    page.fill("#months", "12")
    page.fill("#seed", "3")
    page.click("#run-button")
    page.wait_for_url("**/runs/*")
    page.wait_for_selector("#run-status.done", timeout=60_000)
    page.wait_for_selector("#chart-prices .scatterlayer .trace")
    stats = page.evaluate("""() => {
        const gd = document.getElementById('chart-prices');
        const shown = gd.data.filter(t => t.visible === true);
        const ys = shown.flatMap(t => Array.from(t.y));
        return {traces: shown.length, points: ys.length,
                finite: ys.every(Number.isFinite), max: Math.max(...ys),
                drawn: gd.querySelectorAll('.scatterlayer .trace path').length};
    }""")
    assert stats["traces"] == 6 and stats["points"] == 6 * 12
    assert stats["finite"] and stats["max"] > 0 and stats["drawn"] > 0
    sankey = page.evaluate("() => document.getElementById('chart-sankey').data[0].link"
                           ".value.length")
    assert sankey > 20
    assert page.locator("#downloads a").count() >= 5
    # everything came from this server: the page works offline
    assert all(u.startswith(base_url) or u.startswith("data:") for u in page.requests), \
        [u for u in page.requests if not u.startswith(base_url)]


def test_bad_yaml_shows_the_message(base_url, page):
    page.goto(base_url + "/")
    page.check("#edit-yaml")
    page.fill("#yaml", "name: broken\nstart: '2025-13'\n")
    page.click("#run-button")
    page.wait_for_selector("#run-error:not([hidden])")
    assert "start" in page.inner_text("#run-error")
    assert page.url.rstrip("/") == base_url


def test_risk_page_shows_the_perspectives_suppliers(base_url, page):
    """Pick EU and Dy on the risk page: the separation chart has data, and its shares are the
    API's (the numbers of `oreflow risk --sources`)."""
    page.goto(base_url + "/risk?perspective=USA&element=Nd")
    page.select_option("#perspective", "EU")
    page.select_option("#element", "Dy")
    page.click("#risk-button")
    page.wait_for_url("**/risk?*perspective=EU*")
    page.wait_for_selector("#chart-src-separation .barlayer .trace")
    chart = page.evaluate("""() => {
        const gd = document.getElementById('chart-src-separation');
        const out = {};
        for (const t of gd.data) t.y.forEach((o, i) => { out[o] = (out[o] || 0) + t.x[i]; });
        return {shares: out, bars: gd.querySelectorAll('.barlayer .point').length};
    }""")
    api = page.evaluate("""async () => {
        const r = await fetch('/api/risk/sources?perspective=EU&element=Dy');
        return (await r.json()).rows.filter(x => x.stage === 'separation');
    }""")
    want = {}
    for r in api:
        want[r["origin"]] = want.get(r["origin"], 0.0) + r["share"]
    assert chart["bars"] > 0 and set(chart["shares"]) == set(want)
    assert chart["shares"] == pytest.approx(want, rel=1e-9)
    assert chart["shares"]["CHN"] > 0.9
    flow = page.evaluate("() => document.getElementById('chart-src-flow').data[0].link"
                         ".value.length")
    assert flow >= 3
    assert page.locator("#risk-table tr").count() == 5  # header + four stages
    assert page.locator("#chokepoint-table tr").count() == 11
    assert "EU = DEU, EST, FRA, XEU" in page.inner_text("#risk-perspective")


def test_stockpile_page_draws_the_plan_as_charts(base_url, page):
    """Tick cobalt and graphite beside the rare earths and plan: the page draws the plan's
    charts (holdings by commodity and form, spend, last and next dollar, loss of plan, rule
    and nothing) with the API's numbers, and the spend table."""
    page.goto(base_url + "/stockpile")
    page.check('.commodity[data-id="Co"]')
    page.check('.commodity[data-id="graphite_natural"]')
    page.fill("#sp-paths", "20")
    page.fill("#sp-eval", "10")
    page.fill("#sp-months", "24")
    page.click("#plan-button")
    page.wait_for_selector("#plan-result:not([hidden])", timeout=120_000)
    page.wait_for_selector("#plan-chart-loss .barlayer .trace")
    got = page.evaluate("""() => {
        const ids = [...document.querySelectorAll('#plan-charts .chart')].map(d => d.id);
        const gd = document.getElementById('plan-chart-holdings');
        const x = [...new Set(gd.data.flatMap(t => Array.from(t.x)))];
        const loss = document.getElementById('plan-chart-loss').data;
        return {ids, x, bars: document.querySelectorAll('#plan-chart-holdings .point').length,
                loss: loss.map(t => Array.from(t.y).length),
                spendRows: document.querySelectorAll('#plan-spend tr').length};
    }""")
    assert got["ids"] == ["plan-chart-holdings", "plan-chart-spend", "plan-chart-marginal",
                          "plan-chart-loss", "plan-chart-loss_by_commodity"]
    assert set(got["x"]) <= {"REE", "Co", "graphite_natural"} and "REE" in got["x"]
    assert got["bars"] > 0 and got["loss"] == [4, 4]
    assert got["spendRows"] == 4  # header and three commodities
