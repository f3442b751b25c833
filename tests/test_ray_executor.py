"""The Ray executor: choosing it from the environment, and a real one-node Ray cluster.

Ray binds to the machine's network interface, so the cluster runs in a private network namespace that has only
loopback (``unshare -n``), and where permitted in a private process namespace too (``-p``): when the namespace's
first process ends, every Ray process ends with it, whatever happened, and ``ray stop`` there sees only this
cluster. Either way the fixture kills what is left of the cluster by process id at the end. The checks
themselves run in ``tests/ray_checks.py`` inside the namespace and print what they saw as JSON; the tests here
assert on it. They are skipped if Ray is not installed or namespaces are not permitted (not root).
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from plint_core.errors import PlintError
from plint_core.runs import select
from plint_core.runs.select import make_executor, ray_settings

EXECUTOR_ENV, RAY_ADDRESS_ENV = select.EXECUTOR_ENV, select.RAY_ADDRESS_ENV
RAY_CPUS_ENV, RAY_RUNTIME_ENV_ENV = select.RAY_CPUS_ENV, select.RAY_RUNTIME_ENV_ENV

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
HAS_RAY = importlib.util.find_spec("ray") is not None
CLUSTER_SECONDS = 300


# ---------------------------------------------------------------------- choosing the executor (no Ray needed)
def test_the_executor_is_local_unless_told_otherwise(monkeypatch):
    from plint_core.runs.local import LocalExecutor

    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    ex = make_executor(1, threads=1)
    assert isinstance(ex, LocalExecutor) and ex.name == "local" and ex.threads == 1
    ex.shutdown()
    monkeypatch.setenv(EXECUTOR_ENV, " Local ")
    ex = make_executor(1, threads=1)
    assert isinstance(ex, LocalExecutor)
    ex.shutdown()


def test_an_unknown_executor_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "spark")
    with pytest.raises(PlintError, match=r"^PLINT_EXECUTOR='spark' is not an executor: use one of local, ray$"):
        make_executor()


def test_ray_chosen_but_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(PlintError, match=r"PLINT_EXECUTOR=ray but Ray is not installed here: pip install -r "
                                         r"requirements-ray.txt, or set PLINT_EXECUTOR=local"):
        make_executor()


def test_a_progress_report_that_overtakes_its_start_message_still_counts():
    """The worker's "started" and its first report reach the executor as separate messages; if the report
    comes first it starts the handle itself rather than being dropped (a task reporting once would look stuck)."""
    import threading

    from plint_core.runs.executor import RUNNING, Handle
    from plint_core.runs.ray_executor import RayExecutor, _Entry

    class Task:
        label = "test task"

    ex = object.__new__(RayExecutor)  # no cluster: only the message handling
    ex._lock = threading.Lock()
    handle = Handle(Task(), ex)
    ex._entries = {1: _Entry(1, handle)}
    ex._message(1, "progress", "deaf", 0.5)
    assert handle.state == RUNNING and handle.status.stage == "deaf"
    ex._message(1, "started", "Ray worker on node (pid 7)")
    assert handle.status.stage == "deaf" and handle.where == "Ray worker on node (pid 7)"


def test_ray_settings(monkeypatch):
    for name in (RAY_ADDRESS_ENV, RAY_CPUS_ENV, RAY_RUNTIME_ENV_ENV):
        monkeypatch.delenv(name, raising=False)
    assert ray_settings() == {"address": "auto", "cpus": 1, "runtime_env": None}
    monkeypatch.setenv(RAY_ADDRESS_ENV, "ray://head:10001")
    monkeypatch.setenv(RAY_CPUS_ENV, "4")
    monkeypatch.setenv(RAY_RUNTIME_ENV_ENV, '{"working_dir": "/srv/plint"}')
    assert ray_settings() == {"address": "ray://head:10001", "cpus": 4, "runtime_env": {"working_dir": "/srv/plint"}}
    for bad in ("0", "two"):
        monkeypatch.setenv(RAY_CPUS_ENV, bad)
        with pytest.raises(PlintError, match=f"PLINT_RAY_CPUS='{bad}' is not a number of CPUs"):
            ray_settings()
    monkeypatch.setenv(RAY_CPUS_ENV, "1")
    monkeypatch.setenv(RAY_RUNTIME_ENV_ENV, "{working_dir: /srv}")
    with pytest.raises(PlintError, match="PLINT_RAY_RUNTIME_ENV is not valid JSON"):
        ray_settings()
    monkeypatch.setenv(RAY_RUNTIME_ENV_ENV, '["/srv/plint"]')
    with pytest.raises(PlintError, match="PLINT_RAY_RUNTIME_ENV must be a JSON object .* not list"):
        ray_settings()


def test_an_address_where_nothing_answers_is_refused_at_once(monkeypatch):
    """Before ray.init, which would retry for minutes. (A stand-in for ray: importing the real one in this
    process would put its own copy of psutil first on sys.path for the tests that follow.)"""
    import types

    def init(**kwargs):
        raise AssertionError("ray.init was called")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(EXECUTOR_ENV, "ray")
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        monkeypatch.setenv(RAY_ADDRESS_ENV, address)
        with pytest.raises(PlintError, match=rf"^nothing answers at PLINT_RAY_ADDRESS='{address}' .*: start the "
                                             r"Ray cluster \(`ray start --head`\) or correct the address"):
            make_executor()


# ---------------------------------------------------------------------- a real cluster
def _namespace() -> tuple[list[str] | None, str]:
    """The ``unshare`` command for the cluster's namespace (private network and processes if permitted, else
    only the network), or ``None`` and why there is none."""
    if shutil.which("unshare") is None:
        return None, "unshare (util-linux) is not installed"
    problems = []
    for argv in (NAMESPACE, ["unshare", "--net"]):
        try:
            proc = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(str(exc))
            continue
        if proc.returncode == 0:
            return argv, ""
        problems.append(proc.stderr.strip())
    return None, f"a private network namespace is not permitted here (run as root): {problems[-1]}"


def _started_here(pid: str, folder: str) -> bool:
    """Whether process ``pid`` belongs to the cluster that keeps its files in ``folder``: it inherited the marker
    ``PLINT_RAY_TEST=folder``, or names ``folder`` in its command line, or holds a file there open (Ray's own
    processes rename themselves, overwriting their environment, but keep their log files in its session)."""
    proc = Path("/proc", pid)
    try:
        if f"PLINT_RAY_TEST={folder}".encode() in (proc / "environ").read_bytes().split(b"\0"):
            return True
        if folder.encode() in (proc / "cmdline").read_bytes():
            return True
        for fd in (proc / "fd").iterdir():
            if os.readlink(fd).startswith(folder + "/"):
                return True
    except OSError:
        pass
    return False


def _kill_left_over(folder: str) -> list[int]:
    """SIGKILL every process of the cluster kept in ``folder`` (:func:`_started_here`), until none is left;
    their ids."""
    import signal
    import time

    killed: list[int] = []
    for _ in range(50):
        found = [int(p.name) for p in Path("/proc").iterdir()
                 if p.name.isdigit() and int(p.name) != os.getpid() and _started_here(p.name, folder)]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.1)
    return killed


@pytest.fixture(scope="module")
def ray_results():
    """Start a Ray head in a private namespace, run tests/ray_checks.py against it, stop it; what the checks saw.

    With a private process namespace, the namespace's processes (Ray's included) end when its first process
    does. Without one (only the network is private), ``ray stop`` would stop every Ray on the machine, so the
    cluster's processes are found by what ties them to its folder (:func:`_started_here`) and killed by their
    ids. Under pytest-xdist the module runs whole in one test process (tests/conftest.py, SERVERS), so the
    cluster starts once."""
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install -r requirements-dev.txt)")
    namespace, problem = _namespace()
    if namespace is None:
        pytest.skip(problem)
    own_processes = namespace == NAMESPACE
    # Short: Ray's socket paths under it must stay within the 107 characters of a Unix socket name.
    tmp = Path(tempfile.mkdtemp(prefix="plint-ray-", dir="/tmp"))
    try:
        (tmp / "token").write_text(secrets.token_hex(32))
        python, helper = shlex.quote(sys.executable), shlex.quote(str(TESTS / "ray_checks.py"))
        ray = f"{python} -m ray.scripts.scripts"
        stop = f"trap '{ray} stop --force >/dev/null 2>&1' EXIT" if own_processes else ""
        script = f"""
            set -u
            export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={shlex.quote(str(tmp / 'token'))}
            {stop}
            {python} {helper} lo-up >/dev/null || exit 90
            env -u PYTHONPATH {ray} start --head --port=6379 --num-cpus=2 --num-gpus=0 --include-dashboard=false \\
                --disable-usage-stats --temp-dir={shlex.quote(str(tmp / 'r'))} >{shlex.quote(str(tmp / 'start.log'))} \\
                2>&1 || exit 91
            {python} {helper} main {shlex.quote(str(tmp))}
        """
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0", "PLINT_RAY_TEST": str(tmp)}
        proc = subprocess.run([*namespace, "bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=CLUSTER_SECONDS)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 91:
            pytest.fail(f"ray start failed:\n{(tmp / 'start.log').read_text()[-3000:]}")
        assert proc.returncode == 0 and lines, f"exit code {proc.returncode}\n{proc.stderr[-6000:]}"
        results = json.loads(lines[-1])
        results["stderr"] = proc.stderr[-6000:]
        print("namespace:", " ".join(namespace), "seconds per check:", results.get("seconds"))  # with -s
        yield results
    finally:
        left = _kill_left_over(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        if left:
            print("killed the cluster's processes left over:", left)


def _ok(results: dict, name: str) -> dict:
    found = results[name]
    assert "exception" not in found, f"{name}: {found.get('exception')}\n{found.get('traceback', '')}"
    return found


def test_a_digits_run_through_ray_equals_one_in_this_process(ray_results):
    """PLINT_EXECUTOR=ray, PLINT_RAY_ADDRESS=auto: the same spec and seed store the same metrics as a run here, and
    result.json says it ran on Ray. Equal floats across processes hold bitwise because the Ray worker runs on this
    machine, with its kernels (it inherits ATEN_CPU_CAPABILITY through `ray start`) and one torch thread; not a promise
    across the machines of a real cluster. Not marked ``numerics``: starting the cluster costs more than the rest of
    that subset."""
    assert ray_results["factory"] == {"type": "RayExecutor", "gpus": 0, "cpus": 1}
    run = _ok(ray_results, "digits")
    assert run["state"] == "done" and run["run_id"] == run["local_run_id"] and not run["cache_hit"]
    assert run["different"] == [] and run["train_targets_equal"]
    assert (run["executor"], run["local_executor"]) == ("ray", "inline")
    assert run["where"].startswith("Ray worker on 127.0.0.1 (pid ")
    assert {"latents", "optimisation", "pli", "control"} <= set(run["stages"])


def test_a_killed_ray_worker_fails_its_run_and_leaves_the_store_intact(ray_results):
    killed = _ok(ray_results, "killed")
    assert killed["killed"] and killed["finished"] and killed["state"] == "failed"
    assert killed["error"].startswith("the Ray worker running the fine-tuning run (λ 0.5, 400 epochs, the checkpoint "
                                      "that follows the edit) stopped unexpectedly (WorkerCrashedError")
    assert "nothing of it was stored" in killed["error"]
    assert killed["runs_after"] == killed["runs_before"] == [ray_results["digits"]["run_id"]]
    assert killed["visible"] == killed["runs_before"], "no partial run folder is published"


def test_failures_come_back_as_one_message(ray_results):
    failures = _ok(ray_results, "failures")
    assert {f["state"] for f in failures.values()} == {"failed"}
    assert failures["expected"]["error"] == "the spec moves class 'cat', which the data does not have"
    assert failures["bug"]["error"].startswith("the failing task failed unexpectedly on Ray node 127.0.0.1 "
                                               "(ZeroDivisionError: division by zero)")
    assert "stopped unexpectedly (WorkerCrashedError" in failures["crash"]["error"]
    assert failures["cuda"]["error"].startswith("the fine-tuning run (λ 0.5, 1,000 steps, the checkpoint that follows "
                                                "the edit) is to run on a GPU (device 'cuda') but the Ray cluster has none")
    unimportable = _ok(ray_results, "unimportable")
    assert unimportable["state"] == "failed"
    assert unimportable["error"].startswith("a Ray worker could not import 'driver_only_task' to run the hidden task")


def test_cancel_while_waiting_and_while_running(ray_results):
    """Tasks of 2 CPUs on a 2-CPU cluster run one at a time: the waiting ones know their place; cancelling one
    withdraws it at once, cancelling the running one interrupts it, and the next one runs."""
    cancel = _ok(ray_results, "cancel")
    assert cancel["places"] == [1, 2] and cancel["waiting"] == "cancelled" and cancel["place_after"] == 1
    assert cancel["running"] == "cancelled" and cancel["after"] == "after"
    assert cancel["started"] == ["long", "after"]
    deaf = _ok(ray_results, "deaf")
    assert deaf == {"state": "cancelled", "error": None}, "a task deaf to the interrupt: its worker is killed"


def test_an_explicit_address_needs_the_clusters_token(ray_results):
    assert _ok(ray_results, "with_token")["outcome"] == "explicit"
    wrong = _ok(ray_results, "wrong_token")
    assert wrong["error"].startswith("could not connect to the Ray cluster at PLINT_RAY_ADDRESS='127.0.0.1:6379'")
    assert "the cluster's token" in wrong["error"]


def test_code_reaches_the_workers_through_a_runtime_env(ray_results):
    """Started from a folder without plint, the workers cannot import it (one message that says what to do);
    with PLINT_RAY_RUNTIME_ENV naming plint's folder as working_dir they can, and find the stored embedding."""
    shipped = _ok(ray_results, "shipped")
    assert shipped["bare"]["state"] == "failed"
    assert shipped["bare"]["error"].startswith("a Ray worker could not import 'plint_core' to run the embedding")
    assert "PLINT_RAY_RUNTIME_ENV" in shipped["bare"]["error"]
    assert shipped["working_dir"] == {"state": "done", "error": None, "cache_hit": True}
