"""Screenshots of the dashboard's main views for docs/screenshots/, taken the way the
end-to-end test drives the app: uvicorn in a thread, Debian's Chromium headless.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Takes about a minute; the runs go to a temporary data directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from oreflow.web import create_app
from oreflow.web.browser import browser, chromium_missing, serve_in_thread


def wait_done(page, base: str, run_id: str, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if page.request.get(f"{base}/api/runs/{run_id}").json()["status"] in ("done",
                                                                              "failed"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"run {run_id} did not finish in {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    if why := chromium_missing():
        raise SystemExit(f"cannot take screenshots: {why}")
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str, full: bool = True) -> None:
        page.wait_for_timeout(600)  # let Plotly finish its transitions
        page.screenshot(path=str(args.out / f"{name}.png"), full_page=full)
        print(f"wrote {args.out / name}.png")

    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(tmp)) as base, \
            browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(300_000)

        # a run started from the form, caught while it works, then its results
        page.goto(base + "/")
        page.select_option("#scenario", "licensing-2025-04")
        page.fill("#paths", "50000")
        page.fill("#seed", "1")
        page.check("#edit-yaml")  # the scenario's YAML, editable before the run
        shot(page, "run-form")
        page.uncheck("#edit-yaml")
        page.click("#run-button")
        page.wait_for_url("**/runs/*")
        run_a = page.url.rsplit("/", 1)[1]
        page.wait_for_function("() => parseFloat(document.getElementById('progress-bar')"
                               "?.style.width || '0') > 15")
        shot(page, "run-progress", full=False)
        page.wait_for_selector("#run-status.done")
        page.wait_for_selector("#chart-sankey .sankey")
        shot(page, "run-result")

        # a second run through the API, then the list and the comparison
        r = page.request.post(f"{base}/api/runs", data={
            "scenario": "heavy-embargo-usa-12m", "paths": 5000, "seed": 1, "months": 36})
        run_b = r.json()["id"]
        wait_done(page, base, run_b)
        page.goto(base + "/")
        shot(page, "runs", full=False)
        page.goto(f"{base}/compare?a={run_a}&b={run_b}")
        page.wait_for_selector("#b-chart-sectors .main-svg")
        shot(page, "compare")

        # the risk page: the EU's suppliers of Dy
        page.goto(base + "/risk?perspective=EU&element=Dy")
        page.wait_for_selector("#chart-src-flow .sankey")
        shot(page, "risk")

        # the stockpile planner
        page.goto(base + "/stockpile")
        page.fill("#sp-paths", "300")
        page.fill("#sp-eval", "300")
        page.click("#plan-button")
        page.wait_for_selector("#plan-result:not([hidden])")
        shot(page, "stockpile")

        # the self-contained report
        page.goto(f"{base}/api/runs/{run_a}/report")
        page.wait_for_selector("#chart-sankey .sankey")
        shot(page, "report")


if __name__ == "__main__":
    main()
