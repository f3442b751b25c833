"""Dashboard benchmark, measured in Debian's Chromium with Playwright.

* cold start: ``streamlit run app.py`` launched → server answers → first scatter drawn
  (the embedding is already in the run store, as after any first visit);
* selection round trip: mouse-up of a box selection → the new selection count on screen,
  at N = 2k / 20k / 50k training points, beside a bare one-chart app (``bench/bare_app.py``)
  measured in the same run with the same boxes;
* drag round trip (plint only): in the *Drag* mode, mouse-up after dragging the selected group
  → the new dx on screen, on the same server right after its selections;
* reopening a stored run: "Open in Compare" → three confusion matrices drawn.

N points come from ``PLINT_SCALE_POINTS``: the digits training split replicated with
pixel jitter and projected through the t-SNE network fitted once on the real digits.

    python bench/bench_app.py            # default t-SNE, 2k/20k/50k, 7 selections each
    python bench/bench_app.py --quick    # small t-SNE preset, 2k/20k, 3 selections each
    add --write to put the figures into bench/RESULTS.md, section "Dashboard"

    python bench/bench_app.py --first-visit [--repeats 3]
        a newcomer's first visit: ``streamlit run app.py`` on an empty run store (a fresh folder each time),
        default settings, straight to the Embedding page → first scatter drawn, beside the bare app with as many
        points (the digits' 1,437 training points), alternating plint and bare; prints, never writes RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plint_app.serve import (  # noqa: E402
    SELECTION_TEXT_JS,
    drag_round_trip,
    launch_chromium,
    selection_round_trip,
    start_streamlit,
)

OUT = REPO / "bench" / "out"
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Dashboard"
SMALL_TSNE = {"hidden": [64, 64], "n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 30, "n_negatives": 16,
              "learning_rate": 3e-3}
VIEWPORT = {"width": 1400, "height": 1000}
BOX_GROUPS = ("0", "5")  # alternate between two classes so every selection differs from the last
CHART_READY_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return !!(gd && gd._fullData && gd._fullData.length >= 10 && gd.querySelector('.nsewdrag')); }"""
HEATMAPS_READY_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(gd => gd._fullData.length && gd._fullData[0].type === 'heatmap'
                && gd.querySelectorAll('.heatmaplayer text').length === 100).length >= 3"""


def prepare_store(runs: Path, tsne: dict) -> str:
    """Fit (or find) the digits embedding in ``runs`` and make sure one run is stored; returns that run's id."""
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.finetune import FinetuneConfig
    from plint_core.intervention import InterventionSpec, Move, Selection
    from plint_core.pipeline import run_intervention

    project = Project.load(AppConfig.from_env(env_for(runs, tsne)))
    t = time.perf_counter()
    emb = project.embedding(project.default_layer, 0)
    print(f"embedding ready in {time.perf_counter() - t:.1f} s (cache hit: {emb.cache_hit})", flush=True)
    spec = InterventionSpec((Move(Selection(classes=(3,)), (emb.scale * 0.3, 0.0)),))
    res = run_intervention(project.data, project.bundle, emb, spec, FinetuneConfig(epochs=2, device="cpu"),
                           store=project.store)
    return res.run_id


def env_for(runs: Path, tsne: dict, points: int = 0) -> dict[str, str]:
    return {"PLINT_RUNS_DIR": str(runs), "PLINT_DEVICE": "cpu", "PLINT_SCALE_POINTS": str(points),
            "PLINT_TSNE_CONFIG": json.dumps(tsne)}


def round_trips(page, repeats: int) -> list[float]:
    """Seconds from mouse-up to the new selection count, for ``repeats`` box selections."""
    times = []
    for i in range(repeats):
        times.append(selection_round_trip(page, BOX_GROUPS[i % 2]))
        time.sleep(0.3)
    return times


def drag_trips(page, repeats: int) -> list[float]:
    """Switch to the *Drag* mode and drag the selected group ``repeats`` times, to and fro; seconds from each
    mouse-up to the new dx."""
    page.get_by_role("radio", name="Drag").click()
    page.wait_for_selector("div.plint-drag-map .nsewdrag", timeout=120_000)
    times = []
    for i in range(repeats):
        times.append(drag_round_trip(page, (60, 30) if i % 2 == 0 else (-40, -20)))
        time.sleep(0.3)
    return times


def measure_app(pw, script: str, env: dict[str, str], path: str, repeats: int, log: Path, drags: bool = False) -> dict:
    """Cold start and selection round trips of one app (and drag round trips, with ``drags``)."""
    server = start_streamlit(script, env, log)
    try:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server.url + path)
        page.wait_for_function(CHART_READY_JS, timeout=300_000, polling="raf")
        first_chart = time.perf_counter() - server.started
        page.wait_for_function(f"() => ({SELECTION_TEXT_JS})() !== null", timeout=60_000)
        times = round_trips(page, repeats)
        n_selected = page.evaluate(SELECTION_TEXT_JS)
        dragged = drag_trips(page, repeats) if drags else []
        browser.close()
    finally:
        server.stop()
    return {"ready": server.ready - server.started, "first_chart": first_chart, "times": times, "selected": n_selected,
            "drags": dragged}


def measure_reopen(pw, env: dict[str, str], log: Path, repeats: int) -> list[float]:
    """Seconds from clicking "Open in Compare" (Fine-tune page, run history) to three confusion matrices drawn."""
    server = start_streamlit("app.py", env, log)
    times = []
    try:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport=VIEWPORT)
        for _ in range(repeats):
            page.goto(server.url + "/finetune")
            button = page.get_by_role("button", name="Open in Compare")
            button.wait_for(timeout=120_000)
            t = time.perf_counter()
            button.click()
            page.wait_for_function(HEATMAPS_READY_JS, timeout=60_000, polling="raf")
            times.append(time.perf_counter() - t)
        browser.close()
    finally:
        server.stop()
    return times


def first_chart(pw, script: str, env: dict[str, str], path: str, log: Path) -> tuple[float, float]:
    """Launch ``script`` → (server answers its health check, first scatter drawn), seconds from the launch."""
    server = start_streamlit(script, env, log)
    try:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server.url + path)
        page.wait_for_function(CHART_READY_JS, timeout=600_000, polling="raf")
        chart = time.perf_counter() - server.started
        browser.close()
    finally:
        server.stop()
    return server.ready - server.started, chart


def first_visit(repeats: int) -> None:
    """A newcomer's first visit on a fresh run store, against the bare app with as many points, ``repeats`` times."""
    import shutil

    from common import machine
    from playwright.sync_api import sync_playwright

    from plint_core.data.loading import load_data

    n = len(load_data("digits").train)  # the points the Embedding page draws by default (test points hidden)
    OUT.mkdir(parents=True, exist_ok=True)
    plint, bare = [], []
    print(f"first visit, fresh store, {n} points; {machine()}", flush=True)
    with sync_playwright() as pw:
        for i in range(repeats):
            runs = OUT / "first_visit_runs"
            shutil.rmtree(runs, ignore_errors=True)
            env = {"PLINT_RUNS_DIR": str(runs), "PLINT_DEVICE": "cpu"}
            plint.append(first_chart(pw, "app.py", env, "/embedding", OUT / f"first_visit_{i}.log"))
            bare.append(first_chart(pw, "bench/bare_app.py", {"BENCH_POINTS": str(n)}, "/",
                                    OUT / f"first_visit_bare_{i}.log"))
            print(f"  #{i + 1}: plint first chart {plint[-1][1]:.2f} s (health {plint[-1][0]:.2f} s), bare "
                  f"{bare[-1][1]:.2f} s (health {bare[-1][0]:.2f} s); ratio {plint[-1][1] / bare[-1][1]:.2f}",
                  flush=True)
    p, b = [c for _, c in plint], [c for _, c in bare]
    print(f"first chart on a fresh store: plint {fmt(p)}, bare {fmt(b)}; ratio of medians "
          f"{statistics.median(p) / statistics.median(b):.2f}", flush=True)


def fmt(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})"


def write_section(text: str) -> None:
    """Replace (or append) the "Dashboard" section of RESULTS.md, leaving the others untouched."""
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small t-SNE preset, 2k/20k points, 3 selections")
    parser.add_argument("--points", type=int, nargs="*", help="training points to show (default 2000 20000 50000)")
    parser.add_argument("--repeats", type=int, help="selections per app and size (default 7, quick 3)")
    parser.add_argument("--write", action="store_true", help=f"write the figures into {RESULTS.name}")
    parser.add_argument("--first-visit", action="store_true",
                        help="only a newcomer's first visit: first chart on an empty run store, plint vs bare app")
    args = parser.parse_args()
    if args.first_visit:
        first_visit(args.repeats or 3)
        return
    points = args.points or ([2000, 20000] if args.quick else [2000, 20000, 50000])
    repeats = args.repeats or (3 if args.quick else 7)
    # Spelled out even for the default, so the servers use the very config fitted here (and the key matches).
    from plint_core.embedding.parametric_tsne import TSNEConfig

    tsne = SMALL_TSNE if args.quick else TSNEConfig().to_dict()
    runs = OUT / ("app_runs_quick" if args.quick else "app_runs")
    OUT.mkdir(parents=True, exist_ok=True)
    run_id = prepare_store(runs, tsne)
    print(f"stored run {run_id}", flush=True)

    from common import machine
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        for n in points:
            plint = measure_app(pw, "app.py", env_for(runs, tsne, n), "/embedding", repeats, OUT / f"app_{n}.log",
                                drags=True)
            bare = measure_app(pw, "bench/bare_app.py", {"BENCH_POINTS": str(n)}, "/", repeats, OUT / f"bare_{n}.log")
            rows.append((n, plint, bare))
            print(f"N={n:>6}: plint {fmt(plint['times'])} [{plint['selected']} selected], "
                  f"bare {fmt(bare['times'])} [{bare['selected']} selected]; drag {fmt(plint['drags'])}; first chart plint "
                  f"{plint['first_chart']:.2f} s, bare {bare['first_chart']:.2f} s", flush=True)
        reopen = measure_reopen(pw, env_for(runs, tsne), OUT / "app_reopen.log", repeats)
        print(f"reopen a stored run: {fmt(reopen)}", flush=True)

    lines = [SECTION, "",
             f"`python bench/bench_app.py{' --quick' if args.quick else ''}` — {time.strftime('%Y-%m-%d %H:%M')}, {machine()}; "
             "Debian Chromium 156 headless (software WebGL), Streamlit 1.67, Plotly 7.1. "
             f"t-SNE: {'small test preset' if args.quick else 'the default config'}, fitted once and loaded from the "
             "run store. Medians of "
             f"{repeats} box selections (min–max in brackets); the bare app is `bench/bare_app.py` (Plotly "
             "Express figure rebuilt on every rerun), measured in the same run with the same boxes.", "",
             "Cold start: from launching `streamlit run` (then a fresh Chromium) to the first scatter drawn, "
             "the embedding already in the run store; the servers answered their health check after "
             f"{statistics.median([p['ready'] for _, p, _ in rows]):.2f} s (plint) and "
             f"{statistics.median([b['ready'] for _, _, b in rows]):.2f} s (bare), medians.", "",
             "| training points | selection round trip, plint | same, bare one-chart app | plint / bare | "
             "drag round trip, plint | points selected (plint / bare) | cold start → first chart, plint | same, bare |",
             "|---|---|---|---|---|---|---|---|"]
    for n, plint, bare in rows:
        p, b = statistics.median(plint["times"]), statistics.median(bare["times"])
        lines.append(f"| {n:,} | {p:.3f} s ({min(plint['times']):.3f}–{max(plint['times']):.3f}) | "
                     f"{b:.3f} s ({min(bare['times']):.3f}–{max(bare['times']):.3f}) | {p / b:.2f} | "
                     f"{statistics.median(plint['drags']):.3f} s ({min(plint['drags']):.3f}–"
                     f"{max(plint['drags']):.3f}) | {plint['selected']} / {bare['selected']} | {plint['first_chart']:.2f} s | "
                     f"{bare['first_chart']:.2f} s |")
    lines += ["", f"Reopening a stored run (Fine-tune → \"Open in Compare\" → three confusion matrices drawn): "
                  f"median {statistics.median(reopen):.3f} s (min {min(reopen):.3f}, max {max(reopen):.3f}, "
                  f"{len(reopen)} times).", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(text)
        print(f"wrote the {SECTION!r} section of {RESULTS}")


if __name__ == "__main__":
    main()
