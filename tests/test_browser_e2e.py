"""End to end in Debian's Chromium: the real app, a mouse box-selection, a move, a fine-tune, the comparison.

Starts ``streamlit run app.py`` on a free port with ``PLINT_RUNS_DIR`` set to
the session's temporary run store (the embedding is already fitted there),
drives it with Playwright and saves a screenshot of every page into
``docs/screenshots/``. Without ``/usr/bin/chromium`` the test is skipped,
except in CI (``CI=true``), where that is a failure.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from app_helpers import REPO, TEST_EPOCHS, app_env, assert_no_traceback, browser_evidence

from plint_app.serve import CHROMIUM, EPOCHS_LABEL, GROUP_BOX_JS, drag, launch_chromium, start_streamlit

pytest_plugins = ("app_fixtures",)  # app_runs

SCREENSHOTS = REPO / "docs" / "screenshots"
IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""
"""No script run in progress (Streamlit's running indicator is gone)."""
VIEWPORT = {"width": 1400, "height": 1000}
DRAG_GEOMETRY_JS = """() => { const gd = document.querySelector('div.plint-drag-map'), g = gd._plint.data.group;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return {cx: r.left + xa.l2p(g.centroid[0]), cy: r.top + ya.l2p(g.centroid[1]),
          x_per_px: xa.p2l(1000) / 1000 - xa.p2l(0) / 1000, y_per_px: ya.p2l(1000) / 1000 - ya.p2l(0) / 1000}; }"""
"""Where the drag map's selected group's centre is (page pixels), and data units per pixel on each axis."""
RUN_TIMEOUT_MS = 300_000
# Per visible heatmap: its title, the sum of the numbers written in its cells and how many cells have one.
HEATMAP_SUMS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(gd => gd._fullData && gd._fullData.length && gd._fullData[0].type === 'heatmap' && gd._fullLayout)
  .map(gd => { const cells = [...gd.querySelectorAll('.heatmaplayer text')];
               return [gd._fullLayout.title.text.replace(/<[^>]+>/g, ''),
                       cells.reduce((s, t) => s + Number(t.textContent || 0), 0), cells.length]; })"""
# Per visible heatmap: its title and its matrix (rows of numbers).
MATRICES_JS = """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')]
  .filter(gd => gd._fullData && gd._fullData.length && gd._fullData[0].type === 'heatmap' && gd._fullLayout)
  .map(gd => [gd._fullLayout.title.text.replace(/<[^>]+>/g, ''),
              Array.from(gd._fullData[0].z, row => Array.from(row, Number))]))"""
# The playback figure: its frames and the active step of its slider.
PLAYBACK_JS = """() => { const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g._fullLayout &&
    g._fullLayout.title && String(g._fullLayout.title.text).replace(/<[^>]+>/g, '').startsWith('The test map while'));
  return gd && gd._transitionData ? {frames: gd._transitionData._frames.length,
                                     active: gd._fullLayout.sliders[0].active} : null; }"""
# Streamlit remounts the chart on a rerun, so the plot (or its _fullData) can be missing for a moment:
# every probe below answers "not yet" then instead of throwing.
TRACE_NAMES_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return gd && gd._fullData ? gd._fullData.map(t => t.name) : []; }"""
DATA_TO_PAGE_JS = """([x, y]) => { const gd = document.querySelector('.js-plotly-plot');
  const drag = gd && gd.querySelector('.nsewdrag');
  if (!drag || !gd._fullLayout || !gd._fullLayout.xaxis) return null;
  const r = drag.getBoundingClientRect();
  return [r.left + gd._fullLayout.xaxis.l2p(x), r.top + gd._fullLayout.yaxis.l2p(y)]; }"""


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def selection_count(page) -> int:
    text = page.get_by_text(re.compile(r"^Selection: [\d,]+ training points$")).first.text_content()
    return int(re.sub(r"\D", "", text))


def screenshot(page, name: str) -> None:
    """Save the whole page: the viewport is stretched to the app's scroll height for the shot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.8)  # let Plotly finish its transitions
    height = page.evaluate("""() => { const main = document.querySelector('[data-testid="stMainBlockContainer"]');
                                       return main.getBoundingClientRect().top + main.scrollHeight; }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 40, 4000)})
    time.sleep(0.8)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


def open_page(page, title: str) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)


def test_whole_loop_in_chromium(app_runs, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    # one torch thread: the server's fine-tuning is small, and two threads crawl on a busy 2-core machine
    server = start_streamlit("app.py", {**app_env(app_runs), "OMP_NUM_THREADS": "1"}, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            with browser_evidence(browser, server, tmp_path):  # every session's page, the second one's too
                walk_through(page, server.url)
            browser.close()
    finally:
        server.stop()
    assert_no_traceback(server.log)


def click_destination(page, x: float, y: float, tries: int = 3) -> None:
    """Click the data point (x, y) until the preview appears; a click that lands during a rerun is lost."""
    for attempt in range(tries):
        point = page.wait_for_function(DATA_TO_PAGE_JS, arg=[x, y], timeout=30_000).json_value()
        page.mouse.click(*point)
        try:
            page.wait_for_function(f"() => ({TRACE_NAMES_JS})().includes('preview targets')", timeout=20_000)
            return
        except Exception:
            if attempt == tries - 1:
                raise


def walk_through(page, url: str) -> None:
    """The whole loop, as a user does it; saves the screenshots on the way."""
    page.goto(url)
    # 1 · Model & data: the embedding comes from the store
    page.get_by_text("is ready").first.wait_for(timeout=60_000)
    assert page.get_by_text("loaded from the run store").count() == 1
    screenshot(page, "model_data")

    # 2 · Embedding: box-select class 0 with the mouse, move it, commit
    open_page(page, "Embedding & interventions")
    page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=30_000)
    # first, Edit a class pair: the most confused pair pushed apart into free space in one click, then undone
    page.wait_for_function(IDLE_JS, timeout=60_000)  # the page's first run has ended: a click is not lost in it
    page.get_by_text("Edit a class pair").click()
    for attempt in range(2):  # a click landing while a rerun replaces the button can go unanswered: once more
        page.get_by_role("button", name="Push apart").click()
        try:
            page.get_by_text(re.compile(r"pushed apart: moves 1 and 2 added")).wait_for(timeout=30_000)
            break
        except Exception:
            if attempt or page.get_by_text("Committed moves (0)").count() != 1:
                raise
    page.get_by_text("Committed moves (2)").wait_for(timeout=30_000)
    screenshot(page, "pair_edit")
    page.get_by_role("button", name="Undo", exact=True).click()
    page.get_by_text("Committed moves (0)").wait_for(timeout=30_000)
    page.get_by_text("Edit a class pair").click()  # folded again
    page.get_by_role("button", name="Push apart").wait_for(state="hidden", timeout=30_000)
    drag(page, page.wait_for_function(GROUP_BOX_JS, arg="0", timeout=30_000).json_value())
    page.get_by_text(re.compile(r"^Selection: [1-9][\d,]* training points$")).wait_for(timeout=30_000)
    n_selected = selection_count(page)
    # the destination: switch the click mode, then click 8 units right of the group's centre
    centroid = page.get_by_text(re.compile(r"^Centroid \(")).first.text_content()
    cx, cy = (float(v) for v in re.match(r"Centroid \((-?[\d.]+), (-?[\d.]+)\)", centroid).groups())
    page.get_by_role("radio", name="Destination").click()
    page.wait_for_function(f"() => ({TRACE_NAMES_JS})().includes('destination')", timeout=30_000)
    click_destination(page, cx + 8.0, cy)
    page.wait_for_function("() => Number(document.querySelector('input[aria-label=\"dx\"]').value) !== 0",
                           timeout=30_000)
    dx = float(page.get_by_label("dx", exact=True).input_value())
    assert 6.0 < dx < 10.0, dx  # the click snaps to the destination grid
    assert selection_count(page) == n_selected
    screenshot(page, "embedding")
    page.get_by_role("button", name="Commit move").click()
    page.get_by_text("Move 1 committed").wait_for(timeout=30_000)
    page.get_by_text(f"({n_selected:,} points)").first.wait_for(timeout=30_000)

    # 3 · Fine-tune with few epochs
    open_page(page, "Fine-tune")
    page.get_by_text("More settings").first.click()
    epochs = page.get_by_role("spinbutton", name=EPOCHS_LABEL)
    epochs.fill(str(TEST_EPOCHS))
    epochs.press("Enter")  # the Run click below carries every widget's current value, this one included
    page.get_by_role("button", name="Run fine-tuning and control").click()
    page.get_by_text("Test accuracy before").first.wait_for(timeout=RUN_TIMEOUT_MS)
    assert page.get_by_text(re.compile(r"finished in [\d.]+ s")).count() == 1
    screenshot(page, "finetune")

    # 4 · Compare: three confusion matrices, each counting every test image once
    open_page(page, "Compare")
    page.wait_for_function(f"() => ({HEATMAP_SUMS_JS})().filter(h => h[2] === 100).length >= 3",
                           timeout=60_000)
    assert page.get_by_text(re.compile(rf"{TEST_EPOCHS} epochs ·")).count() == 1, "the run used the epochs set"
    assert page.get_by_text(re.compile(r"PLI kept .* · control kept ")).count() == 1, "which step each run kept"
    sums = {title: total for title, total, _ in page.evaluate(HEATMAP_SUMS_JS)}
    for title in ("Before fine-tuning", "After PLI fine-tuning", "Control (CE only)"):
        assert sums[title] == 360, sums
    screenshot(page, "compare")
    # the pick: the path's first checkpoint (the start) makes "after PLI" the model before fine-tuning
    page.get_by_text("PLI checkpoint shown (validation figures only)").first.wait_for(timeout=60_000)
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("Home")
    same = ("() => { const m = (" + MATRICES_JS + ")(); const a = m['After PLI fine-tuning'], "
            "b = m['Before fine-tuning']; return !!a && !!b && JSON.stringify(a) === JSON.stringify(b); }")
    page.wait_for_function(same, timeout=60_000)
    page.wait_for_function("() => new URL(location.href).searchParams.get('step') === '0'", timeout=30_000)
    assert page.get_by_text(re.compile(r"PLI: step 0 picked")).count() == 1
    # the playback: a frame per checkpoint, and ▶ moves the slider through them
    page.get_by_text("Play back: the map while the PLI run trained").first.click()
    page.wait_for_function(f"() => {{ const p = ({PLAYBACK_JS})(); return p && p.frames >= 2; }}", timeout=60_000)
    page.get_by_text("▶ Play").first.click()
    page.wait_for_function(f"() => {{ const p = ({PLAYBACK_JS})(); return p && p.active > 0; }}", timeout=60_000)

    # 5 · Deep links: the address names the run shown; pasted into a new session it opens that run
    page.wait_for_function("() => new URL(location.href).searchParams.get('run')", timeout=30_000)
    run_id = page.evaluate("() => new URL(location.href).searchParams.get('run')")
    other = page.context.browser.new_context(viewport=VIEWPORT).new_page()  # a session of its own
    other.bring_to_front()  # a page in the background gets no animation frames (Plotly's selection waits on them)
    other.goto(f"{url}/compare?run={run_id}")
    other.get_by_text(f"Open run {run_id}").first.wait_for(timeout=60_000)
    other.get_by_text(re.compile(r"PLI kept .* · control kept ")).first.wait_for(timeout=60_000)
    assert other.get_by_text("There is no run").count() == 0
    other.goto(f"{url}/compare?run=nosuchrun")
    other.get_by_text(re.compile(r"There is no run nosuchrun in this project's history")).first.wait_for(timeout=60_000)
    other.wait_for_function(f"() => new URL(location.href).searchParams.get('run') === '{run_id}'", timeout=30_000)
    other.goto(f"{url}/embedding?layer=act3")
    other.get_by_text("Layer act3 (ready)").first.wait_for(timeout=RUN_TIMEOUT_MS)  # fitted for this link
    other.get_by_role("heading", name="Embedding & interventions").first.wait_for()
    assert "layer=act3" in other.url
    # 6 · Linked layers: a box in the second map selects the same points in both
    other.get_by_role("combobox", name="Linked layer, side by side").click()
    other.get_by_role("option", name="logits").click()
    other.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .nsewdrag').length === 2",
                            timeout=RUN_TIMEOUT_MS)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):  # a box drawn while the maps are still being redrawn (a busy machine) can be lost
        drag(other, other.wait_for_function(GROUP_BOX_JS, arg=["0", 1], timeout=60_000).json_value())
        try:
            other.get_by_text(re.compile(r"^Selection: [1-9][\d,]* training points$")).wait_for(timeout=30_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    other.wait_for_function("() => document.querySelector('.js-plotly-plot')._fullData"
                            ".some(t => t.name === 'selected' && t.x.length > 0)", timeout=60_000)
    screenshot(other, "linked_layers")

    # 7 · Drag to move: the group follows the pointer; release sets dx/dy to the drag in data units
    other.get_by_role("radio", name="Drag").click()
    other.wait_for_selector("div.plint-drag-map .nsewdrag", timeout=60_000)
    other.wait_for_function("() => { const gd = document.querySelector('div.plint-drag-map');"
                            " return gd && gd._plint && gd._plint.data.group && gd._fullLayout; }", timeout=60_000)
    def drag_group(by: tuple[float, float], escape: bool = False) -> dict:
        """Drag the group's centre by ``by`` pixels; returns the map's geometry at the press. A map redrawn by a
        rerun still going on can miss the press: then let go and press again."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for attempt in range(3):
            geometry = other.evaluate(DRAG_GEOMETRY_JS)
            x, y = geometry["cx"], geometry["cy"]
            other.mouse.move(x, y)
            other.mouse.down()
            other.mouse.move(x + by[0] / 2, y + by[1] / 2, steps=4)
            other.mouse.move(x + by[0], y + by[1], steps=4)
            try:  # the drag follows the pointer before the release
                other.wait_for_function("() => { const d = document.querySelector('div.plint-drag-map').dataset"
                                        ".dragging; return d && JSON.parse(d)[0] !== 0; }", timeout=5_000)
                break
            except PlaywrightTimeout:
                other.mouse.up()
                time.sleep(1.0)
        else:
            raise AssertionError("the drag map never started a drag")
        if escape:
            other.keyboard.press("Escape")
        other.mouse.up()
        return geometry

    dx_box, dy_box = (other.get_by_role("spinbutton", name=n, exact=True) for n in ("dx", "dy"))
    drag_names = "() => document.querySelector('div.plint-drag-map').data.map(t => t.name)"
    drag_group((40, -25), escape=True)  # cancelled: nothing changes
    time.sleep(1.0)
    assert float(dx_box.input_value()) == 0.0 and float(dy_box.input_value()) == 0.0
    assert "drag preview" not in other.evaluate(drag_names), "Escape takes the temporary preview off"
    moved = "() => Number(document.querySelector('input[aria-label=\"dx\"]').value) !== 0"
    drag_group((60, 30))
    other.wait_for_function(moved, timeout=60_000)
    other.get_by_role("button", name="Undo drag").click()  # back to dx/dy before that drag
    other.wait_for_function(f"() => !({moved})()", timeout=60_000)
    other.get_by_role("button", name="Undo drag").wait_for(state="detached", timeout=60_000)  # that rerun is over
    geometry = drag_group((120, 70))
    other.wait_for_function(moved, timeout=60_000)
    # the rerun's redraw replaces the temporary preview with the server's, where the group was let go
    other.wait_for_function(f"() => {{ const names = ({drag_names})(); return !names.includes('drag preview') "
                            "&& names.includes('preview targets'); }", timeout=60_000)
    want = (120 * geometry["x_per_px"], 70 * geometry["y_per_px"])
    got = (float(dx_box.input_value()), float(dy_box.input_value()))
    for g, w in zip(got, want):
        assert abs(g - w) <= 0.02 * abs(w), (got, want)  # within 2 % of the drag, in data units
    screenshot(other, "drag")
    other.get_by_role("button", name="Commit move").click()
    other.get_by_text("Move 1 committed").wait_for(timeout=60_000)
    committed = other.get_by_text(re.compile(r"^Move 1 committed")).first.text_content()
    dx, dy = (float(v) for v in re.search(r"→ \(([-+\d.]+), ([-+\d.]+)\)", committed).groups())
    assert abs(dx - want[0]) <= 0.02 * abs(want[0]) and abs(dy - want[1]) <= 0.02 * abs(want[1]), (dx, dy, want)

    # 8 · Run against run: fine-tune the dragged move, then put it beside the first run on Compare
    open_page(other, "Fine-tune")
    other.get_by_text("More settings").first.click()
    epochs = other.get_by_role("spinbutton", name=EPOCHS_LABEL)
    epochs.fill(str(TEST_EPOCHS))
    epochs.press("Enter")
    other.get_by_role("button", name="Run fine-tuning and control").click()
    other.get_by_text("Test accuracy before").first.wait_for(timeout=RUN_TIMEOUT_MS)
    open_page(other, "Compare")
    # charts below the fold are drawn when they come into view
    other.get_by_text(re.compile(r"^After PLI fine-tuning in each run; Δ = B − A")).first.scroll_into_view_if_needed()
    other.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(gd => gd._fullLayout "
                            "&& String(gd._fullLayout.title && gd._fullLayout.title.text).includes('After PLI: B − A'))",
                            timeout=60_000)
    assert other.get_by_role("combobox", name="Against run B (the run above is A)").count() == 1
    other.get_by_role("heading", name="Run against run").first.scroll_into_view_if_needed()
    screenshot(other, "compare_runs")
    other.context.close()

    # 9 · The report: downloaded from Compare, it opens offline with no server and no console errors
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Report (HTML)").click()
    report = Path(download.value.path()).parent / download.value.suggested_filename  # a name ending in .html
    download.value.save_as(report)
    assert report.name.endswith(".html")
    assert report.stat().st_size <= 5_000_000, report.stat().st_size
    offline = page.context.browser.new_context(viewport=VIEWPORT, offline=True)
    reader = offline.new_page()
    problems, fetched = [], []
    reader.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    reader.on("pageerror", lambda e: problems.append(str(e)))
    reader.on("request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    reader.goto(report.as_uri())
    reader.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 7",
                             timeout=60_000)
    assert reader.get_by_text(f"plint report · run {run_id}").count() >= 1
    assert not problems and not fetched, (problems, fetched)
    offline.close()
