"""Compare: a PLI run against a stored baseline run of the same project: the runs with the flags (relabelled,
without the flagged images) and a practitioner's baseline, compared like any other run (AppTest)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from app_helpers import APP, app_env
from streamlit.testing.v1 import AppTest
from test_app_pages import TIMEOUT, decode, figures, texts

from plint_app.baseline_versus import accuracy_versus, per_class_against
from plint_core.baselines import Baseline
from plint_core.finetune import FinetuneConfig
from plint_core.flags import FlagBook
from plint_core.intervention import InterventionSpec

pytest_plugins = ("app_fixtures",)  # app_runs, stored_run


@pytest.fixture(scope="module")
def runs_with_baselines(app_runs, stored_run, tmp_path_factory):
    """A copy of the app's store (its embedding and the stored PLI run) with two runs with the flags and a
    class-weighted baseline; ``(root, {kind: result})``."""
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.pipeline import run_baseline

    root = tmp_path_factory.mktemp("compare_baselines") / "runs"
    shutil.copytree(app_runs, root, ignore=shutil.ignore_patterns("flags", "baselines"))
    project = Project.load(AppConfig.from_env(app_env(root)))
    emb = project.embedding(project.default_layer, 0)
    book = FlagBook(project.store, project.data, project.bundle.fingerprint)
    train = project.data.train
    book.add(train.ids[train.labels == 1][:6], "label_wrong", who="Ana", suggested=7)
    book.add(train.ids[train.labels == 8][:4], "ambiguous", who="Ben")
    config = FinetuneConfig(steps=40, evaluations=2, lr=3e-3, device="cpu")
    out = {}
    moves = InterventionSpec.from_dict(stored_run.result["spec"])  # a practitioner's baseline: the PLI run's rows
    for kind, baseline, spec in (("relabel", book.baseline("relabel"), InterventionSpec()),
                                 ("drop_flagged", book.baseline("drop_flagged"), InterventionSpec()),
                                 ("classweight", Baseline("classweight"), moves)):
        out[kind], _, _ = run_baseline(project.data, project.bundle, emb, spec, config, baseline,
                                       store=project.store)
    return root, out


def test_compare_puts_each_baseline_run_beside_the_pli_run(runs_with_baselines, stored_run, monkeypatch):
    root, baselines = runs_with_baselines
    for key, value in app_env(root).items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.session_state["plint"].current_run_id = stored_run.run_id
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    assert "Against a baseline run" in texts(at.subheader)
    picker = at.selectbox(key="w_baseline_versus")
    assert len(picker.options) == len(baselines) == 3
    pli = json.loads((root / "runs" / stored_run.run_id / "result.json").read_text())
    for kind, base in baselines.items():
        at.selectbox(key="w_baseline_versus").select(base["run_id"]).run()
        assert not at.exception and not at.error
        titles = [(f["layout"].get("title") or {}).get("text") or "" for f in figures(at)]
        assert any(base["baseline"]["name"] in t for t in titles), (kind, titles)
        assert any("Baseline − after PLI" in t for t in titles)
        baseline_figure = next(f for f, t in zip(figures(at), titles) if base["baseline"]["name"] in t)
        np.testing.assert_array_equal(decode(baseline_figure["data"][0]["z"]), base["confusion"]["baseline"])
        tables = [d.value for d in at.dataframe]
        acc = next(t for t in tables if "baseline − it" in t.columns)
        assert acc["test accuracy"].iloc[-1] == pytest.approx(base["accuracy"]["baseline"])
        assert acc.loc["After PLI fine-tuning", "baseline − it"] == pytest.approx(
            base["accuracy"]["baseline"] - pli["accuracy"]["after"])
    relabel, drop = baselines["relabel"], baselines["drop_flagged"]
    assert relabel["n_train"] == drop["n_train"] + 10  # the ten flagged images left out of one, relabelled in the other


def test_the_tables_take_the_baselines_figures(runs_with_baselines, stored_run):
    _, baselines = runs_with_baselines
    base = baselines["classweight"]
    pli = stored_run.result
    acc = accuracy_versus(pli, base)
    assert list(acc.index)[-1] == "Baseline: class-weighted (1/frequency)"
    assert acc["baseline − it"].iloc[-1] == 0.0
    table = per_class_against(pli, base)
    k = 3
    row = next(r for r in base["per_class"]["baseline"] if r["class"] == table.index[k])
    assert table.iloc[k]["recall baseline"] == pytest.approx(row["recall"])
    assert table.iloc[k]["Δ recall"] == pytest.approx(row["recall"] - table.iloc[k]["recall PLI"])
