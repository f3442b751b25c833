"""A live meeting in Debian's Chromium: one presenter, two followers, a second meeting beside it, one server.

The followers' pages must show the presenter's page, selection and move; a follower's own selection must change
nothing of the presenter's (and is undone in the follower's view); a second meeting on the same server stays
separate; *Stop following* keeps the view as the follower's own. Every wait has a generous limit (the machine may
be loaded): how fast a follower follows is measured by ``bench/bench_meeting.py``, not here.
"""
from __future__ import annotations

import re
import time

import pytest
from app_helpers import app_env, assert_no_traceback, browser_evidence
from test_browser_deep_links import require_chromium
from test_browser_e2e import screenshot

from plint_app.serve import (
    CHART_READY_JS,
    GROUP_BOX_JS,
    SELECTION_TEXT_JS,
    drag,
    fill_number,
    launch_chromium,
    open_page,
    start_streamlit,
)

pytest_plugins = ("app_fixtures",)  # app_runs

VIEWPORT = {"width": 1400, "height": 1000}
WAIT_MS = 60_000
LINK_JS = """() => { const s = document.querySelector('.st-key-plint_meeting pre');
  return s ? s.textContent.trim() : null; }"""
"""The meeting link the presenter's sidebar shows, or ``null``."""
HEADING_JS = "() => { const h = document.querySelector('h1'); return h ? h.textContent.trim() : null; }"
MOVES_JS = """() => { for (const e of document.querySelectorAll('h3')) {
  const m = e.textContent.match(/Committed moves \\((\\d+)\\)/); if (m) return Number(m[1]); } return null; }"""


def wait_selection(page, count: str) -> None:
    page.wait_for_function(f"(n) => ({SELECTION_TEXT_JS})() === n", arg=count, timeout=WAIT_MS)


def present(browser, url: str):
    """A presenter: opens the app, starts presenting; returns its page and the meeting link."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(url)
    page.get_by_role("heading", name="Model & data").first.wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Present this view").click()
    link = page.wait_for_function(LINK_JS, timeout=WAIT_MS).json_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?meeting=[a-z0-9]{10}", link), link
    return page, link


def follow(browser, link: str, heading: str):
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(link)
    page.wait_for_function("(h) => document.querySelector('h1')?.textContent.trim() === h", arg=heading,
                           timeout=WAIT_MS)
    page.get_by_text("Following meeting").first.wait_for(timeout=WAIT_MS)
    return page


def test_followers_follow_the_presenter_and_stop_following_keeps_a_private_copy(app_runs, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    server = start_streamlit("app.py", app_env(app_runs), tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                with browser_evidence(browser, server, tmp_path, "meeting"):  # what each browser showed
                    walk(browser, server.url)
            finally:
                browser.close()
    finally:
        server.stop()
    assert_no_traceback(server.log)


def walk(browser, url: str) -> None:
    """The meeting's walk: presenter, two followers, a second meeting, stop following."""
    presenter, link = present(browser, url)
    f1, f2 = follow(browser, link, "Model & data"), follow(browser, link, "Model & data")

    # the page: the presenter opens Embedding, both followers go there
    open_page(presenter, "Embedding & interventions")
    presenter.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")
    for f in (f1, f2):
        f.wait_for_function("() => document.querySelector('h1')?.textContent.trim() === "
                            "'Embedding & interventions'", timeout=WAIT_MS)
        f.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")

    # the pending move's dx, set first: the followers show it
    fill_number(presenter, "dx", 1.5)
    for f in (f1, f2):
        f.wait_for_function("() => Number(document.querySelector('input[aria-label=\"dx\"]')?.value) === 1.5",
                            timeout=WAIT_MS)
    # the selection: the presenter box-selects class 3's middle; the followers show the same count
    drag(presenter, presenter.wait_for_function(GROUP_BOX_JS, arg="3", timeout=WAIT_MS).json_value())
    presenter.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && n !== '0'; }}",
                                timeout=WAIT_MS)
    count = presenter.evaluate(SELECTION_TEXT_JS)
    for f in (f1, f2):
        wait_selection(f, count)

    # a follower's own selection changes nothing of the presenter's, and is undone in its own view
    presenter_count = presenter.evaluate(SELECTION_TEXT_JS)
    f1.wait_for_function(CHART_READY_JS, timeout=WAIT_MS, polling="raf")
    drag(f1, f1.wait_for_function(GROUP_BOX_JS, arg="7", timeout=WAIT_MS).json_value())
    time.sleep(3.0)  # the follower's rerun, and a presenter's poll, would have happened by now
    assert presenter.evaluate(SELECTION_TEXT_JS) == presenter_count
    assert presenter.evaluate(MOVES_JS) == 0
    wait_selection(f1, presenter_count)

    # the move committed: the followers show it
    presenter.get_by_role("button", name="Commit move").click()
    presenter.get_by_text("Move 1 committed").wait_for(timeout=WAIT_MS)
    for f in (f1, f2):
        f.wait_for_function(f"() => ({MOVES_JS})() === 1", timeout=WAIT_MS)
    screenshot(f1, "meeting")  # a follower's view (docs/screenshots)

    # a second meeting on the same server: f2 follows it; the first meeting's changes do not reach f2
    other, other_link = present(browser, url)
    assert other_link != link
    f2.goto(other_link)
    f2.wait_for_function("() => document.querySelector('h1')?.textContent.trim() === 'Model & data'",
                         timeout=WAIT_MS)
    f2.get_by_text("Following meeting").first.wait_for(timeout=WAIT_MS)
    assert link.split("=")[1] not in f2.inner_text(".st-key-plint_meeting")

    # stop following: f1 keeps the presenter's view as its own; the presenter's next change does not reach it
    f1.get_by_role("button", name="Stop following").click()
    f1.get_by_text("You stopped following").first.wait_for(timeout=WAIT_MS)
    assert f1.evaluate(SELECTION_TEXT_JS) == "0" and f1.evaluate(MOVES_JS) == 1  # the committed move's view
    drag(presenter, presenter.wait_for_function(GROUP_BOX_JS, arg="5", timeout=WAIT_MS).json_value())
    presenter.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && n !== '0'; }}",
                                timeout=WAIT_MS)
    time.sleep(3.0)
    assert f1.evaluate(SELECTION_TEXT_JS) == "0"  # f1 no longer follows
    drag(f1, f1.wait_for_function(GROUP_BOX_JS, arg="7", timeout=WAIT_MS).json_value())  # and explores on its own
    f1.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && n !== '0'; }}",
                         timeout=WAIT_MS)
    assert f1.evaluate(SELECTION_TEXT_JS) != presenter.evaluate(SELECTION_TEXT_JS)
    assert f2.evaluate(HEADING_JS) == "Model & data"  # still the second meeting's page
    assert other.evaluate(HEADING_JS) == "Model & data"
