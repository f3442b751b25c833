"""The Ray executor against a real cluster: run by ``tests/test_ray_executor.py`` inside a private network (and
process) namespace where a Ray head runs, it prints what it saw as one JSON object on its last line.

``python tests/ray_checks.py main OUT``: through ``PLINT_EXECUTOR=ray`` and ``PLINT_RAY_ADDRESS=auto``, a digits
run (and the same run in this process, for comparison), a run whose Ray worker is killed, cancels (waiting,
running, and a task that ignores the interrupt), a task whose code the workers cannot import, and the
sub-checks below, started from here.

``python tests/ray_checks.py lo-up``: bring up the loopback interface of a new network namespace (what ``ip link
set lo up`` does, without needing iproute2).

``python tests/ray_checks.py connect ADDRESS``: connect to an explicit address (with whatever token the
environment gives) and run one small task.

``python tests/ray_checks.py shipped OUT``: from a folder without plint, with plint only on this process's path:
a task fails with the message that says how to ship the code; with ``PLINT_RAY_RUNTIME_ENV`` naming plint's
folder as ``working_dir`` the stored embedding is found by a worker that got its code from there.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

# As the test suite: one torch thread, so results are bit for bit the same (on the same machine and kernels).
os.environ["OMP_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
WAIT = 120.0  # the longest any one step may take before it is reported as hanging


def until(condition, timeout: float = WAIT, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def step(results: dict, name: str, fn) -> None:
    """Run one check; an exception is recorded as its result instead of ending the script."""
    started = time.perf_counter()
    try:
        results[name] = fn()
    except BaseException as exc:  # noqa: BLE001 - recorded, so the test shows which check broke and how
        results[name] = {"exception": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    results.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 2)


def digits_settings():
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.finetune import FinetuneConfig

    tsne = TSNEConfig(n_iter=60, early_exaggeration_iter=20, pca_iter=10, n_landmarks=0, hidden=(32,))
    return tsne, FinetuneConfig(epochs=2, seed=3, device="cpu")


def check_digits(ex, out: Path) -> dict:
    """The same run in this process and through Ray: the stored metrics."""
    import torch

    from plint_core.data.loading import load_data
    from plint_core.intervention import separate_classes
    from plint_core.models.sources import load_model
    from plint_core.pipeline import load_run, prepare_embedding, run_intervention
    from plint_core.runs.tasks import RunTask, Source
    from plint_core.store import RunStore

    torch.set_num_threads(1)
    tsne, config = digits_settings()
    digits, demo = load_data("digits"), load_model("demo")
    here = RunStore(out / "here")
    emb = prepare_embedding(digits, demo, seed=1, config=tsne, store=here, device="cpu")
    spec = separate_classes(emb.train_xy, digits.train.labels, 3, 8, distance=emb.scale)
    local = run_intervention(digits, demo, emb, spec, config, store=here)

    reports = []
    handle = ex.submit(RunTask(Source("demo", "digits"), str(out / "store"), spec, config, seed=1, config=tsne,
                               device="cpu"), on_report=reports.append)
    outcome = handle.outcome()
    remote = load_run(RunStore(out / "store"), outcome.key)
    keys = ("accuracy", "confusion", "per_class", "target_distance", "n_train", "n_moved")
    written = json.loads((out / "store" / "runs" / outcome.key / "result.json").read_text())
    return {"state": handle.state, "run_id": outcome.key, "local_run_id": local.run_id,
            "cache_hit": outcome.cache_hit, "where": handle.where, "stages": sorted({r.stage for r in reports}),
            "different": [k for k in keys if remote.result[k] != local.result[k]],
            "executor": written["executor"], "local_executor": local.result["executor"],
            "train_targets_equal": bool((remote.train_targets == local.train_targets).all()),
            "spec": spec}


def check_killed(ex, out: Path, spec) -> dict:
    """A run whose worker is killed mid fine-tuning: failed, and the store as it was."""
    from dataclasses import replace

    from plint_core.runs.tasks import RunTask, Source
    from plint_core.store import RunStore

    tsne, config = digits_settings()
    store = RunStore(out / "store")
    before = [r["run_id"] for r in store.list_runs()]
    handle = ex.submit(RunTask(Source("demo", "digits"), str(out / "store"), spec, replace(config, epochs=400),
                               seed=1, config=tsne, device="cpu"))
    until(lambda: handle.status.stage in ("control", "pli") and handle.status.fraction > 0 or not handle.running,
          what="fine-tuning (the control runs first)")
    killed = handle.running
    if killed:
        os.kill(int(re.search(r"pid (\d+)", handle.where).group(1)), signal.SIGKILL)
    finished = handle.wait(WAIT)
    base = out / "store" / "runs"
    return {"killed": killed, "finished": finished, "state": handle.state, "error": handle.error,
            "runs_before": before, "runs_after": [r["run_id"] for r in store.list_runs()],
            "visible": sorted(p.name for p in base.iterdir() if not p.name.startswith(".")),
            "hidden": sorted(p.name for p in base.iterdir() if p.name.startswith("."))}


def check_cancel(out: Path) -> dict:
    """One task at a time (2 CPUs each): cancel one waiting, then the running one; the next still runs."""
    from executor_tasks import Sleep

    from plint_core.runs.ray_executor import RayExecutor

    log = out / "cancel.log"
    ex = RayExecutor("auto", cpus=2)
    try:
        running = ex.submit(Sleep("long", str(log), seconds=60))
        waiting = ex.submit(Sleep("never", str(log), seconds=0.1))
        after = ex.submit(Sleep("after", str(log), seconds=0.1))
        until(lambda: running.status.stage == "working", what="the long task to work")
        places = [waiting.place, after.place]
        waiting.cancel()
        cancelled_at_once = waiting.state
        place_after = after.place
        running.cancel()
        running.wait(WAIT)
        result = after.outcome()
        return {"places": places, "waiting": cancelled_at_once, "place_after": place_after,
                "running": running.state, "running_where": running.where, "after": result,
                "started": [line.split()[1] for line in log.read_text().splitlines()]}
    finally:
        ex.shutdown()


def check_deaf() -> dict:
    """A task that swallows the interrupt: its worker is killed after the grace; the task counts as cancelled."""
    from executor_tasks import Deaf

    from plint_core.runs.ray_executor import RayExecutor

    ex = RayExecutor("auto", cancel_grace=1.0)
    try:
        handle = ex.submit(Deaf())
        until(lambda: handle.status.stage == "deaf", what="the deaf task to start")
        handle.cancel()
        handle.wait(WAIT)
        return {"state": handle.state, "error": handle.error}
    finally:
        ex.shutdown()


def check_unimportable(ex, out: Path) -> dict:
    """A task whose module only this process can import."""
    folder = out / "driver_only"
    folder.mkdir()
    (folder / "driver_only_task.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Hidden:\n    kind: str = 'test'\n"
        "    label: str = 'hidden task'\n\n    def run(self, report, cancel):\n        return 'ran'\n")
    sys.path.insert(0, str(folder))
    from driver_only_task import Hidden

    handle = ex.submit(Hidden())
    handle.wait(WAIT)
    return {"state": handle.state, "error": handle.error}


def check_failures(ex, spec) -> dict:
    """A PlintError, a bug, a crash, and a run on a GPU on a cluster without one."""
    from executor_tasks import Fail

    from plint_core.runs.tasks import RunTask, Source

    handles = {how: ex.submit(Fail(how)) for how in ("expected", "bug", "crash")}
    handles["cuda"] = ex.submit(RunTask(Source("demo", "digits"), "store", spec, device="cuda"))
    for handle in handles.values():
        handle.wait(WAIT)
    return {how: {"state": h.state, "error": h.error} for how, h in handles.items()}


def run_json(args: list[str], env: dict, cwd: Path, timeout: float = WAIT) -> dict:
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"exception": f"exit code {proc.returncode}", "stdout": proc.stdout[-2000:],
                "stderr": proc.stderr[-4000:]}


def main(out: Path) -> dict:
    from plint_core.runs.ray_executor import RayExecutor
    from plint_core.runs.select import make_executor

    results: dict = {}
    address = "127.0.0.1:6379"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Explicit address: with the cluster's token, and with a wrong one (which takes Ray ~20 s to give up, so
    # these run beside the checks below).
    with_token = subprocess.Popen([sys.executable, __file__, "connect", address], env=env, cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wrong_token = subprocess.Popen([sys.executable, __file__, "connect", address],
                                   env={**env, "RAY_AUTH_TOKEN": "0" * 64}, cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    os.environ.update({"PLINT_EXECUTOR": "ray", "PLINT_RAY_ADDRESS": "auto"})
    ex = make_executor()
    results["factory"] = {"type": type(ex).__name__, "gpus": ex.gpus, "cpus": ex.cpus}
    try:
        step(results, "digits", lambda: check_digits(ex, out))
        spec = results["digits"].pop("spec", None)
        if spec is not None:
            step(results, "killed", lambda: check_killed(ex, out, spec))
            step(results, "failures", lambda: check_failures(ex, spec))
        step(results, "unimportable", lambda: check_unimportable(ex, out))
        step(results, "cancel", lambda: check_cancel(out))
        step(results, "deaf", check_deaf)
    finally:
        ex.shutdown()
    assert isinstance(ex, RayExecutor)
    for name, proc in (("with_token", with_token), ("wrong_token", wrong_token)):
        try:
            stdout, _ = proc.communicate(timeout=WAIT)
            results[name] = json.loads(stdout.strip().splitlines()[-1])
        except Exception as exc:  # noqa: BLE001 - recorded
            proc.kill()
            results[name] = {"exception": f"{type(exc).__name__}: {exc}"}
    elsewhere = out / "elsewhere"
    elsewhere.mkdir()
    step(results, "shipped", lambda: run_json([__file__, "shipped", str(out)], env, elsewhere))
    return results


def lo_up() -> dict:
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))
    return {"lo": "up"}


def connect(address: str) -> dict:
    """Connect from a thread other than the main one, as the app does (its jobs' threads make the executor)."""
    import threading

    from executor_tasks import Sleep

    from plint_core.errors import PlintError
    from plint_core.runs.ray_executor import RayExecutor

    started, made = time.perf_counter(), {}

    def make() -> None:
        try:
            made["executor"] = RayExecutor(address)
        except PlintError as exc:
            made["error"] = str(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if "error" in made:
        return {"error": made["error"], "seconds": round(time.perf_counter() - started, 1)}
    ex = made["executor"]
    try:
        handle = ex.submit(Sleep("explicit", os.devnull, seconds=0.1))
        return {"outcome": handle.outcome(), "where": handle.where}
    finally:
        ex.shutdown()


def shipped(out: Path) -> dict:
    """From a folder without plint: first without, then with a runtime_env that ships it."""
    from plint_core.runs.select import make_executor
    from plint_core.runs.tasks import EmbeddingTask, Source

    tsne, _ = digits_settings()
    task = EmbeddingTask(Source("demo", "digits"), str(out / "store"), seed=1, config=tsne, device="cpu")
    results = {}
    os.environ.update({"PLINT_EXECUTOR": "ray", "PLINT_RAY_ADDRESS": "auto"})
    ex = make_executor()
    try:
        handle = ex.submit(task)
        handle.wait(WAIT)
        results["bare"] = {"state": handle.state, "error": handle.error}
    finally:
        ex.shutdown()
    os.environ["PLINT_RAY_RUNTIME_ENV"] = json.dumps(
        {"working_dir": str(REPO), "excludes": ["/.git", "/tests/", "/bench/", "/docs/", "/runs/", "__pycache__/"]})
    ex = make_executor()
    try:
        handle = ex.submit(task)
        handle.wait(WAIT)
        results["working_dir"] = {"state": handle.state, "error": handle.error,
                                  "cache_hit": handle.result.cache_hit if handle.result else None}
    finally:
        ex.shutdown()
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    mode = sys.argv[1]
    if mode == "lo-up":
        found = lo_up()
    elif mode == "main":
        found = main(Path(sys.argv[2]))
    elif mode == "connect":
        found = connect(sys.argv[2])
    else:
        found = shipped(Path(sys.argv[2]))
    print(json.dumps(found, default=str), flush=True)
