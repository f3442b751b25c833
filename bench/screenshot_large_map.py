"""The screenshot of a thinned map (docs/screenshots/large_map.png): 250,000 points, a box over class 0.

Uses the run store of ``bench/bench_app.py`` (run that first: it fits the default t-SNE and, at this size, fills the
latent cache), starts the app with ``PLINT_SCALE_POINTS``, box-selects class 0's middle with the mouse in Debian's
Chromium and saves the page. Not run by the tests (the browser test of the thinned map, tests/test_browser_large_map.py,
uses the digits with ``PLINT_MAP_MAX_POINTS`` set low).

    python bench/screenshot_large_map.py [--points 250000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app import OUT, REPO, env_for  # noqa: E402 (also puts the repo on sys.path)

from plint_app.serve import (  # noqa: E402
    CHART_READY_JS,
    GROUP_BOX_JS,
    SELECTION_TEXT_JS,
    drag,
    launch_chromium,
    start_streamlit,
)

IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
UNHOVER_JS = ("() => { const gd = document.querySelector('.js-plotly-plot'); "
              "if (window.Plotly && gd) Plotly.Fx.unhover(gd); }")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=250_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from plint_core.embedding.parametric_tsne import TSNEConfig

    out = REPO / "docs" / "screenshots" / "large_map.png"
    server = start_streamlit("app.py", env_for(OUT / "app_runs", TSNEConfig().to_dict(), args.points),
                             OUT / "screenshot_large_map.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(server.url + "/embedding")
            page.wait_for_function(CHART_READY_JS, timeout=300_000, polling="raf")
            time.sleep(2)
            drag(page, page.wait_for_function(GROUP_BOX_JS, arg="0", timeout=60_000).json_value())
            page.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && n !== '0'; }}",
                                   timeout=60_000)
            time.sleep(3)
            page.wait_for_function(IDLE_JS, timeout=60_000)
            page.mouse.move(1300, 1200)
            page.evaluate(UNHOVER_JS)
            time.sleep(1.5)
            # the bottom strip: the next element (the page's data component) half drawn, not part of the map
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1400, "height": 1232})
            print(f"{out}: {page.evaluate(SELECTION_TEXT_JS)} points selected")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
