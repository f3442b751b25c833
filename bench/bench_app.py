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

    python bench/bench_app.py --sizes 250000,1000000 --no-reopen
        large maps (issue 21): beside the round trips, the sum of ``Pss`` of each server and its worker processes
        (largest sampled, every 0.5 s, as bench_app_memory.py counts it) and what the browser received over the
        websocket (MB in all, largest message); the map is thinned above PLINT_MAP_MAX_POINTS (default 60,000)

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


def drag_trips(page, repeats: int, traffic: "Traffic | None" = None) -> list[float]:
    """Switch to the *Drag* mode and drag the selected group ``repeats`` times, to and fro; seconds from each
    mouse-up to the new dx. ``traffic`` is marked once the drag map is drawn (its drags are counted from there)."""
    page.get_by_role("radio", name="Drag").click()
    page.wait_for_selector("div.plint-drag-map .nsewdrag", timeout=120_000)
    time.sleep(1.0)
    if traffic is not None:
        traffic.mark = traffic.total
    times = []
    for i in range(repeats):
        times.append(drag_round_trip(page, (60, 30) if i % 2 == 0 else (-40, -20)))
        time.sleep(0.3)
    return times


class PssSampler:
    """The largest sum of ``Pss`` of a server and its descendants (bench_app_memory.py's count), sampled every
    0.5 s in a thread until :meth:`stop`; GB of 10⁹ bytes."""

    def __init__(self, pid: int):
        import threading

        from bench_app_memory import charged_kib

        self.pid, self.peak, self.last, self._charged = pid, 0, 0, charged_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self._charged(self.pid)["Pss"]
            except (OSError, KeyError):
                pass
            self.peak = max(self.peak, self.last)
            self._stop.wait(0.5)

    def stop(self) -> tuple[float, float]:
        """(largest, last) sum of Pss, GB."""
        self._stop.set()
        self._thread.join()
        return self.peak * 1024 / 1e9, self.last * 1024 / 1e9


class Traffic:
    """What the page received over Streamlit's websocket: bytes in all, the largest message, and a mark to count
    from."""

    def __init__(self, page):
        self.total, self.largest, self.mark = 0, 0, 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        size = len(payload)
        self.total += size
        self.largest = max(self.largest, size)

    def since_mark(self) -> int:
        return self.total - self.mark


def measure_app(pw, script: str, env: dict[str, str], path: str, repeats: int, log: Path, drags: bool = False,
                chart_timeout_s: float = 900.0, tolerate: bool = False) -> dict:
    """Cold start and selection round trips of one app (and drag round trips, with ``drags``); the largest sum of
    Pss of its processes and what its page received. With ``tolerate``, a chart not drawn within ``chart_timeout_s``
    or a selection not answered within 60 s ends the measurement instead of the bench: what was measured is kept,
    and ``failed`` says what did not come."""
    server = start_streamlit(script, env, log)
    memory = PssSampler(server.process.pid)
    out = {"first_chart": None, "times": [], "selected": None, "drags": [], "first_mb": None, "selection_kb": None,
           "drag_kb": 0.0, "failed": None}
    try:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport=VIEWPORT)
        traffic = Traffic(page)
        try:
            page.goto(server.url + path)
            page.wait_for_function(CHART_READY_JS, timeout=chart_timeout_s * 1000, polling="raf")
            out["first_chart"] = time.perf_counter() - server.started
            page.wait_for_function(f"() => ({SELECTION_TEXT_JS})() !== null", timeout=120_000)
            out["first_mb"] = traffic.total / 1e6
            traffic.mark = traffic.total
            for i in range(repeats):
                out["times"].append(selection_round_trip(page, BOX_GROUPS[i % 2]))
                time.sleep(0.3)
            out["selected"] = page.evaluate(SELECTION_TEXT_JS)
            out["selection_kb"] = traffic.since_mark() / max(repeats, 1) / 1e3
            out["drags"] = drag_trips(page, repeats, traffic) if drags else []
            out["drag_kb"] = traffic.since_mark() / max(repeats, 1) / 1e3 if drags else 0.0
        except Exception as exc:  # playwright's TimeoutError among others
            if not tolerate:
                raise
            step = "first chart" if out["first_chart"] is None else f"selection {len(out['times']) + 1}"
            out["failed"] = f"{step} not reached: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            out["failed_after_s"] = time.perf_counter() - server.started
            print(f"  {script}: {out['failed']}", flush=True)
        out["largest_message_mb"] = traffic.largest / 1e6
        browser.close()
    finally:
        server.stop()
        out["pss_peak_gb"], out["pss_last_gb"] = memory.stop()
    out["ready"] = server.ready - server.started
    return out


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
    if not times:
        return "— (none measured)"
    return f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


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
    parser.add_argument("--sizes", help="training points to show, comma-separated (e.g. 250000,1000000; as --points)")
    parser.add_argument("--no-reopen", action="store_true", help="skip reopening a stored run")
    parser.add_argument("--cold-repeats", type=int, default=0,
                        help="per size, also launch plint and the bare app this many times more, alternating, for the "
                             "first chart alone (a cold start is one sample per app otherwise)")
    parser.add_argument("--bare-limit", type=float, default=900.0,
                        help="seconds the bare app may take to its first chart (a selection: 60 s); past them its "
                             "figures are left out and the printout says what did not come")
    parser.add_argument("--repeats", type=int, help="selections per app and size (default 7, quick 3)")
    parser.add_argument("--write", action="store_true", help=f"write the figures into {RESULTS.name}")
    parser.add_argument("--first-visit", action="store_true",
                        help="only a newcomer's first visit: first chart on an empty run store, plint vs bare app")
    args = parser.parse_args()
    if args.first_visit:
        first_visit(args.repeats or 3)
        return
    sizes = [int(v.replace("_", "")) for v in args.sizes.split(",")] if args.sizes else None
    points = args.points or sizes or ([2000, 20000] if args.quick else [2000, 20000, 50000])
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
            (OUT / f"app_{n}.json").write_text(json.dumps({"plint": plint}, indent=1))
            bare = measure_app(pw, "bench/bare_app.py", {"BENCH_POINTS": str(n)}, "/", repeats, OUT / f"bare_{n}.log",
                               chart_timeout_s=args.bare_limit, tolerate=True)
            for i in range(args.cold_repeats):
                plint.setdefault("cold", []).append(first_chart(pw, "app.py", env_for(runs, tsne, n), "/embedding",
                                                                OUT / f"app_{n}_cold{i}.log")[1])
                bare.setdefault("cold", []).append(first_chart(pw, "bench/bare_app.py", {"BENCH_POINTS": str(n)}, "/",
                                                               OUT / f"bare_{n}_cold{i}.log")[1])
                print(f"  cold start #{i + 1}: plint {plint['cold'][-1]:.2f} s, bare {bare['cold'][-1]:.2f} s, ratio "
                      f"{plint['cold'][-1] / bare['cold'][-1]:.2f}", flush=True)
            if args.cold_repeats:
                p_all = [plint["first_chart"], *plint["cold"]]
                b_all = [v for v in (bare["first_chart"], *bare["cold"]) if v is not None]
                print(f"  first chart, {len(p_all)} launches each: plint {fmt(p_all)}, bare {fmt(b_all)}; ratio of "
                      f"medians {statistics.median(p_all) / statistics.median(b_all):.2f}", flush=True)
            rows.append((n, plint, bare))
            print(f"N={n:>6}: plint {fmt(plint['times'])} [{plint['selected']} selected], "
                  f"bare {fmt(bare['times'])} [{bare['selected']} selected]; drag {fmt(plint['drags'])}; first chart plint "
                  f"{num(plint['first_chart'])} s, bare {num(bare['first_chart'])} s", flush=True)
            for name, m in (("plint", plint), ("bare", bare)):
                print(f"  {name}: largest sum of Pss {m['pss_peak_gb']:.3f} GB (at the end {m['pss_last_gb']:.3f}); "
                      f"page received {num(m['first_mb'], 1)} MB until the first chart (largest message "
                      f"{m['largest_message_mb']:.1f} MB), {num(m['selection_kb'], 0)} kB per selection"
                      + (f", {m['drag_kb']:.0f} kB per drag" if m["drags"] else "")
                      + (f"; {m['failed']} ({m['failed_after_s']:.0f} s after the launch)" if m.get("failed") else ""),
                      flush=True)
            (OUT / f"app_{n}.json").write_text(json.dumps({"plint": plint, "bare": bare}, indent=1))
        reopen = [] if args.no_reopen else measure_reopen(pw, env_for(runs, tsne), OUT / "app_reopen.log", repeats)
        if reopen:
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
        if not plint["times"] or not bare["times"] or not plint["drags"]:
            lines.append(f"| {n:,} | {fmt(plint['times'])} | {fmt(bare['times'])} | — | {fmt(plint['drags'])} | "
                         f"{plint['selected']} / {bare['selected']} | {num(plint['first_chart'])} s | "
                         f"{num(bare['first_chart'])} s |")
            continue
        p, b = statistics.median(plint["times"]), statistics.median(bare["times"])
        lines.append(f"| {n:,} | {p:.3f} s ({min(plint['times']):.3f}–{max(plint['times']):.3f}) | "
                     f"{b:.3f} s ({min(bare['times']):.3f}–{max(bare['times']):.3f}) | {p / b:.2f} | "
                     f"{statistics.median(plint['drags']):.3f} s ({min(plint['drags']):.3f}–"
                     f"{max(plint['drags']):.3f}) | {plint['selected']} / {bare['selected']} | {plint['first_chart']:.2f} s | "
                     f"{bare['first_chart']:.2f} s |")
    if reopen:
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
