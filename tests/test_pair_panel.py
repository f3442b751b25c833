"""AppTest tests of the Embedding page's pair edits (:mod:`plint_app.pair_panel`)."""
from __future__ import annotations

import numpy as np
import pytest
from app_helpers import APP
from streamlit.testing.v1 import AppTest

from plint_core.intervention import Selection

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment

TIMEOUT = 120


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, label: str) -> AppTest:
    at.button[[b.label for b in at.button].index(label)].click().run()
    assert not at.exception, at.exception
    return at


@pytest.mark.numerics
def test_pair_panel_pushes_apart_sends_home_selects_and_undoes(app_environment):
    # The push's gain depends on the fitted map: measured 0.89-0.91 of a scale (the app's t-SNE preset, seeds 0-2,
    # ATEN_CPU_CAPABILITY default / avx2 / avx512, 2026-12-03; the pair is (0, 4) in all), bound 0.5.
    at = start()
    view = sess_view(at)
    labels, preds = view.train.labels, view.train.preds
    a, b = at.selectbox(key="w_pair_a").value, at.selectbox(key="w_pair_b").value
    # the default pair: the one the model confuses most on the training points shown
    wrong = {(i, j): int(np.sum((labels == i) & (preds == j)) + np.sum((labels == j) & (preds == i)))
             for i in range(10) for j in range(i + 1, 10)}
    assert (min(a, b), max(a, b)) == max(wrong, key=wrong.get)
    n_wrong = wrong[(min(a, b), max(a, b))]
    assert n_wrong > 0

    click(at, "Push apart")  # defaults: 1 × scale apart, contraction 0.5, outward
    spec = at.session_state["plint"].editor.spec
    assert [m.select for m in spec.moves] == [Selection(classes=(a,)), Selection(classes=(b,))]
    assert all(m.contract == 0.5 for m in spec.moves)
    for m in spec.moves:  # each class moves half a scale (1 × scale apart, split between the two) ...
        assert np.hypot(*m.translate) == pytest.approx(view.scale / 2, rel=1e-4)
    centres = [view.index.xy[labels == k].mean(0) for k in (a, b)]
    before = np.linalg.norm(centres[0] - centres[1])
    after = np.linalg.norm(centres[0] + spec.moves[0].translate - centres[1] - spec.moves[1].translate)
    assert after > before + 0.5 * view.scale  # ... away from the other (turned outward: not quite a whole scale)
    assert any("pushed apart" in str(s.value) for s in at.success)

    click(at, "Push apart")  # the same classes again overlap: refused, nothing changes
    assert any("overlaps" in str(e.value) for e in at.error)
    assert len(at.session_state["plint"].editor.spec.moves) == 2

    click(at, "Undo")  # one undo takes the pair edit back
    assert at.session_state["plint"].editor.spec.moves == ()

    click(at, "Select misclassified")
    assert len(at.session_state["plint"].editor.selection) == n_wrong
    assert f"**Selection: {n_wrong} training points**" in [str(m.value) for m in at.markdown]

    at.slider(key="w_pair_contract").set_value(0.3).run()
    click(at, "Send misclassified home")
    spec = at.session_state["plint"].editor.spec
    moved = [i for m in spec.moves for i in m.select.ids]
    assert len(moved) == n_wrong and all(m.contract == 0.3 for m in spec.moves)
    for m in spec.moves:  # each group lands on its own class's centroid
        rows = view.index.rows_of(np.array(m.select.ids))
        k = int(labels[rows[0]])
        assert set(labels[rows].tolist()) == {k}
        np.testing.assert_allclose(view.index.xy[rows].mean(0) + np.array(m.translate),
                                   view.index.xy[labels == k].mean(0), rtol=1e-4, atol=1e-4)

    at.selectbox(key="w_pair_b").set_value(a).run()  # the same class twice: the actions are disabled
    assert all(b.disabled for b in at.button if b.label in ("Push apart", "Send misclassified home",
                                                              "Select misclassified"))


def sess_view(at: AppTest):
    """The page's ScatterView, rebuilt the way the page builds it (same project, embedding and cache)."""
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_app.resources import scatter_view

    project = Project.load(AppConfig.from_env())
    return scatter_view(project, project.embedding(project.default_layer, 0))
