"""Shared fixtures: the digits data set, the shipped demo model, small synthetic data."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# One torch thread in the tests and in every process they start (CLI, streamlit): the
# suite runs the app server, the browser and the engine side by side on 2 cores, where
# competing thread pools make small-model steps many times slower. It also fixes float
# reduction order, so a refit in a subprocess matches the in-process fit bit for bit: on the same machine and
# kernels (a subprocess inherits ATEN_CPU_CAPABILITY); another CPU's kernels give other bits (marker `numerics`).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

from plint_core.data.loading import load_data
from plint_core.models.sources import load_model


def pytest_configure(config):
    # Registered here, beside the fixtures (pytest.ini holds only how the suite runs).
    config.addinivalue_line(
        "markers", "numerics: asserts on a trained, fine-tuned or fitted figure, or on floats being equal; "
        ".ci/run also runs these under ATEN_CPU_CAPABILITY=avx2 and =default (`python -m pytest -q -m numerics`)")
    config.addinivalue_line("markers", "xdist_group(name): the test process a test runs in (pytest-xdist's, given "
                                       "here too for a run without the plugin)")


SERVERS = {"test_browser_e2e.py", "test_browser_deep_links.py", "test_browser_flags.py", "test_browser_neighbours.py",
           "test_browser_meeting.py", "test_browser_large_map.py", "test_restart.py", "test_ray_executor.py"}
"""Test files that start app servers, browsers or a Ray cluster: one after another in one test process (their waits
for a page or a cluster are the suite's most sensitive to load), while the other process runs the rest."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks (loadgroup)
def pytest_collection_modifyitems(config, items):
    # pytest.ini distributes by xdist_group: each file whole in one test process, as --dist loadfile does, and the
    # files of SERVERS all in the same one.
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("servers" if name in SERVERS else name))


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv)`` → (exit code, stdout, stderr) of ``python -m plint_core ARGV``, run in this process: a
    check of options and messages without the 3 s of a fresh interpreter importing torch. Long jobs still go to a
    worker process, as from the shell; tests/test_cli.py keeps the real entry point in subprocesses."""
    from plint_core.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        threads = torch.get_num_threads()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        finally:
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(scope="session")
def demo():
    return load_model("demo")


def make_npz_arrays(n_per_class: int = 12, n_classes: int = 3, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny separable uint8 images: class k has a bright k-th horizontal band."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = rng.integers(0, 40, size=(len(labels), size, size), dtype=np.uint8)
    band = size // n_classes
    for i, k in enumerate(labels):
        images[i, k * band:(k + 1) * band, :] = 220
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory, digits, demo):
    """A runs folder holding the default embedding of the demo model on digits and its latents: the shipped
    ``data/demo_embedding.zip`` imported (:mod:`plint_core.shipped`), so the suite never fits it and every machine
    tests against the same bytes. Should the shipped file be out of date (tests/test_shipped.py says so), the
    embedding is fitted here instead, as before."""
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.latents import list_layers, pick_default
    from plint_core.pipeline import prepare_embedding
    from plint_core.shipped import install
    from plint_core.store import RunStore

    root = tmp_path_factory.mktemp("demo_runs")
    store = RunStore(root)
    outcome = install(store, digits, demo, pick_default(list_layers(demo)), TSNEConfig())
    if outcome.status != "imported":
        prepare_embedding(digits, demo, seed=0, store=store, device="cpu")
    return root


@pytest.fixture(scope="session")
def demo_embedding(demo_runs, digits, demo):
    from plint_core.pipeline import prepare_embedding
    from plint_core.store import RunStore

    return prepare_embedding(digits, demo, seed=0, store=RunStore(demo_runs), device="cpu")
