"""App memory: resident memory of the real Streamlit server on a 20k-image ResNet-18 project.

Measured as docs/deployment.md's Streamlit Cloud section does: the server's own ``VmRSS`` (resident now)
and ``VmHWM`` (peak so far) from ``/proc/<pid>/status``, in GB of 10⁹ bytes. The project:

* data: a MedMNIST-layout ``.npz`` (uncompressed) in a temporary folder: the real PneumoniaMNIST training
  images (uint8 28×28; the file's are sorted by class, so in a seeded order) cycled to ``--train-images``
  rows with a seeded integer jitter of ±2, their labels with them; val and test as in the real file;
  ``class_names`` normal / pneumonia;
* model: a seeded, untrained two-class ResNet-18 ``state_dict`` with a JSON sidecar
  (``input_shape`` 3 × ``--input-size`` × ``--input-size``, ImageNet normalisation); the app reads the
  28×28 grayscale images as that input batch by batch (``plint_core.inputs.open_inputs``);
* a fresh run store, the default t-SNE (``--quick``: the small test preset), ``PLINT_DEVICE=cpu``.

``python -m streamlit run app.py`` is started on 127.0.0.1 (``plint_app.serve.start_streamlit``) and
driven in Debian's Chromium: Model & data (the project loads and the embedding job starts) → wait until
the embedding is fitted → Embedding & interventions: box-select part of class ``normal`` with the mouse
(the box shrinks until at most half of ``--train-points`` are selected), set dx, commit the move →
Fine-tune: ``--epochs``, "Training points" ``--train-points`` (More settings), Run → wait for the
outcome. The memory of the server and of its child processes (the worker process that fits and
fine-tunes, and its loader workers, if any) is read at each of these stages, and the wall seconds of the
fit (first page load → "is ready") and of the run (Run click → outcome) are timed. A container is charged
for all of them together, each page once: the judged figure is the largest sum of their ``Pss``
(``/proc/<pid>/smaps_rollup``: a page that several of them map, such as torch's libraries in the server and in
its worker, is divided among them), sampled every 0.5 s from the start to the end of the first run: ≤ 2.5 GB
(the issue's goal; not judged with ``--quick``). The largest sum of their ``VmRSS``, which counts shared pages
once per process, is printed beside it as an upper bound. The server runs with ``PLINT_MEMORY_GB=2.7``
(``--memory-gb``: Streamlit Cloud's limit), and the run uses the batch size the Fine-tune page presets for it
(16 for 224-pixel images on such a host: :func:`plint_core.finetune.preset_batch_size`); ``--batch-sizes 32,16``
instead makes one run per batch size, in that order, on the same move (the later ones are reported, not
judged). Chromium's own memory is not counted.

Usage::

    python bench/bench_app_memory.py [--train-images 20000] [--input-size 224] [--train-points 1000]
                                     [--epochs 1] [--batch-sizes preset] [--memory-gb 2.7] [--threads N]
                                     [--timeout-min 180] [--out NAME.json]
    python bench/bench_app_memory.py --quick    # 600 images at 64 px, small t-SNE, 200 training points

On a 2-core CPU at 224 px the embedding job pushes every image through ResNet-18 (about 60 images/s),
so 20,000 images take 7–10 minutes before the t-SNE fit; fine-tuning runs at about 25 images/s.
Writes bench/out/app_memory.json (``--quick``: app_memory_quick.json) and keeps the server's log in
bench/out/ (``*_server.log``; a failure also saves ``*_failure.png``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (  # also puts the repo on sys.path
    OUT,
    REPO,
    machine,
    print_table,
    write_json,
    write_replicated_pneumonia,
    write_resnet18,
)

from plint_app.serve import EPOCHS_LABEL, drag, launch_chromium, start_streamlit
from plint_core.store import RunStore

GOAL_GB = 2.5
SAMPLE_SECONDS = 0.5
"""How often the sum of the server's and its workers' resident memory is read."""
SELECT_CLASS = "normal"
SMALL_TSNE = {"hidden": [64, 64], "n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 30, "n_negatives": 16,
              "learning_rate": 3e-3}
"""The small t-SNE preset of the app tests and ``bench_app.py --quick``."""
QUICK = {"train_images": 600, "input_size": 64, "train_points": 200, "epochs": 1, "timeout_min": 10.0}
VIEWPORT = {"width": 1400, "height": 1000}
BOX_FRACTIONS = (0.6, 0.3, 0.15, 0.08, 0.04, 0.02)
"""Box sizes tried, as the share of the class's x and y quantile range around its median, largest first."""
STEP_TIMEOUT_MS = 120_000
"""For page changes that need no long computation (a page opened, a selection, a committed move)."""

QUANTILE_BOX_JS = """([name, f]) => {
  const gd = document.querySelector('.js-plotly-plot');
  const trace = gd && gd._fullData && gd._fullData.find(t => t.name === name);
  if (!trace || !gd._fullLayout || !gd.querySelector('.nsewdrag')) return null;
  const q = (arr, p) => { const s = Array.from(arr).sort((a, b) => a - b); return s[Math.floor(p * (s.length - 1))]; };
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, lo = 0.5 - f / 2, hi = 0.5 + f / 2;
  const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return [r.left + xa.l2p(q(trace.x, lo)), r.top + ya.l2p(q(trace.y, hi)),
          r.left + xa.l2p(q(trace.x, hi)), r.top + ya.l2p(q(trace.y, lo))];
}"""
"""Pixel box ``[x0, y0, x1, y1]`` around the middle share ``f`` of a trace's x and y values; ``null`` until drawn."""
X_SPAN_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  const r = gd && gd._fullLayout && gd._fullLayout.xaxis.range; return r ? r[1] - r[0] : null; }"""
TRACE_NAMES_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return gd && gd._fullData ? gd._fullData.map(t => t.name) : []; }"""
SELECTION_RE = re.compile(r"^Selection: ([\d,]+) training points$")


# The project ------------------------------------------------------------------------------------

def app_env(a: argparse.Namespace, data: Path, model: Path, runs: Path) -> dict[str, str]:
    env = {"PLINT_DATA": str(data), "PLINT_MODEL": str(model), "PLINT_RUNS_DIR": str(runs), "PLINT_DEVICE": "cpu"}
    if a.quick:
        env["PLINT_TSNE_CONFIG"] = json.dumps(SMALL_TSNE)
    if a.threads:
        env["PLINT_TORCH_THREADS"] = str(a.threads)
    if a.memory_gb:
        env["PLINT_MEMORY_GB"] = str(a.memory_gb)
    return env


def check_project(env: dict[str, str]) -> dict:
    """Load the configured project here first, so a bad configuration fails before the server starts."""
    from plint_app.config import AppConfig
    from plint_app.project import Project

    proj = Project.load(AppConfig.from_env(env))
    return {"train": len(proj.data.train), "test": len(proj.data.test), "input_shape": list(proj.data.input_shape),
            "layer": proj.default_layer, "classes": list(proj.data.class_names), "tsne": proj.config.tsne.to_dict()}


# The server's memory ------------------------------------------------------------------------------

def status_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB, from ``/proc/<pid>/status``."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def pss_kib(pid: int) -> int:
    """``Pss`` of ``pid`` in KiB (``/proc/<pid>/smaps_rollup``): its resident pages, each page it shares with
    other processes (torch's libraries, mapped by the server and its worker alike) divided among them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


def descendants(pid: int) -> list[int]:
    """Every live descendant process of ``pid``."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def gb(kib: int) -> float:
    return kib * 1024 / 1e9


def check_pid(pid: int) -> str:
    """The server's command line; exits unless ``pid`` is the Python process running Streamlit itself."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    exe = os.path.realpath(f"/proc/{pid}/exe")
    cmd = " ".join(a.decode() for a in argv if a)
    if "python" not in Path(exe).name or b"streamlit" not in argv:
        sys.exit(f"process {pid} is {exe} ({cmd}), not the Python process of the Streamlit server")
    return cmd


def children_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` and ``Pss`` of the descendants of ``pid`` (the worker processes), each summed, in KiB."""
    total = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    for child in descendants(pid):
        try:
            values = {**status_kib(child), "Pss": pss_kib(child)}
        except (OSError, KeyError):  # gone meanwhile
            continue
        for key, value in values.items():
            total[key] += value
    return total


def charged_kib(pid: int) -> dict[str, int]:
    """The server's and its descendants' ``VmRSS`` summed and ``Pss`` summed, in KiB."""
    kids = children_kib(pid)
    return {"VmRSS": status_kib(pid)["VmRSS"] + kids["VmRSS"], "Pss": pss_kib(pid) + kids["Pss"]}


class Stages:
    """The memory of the server and its worker processes at each stage, as table rows, and the largest sums of
    their resident sizes, sampled every :data:`SAMPLE_SECONDS` by a thread.

    What a container is charged is the sum of their ``Pss`` (each page once, however many of the processes map
    it: torch's shared libraries are mapped by the server and by its worker); the sum of their ``VmRSS`` counts
    those pages once per process and is printed beside it as an upper bound. Each row also gives the largest
    sampled sums since the previous row (``peak ... since last``)."""

    def __init__(self, pid: int, started: float):
        self.pid, self.started, self.rows = pid, started, []
        self.peak = {"VmRSS": 0, "Pss": 0}
        self.window = {"VmRSS": 0, "Pss": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _take(self) -> dict[str, int]:
        now = charged_kib(self.pid)
        with self._lock:
            for key, value in now.items():
                self.peak[key] = max(self.peak[key], value)
                self.window[key] = max(self.window[key], value)
        return now

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self._take()
            except (OSError, KeyError):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def record(self, stage: str) -> dict:
        mem, kids, now = status_kib(self.pid), children_kib(self.pid), self._take()
        with self._lock:
            window, self.window = dict(self.window), {"VmRSS": 0, "Pss": 0}
        row = {"stage": stage, "s since start": time.perf_counter() - self.started, "VmRSS GB": gb(mem["VmRSS"]),
               "VmHWM GB": gb(mem["VmHWM"]), "workers VmRSS GB": gb(kids["VmRSS"]),
               "workers VmHWM GB": gb(kids["VmHWM"]), "sum VmRSS GB": gb(now["VmRSS"]), "sum Pss GB": gb(now["Pss"]),
               "peak sum Pss since last GB": gb(window["Pss"]), "peak sum VmRSS since last GB": gb(window["VmRSS"])}
        self.rows.append(row)
        print(f"  {stage}: server VmRSS {row['VmRSS GB']:.3f} GB (VmHWM {row['VmHWM GB']:.3f}), workers VmRSS "
              f"{row['workers VmRSS GB']:.3f} GB (VmHWM {row['workers VmHWM GB']:.3f}); sum Pss now "
              f"{row['sum Pss GB']:.3f} GB, largest since the last stage {row['peak sum Pss since last GB']:.3f} GB "
              f"(VmRSS {row['peak sum VmRSS since last GB']:.3f}) at {row['s since start']:.0f} s", flush=True)
        return row


# Driving the app ----------------------------------------------------------------------------------

def wait_for_text(page, done: str | re.Pattern, fail: list[str | re.Pattern], timeout_s: float, server,
                  unlike: list[str] = ()) -> str:
    """Poll until ``done`` is on the page with a text not in ``unlike`` (returns it); raise on any of ``fail``
    or a dead server."""
    end = time.perf_counter() + timeout_s
    while time.perf_counter() < end:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}")
        for pattern in fail:
            hit = page.get_by_text(pattern)
            if hit.count():
                raise RuntimeError(f"the app says: {hit.first.text_content()}")
        hit = page.get_by_text(done)
        if hit.count() and (hit.first.text_content() or "") not in unlike:
            return hit.first.text_content() or ""
        time.sleep(1.0)
    raise TimeoutError(f"{done!r} did not appear within {timeout_s:.0f} s")


def open_page(page, title: str) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=STEP_TIMEOUT_MS)


def selection_count(page) -> int:
    hit = page.get_by_text(SELECTION_RE)
    return int(re.sub(r"\D", "", hit.first.text_content())) if hit.count() else 0


def select_group(page, most: int) -> int:
    """Box-select the middle of class :data:`SELECT_CLASS`, shrinking the box until ≤ ``most`` points."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_text(SELECTION_RE).first.wait_for(timeout=STEP_TIMEOUT_MS)
    count = 0
    for f in BOX_FRACTIONS:
        box = page.wait_for_function(QUANTILE_BOX_JS, arg=[SELECT_CLASS, f], timeout=STEP_TIMEOUT_MS).json_value()
        before = selection_count(page)
        drag(page, box)
        with contextlib.suppress(PlaywrightTimeout):  # the same count again, or an empty box: judged below
            page.wait_for_function(
                "(before) => [...document.querySelectorAll('p, strong')].some(e => { const m = e.textContent"
                ".match(/^Selection: ([\\d,]+) training points$/); return m && m[1] !== '0' && m[1] !== before; })",
                arg=f"{before:,}", timeout=30_000)
        time.sleep(0.5)
        count = selection_count(page)
        if 0 < count <= most:
            return count
    raise RuntimeError(f"no box selected between 1 and {most} points (last: {count})")


def commit_move(page) -> None:
    """Set dx to a fifth of the plot's width and commit the move of the selection."""
    span = page.wait_for_function(X_SPAN_JS, timeout=STEP_TIMEOUT_MS).json_value()
    dx = page.get_by_role("spinbutton", name="dx", exact=True)
    dx.fill(f"{0.2 * span:.2f}")
    dx.press("Enter")
    page.wait_for_function(f"() => ({TRACE_NAMES_JS})().includes('preview targets')", timeout=STEP_TIMEOUT_MS)
    page.get_by_role("button", name="Commit move").click()
    page.get_by_text("Move 1 committed").first.wait_for(timeout=STEP_TIMEOUT_MS)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function("([label, value]) => { const e = document.querySelector(`input[aria-label=\"${label}\"]`);"
                           " return e && Number(e.value) === value; }", arg=[label, value], timeout=STEP_TIMEOUT_MS)


def drive(page, server, a: argparse.Namespace, stages: Stages) -> dict:
    """The stages, as a user clicks them; returns the timings and what the page said."""
    timeout_s = a.timeout_min * 60
    t = time.perf_counter()
    page.goto(server.url)
    page.get_by_text("Training images").first.wait_for(timeout=timeout_s * 1000)
    stages.record("Model & data shown (project loaded, fit started)")
    ready = wait_for_text(page, re.compile(r"The embedding of layer .* is ready"),
                          ["could not be computed", "Cannot load the data or the model"], timeout_s, server)
    fit_s = time.perf_counter() - t
    stages.record("embedding ready")

    open_page(page, "Embedding & interventions")
    selected = select_group(page, max(a.train_points // 2, 1))
    commit_move(page)
    stages.record(f"scatter shown, move committed ({selected:,} points)")

    open_page(page, "Fine-tune")
    page.get_by_text("More settings").first.click()
    set_number(page, EPOCHS_LABEL, a.epochs)
    set_number(page, "Training points (0 = all)", a.train_points)
    runs = []
    for batch in a.batch_sizes:
        if batch != "preset":
            set_number(page, "Batch size", batch)
        shown = int(page.get_by_role("spinbutton", name="Batch size", exact=True).input_value())
        t = time.perf_counter()
        page.get_by_role("button", name="Run fine-tuning and control").click()
        outcome = wait_for_text(page, re.compile(r"^Run \w+ finished in [\d.]+ s"),
                                ["The run failed", "The run was cancelled", "there are no moves",
                                 re.compile(r"the embedding is (still being fitted|not computed yet)"),
                                 "a run is already in progress"], timeout_s, server,
                                unlike=[r["run_text"] for r in runs])
        page.get_by_text("Test accuracy before").first.wait_for(timeout=STEP_TIMEOUT_MS)
        runs.append({"batch_size": shown, "set": batch, "run_seconds": time.perf_counter() - t, "run_text": outcome})
        stages.record(f"run finished (outcome shown), batch {shown}{' (the preset)' if batch == 'preset' else ''}")
    return {"fit_seconds": fit_s, "fit_text": ready, "selected": selected, "runs": runs}


# Main ---------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-images", type=int, default=20000, help="training images in the data set")
    ap.add_argument("--input-size", type=int, default=224, help="the model's input height = width in pixels")
    ap.add_argument("--train-points", type=int, default=1000,
                    help="the Fine-tune page's 'Training points' (a stratified subset, moved points included)")
    ap.add_argument("--epochs", type=int, default=1, help="the Fine-tune page's epochs (PLI run and control each)")
    ap.add_argument("--batch-sizes", default="preset",
                    help="the Fine-tune page's 'Batch size' of each run, in order, comma-separated; 'preset' leaves "
                         "the page's preset (default; plint_core.finetune.preset_batch_size). The goal is judged up to "
                         "the end of the first run")
    ap.add_argument("--memory-gb", type=float, default=2.7,
                    help="the server's PLINT_MEMORY_GB (default 2.7, Streamlit Cloud's limit; 0: unset)")
    ap.add_argument("--threads", type=int, default=0, help="the server's PLINT_TORCH_THREADS (0: the app's choice)")
    ap.add_argument("--timeout-min", type=float, default=180.0,
                    help="longest wait for the project, the embedding fit and the run, each")
    ap.add_argument("--out", default=None, help="JSON file name in bench/out/ (default app_memory[_quick].json)")
    ap.add_argument("--quick", action="store_true",
                    help="600 images at 64 px, small t-SNE, 200 training points: a smoke run of about 2 minutes")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    a.out = a.out or f"app_memory{'_quick' if a.quick else ''}.json"
    try:
        a.batch_sizes = [b if b == "preset" else int(b) for b in str(a.batch_sizes).split(",")]
    except ValueError:
        ap.error(f"--batch-sizes {a.batch_sizes!r}: give whole numbers or 'preset', separated by commas")
    if not a.batch_sizes or min((b for b in a.batch_sizes if b != "preset"), default=1) < 1:
        ap.error("--batch-sizes: give at least one batch size of 1 or more")
    return a


def main() -> None:
    a = parse_args()
    stem = Path(a.out).stem
    log, failure = OUT / f"{stem}_server.log", OUT / f"{stem}_failure.png"
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'QUICK ' if a.quick else ''}app memory: {machine()}; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{a.train_images:,} training images, ResNet-18 at {a.input_size}×{a.input_size}, "
          f"{'small' if a.quick else 'default'} t-SNE, {a.train_points:,} training points, {a.epochs} epoch(s), "
          f"PLINT_MEMORY_GB={a.memory_gb or 'unset'}, batch sizes {','.join(map(str, a.batch_sizes))}",
          flush=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="plint_app_memory_") as tmp:
        tmp = Path(tmp)
        data, model, runs = tmp / f"pneumonia_{a.train_images}.npz", tmp / "resnet18.pt", tmp / "runs"
        write_replicated_pneumonia(data, a.train_images)
        write_resnet18(model, input_size=a.input_size)
        env = app_env(a, data, model, runs)
        project = check_project(env)
        print(f"project: {project['train']:,} train / {project['test']:,} test images, input "
              f"{'×'.join(map(str, project['input_shape']))}, layer {project['layer']}", flush=True)

        server = start_streamlit("app.py", env, log)
        try:
            command = check_pid(server.process.pid)
            stages = Stages(server.process.pid, server.started)
            stages.record("server answers")
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_page(viewport=VIEWPORT)
                try:
                    ui = drive(page, server, a, stages)
                except Exception as exc:
                    page.screenshot(path=str(failure), full_page=True)
                    raise RuntimeError(f"{exc}\nscreenshot: {failure}\nserver log: {log}\n"
                                       f"{log.read_text()[-3000:]}") from exc
                finally:
                    browser.close()
                    stages.stop()
        finally:
            server.stop()
        runs_done = RunStore(runs).list_runs()

    server_log = log.read_text()
    problems = sanity(a, ui, runs_done, server_log)
    for r in ui["runs"]:
        shown = r["run_text"].split()[1]  # "Run <id> finished in ..."
        stored = next((x for x in runs_done if x["run_id"].startswith(shown)), {})
        r["run"] = {k: stored.get(k) for k in ("run_id", "n_train", "n_moved", "finetune", "accuracy",
                                                              "seconds", "device")}
    peak = max(r["VmHWM GB"] for r in stages.rows)  # the server alone
    first = next(i for i, r in enumerate(stages.rows) if r["stage"].startswith("run finished"))
    judged = max(r["peak sum Pss since last GB"] for r in stages.rows[:first + 1])  # the fit and the first run
    judged_rss = max(r["peak sum VmRSS since last GB"] for r in stages.rows[:first + 1])
    print()
    print_table(stages.rows)
    print()
    print(f"embedding fit: {ui['fit_seconds']:.1f} s from the first page load to 'is ready' ({ui['fit_text']})")
    for r in ui["runs"]:
        run = r["run"]
        print(f"run at batch {r['batch_size']}: {r['run_seconds']:.1f} s from the Run click to the outcome "
              f"({r['run_text']}); {run.get('n_train', '?')} training images, {run.get('n_moved', '?')} moved, "
              f"epochs {(run.get('finetune') or {}).get('epochs', '?')}")
    verdict = ("not judged in a quick run" if a.quick else "PASS" if judged <= GOAL_GB else "MISS")
    print(f"server alone: peak VmHWM {peak:.3f} GB; server + workers through the fit and the first run (batch "
          f"{ui['runs'][0]['batch_size']}): largest sampled sum of Pss {judged:.3f} GB, of VmRSS {judged_rss:.3f} GB "
          f"(every {SAMPLE_SECONDS} s)")
    for r in stages.rows[first + 1:]:
        print(f"  later, {r['stage']}: largest sum of Pss {r['peak sum Pss since last GB']:.3f} GB, of VmRSS "
              f"{r['peak sum VmRSS since last GB']:.3f} GB")
    print(f"server + workers {judged:.3f} GB (Pss) vs goal ≤ {GOAL_GB} GB: {verdict}")
    out = write_json(a.out, {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": a.quick,
                             "args": vars(a), "server_command": command, "project": project, "goal_gb": GOAL_GB,
                             "stages": stages.rows, "peak_vmhwm_gb": peak, "judged_sum_pss_gb": judged,
                             "judged_sum_vmrss_gb": judged_rss, "peak_sum_pss_gb": gb(stages.peak["Pss"]),
                             "peak_sum_vmrss_gb": gb(stages.peak["VmRSS"]), "verdict": verdict, **ui,
                             "server_log": str(log), "problems": problems})
    print(f"wrote {out.relative_to(REPO)}; server log {log.relative_to(REPO)}")
    if problems:
        sys.exit("SANITY FAILURES:\n  " + "\n  ".join(problems))


def sanity(a: argparse.Namespace, ui: dict, runs: list[dict], server_log: str) -> list[str]:
    """Checks that must hold in any run, quick or full (not the goal)."""
    problems = []
    if "Traceback" in server_log:
        problems.append("the server log has a traceback")
    if len(runs) != len(a.batch_sizes):
        problems.append(f"{len(runs)} runs in the store, expected {len(a.batch_sizes)}")
    for run in runs:
        if run["finetune"].get("epochs") != a.epochs:
            problems.append(f"a run had {run['finetune'].get('epochs')} epochs, not {a.epochs}")
        if run["n_moved"] != ui["selected"]:
            problems.append(f"a run moved {run['n_moved']} points, {ui['selected']} were selected")
        if 0 < a.train_points < a.train_images and run["n_train"] != a.train_points:
            problems.append(f"a run trained on {run['n_train']} images, not --train-points {a.train_points}")
    shown = [r["batch_size"] for r in ui["runs"]]
    if sorted(r["finetune"].get("batch_size") for r in runs) != sorted(shown):
        problems.append(f"the runs' batch sizes are {[r['finetune'].get('batch_size') for r in runs]}, "
                        f"not the page's {shown}")
    return problems


if __name__ == "__main__":
    main()
