"""A thinned map in Debian's Chromium: the real app with ``PLINT_MAP_MAX_POINTS=400``, so that the digits' 1,437
training points take the large map's path (a sample drawn over a density, selections resolved on the server).

A mouse box over class 0 must select every training point inside the box, the undrawn ones too: the count the
page shows is checked against the points of the run store's embedding inside the box Plotly reports, and against
the fewer points drawn there. Nothing here is timed. Without ``/usr/bin/chromium`` the test is skipped, except in CI.
"""
from __future__ import annotations

import re

import numpy as np
from app_helpers import app_env, assert_no_traceback, browser_evidence
from test_browser_e2e import IDLE_JS, VIEWPORT, require_chromium, selection_count

from plint_app.serve import CHART_READY_JS, GROUP_BOX_JS, drag, launch_chromium, start_streamlit

pytest_plugins = ("app_fixtures",)  # app_runs

MAX = 400
BOX_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  const s = gd && gd._fullLayout && gd._fullLayout.selections;
  if (!s || !s.length) return null;
  const b = s[s.length - 1];
  const drawn = gd._fullData.filter(t => t.customdata && t.visible !== false).map(t => {
    let n = 0;
    for (let i = 0; i < t.x.length; i++) {
      const x = t.x[i], y = t.y[i];
      if (x >= Math.min(b.x0, b.x1) && x <= Math.max(b.x0, b.x1)
          && y >= Math.min(b.y0, b.y1) && y <= Math.max(b.y0, b.y1)) n++;
    }
    return n; }).reduce((a, c) => a + c, 0);
  return {x0: b.x0, x1: b.x1, y0: b.y0, y1: b.y1, drawn}; }"""
"""The last box drawn on the map, in data units, and how many drawn points lie in it (``null`` without a box)."""


def steady_box(page) -> list[float]:
    """Class 0's pixel box once two readings 0.5 s apart agree (the chart may still be settling its axes)."""
    box = None
    for _ in range(40):
        now = page.wait_for_function(GROUP_BOX_JS, arg="0", timeout=30_000).json_value()
        if now == box:
            return now
        box = now
        page.wait_for_timeout(500)
    return box


def test_a_box_on_a_thinned_map_selects_every_point_inside_it(app_runs, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    from plint_app.config import AppConfig
    from plint_app.project import Project

    env = {**app_env(app_runs), "PLINT_MAP_MAX_POINTS": str(MAX), "OMP_NUM_THREADS": "1"}
    project = Project.load(AppConfig.from_env(env))
    xy = np.asarray(project.embedding(project.default_layer, 0).train_xy, dtype=np.float64)
    server = start_streamlit("app.py", env, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            with browser_evidence(browser, server, tmp_path):
                page.goto(server.url + "/embedding")
                page.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")
                page.get_by_text(f"Showing {MAX} of 1,437 points").first.wait_for(timeout=30_000)
                page.wait_for_function(IDLE_JS, timeout=60_000)
                for attempt in range(3):  # a map redrawn between reading the box and the drag can take it on empty space
                    drag(page, steady_box(page))
                    try:
                        page.get_by_text(re.compile(r"^Selection: [1-9][\d,]* training points$")).wait_for(timeout=20_000)
                        break
                    except Exception:
                        if attempt == 2:
                            raise
                        page.wait_for_function(IDLE_JS, timeout=60_000)
                box = page.wait_for_function(BOX_JS, timeout=30_000).json_value()
                page.wait_for_function(IDLE_JS, timeout=60_000)
                shown = selection_count(page)
            browser.close()
    finally:
        server.stop()
    x0, x1 = sorted((box["x0"], box["x1"]))
    y0, y1 = sorted((box["y0"], box["y1"]))
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert shown == int(inside.sum()), (shown, int(inside.sum()), box)
    assert box["drawn"] < shown, "the box holds points that are not drawn, and they are selected too"
    assert_no_traceback(server.log)
