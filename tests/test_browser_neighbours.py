"""*Find an image* in Debian's Chromium: a search by id opens the image's panel and rings it on the map; in Inspect
mode a click on one point of the map opens the panel of that point; a box selection still selects.

Starts ``streamlit run app.py`` on a free local port against the session's test run store (the embedding is
fitted there once) and stops it at the end. Without ``/usr/bin/chromium`` the test is skipped, except in CI.
"""
from __future__ import annotations

import re

from app_helpers import app_env, assert_no_traceback, browser_evidence
from test_browser_e2e import VIEWPORT, require_chromium, screenshot

from plint_app.serve import CHART_READY_JS, GROUP_BOX_JS, SELECTION_TEXT_JS, drag, launch_chromium, open_page, \
    start_streamlit

pytest_plugins = ("app_fixtures",)  # app_runs

PANEL = ".st-key-neighbour_panel"
TRACE_NAMES_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return gd && gd._fullData ? gd._fullData.map(t => t.name) : []; }"""
DRAGMODE_IS_JS = """(mode) => { const gd = document.querySelector('.js-plotly-plot');
  return !!(gd && gd._fullLayout && gd._fullLayout.dragmode === mode && gd.querySelector('.nsewdrag')); }"""
ISOLATED_POINT_JS = """(skip) => { const gd = document.querySelector('.js-plotly-plot');
  const drag = gd && gd.querySelector('.nsewdrag');
  if (!drag || !gd._fullData || !gd._fullLayout || !gd._fullLayout.xaxis) return null;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = drag.getBoundingClientRect(), pts = [];
  for (const t of gd._fullData) {
    if (!t.customdata || !t.visible) continue;
    for (let i = 0; i < t.x.length; i++) {
      const px = xa.l2p(t.x[i]), py = ya.l2p(t.y[i]);
      if (px > 30 && py > 30 && px < r.width - 30 && py < r.height - 30) pts.push([px, py, Number(t.customdata[i][0]),
                                                                                    Number(t.customdata[i][3])]);
    } }
  let best = null, gap = -1;
  for (const p of pts) {
    if (p[3] !== 0 || p[2] === skip) continue;
    let d = Infinity;
    for (const q of pts) if (q !== p) d = Math.min(d, (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2);
    if (d > gap) { gap = d; best = p; } }
  return best && [r.left + best[0], r.top + best[1], best[2]]; }"""
"""Page pixels and sample id of the training point farthest from any other point drawn (a click on it can only
mean that point), leaving out the id ``skip``; ``null`` until the map is drawn."""


def test_search_by_id_and_a_click_on_a_point_open_the_neighbour_panel(app_runs, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    server = start_streamlit("app.py", {**app_env(app_runs), "OMP_NUM_THREADS": "1"}, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            with browser_evidence(browser, server, tmp_path):
                find_and_click(page, server.url)
            browser.close()
    finally:
        server.stop()
    assert_no_traceback(server.log)


def wait_for_panel_images(page, n: int) -> None:
    """Wait until the panel shows ``n`` images (the image and its neighbours)."""
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} img').length === {n}", timeout=30_000)


def find_and_click(page, url: str) -> None:
    page.goto(url)
    page.get_by_text("is ready").first.wait_for(timeout=60_000)  # the first page has loaded the engine
    open_page(page, "Embedding & interventions")
    page.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")
    # search by id: the panel with the image and its 10 neighbours, the image ringed on the map
    box = page.get_by_role("textbox", name="Find an image")
    box.fill("17")
    box.press("Enter")
    page.get_by_text(re.compile(r"^Image id 17 \(train\)")).wait_for(timeout=60_000)
    page.get_by_text("10 nearest neighbours").first.wait_for(timeout=30_000)
    page.wait_for_function(f"() => ({TRACE_NAMES_JS})().includes('found')", timeout=30_000)
    wait_for_panel_images(page, 11)  # the image and its ten neighbours
    screenshot(page, "neighbours")  # docs/screenshots
    # a search that finds nothing: one message, the panel stays
    box.fill("99999")
    box.press("Enter")
    page.get_by_text("no train point has id 99999").wait_for(timeout=30_000)
    assert page.get_by_text(re.compile(r"^Image id 17 \(train\)")).count() == 1
    # in Inspect mode, a click on one point of the map opens that point's panel (a click landing during a rerun is
    # lost: retry)
    page.get_by_role("radio", name="Inspect").click()
    page.wait_for_function(DRAGMODE_IS_JS, arg="pan", timeout=30_000)
    for attempt in range(3):
        x, y, sample_id = page.wait_for_function(ISOLATED_POINT_JS, arg=17, timeout=30_000).json_value()
        page.mouse.click(x, y)
        try:
            page.get_by_text(re.compile(rf"^Image id {int(sample_id)} \(train\)")).wait_for(timeout=20_000)
            break
        except Exception:
            if attempt == 2:
                raise
    assert page.get_by_role("textbox", name="Find an image").input_value() == str(int(sample_id))
    wait_for_panel_images(page, 11)
    assert page.evaluate(SELECTION_TEXT_JS) == "0", "inspecting selects nothing"
    # back in Select mode, a box selection still selects a group
    page.get_by_role("button", name="Close").click()
    page.wait_for_function(f"() => !({TRACE_NAMES_JS})().includes('found')", timeout=30_000)
    page.get_by_role("radio", name="Select", exact=True).click()
    page.wait_for_function(DRAGMODE_IS_JS, arg="select", timeout=30_000)
    page.wait_for_function(CHART_READY_JS, timeout=60_000, polling="raf")
    drag(page, page.wait_for_function(GROUP_BOX_JS, arg="3", timeout=30_000).json_value())
    page.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); "
                           "return n !== null && Number(n.replace(',', '')) > 5; }", timeout=60_000)


def test_search_by_file_name_in_an_image_folder_project(tmp_path):
    """An image-folder project (PNG files and a TorchScript model, as ``PLINT_DATA``/``PLINT_MODEL`` name them): a
    file's own name finds it, the panel names its file; a name that matches nothing gives one message."""
    require_chromium()
    from own_data import save_torchscript, write_image_folder
    from playwright.sync_api import sync_playwright

    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.neighbours import file_names

    data = write_image_folder(tmp_path / "fruit", split=True)
    env = {**app_env(tmp_path / "runs"), "PLINT_DATA": str(data), "PLINT_MODEL": str(save_torchscript(tmp_path / "cnn.pt")),
           "OMP_NUM_THREADS": "1"}
    project = Project.load(AppConfig.from_env(env))
    project.embedding(project.default_layer, 0)  # fitted before the server starts, as the suite's demo map is
    target = file_names(project.data.train)[5]
    server = start_streamlit("app.py", env, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            with browser_evidence(browser, server, tmp_path):
                page.goto(server.url)
                page.get_by_text("is ready").first.wait_for(timeout=60_000)
                open_page(page, "Embedding & interventions")
                box = page.get_by_role("textbox", name="Find an image")
                box.fill(target.rsplit("/", 1)[-1])  # the file's own name, without its folders
                box.press("Enter")
                page.get_by_text(re.compile(rf"^Image id 5 \(train\), {re.escape(target)}")).wait_for(timeout=60_000)
                wait_for_panel_images(page, 11)
                box.fill("durian")
                box.press("Enter")
                page.get_by_text("no image's file name contains 'durian'").wait_for(timeout=30_000)
            browser.close()
    finally:
        server.stop()
    assert_no_traceback(server.log)
