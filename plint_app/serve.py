"""Run the dashboard as a real server and open it in Debian's Chromium (browser tests and benchmarks).

Nothing here is used by the app itself.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A ``streamlit run`` subprocess and its URL."""

    process: subprocess.Popen
    url: str
    log: Path
    started: float
    ready: float

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_streamlit(script: str | Path, env: dict[str, str], log: Path, cwd: Path = REPO) -> Server:
    """Start ``streamlit run script`` headless on a free local port and wait until it answers its health check."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return Server(proc, url, log, started, time.perf_counter())
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"streamlit did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")


def launch_chromium(playwright):
    """Debian's Chromium, headless, with no network side traffic."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# JavaScript run in the page ------------------------------------------------------------------

GROUP_BOX_JS = """(arg) => {
  const [name, plot] = Array.isArray(arg) ? arg : [arg, 0];
  const gd = document.querySelectorAll('.js-plotly-plot')[plot];
  const trace = gd && gd._fullData && gd._fullData.find(t => t.name === name);
  if (!trace || !gd._fullLayout || !gd.querySelector('.nsewdrag')) return null;
  const q = (arr, f) => { const s = Array.from(arr).sort((a, b) => a - b); return s[Math.floor(f * (s.length - 1))]; };
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return [r.left + xa.l2p(q(trace.x, 0.2)), r.top + ya.l2p(q(trace.y, 0.8)),
          r.left + xa.l2p(q(trace.x, 0.8)), r.top + ya.l2p(q(trace.y, 0.2))];
}"""
"""Pixel rectangle ``[x0, y0, x1, y1]`` (page coordinates) around the middle 60 % of a trace's points;
``null`` while the chart is not (re)drawn yet, so it can be polled with ``page.wait_for_function``. The argument
is the trace's name, or ``[name, k]`` for the page's ``k``-th chart (0: the first)."""

SELECTION_TEXT_JS = """() => { for (const e of document.querySelectorAll('p, strong')) {
  const m = e.textContent.match(/^Selection: ([\\d,]+) training points$/); if (m) return m[1]; } return null; }"""
"""The selection count the page shows (``"1,234"``), or ``null``."""


def drag(page, box: list[float], steps: int = 6) -> None:
    """Drag the mouse across ``box`` (``[x0, y0, x1, y1]``), as a box selection does."""
    x0, y0, x1, y1 = box
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=steps)
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def selection_round_trip(page, group: str, timeout_ms: int = 60_000) -> float:
    """Box-select ``group``'s points with the mouse; seconds from mouse-up to the page showing a new selection
    count (what a user waits for)."""
    import time

    box = page.wait_for_function(GROUP_BOX_JS, arg=group, timeout=timeout_ms).json_value()
    before = page.evaluate(SELECTION_TEXT_JS)
    x0, y0, x1, y1 = box
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=6)
    page.mouse.move(x1, y1, steps=6)
    started = time.perf_counter()
    page.mouse.up()
    page.wait_for_function(f"(before) => {{ const now = ({SELECTION_TEXT_JS})(); "
                           f"return now !== null && now !== before && now !== '0'; }}", arg=before,
                           timeout=timeout_ms, polling="raf")
    return time.perf_counter() - started

DRAG_TARGETS_JS = """() => { const gd = document.querySelector('div.plint-drag-map');
  const g = gd && gd._plint && gd._plint.data.group;
  if (!g || !gd._fullLayout || !gd.querySelector('.nsewdrag')) return null;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return [r.left + xa.l2p(g.centroid[0] + g.translate[0]), r.top + ya.l2p(g.centroid[1] + g.translate[1])]; }"""
"""Page pixels of the drag map's selected group's target centre (its centre plus the current translation), or
``null`` until the map shows a selected group."""
DX_VALUE_JS = "() => document.querySelector('input[aria-label=\"dx\"]')?.value ?? null"


def drag_round_trip(page, by: tuple[float, float], timeout_ms: int = 60_000) -> float:
    """Drag the drag map's selected group (at its previewed targets) by ``by`` pixels; seconds from mouse-up to
    the page showing the new dx (what a user waits for before committing)."""
    import time

    x, y = page.wait_for_function(DRAG_TARGETS_JS, timeout=timeout_ms).json_value()
    before = page.evaluate(DX_VALUE_JS)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by[0] / 2, y + by[1] / 2, steps=4)
    page.mouse.move(x + by[0], y + by[1], steps=4)
    started = time.perf_counter()
    page.mouse.up()
    page.wait_for_function(f"(before) => {{ const now = ({DX_VALUE_JS})(); return now !== null && now !== before; }}",
                           arg=before, timeout=timeout_ms, polling="raf")
    return time.perf_counter() - started


OUTCOME_JS = """() => { const m = document.body.innerText.match(/Run `?(\\w+)`? finished in ([\\d.]+) s/);
  return m ? m[1] : null; }"""
"""The id of the run whose outcome the Fine-tune page shows ("Run `…` finished in … s"), or ``null``."""
CHART_READY_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return !!(gd && gd._fullData && gd._fullData.length >= 10 && gd.querySelector('.nsewdrag')); }"""
"""Whether the scatter is drawn with all its class traces and can be dragged on."""


# Steps of a user in the page -----------------------------------------------------------------------

def open_page(page, title: str) -> None:
    """Follow the sidebar link ``title`` and wait for the page's heading."""
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)


def commit_move(page, group: str, dx: float) -> None:
    """On the embedding page, box-select ``group``'s points with the mouse, move them by ``dx`` and commit."""
    open_page(page, "Embedding & interventions")
    page.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")
    drag(page, page.wait_for_function(GROUP_BOX_JS, arg=group, timeout=60_000).json_value())
    page.wait_for_function(f"() => {{ const n = ({SELECTION_TEXT_JS})(); return n !== null && n !== '0'; }}",
                           timeout=60_000)
    fill_number(page, "dx", dx)
    page.get_by_role("button", name="Commit move").click()
    page.get_by_text("Move 1 committed").wait_for(timeout=60_000)


def fill_number(page, label: str, value: float, tries: int = 5) -> None:
    """Type ``value`` into the number input ``label`` and press Enter, again if a rerun still in flight (a
    selection's) put the old value back."""
    query = f"document.querySelector('input[aria-label=\"{label}\"]')"
    for attempt in range(tries):
        field = page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Enter")
        try:
            page.wait_for_function(f"(v) => {query} && Number({query}.value) === v", arg=value, timeout=10_000)
            time.sleep(0.5)
            if page.evaluate(f"(v) => Number({query}.value) === v", value):
                return
        except Exception:
            if attempt == tries - 1:
                raise


EPOCHS_LABEL = "Epochs (0 = the steps above decide)"


def press_run(page, epochs: int, seed: int) -> str | None:
    """Set epochs (under *More settings*) and seed on the Fine-tune page and press Run; returns the run id shown
    before (or ``None``)."""
    if not page.get_by_label(EPOCHS_LABEL, exact=True).is_visible():
        page.get_by_text("More settings").first.click()
        page.get_by_label(EPOCHS_LABEL, exact=True).wait_for(timeout=30_000)
    fill_number(page, EPOCHS_LABEL, epochs)
    fill_number(page, "Seed", seed)
    before = page.evaluate(OUTCOME_JS)
    page.get_by_role("button", name="Run fine-tuning and control").click()
    return before
