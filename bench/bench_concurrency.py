"""Concurrency: several browser sessions pressing *Run* on one server, measured in Debian's Chromium.

The digits demo with the default t-SNE (fitted once by this script into a fresh run store), served by
``streamlit run app.py`` on 127.0.0.1 with ``PLINT_DEVICE=cpu`` and the executor's defaults (one worker
process on a machine without a GPU). Each of up to four sessions (its own browser context, so its own
Streamlit session) box-selects one class with the mouse, moves it by ``dx`` and commits; a fifth session
stays on the embedding page as a spectator. Then, on the Fine-tune page, with ``--epochs`` (default 40, the
app's default) and a seed of its own for every run (so nothing is a cache hit):

* warm-up: one run, not counted (the worker process starts and imports torch);
* alone: one session presses *Run*; seconds from the click to its outcome on screen;
* together: 2, then 4 sessions press *Run* one right after the other; seconds from the first click until
  every one shows its outcome (runs queue first in, first out);
* responsiveness: the spectator's box-selection round trip (mouse-up → new selection count), idle before
  the runs and during the 4-session runs.

Goals (issue 9): 2 together ≤ 2.2 × alone, 4 together ≤ 4.4 × alone, selection during the runs ≤ 2 × idle.
A run that has not finished within ``--timeout`` seconds counts as not finished (the figure is then a lower
bound); that is how the server behaved before runs moved to worker processes.

Usage::

    python bench/bench_concurrency.py [--epochs 40] [--timeout 900] [--selections 5] [--out NAME.json]
    python bench/bench_concurrency.py --quick     # 3 epochs, small t-SNE, 2 selections: structure only

Writes bench/out/concurrency_{full,quick}.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, QUICK_TSNE, machine, print_table, write_json  # also puts the repo on sys.path

from plint_app.serve import (
    CHART_READY_JS,
    OUTCOME_JS,
    commit_move,
    launch_chromium,
    open_page,
    press_run,
    selection_round_trip,
    start_streamlit,
)

VIEWPORT = {"width": 1400, "height": 1000}
CLASSES = ("0", "1", "2", "3")
SPECTATOR_BOXES = ("5", "6")
GOALS = {"together 2": 2.2, "together 4": 4.4, "selection": 2.0}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the runs of one round")
    ap.add_argument("--selections", type=int, default=5, help="spectator box selections, idle and during runs")
    ap.add_argument("--dx", type=float, default=3.0, help="how far each session moves its class")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.epochs, a.selections = 3, 2
    a.out = a.out or f"concurrency_{'quick' if a.quick else 'full'}.json"
    return a


def prepare_store(runs: Path, tsne: dict) -> None:
    from plint_app.config import AppConfig
    from plint_app.project import Project

    project = Project.load(AppConfig.from_env(env_for(runs, tsne)))
    t = time.perf_counter()
    project.embedding(project.default_layer, 0)
    print(f"embedding fitted in {time.perf_counter() - t:.1f} s", flush=True)


def env_for(runs: Path, tsne: dict) -> dict[str, str]:
    return {"PLINT_RUNS_DIR": str(runs), "PLINT_DEVICE": "cpu", "PLINT_TSNE_CONFIG": json.dumps(tsne)}


def wait_outcomes(pages: list, before: list[str | None], started: float, timeout: float) -> list[float | None]:
    """Seconds from ``started`` until each page shows a new run outcome; ``None`` where none came in time."""
    done: list[float | None] = [None] * len(pages)
    deadline = started + timeout
    while time.perf_counter() < deadline and any(d is None for d in done):
        for i, page in enumerate(pages):
            if done[i] is None:
                now = page.evaluate(OUTCOME_JS)
                if now is not None and now != before[i]:
                    done[i] = time.perf_counter() - started
        time.sleep(0.2)
    return done


def cpu_ticks(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, grouped: the web server, its worker processes,
    Chromium, Playwright's driver, this script, everything else (from ``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used, names = {}, {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        name, fields = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        parents[pid], names[pid] = int(fields[1]), name
        used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    groups: dict[str, float] = {}
    for pid, seconds in used.items():
        chain, p = set(), pid
        while p in parents and p not in chain:
            chain.add(p)
            p = parents[p]
        if pid == server_pid:
            group = "web server"
        elif server_pid in chain:
            group = "workers"
        elif names[pid].startswith(("chrom", "headless")):
            group = "chromium"
        elif names[pid] == "node":
            group = "playwright"
        elif pid == os.getpid():
            group = "bench script"
        else:
            group = "other"
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def round_of(pages: list, epochs: int, seeds: list[int], timeout: float, spectator=None, selections: int = 0,
             server_pid: int | None = None) -> dict:
    """Press Run on every page, one right after the other; while they run, the spectator selects. With
    ``server_pid``, also the cores each group of processes used during the round (:func:`cpu_ticks`)."""
    before = []
    ticks = cpu_ticks(server_pid) if server_pid else {}
    started = time.perf_counter()
    for page, seed in zip(pages, seeds):
        before.append(press_run(page, epochs, seed))
    during = []
    if spectator is not None:
        for i in range(selections):
            during.append(selection_round_trip(spectator, SPECTATOR_BOXES[i % 2]))
            time.sleep(0.3)
    finished = wait_outcomes(pages, before, started, timeout)
    total = None if any(f is None for f in finished) else max(finished)
    cores = {}
    if server_pid:
        wall, after = time.perf_counter() - started, cpu_ticks(server_pid)
        cores = {g: round((after.get(g, 0.0) - ticks.get(g, 0.0)) / wall, 2) for g in after}
    return {"sessions": len(pages), "finished_s": finished, "all_s": total, "selection_s": during, "cores": cores}


def main() -> None:
    a = parse_args()
    tsne = QUICK_TSNE.to_dict() if a.quick else {}
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M')}; digits demo, {a.epochs} epochs per run"
          f"{'; QUICK: structure, not the goals' if a.quick else ''}", flush=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="plint-concurrency-") as tmp:
        runs = Path(tmp) / "runs"
        OUT.mkdir(parents=True, exist_ok=True)
        prepare_store(runs, tsne)
        server = start_streamlit("app.py", env_for(runs, tsne), OUT / "concurrency_server.log")
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                pages = [browser.new_context(viewport=VIEWPORT).new_page() for _ in range(len(CLASSES) + 1)]
                for page in pages:
                    page.goto(server.url)
                    page.get_by_text("is ready").first.wait_for(timeout=300_000)
                users, spectator = pages[:len(CLASSES)], pages[-1]
                for page, group in zip(users, CLASSES):
                    commit_move(page, group, a.dx)
                    open_page(page, "Fine-tune")
                open_page(spectator, "Embedding & interventions")
                spectator.wait_for_function(CHART_READY_JS, timeout=120_000, polling="raf")
                idle = [selection_round_trip(spectator, SPECTATOR_BOXES[i % 2]) for i in range(a.selections)]
                print(f"spectator idle selections: {[round(t, 3) for t in idle]}", flush=True)
                rounds = {"warm-up": round_of(users[:1], a.epochs, [1], a.timeout)}  # the worker starts (torch import)
                rounds["alone"] = round_of(users[:1], a.epochs, [101], a.timeout, server_pid=server.process.pid)
                print(f"alone: {rounds['alone']}", flush=True)
                rounds["together 2"] = round_of(users[:2], a.epochs, [201, 202], a.timeout)
                print(f"together 2: {rounds['together 2']}", flush=True)
                rounds["together 4"] = round_of(users, a.epochs, [401, 402, 403, 404], a.timeout, spectator,
                                                a.selections, server_pid=server.process.pid)
                print(f"together 4: {rounds['together 4']}", flush=True)
                browser.close()
        finally:
            server.stop()
    alone = rounds["alone"]["all_s"]
    rows = []
    for name in ("alone", "together 2", "together 4"):
        r = rounds[name]
        ratio = None if r["all_s"] is None or alone is None else r["all_s"] / alone
        goal = GOALS.get(name)
        verdict = "—" if goal is None or a.quick else ("MISS" if ratio is None else ("PASS" if ratio <= goal else "MISS"))
        rows.append({"round": name, "sessions": r["sessions"],
                     "all runs done, s": "not all within the timeout" if r["all_s"] is None else r["all_s"],
                     "× alone": "—" if ratio is None else ratio, "goal": f"≤ {goal}" if goal else "—", "verdict": verdict})
    during = rounds["together 4"]["selection_s"]
    sel_ratio = statistics.median(during) / statistics.median(idle) if during and idle else None
    rows.append({"round": "spectator selection", "sessions": 1,
                 "all runs done, s": f"idle {statistics.median(idle):.3f} / during {statistics.median(during):.3f}",
                 "× alone": sel_ratio, "goal": f"≤ {GOALS['selection']} × idle",
                 "verdict": "—" if a.quick or sel_ratio is None else ("PASS" if sel_ratio <= GOALS["selection"]
                                                                    else "MISS")})
    print()
    print_table(rows)
    problems = [f"{name}: a run did not finish" for name, r in rounds.items() if r["all_s"] is None]
    out = write_json(a.out, {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": a.quick,
                             "args": vars(a), "idle_selection_s": idle, "rounds": rounds, "table": rows,
                             "problems": problems})
    print(f"\nwrote {out}")
    if a.quick and problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
