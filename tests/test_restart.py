"""Restart safety in Debian's Chromium: the server is killed (SIGKILL) while a run trains in its worker process.

The worker goes with the server, the run store keeps only complete runs (the
earlier run, its embedding and latents untouched, no partial run), and a new
server on the same store shows the history as it was and can run again.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from app_helpers import app_env
from test_browser_e2e import VIEWPORT, require_chromium

from plint_app.history import history_table, run_label
from plint_app.serve import commit_move, launch_chromium, open_page, press_run, start_streamlit
from plint_core.store import RunStore

pytest_plugins = ("app_fixtures",)  # app_runs, stored_run
SHOWN_JS = """(text) => document.body.innerText.includes(text)
  || [...document.querySelectorAll('input')].some(i => i.value === text)"""
"""Whether ``text`` is on the page, as text or as the value a select box shows."""


@contextmanager
def app_page(env: dict[str, str], log: Path):
    """A server on ``env`` and a Chromium page on it, once the embedding is ready: ``(server, page)``; the
    server is stopped afterwards unless it is dead already."""
    from playwright.sync_api import sync_playwright

    server = start_streamlit("app.py", env, log)
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server.url)
            page.get_by_text("is ready").first.wait_for(timeout=120_000)
            yield server, page
            browser.close()
    finally:
        if server.process.poll() is None:
            server.stop()


def descendants(pid: int) -> set[int]:
    """Every process whose chain of parents leads to ``pid`` (from ``/proc``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def snapshot(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_killed_server_leaves_only_complete_runs_and_a_new_one_carries_on(app_runs, stored_run, tmp_path):
    require_chromium()
    runs = tmp_path / "runs"
    shutil.copytree(app_runs, runs)
    before = snapshot(runs)
    complete = [r["run_id"] for r in RunStore(runs).list_runs()]
    assert stored_run.run_id in complete
    env = {**app_env(runs), "OMP_NUM_THREADS": "1"}
    with app_page(env, tmp_path / "first.log") as (server, page):
        commit_move(page, "7", 3.0)
        open_page(page, "Fine-tune")
        press_run(page, 500, 77)  # long enough to be killed mid-training
        page.get_by_text("Control run (cross-entropy only) · epoch").first.wait_for(timeout=120_000)  # runs first
        workers = descendants(server.process.pid)
        assert workers, "the run trains in a worker process"
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        deadline = time.monotonic() + 30
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers), "no worker outlives the killed server"
    store = RunStore(runs)
    assert [r["run_id"] for r in store.list_runs()] == complete, "only the runs that were complete"
    leftovers = {k: v for k, v in snapshot(runs).items() if not k.startswith("runs/.tmp-")}
    assert leftovers == before, "the earlier run, the embedding and the latents are untouched"
    assert sorted(d.name for d in (runs / "runs").iterdir() if not d.name.startswith(".tmp-")) == sorted(complete)

    with app_page(env, tmp_path / "second.log") as (_, page):
        open_page(page, "Fine-tune")
        page.get_by_text("Run history").first.wait_for(timeout=30_000)
        newest = history_table(RunStore(runs).list_runs()).iloc[0]  # the history picker shows the newest run
        page.wait_for_function(SHOWN_JS, arg=run_label(newest), timeout=30_000)
        assert page.get_by_text("Waiting for a free worker").count() == 0, "the killed run's queue is gone"
    for log in ("first.log", "second.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
