"""Fixtures shared by the dashboard tests; test modules load them with ``pytest_plugins = ("app_fixtures",)``.

The app's embedding is fitted ONCE per test session, with the small t-SNE
preset :data:`app_helpers.TEST_TSNE`, into a temporary run store; every
AppTest and the browser test point ``PLINT_RUNS_DIR`` there, so the app finds
the embedding cached. :func:`stored_run` adds one fine-tuning run to it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import RUN_CLASS, RUN_TRANSLATE, TEST_EPOCHS, app_env


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory) -> Path:
    """A run store holding the app's default embedding (demo model, digits, logits, seed 0)."""
    from plint_app.config import AppConfig
    from plint_app.project import Project

    root = tmp_path_factory.mktemp("app_runs")
    project = Project.load(AppConfig.from_env(app_env(root)))
    project.embedding(project.default_layer, 0)
    return root


@pytest.fixture
def app_environment(app_runs, monkeypatch) -> Path:
    """Set the app's environment for one test (the in-process AppTest reads it on every run)."""
    for key, value in app_env(app_runs).items():
        monkeypatch.setenv(key, value)
    return app_runs


@pytest.fixture(scope="session")
def stored_run(app_runs):
    """One finished run in :func:`app_runs`: class 3 moved by (0.5, 0), 2 epochs, other settings default."""
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.finetune import FinetuneConfig
    from plint_core.intervention import InterventionSpec, Move, Selection
    from plint_core.pipeline import run_intervention

    project = Project.load(AppConfig.from_env(app_env(app_runs)))
    emb = project.embedding(project.default_layer, 0)
    spec = InterventionSpec((Move(Selection(classes=(RUN_CLASS,)), RUN_TRANSLATE),))
    return run_intervention(project.data, project.bundle, emb, spec,
                            FinetuneConfig(epochs=TEST_EPOCHS, device="cpu"), store=project.store)
