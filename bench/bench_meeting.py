"""Meeting benchmark: how long a follower waits for a presenter's change, in Debian's Chromium.

One server, one presenter and F followers (each its own browser context). Measured from the presenter's
mouse-up (a box selection) or click (a page link) until

* the presenter's own page shows the change (the reference: what the presenter waits for anyway), and
* each follower's page shows it (the goal: within 1 s);

so the figure that matters is the follower's wait, printed beside the presenter's in the same run.

    python bench/bench_meeting.py                    # 2 followers, 7 selections, 4 page switches, small t-SNE
    python bench/bench_meeting.py --followers 4 --points 20000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_app import SMALL_TSNE, env_for, prepare_store  # noqa: E402

from plint_app.serve import (  # noqa: E402
    CHART_READY_JS,
    GROUP_BOX_JS,
    SELECTION_TEXT_JS,
    launch_chromium,
    start_streamlit,
)

VIEWPORT = {"width": 1400, "height": 1000}
LINK_JS = "() => document.querySelector('.st-key-plint_meeting pre')?.textContent.trim() ?? null"
HEADING_IS_JS = "(h) => document.querySelector('h1')?.textContent.trim() === h"
GROUPS = ("0", "5", "3", "7")
PAGES = ("Fine-tune", "Embedding & interventions")


def shows_count(count: str) -> str:
    return f"() => ({SELECTION_TEXT_JS})() === {count!r}"


def wait_all(pages, js: str, arg=None, timeout_ms: int = 60_000) -> list[float]:
    """Seconds until each of ``pages`` satisfies ``js``, from now: each page is looked at in turn every 20 ms, so
    one page's time does not wait for another's."""
    started = time.perf_counter()
    out: list[float | None] = [None] * len(pages)
    while any(t is None for t in out):
        for k, page in enumerate(pages):
            if out[k] is None and page.evaluate(f"(arg) => ({js})(arg)", arg):
                out[k] = time.perf_counter() - started
        if time.perf_counter() - started > timeout_ms / 1000:
            raise TimeoutError(f"{sum(t is None for t in out)} page(s) did not show the change")
        time.sleep(0.02)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--followers", type=int, default=2)
    ap.add_argument("--selections", type=int, default=7)
    ap.add_argument("--switches", type=int, default=4)
    ap.add_argument("--points", type=int, default=0, help="PLINT_SCALE_POINTS (0: the digits' 1,437)")
    ap.add_argument("--runs", type=Path, default=REPO / "bench" / "out" / "meeting_runs")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    a.runs.mkdir(parents=True, exist_ok=True)
    prepare_store(a.runs, SMALL_TSNE)
    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    server = start_streamlit("app.py", env_for(a.runs, SMALL_TSNE, a.points), log)
    sel_presenter, sel_follower, page_presenter, page_follower = [], [], [], []
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            presenter = browser.new_context(viewport=VIEWPORT).new_page()
            presenter.goto(server.url)
            presenter.get_by_role("button", name="Present this view").click()
            link = presenter.wait_for_function(LINK_JS, timeout=60_000).json_value()
            followers = []
            for _ in range(a.followers):
                f = browser.new_context(viewport=VIEWPORT).new_page()
                f.goto(link)
                f.get_by_text("Following meeting").first.wait_for(timeout=60_000)
                followers.append(f)
            presenter.get_by_role("link", name="Embedding & interventions").first.click()
            wait_all([presenter, *followers], CHART_READY_JS, timeout_ms=180_000)
            time.sleep(2.0)
            for k in range(a.selections):
                box = presenter.wait_for_function(GROUP_BOX_JS, arg=GROUPS[k % len(GROUPS)],
                                                  timeout=60_000).json_value()
                before = presenter.evaluate(SELECTION_TEXT_JS)
                x0, y0, x1, y1 = box
                presenter.mouse.move(x0, y0)
                presenter.mouse.down()
                presenter.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=6)
                presenter.mouse.move(x1, y1, steps=6)
                started = time.perf_counter()
                presenter.mouse.up()
                presenter.wait_for_function(f"(b) => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && "
                                            f"n !== b && n !== '0'; }}", arg=before, timeout=60_000, polling="raf")
                own = time.perf_counter() - started
                count = presenter.evaluate(SELECTION_TEXT_JS)
                waits = [own + s for s in wait_all(followers, shows_count(count))]
                sel_presenter.append(own)
                sel_follower.extend(waits)
                print(f"selection {k}: {count} points; presenter {own:.2f} s, followers "
                      + ", ".join(f"{w:.2f}" for w in waits) + " s", flush=True)
                time.sleep(1.0)
            for k in range(a.switches):
                title = PAGES[k % len(PAGES)]
                started = time.perf_counter()
                presenter.get_by_role("link", name=title).first.click()
                presenter.wait_for_function(HEADING_IS_JS, arg=title, timeout=60_000, polling="raf")
                own = time.perf_counter() - started
                waits = [own + s for s in wait_all(followers, HEADING_IS_JS, arg=title)]
                page_presenter.append(own)
                page_follower.extend(waits)
                print(f"page {title}: presenter {own:.2f} s, followers " + ", ".join(f"{w:.2f}" for w in waits)
                      + " s", flush=True)
                time.sleep(1.0)
            browser.close()
    finally:
        server.stop()

    def line(name: str, own: list[float], follow: list[float]) -> str:
        lag = statistics.median(follow) - statistics.median(own)
        return (f"| {name} | {statistics.median(own):.2f} | {statistics.median(follow):.2f} | {max(follow):.2f} | "
                f"{lag:.2f} | {statistics.median(follow) / statistics.median(own):.2f}× |")

    print("\n| change | presenter sees it (median s) | followers see it (median s) | followers, worst (s) | "
          "followers' wait after the presenter's (s) | ratio |")
    print("|---|---|---|---|---|---|")
    print(line(f"box selection ({a.selections}×{a.followers})", sel_presenter, sel_follower))
    print(line(f"page switch ({a.switches}×{a.followers})", page_presenter, page_follower))


if __name__ == "__main__":
    main()
