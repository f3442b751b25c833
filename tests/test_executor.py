"""The local executor: worker processes, first in first out, progress, cancel queued and running, failures,
and a digits run through a worker equal to one in this process."""
from __future__ import annotations

import json

import numpy as np
import pytest
from executor_tasks import Fail, Hold, Inspect, Pid, Sleep, Stubborn

from plint_core.errors import PlintError, RunCancelled
from plint_core.runs.executor import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from plint_core.runs.local import RETIRE_ENV, WORKERS_ENV, LocalExecutor, default_slots, retire_threshold


@pytest.fixture
def executor():
    ex = LocalExecutor(1, threads=1, cancel_grace=1.0)
    yield ex
    ex.shutdown()


def starts(log):
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_tasks_run_first_in_first_out_and_report_their_place(executor, tmp_path):
    log = tmp_path / "log"
    reports = []
    a = executor.submit(Sleep("a", str(log), seconds=0.6), on_report=reports.append)
    b, c = (executor.submit(Sleep(n, str(log), seconds=0.1)) for n in "bc")
    assert a.state == RUNNING and (b.state, b.place) == (QUEUED, 1) and (c.state, c.place) == (QUEUED, 2)
    assert [h.outcome() for h in (a, b, c)] == ["a", "b", "c"]
    lines = starts(log)
    assert [line[1] for line in lines] == ["a", "b", "c"]
    assert len({line[2] for line in lines}) == 1, "one worker process serves task after task"
    assert int(lines[0][2]) != __import__("os").getpid()
    assert a.status.fraction == 1.0 and a.status.detail == {"step": 12} and a.place is None
    assert a.seconds > 0.5 and a.where.startswith("local worker 1 (pid ")
    # every report reaches on_report (at most five a second, the first and the last always)
    assert reports[0].stage == "working" and reports[-1].fraction == 1.0 and 2 <= len(reports) <= 12


def test_cancel_while_queued_and_while_running(executor, tmp_path):
    log = tmp_path / "log"
    running = executor.submit(Sleep("long", str(log), seconds=30))
    queued = executor.submit(Sleep("never", str(log), seconds=0.1))
    after = executor.submit(Sleep("after", str(log), seconds=0.1))
    queued.cancel()
    assert queued.state == CANCELLED and after.place == 1
    while running.status.stage != "working":
        running.wait(0.05)
    running.cancel()
    assert running.wait(10) and running.state == CANCELLED
    with pytest.raises(RunCancelled):
        running.outcome()
    assert after.outcome() == "after"
    assert [line[1] for line in starts(log)] == ["long", "after"]


def test_a_task_that_ignores_cancel_is_killed_and_its_worker_replaced(executor, tmp_path):
    log = tmp_path / "log"
    stubborn = executor.submit(Stubborn())
    while stubborn.status.stage != "ignoring":
        stubborn.wait(0.05)
    first_pid = stubborn.where
    stubborn.cancel()
    assert stubborn.wait(15) and stubborn.state == CANCELLED
    nxt = executor.submit(Sleep("next", str(log), seconds=0.1))
    assert nxt.outcome() == "next" and nxt.where != first_pid


def test_failures_come_back_as_one_message(executor):
    expected = executor.submit(Fail("expected"))
    unexpected = executor.submit(Fail("bug"))
    crash = executor.submit(Fail("crash"))
    for h in (expected, unexpected, crash):
        assert h.wait(30) and h.state == FAILED
    assert expected.error == "the spec moves class 'cat', which the data does not have"
    assert unexpected.error.startswith("the failing task failed unexpectedly (ZeroDivisionError: division by zero)")
    assert "stopped unexpectedly" in crash.error and "nothing of it was stored" in crash.error
    with pytest.raises(PlintError, match="class 'cat'"):
        expected.outcome()


def test_workers_see_the_environment_of_now_and_fork_their_loaders(tmp_path, monkeypatch):
    """A worker takes the caller's environment as it is when the worker starts, also one forked from a fork server
    started before the change; its loaders for image files fork (a spawned one would import torch again per loader)."""
    import os
    import sys

    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "one.png")
    first = LocalExecutor(1, threads=1)
    try:
        before = first.submit(Inspect("PLINT_TEST_SETTING", str(tmp_path / "one.png"))).outcome()
    finally:
        first.shutdown()
    monkeypatch.setenv("PLINT_TEST_SETTING", "set after the first worker")
    second = LocalExecutor(1, threads=1)
    try:
        after = second.submit(Inspect("PLINT_TEST_SETTING", str(tmp_path / "one.png"))).outcome()
    finally:
        second.shutdown()
    assert before["value"] is None and after["value"] == "set after the first worker"
    assert before["batches"] == after["batches"] == 1
    if sys.platform.startswith("linux"):
        assert after["loader"] == "fork"
        assert after["parent"] == before["parent"] != os.getpid(), "both workers were forked by the one fork server"


def test_a_worker_holding_much_memory_after_a_task_is_replaced_by_a_fresh_one():
    ex = LocalExecutor(1, threads=1, retire_above=int(1.5e9))
    try:
        first = ex.submit(Pid())
        holder = ex.submit(Hold(1200))  # the worker (torch imported, about 0.5 GB) then holds 1.7 GB
        after = [ex.submit(Pid()) for _ in range(2)]  # queued while the holder runs: none may be lost
        pids = [h.outcome() for h in (first, holder, *after)]
        assert all(h.state == DONE for h in (first, holder, *after))
        assert pids[0] == pids[1], "below the limit a worker serves task after task"
        assert pids[2] != pids[1], "the worker over the limit exited after its task"
        assert pids[3] == pids[2]
    finally:
        ex.shutdown()


def test_retire_after_every_task_and_never(tmp_path):
    for retire_above, fresh in ((0, True), (None, False)):
        ex = LocalExecutor(1, threads=1, retire_above=retire_above)
        try:
            handles = [ex.submit(Pid()) for _ in range(3)]
            pids = [h.outcome() for h in handles]
            assert [h.state for h in handles] == [DONE] * 3
            assert len(set(pids)) == (3 if fresh else 1)
        finally:
            ex.shutdown()


def test_retire_setting(monkeypatch):
    monkeypatch.delenv(RETIRE_ENV, raising=False)
    assert retire_threshold() == 1_000_000_000
    for text, value in (("2.5", 2_500_000_000), ("0", 0), ("off", None)):
        monkeypatch.setenv(RETIRE_ENV, text)
        assert retire_threshold() == value
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv(RETIRE_ENV, bad)
        with pytest.raises(PlintError, match=f"{RETIRE_ENV}='{bad}' is not an amount of memory"):
            LocalExecutor(1, threads=1)


def test_workers_setting(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_slots() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(PlintError, match=f"{WORKERS_ENV}='{bad}' is not a number of worker processes"):
            default_slots()
    monkeypatch.delenv(WORKERS_ENV)
    assert default_slots() == 1  # no GPU here


@pytest.mark.numerics
def test_a_digits_run_in_a_worker_equals_one_in_this_process(tmp_path, digits, demo):
    """The same spec and seed give the same stored result through a worker process as in-process."""
    # Equal floats across processes: bitwise on the same machine and kernels (the worker inherits
    # ATEN_CPU_CAPABILITY and runs one torch thread, as this process does); not a promise across machines.
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.finetune import FinetuneConfig
    from plint_core.intervention import separate_classes
    from plint_core.pipeline import load_run, prepare_embedding, run_intervention
    from plint_core.runs.tasks import RunTask, Source
    from plint_core.store import RunStore

    tsne = TSNEConfig(n_iter=60, early_exaggeration_iter=20, pca_iter=10, n_landmarks=0, hidden=(32,))
    # One epoch on a 400-point subset (the moved classes 3 and 8 among them): the check is the equality, not the run.
    config = FinetuneConfig(epochs=1, seed=3, train_points=400, device="cpu")
    here = RunStore(tmp_path / "here")
    emb = prepare_embedding(digits, demo, seed=1, config=tsne, store=here, device="cpu")
    spec = separate_classes(emb.train_xy, digits.train.labels, 3, 8, distance=emb.scale)
    local = run_intervention(digits, demo, emb, spec, config, store=here)

    ex = LocalExecutor(1, threads=1)
    try:
        stages = []
        handle = ex.submit(RunTask(Source("demo", "digits"), str(tmp_path / "worker"), spec, config, seed=1,
                                   config=tsne, device="cpu"))
        while not handle.wait(0.1):
            stages.append(handle.status.stage)
        outcome = handle.outcome()
    finally:
        ex.shutdown()
    run_id = outcome.key
    assert run_id == local.run_id and handle.state == DONE and not outcome.cache_hit
    assert {"pli", "control"} <= set(stages)
    remote = load_run(RunStore(tmp_path / "worker"), run_id)
    for key in ("accuracy", "confusion", "per_class", "target_distance", "n_train", "n_moved"):
        assert remote.result[key] == local.result[key], key
    assert (remote.result["executor"], local.result["executor"]) == ("local", "inline")
    np.testing.assert_array_equal(remote.train_targets, local.train_targets)
    assert json.loads((tmp_path / "worker" / "runs" / run_id / "result.json").read_text())["run_id"] == run_id


def test_an_app_job_relays_place_progress_cancel_and_outcome(executor, tmp_path):
    """The server thread of an app job only relays: its place in line while queued, the worker's progress, a
    cancel from the page, and the loaded outcome."""
    from plint_app.jobs import CANCELLED as JOB_CANCELLED
    from plint_app.jobs import DONE as JOB_DONE
    from plint_app.jobs import Job, Queued, relay

    log = tmp_path / "log"
    blocker = executor.submit(Sleep("blocker", str(log), seconds=1.5))
    waiting = Job(lambda job: relay(job, executor, Sleep("second", str(log), seconds=0.3), str.upper)).start()
    doomed = Job(lambda job: relay(job, executor, Sleep("third", str(log), seconds=0.3), str.upper)).start()
    seen = set()
    while blocker.running:
        for job in (waiting, doomed):
            if isinstance(job.progress.detail, Queued):
                seen.add((job is doomed, job.progress.detail.in_line()))
        blocker.wait(0.05)
    assert {(False, "1st in line"), (True, "2nd in line")} <= seen
    doomed.cancel()
    assert waiting.wait(30) and waiting.status == JOB_DONE and waiting.result == "SECOND"
    assert doomed.wait(30) and doomed.status == JOB_CANCELLED
    assert [line[1] for line in starts(log)] in (["blocker", "second"], ["blocker", "second", "third"])
    assert Queued(11).in_line() == "11th in line" and Queued(22).in_line() == "22nd in line"


KILLED_PARENT = """
import sys, time
from plint_core.runs.local import LocalExecutor
from executor_tasks import Chatty, Sleep
ex = LocalExecutor(1, threads=1)
task = Sleep("doomed", sys.argv[1], seconds=120) if sys.argv[2] == "sleep" else Chatty()
handle = ex.submit(task)
while handle.status.stage in ("queued", "starting"):
    time.sleep(0.05)
print(handle.where, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("task", ["sleep", "chatty"])
def test_a_killed_parent_takes_its_worker_with_it(tmp_path, task):
    """SIGKILL of the process holding the executor (the app's server): its worker notices and exits at once,
    rather than finishing a job nobody will read, and quietly: also one caught sending a report (chatty) when its
    pipe breaks leaves no traceback in the server's log."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    err = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(tmp_path / "log"), task], stdout=subprocess.PIPE,
                            stderr=err, text=True, cwd=tests.parent,
                            env={**os.environ, "PYTHONPATH": f"{tests}:{tests.parent}"})
    try:
        line = proc.stdout.readline()
        worker = int(re.search(r"pid (\d+)", line).group(1))
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def alive() -> bool:  # an exited child of the killed parent may linger as a zombie until reaped
            try:
                return "State:\tZ" not in Path(f"/proc/{worker}/status").read_text()
            except OSError:
                return False

        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(), "the worker outlived its killed parent"
        time.sleep(0.2)
        err.close()
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        proc.kill()


def test_workers_leave_a_core_to_the_web_server():
    """Each of the workers gets an equal share of the usable cores less one, which stays with the server."""
    from plint_core.runs.local import default_threads

    assert [default_threads(1, cores) for cores in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert [default_threads(slots, 16) for slots in (1, 2, 4, 32)] == [15, 7, 3, 1]
