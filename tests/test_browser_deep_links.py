"""Deep links in Debian's Chromium: every address the app hands out opens the app itself.

A fresh ``streamlit run app.py`` (no browser has opened ``/`` on it yet) is
shared by all the links; each link is opened in a NEW browser context, as a
link pasted into a fresh tab. The page must come up at its own address with
the app's own menu (``app.py``'s pages: titles and icons), the sidebar status
block and the page config (tab title, wide layout), without "Page not found",
and Streamlit's file-list navigation of ``pages/`` ("app", "compare", "model
data", ...) must never show, not even for one frame: a MutationObserver
installed before the page's first script records every link the sidebar ever
shows. Without ``/usr/bin/chromium`` the test
is skipped, except in CI (``CI=true``), where that is a failure.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from app_helpers import app_env

from plint_app.serve import CHROMIUM, launch_chromium, start_streamlit

pytest_plugins = ("app_fixtures",)  # app_runs, stored_run

VIEWPORT = {"width": 1400, "height": 1000}
APP_TITLES = ["Model & data", "Embedding & interventions", "Fine-tune", "Compare"]
PAGE_TITLE = "plint · Projective Latent Interventions"
LOAD_TIMEOUT_MS = 90_000
STATUS_TIMEOUT_MS = 20_000  # after the heading: the status block is written right after the page
ICONS = ["database", "scatter_plot", "model_training", "compare"]
MENU = [[title, icon] for title, icon in zip(APP_TITLES, ICONS)]
# Every link in the sidebar: Streamlit's own navigation (stSidebarNav: the file list of pages/, or st.navigation's
# menu) and the app's menu (st.page_link); each as [label, icon], the Material icon's ligature taken apart.
NAV_LINKS_JS = """window.plintNavLinks = () => [...document.querySelectorAll('[data-testid="stSidebar"] a')].map(a => {
  const icon = a.querySelector('[data-testid="stIconMaterial"]'), copy = a.cloneNode(true);
  copy.querySelectorAll('[data-testid="stIconMaterial"]').forEach(e => e.remove());
  return [copy.textContent.trim(), icon ? icon.textContent.trim() : null];
}).filter(([label]) => label);"""
# Records, from before the app's first script runs, every sidebar link that is ever in the page.
RECORD_NAV_JS = NAV_LINKS_JS + """
(() => {
  window.__plintNavSeen = [];
  window.__plintFrameSeen = false;
  const seen = new Set();
  const record = () => { for (const [label] of plintNavLinks())
    if (!seen.has(label)) { seen.add(label); window.__plintNavSeen.push(label); }
    if (document.querySelector(FRAME_SELECTOR)) window.__plintFrameSeen = true; };
  new MutationObserver(record).observe(document, {childList: true, subtree: true, characterData: true});
})();"""
RECORD_NAV_JS = RECORD_NAV_JS.replace("FRAME_SELECTOR", "'.st-key-plint_first_paint'")
FRAME_NOW_JS = "() => document.querySelectorAll('.st-key-plint_first_paint').length"
NAV_NOW_JS = "() => window.plintNavLinks()"
MENU_JS = "(menu) => JSON.stringify(window.plintNavLinks()) === JSON.stringify(menu)"
STATUS_JS = """() => { const s = document.querySelector('[data-testid="stSidebar"]');
  return !!s && /Data.*Model/.test(s.innerText) && s.innerText.includes('Open run'); }"""
IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""
MAIN_WIDTH_JS = """() => document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect().width"""


LOCAL_URLS = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:")
"""Addresses a page may load from: the test server's, and those the browser makes itself."""


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def open_link(browser, url: str, heading: str, check, shot: Path) -> dict:
    """Open ``url`` in a new context, wait for the page ``heading``, the status block and the end of the run;
    ``check(page)`` then looks at the page. Returns what was seen (for the failure message and the timings)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORD_NAV_JS)
    seen: dict = {"url": url, "outside": []}
    # everything the page loads comes from the app's own server (no network at run time: a lab machine has none)
    context.on("request", lambda r: None if r.url.startswith(LOCAL_URLS) else seen["outside"].append(r.url))
    page = context.new_page()
    started = time.perf_counter()
    try:
        page.goto(url)
        page.get_by_role("heading", name=heading).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function(STATUS_JS, timeout=STATUS_TIMEOUT_MS)
        page.wait_for_function(IDLE_JS, timeout=LOAD_TIMEOUT_MS)
        try:  # st.page_link's code is loaded on first use: in a fresh browser the menu can come a moment later
            page.wait_for_function(MENU_JS, arg=MENU, timeout=STATUS_TIMEOUT_MS)
        except PlaywrightTimeout:
            pass  # reported below
        time.sleep(1.0)  # a late navigation message would land now
        seen["seconds"] = time.perf_counter() - started
        check(page)
        seen["nav"] = page.evaluate(NAV_NOW_JS)
        if seen["nav"] != MENU:
            page.screenshot(path=str(shot), full_page=True)
            seen["screenshot"] = str(shot)
        seen["frame_now"] = page.evaluate(FRAME_NOW_JS)
        seen["native_nav"] = page.locator('[data-testid="stSidebarNav"]').count()
        seen["title"] = page.title()
        seen["main_width"] = page.evaluate(MAIN_WIDTH_JS)
        seen["path"] = urlsplit(page.url).path
        seen["not_found"] = page.get_by_text("Page not found").count()
    except Exception as exc:
        seen["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        page.screenshot(path=str(shot), full_page=True)
        seen["screenshot"] = str(shot)
        seen.setdefault("nav", page.evaluate(NAV_NOW_JS))
    seen["nav_ever"] = page.evaluate("() => window.__plintNavSeen")
    seen["frame_ever"] = page.evaluate("() => window.__plintFrameSeen")
    context.close()
    return seen


def test_deep_links_open_the_app_in_a_fresh_browser(app_runs, stored_run, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    run_id = stored_run.run_id

    def shows_run(page):
        assert page.get_by_text(run_id).count() >= 1, f"run {run_id} is not shown"
        assert f"run={run_id}" in page.url, page.url

    def says_unknown(page):
        assert page.get_by_text(re.compile(r"There is no run `?unknown`? in this project's history")).count() == 1

    def shows_logits(page):
        assert "layer=logits" in page.url, page.url

    links = [  # (address, the page's heading, its path once open, check); the first one is the server's first
        # page: no browser has opened "/" before it (Streamlit's legacy pages/ mode is still on)
        (f"/compare?run={run_id}", "Compare", "/compare", shows_run),
        ("/compare?run=unknown", "Compare", "/compare", says_unknown),
        ("/embedding?layer=logits", "Embedding & interventions", "/embedding", shows_logits),
        ("/finetune", "Fine-tune", "/finetune", lambda page: None),
        ("/model_data", "Model & data", "/", lambda page: None),  # the file's name: the default page is "/"
        ("/", "Model & data", "/", lambda page: None),
    ]
    log = tmp_path / "streamlit.log"
    server = start_streamlit("app.py", {**app_env(app_runs), "OMP_NUM_THREADS": "1"}, log)
    results = []
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            for address, heading, path, check in links:
                shot = tmp_path / f"failure{len(results)}.png"
                results.append({**open_link(browser, server.url + address, heading, check, shot), "expected": path})
            browser.close()
    finally:
        server.stop()

    report = "\n".join(str(r) for r in results)
    print(report)
    for r in results:
        assert "error" not in r, f"{r['url']}: {r['error']}\n{report}\nserver log:\n{log.read_text()[-3000:]}"
        assert r["nav"] == MENU, \
            f"{r['url']}: the sidebar's menu is {r['nav']}\n{report}"
        assert r["native_nav"] == 0, f"{r['url']}: Streamlit's navigation shows\n{report}"
        assert set(r["nav_ever"]) <= set(APP_TITLES), \
            f"{r['url']}: the sidebar showed {r['nav_ever']} (Streamlit's file list of pages/)\n{report}"
        assert r["path"] == r["expected"], f"{r['url']}: the address became {r['path']}\n{report}"
        assert r["not_found"] == 0, f"{r['url']}: Streamlit says 'Page not found'\n{report}"
        assert r["title"] == PAGE_TITLE, f"{r['url']}: the tab's title is {r['title']!r}\n{report}"
        assert r["main_width"] > 1000, f"{r['url']}: not the wide layout ({r['main_width']:.0f} px)\n{report}"
        assert r["frame_now"] == 0, f"{r['url']}: the first visit's frame is still on the page\n{report}"
        assert r["outside"] == [], f"{r['url']}: the page loaded from outside the server: {r['outside']}\n{report}"
    # the server's first page (Compare, a chart page) drew the frame while the engine loaded; later pages did not
    assert [r["frame_ever"] for r in results] == [True] + [False] * (len(results) - 1), report
    assert "Traceback" not in log.read_text(), log.read_text()
