"""Flags in Debian's Chromium: two flags made with the mouse and the keyboard, kept across a server restart, and
downloaded as CSV with one row per flagged image."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
from app_helpers import app_env, assert_no_traceback, browser_evidence
from test_browser_e2e import IDLE_JS, VIEWPORT, require_chromium, screenshot, selection_count

from plint_app.serve import CHART_READY_JS, GROUP_BOX_JS, drag, launch_chromium, open_page, start_streamlit

pytest_plugins = ("app_fixtures",)  # app_runs

FLAGGED_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  const t = gd && gd._fullData && gd._fullData.find(t => t.name === 'flagged'); return t ? t.x.length : 0; }"""
"""How many points the map's *flagged* overlay marks (0 while there is none, or the map is being redrawn)."""


def select_group(page, group: str) -> int:
    """Box-select the middle of class ``group``'s points with the mouse; the selection count shown."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):  # a box drawn while the map is being redrawn can be lost
        page.evaluate("() => window.scrollTo(0, 0)")  # the map at the top of the page, in the viewport
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        before = page.evaluate("() => document.body.innerText.match(/Selection: ([\\d,]+) training/)?.[1]")
        drag(page, page.wait_for_function(GROUP_BOX_JS, arg=group, timeout=60_000).json_value())
        try:
            page.wait_for_function("(b) => { const m = document.body.innerText.match(/Selection: ([\\d,]+) "
                                   "training/); return m && m[1] !== '0' && m[1] !== b; }", arg=before,
                                   timeout=30_000)
            return selection_count(page)
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def type_text(page, label: str, text: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Enter")
    page.wait_for_function("([l, t]) => document.querySelector(`input[aria-label=\"${l}\"]`)?.value === t",
                           arg=[label, text], timeout=30_000)


SELECTBOX_JS = """(label) => document.querySelector(`input[role="combobox"][aria-label="${label}"]`)?.value ?? null"""
"""The text a select box labelled ``label`` shows (``""`` while none is chosen), or ``null``."""


def choose_class(page, label: str, option: str) -> None:
    """Choose ``option`` in the select box ``label`` with the keyboard, again where a rerun that came between
    took the choice back (seen under load: the box showed its placeholder, and the flag was refused)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.wait_for_function(IDLE_JS, timeout=60_000)
        box = page.get_by_role("combobox", name=label)
        box.scroll_into_view_if_needed()
        box.click()
        page.keyboard.type(option)  # the list opens below the page's end: typing picks the class
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(f"(l) => ({SELECTBOX_JS})(l) === {option!r}", arg=label, timeout=10_000)
            page.wait_for_function(IDLE_JS, timeout=60_000)
            page.wait_for_timeout(500)  # a rerun that took the choice back has redrawn the box by now
            if page.evaluate(SELECTBOX_JS, label) == option:
                return
        except PlaywrightTimeout:
            pass
        if attempt == 2:
            raise AssertionError(f"{label!r} shows {page.evaluate(SELECTBOX_JS, label)!r}, not {option!r}")


def flag(page, n_flags: int, what: str) -> None:
    """Press *Flag the N selected images*; wait for the message that says ``what`` was flagged, and the count."""
    page.get_by_role("button", name=re.compile(r"^Flag the [\d,]+ selected images?$")).click()
    page.get_by_text(re.compile(rf"^Flagged: {re.escape(what)}")).first.wait_for(timeout=60_000)
    page.get_by_role("heading", name=f"Flags ({n_flags})").first.wait_for(timeout=60_000)


def embedding_page(server_url: str, page) -> None:
    page.goto(server_url)
    page.get_by_text("is ready").first.wait_for(timeout=120_000)
    open_page(page, "Embedding & interventions")
    page.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")


def test_flags_made_in_the_browser_survive_a_restart_and_download_as_csv(app_runs, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.flags import FlagBook

    runs = tmp_path / "runs"  # a store of its own, with the app's embedding in it
    shutil.copytree(app_runs, runs, ignore=shutil.ignore_patterns("flags"))
    env = {**app_env(runs), "OMP_NUM_THREADS": "1"}
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        server = start_streamlit("app.py", env, tmp_path / "streamlit.log")
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        try:
            with browser_evidence(browser, server, tmp_path, "failure"):
                embedding_page(server.url, page)
                # flag 1: a box over class 1, label wrong → 7, with a note, by Ana
                n1 = select_group(page, "1")
                type_text(page, "Your name", "Ana")
                type_text(page, "Note", "look like sevens")
                choose_class(page, "Suggested class", "7")
                flag(page, 1, "label wrong → 7 ")
                page.wait_for_function(f"() => ({FLAGGED_JS})() === {n1}", timeout=60_000)
                # flag 2: a box over class 8, ambiguous
                n2 = select_group(page, "8")
                page.get_by_role("radio", name="ambiguous").first.click()
                flag(page, 2, "ambiguous ")
                page.wait_for_function(f"() => ({FLAGGED_JS})() === {n1 + n2}", timeout=60_000)
        finally:
            server.stop()

        # a new server on the same store: the flags are there, on the map and in the CSV
        server = start_streamlit("app.py", env, tmp_path / "streamlit2.log")
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        try:
            with browser_evidence(browser, server, tmp_path, "failure2"):
                embedding_page(server.url, page)
                page.get_by_role("heading", name="Flags (2)").first.wait_for(timeout=60_000)
                page.wait_for_function(f"() => ({FLAGGED_JS})() === {n1 + n2}", timeout=60_000)
                screenshot(page, "flags")  # docs/screenshots
                with page.expect_download(timeout=60_000) as download:
                    page.get_by_role("button", name="Download flags (CSV)").click()
                csv = tmp_path / "flags.csv"
                download.value.save_as(csv)
        finally:
            server.stop()
        browser.close()

    table = pd.read_csv(csv, keep_default_na=False, dtype=str)
    assert table.columns.tolist() == ["id", "file_name", "given_label", "suggested_label", "kind", "note", "who",
                                      "when"]
    first, second = table.iloc[:n1], table.iloc[n1:]
    assert len(table) == n1 + n2
    assert set(first["kind"]) == {"label_wrong"} and set(first["suggested_label"]) == {"7"}
    assert set(first["note"]) == {"look like sevens"} and set(first["who"]) == {"Ana"}
    assert set(second["kind"]) == {"ambiguous"} and set(second["suggested_label"]) == {""}
    assert set(second["who"]) == {"Ana"}  # the name stays for the next flag
    # the boxes were drawn over classes 1 and 8 (a box may catch a neighbour of another class)
    assert (first["given_label"] == "1").mean() > 0.5 and (second["given_label"] == "8").mean() > 0.5
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", w) for w in table["when"])
    # the rows are the flagged images the store holds
    proj = Project.load(AppConfig.from_env(app_env(runs)))
    flags = FlagBook(proj.store, proj.data, proj.bundle.fingerprint).flags()
    assert [len(f.ids) for f in flags] == [n1, n2]
    ids = [i for f in flags for i in f.ids]
    np.testing.assert_array_equal(table["id"].astype(int), ids)
    assert table["given_label"].tolist() == [proj.data.class_names[k] for k in proj.data.train.labels[ids]]
    assert_no_traceback(tmp_path / "streamlit.log", tmp_path / "streamlit2.log")
