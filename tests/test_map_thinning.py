"""The large map: thinning (plint_app.map_thinning) and selections resolved on the server from their shapes
(plint_app.selection_geometry), in unit tests and on the Embedding page (AppTest) with the threshold set low
(``PLINT_MAP_MAX_POINTS=500``), so that the digits' 1,437 training points take the thinned path."""
from __future__ import annotations

import numpy as np
import pytest
from app_helpers import APP, browser_points
from streamlit.testing.v1 import AppTest

from plint_app.config import AppConfig
from plint_app.map_thinning import DEFAULT_MAX_POINTS, density_trace, sample_map
from plint_app.selection_geometry import Shapes, resolve, shapes_of
from plint_core.errors import PlintError

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment

MAX = 500


def cloud(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


# --- thinning ------------------------------------------------------------------------------------------------
def test_a_map_within_the_limit_draws_every_point():
    s = sample_map(cloud(300), cloud(40, 1), max_points=340)
    assert not s.thinned and s.n_drawn == 340
    np.testing.assert_array_equal(s.train_rows, np.arange(300))
    np.testing.assert_array_equal(s.test_rows, np.arange(40))


def test_a_larger_map_draws_a_fixed_sample_shared_with_the_test_points():
    train, test = cloud(10_000), cloud(1_000, 1)
    s = sample_map(train, test, max_points=1_100)
    assert s.thinned and (s.n_train, s.n_test) == (10_000, 1_000)
    assert (s.train_rows.size, s.test_rows.size) == (1_000, 100), "the budget in proportion"
    assert np.all(np.diff(s.train_rows) > 0) and s.train_rows.max() < 10_000
    again = sample_map(train, test, max_points=1_100)
    np.testing.assert_array_equal(s.train_rows, again.train_rows)
    hidden = sample_map(train, None, max_points=1_100)
    assert hidden.n_test == 0 and hidden.test_rows.size == 0 and hidden.train_rows.size == 1_100
    assert "Showing 1,100 of 11,000 points" in s.caption()


def test_a_window_draws_the_points_inside_it_and_keeps_the_whole_maps_sample_there():
    train = cloud(10_000)
    whole = sample_map(train, None, max_points=1_000)
    window = ((-0.3, 0.3), (-0.3, 0.3))
    zoomed = sample_map(train, None, max_points=1_000, window=window)
    inside = np.flatnonzero((np.abs(train) <= 0.3).all(1))
    assert inside.size < 1_000, "few enough to draw them all"
    np.testing.assert_array_equal(zoomed.train_rows, inside)
    assert set(whole.train_rows[np.isin(whole.train_rows, inside)]) <= set(zoomed.train_rows)
    assert "inside the zoomed region" in zoomed.caption()
    tight = sample_map(train, None, max_points=100, window=window)
    assert tight.train_rows.size == 100 and np.isin(tight.train_rows, inside).all()


def test_the_density_counts_every_point():
    xy = cloud(5_000)
    ranges = ((-5.0, 5.0), (-5.0, 5.0))
    trace = density_trace(xy, ranges, bins=40)
    z = np.asarray(trace.z, dtype=np.float64)
    counts = np.where(np.isnan(z), 0, np.round(10 ** (z - 1)))
    assert counts.sum() == ((np.abs(xy) <= 5).all(1)).sum()
    assert trace.hoverinfo == "skip" and trace.showscale is False


# --- shapes ---------------------------------------------------------------------------------------------------
def test_shapes_come_from_streamlits_selection_and_bad_entries_are_left_out():
    sel = {"points": [], "box": [{"xref": "x", "yref": "y", "x": [2.0, -1.0], "y": [0.0, 1.0]},
                                 {"x": [1.0], "y": [0, 1]}, {"x": ["a", 1], "y": [0, 1]}, "junk"],
           "lasso": [{"x": [0, 1, 0], "y": [0, 0, 1]}, {"x": [0, 1], "y": [0, 1]}, {"x": [0, 1, None], "y": [0, 0, 1]}]}
    shapes = shapes_of(sel)
    assert shapes.boxes == ((-1.0, 2.0, 0.0, 1.0),)
    assert shapes.lassos == (((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),)
    assert not shapes_of(None) and not shapes_of({"points": [{"x": 1, "y": 2}]})


def test_a_box_and_a_lasso_select_every_point_inside_them():
    xy = np.array([[0.1, 0.1], [0.9, 0.9], [0.4, 0.2], [5.0, 5.0], [5.5, 5.5], [-3, 0]], dtype=np.float32)
    ids = np.array([10, 11, 12, 13, 14, 15])
    triangle = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # (0.9, 0.9) lies outside it
    got, n_test = resolve(Shapes(lassos=(triangle,)), xy, ids)
    np.testing.assert_array_equal(got, [10, 12])
    got, n_test = resolve(Shapes(boxes=((4.0, 6.0, 4.0, 6.0),), lassos=(triangle,)), xy, ids,
                          test_xy=np.array([[0.2, 0.2], [9.0, 9.0]]))
    np.testing.assert_array_equal(got, [10, 12, 13, 14])
    assert n_test == 1
    bowtie = ((0.0, 1.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0))  # a lasso crossing itself
    got, _ = resolve(Shapes(lassos=(bowtie,)), np.array([[0.5, 0.3], [0.1, 0.5], [0.9, 0.5]]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(got, [2, 3])


def test_the_limit_is_read_from_the_environment():
    assert AppConfig.from_env({}).map_max_points == DEFAULT_MAX_POINTS
    assert AppConfig.from_env({"PLINT_MAP_MAX_POINTS": "2000"}).map_max_points == 2000
    for bad in ("0", "-4", "many"):
        with pytest.raises(PlintError, match="PLINT_MAP_MAX_POINTS"):
            AppConfig.from_env({"PLINT_MAP_MAX_POINTS": bad})


# --- the page -------------------------------------------------------------------------------------------------
@pytest.fixture
def thinned(app_environment, monkeypatch):
    monkeypatch.setenv("PLINT_MAP_MAX_POINTS", str(MAX))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    from plint_app.resources import embedding_jobs

    job = next(j for key, j in embedding_jobs().items() if str(app_environment.resolve()) in key and j.status == "done")
    return at, job.result.train_xy


def traces(at) -> list[dict]:
    import json

    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def drawn_ids(at) -> np.ndarray:
    from test_app_pages import decode

    ids = [decode(t["customdata"]).reshape(-1, 4)[:, 0] for t in traces(at) if t.get("customdata") is not None]
    return np.concatenate(ids)


def box_event(xy: np.ndarray, drawn: np.ndarray, box: tuple[float, float, float, float], labels: np.ndarray):
    """What the browser sends for a box on the thinned map: the drawn points inside it, and the box."""
    from streamlit.typing import PlotlyState

    x0, x1, y0, y1 = box
    inside = drawn[(xy[drawn, 0] >= x0) & (xy[drawn, 0] <= x1) & (xy[drawn, 1] >= y0) & (xy[drawn, 1] <= y1)]
    points = browser_points(inside, xy[inside], labels[inside])
    return PlotlyState({"selection": {"points": points, "point_indices": list(range(len(points))),
                                      "box": [{"xref": "x", "yref": "y", "x": [x0, x1], "y": [y0, y1]}], "lasso": []}})


def test_the_thinned_page_draws_the_sample_over_a_density_and_says_so(thinned):
    at, xy = thinned
    names = [t.get("name") for t in traces(at)]
    assert names[0] == "density (all points)" and traces(at)[0]["type"] == "heatmap"
    drawn = drawn_ids(at)
    assert drawn.size == MAX and np.unique(drawn).size == MAX
    assert any(f"Showing {MAX} of 1,437 points" in str(c.value) for c in at.caption)


def test_a_box_on_the_thinned_map_selects_every_point_inside_it_and_a_move_takes_them_all(thinned, digits):
    at, xy = thinned
    labels = digits.train.labels
    drawn = drawn_ids(at)
    (x0, x1), (y0, y1) = np.percentile(xy[:, 0], [20, 70]), np.percentile(xy[:, 1], [20, 70])
    box = (float(x0), float(x1), float(y0), float(y1))
    expected = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
    at.session_state[at.session_state["plint"].chart_key] = box_event(xy, drawn, box, labels)
    at.run()
    sel = at.session_state["plint"].editor.selection.ids
    assert np.isin(expected, drawn).sum() < expected.size, "some of them are not drawn"
    np.testing.assert_array_equal(sel, expected)
    assert f"**Selection: {expected.size:,} training points**" in [str(m.value) for m in at.markdown]
    # the preview draws the drawn points' targets only; the move commits every selected id
    at.number_input(key="w_dx").set_value(1.0).run()
    preview = next(t for t in traces(at) if t.get("name") == "preview targets")
    from test_app_pages import decode

    assert decode(preview["x"]).size == np.isin(expected, drawn).sum()
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    move = at.session_state["plint"].editor.spec.moves[0]
    assert move.select.ids == tuple(int(i) for i in expected)


def test_a_lasso_and_a_drag_map_box_resolve_on_the_server_too(thinned):
    from streamlit.typing import PlotlyState

    at, xy = thinned
    (cx, cy), r = xy.mean(0), float(np.std(xy[:, 0]))
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    lx, ly = (cx + r * np.cos(angles)).tolist(), (cy + r * np.sin(angles)).tolist()
    expected = np.flatnonzero(np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) < r * np.cos(np.pi / 24))  # surely inside
    at.session_state[at.session_state["plint"].chart_key] = PlotlyState(
        {"selection": {"points": [], "point_indices": [], "box": [], "lasso": [{"x": lx, "y": ly}]}})
    at.run()
    sel = at.session_state["plint"].editor.selection.ids
    assert np.isin(expected, sel).all() and sel.size < len(xy)
    # the drag map sends its box with the ids of the points it draws
    at.segmented_control(key="w_click_mode").set_value("drag").run()
    x0, x1 = np.percentile(xy[:, 0], [40, 60])
    box_ids = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1))
    at.session_state[at.session_state["plint"].drag_key] = {"selection": {
        "ids": [int(box_ids[0])], "n_test": 0, "box": [{"x": [float(x0), float(x1)], "y": [-1e6, 1e6]}], "lasso": [],
        "seq": 1, "token": "t"}}
    at.run()
    np.testing.assert_array_equal(at.session_state["plint"].editor.selection.ids, box_ids)


def test_show_every_point_here_draws_the_selected_region_in_full(thinned, digits):
    at, xy = thinned
    labels = digits.train.labels
    x0, x1 = np.percentile(xy[:, 0], [45, 60])
    box = (float(x0), float(x1), -1e6, 1e6)
    at.session_state[at.session_state["plint"].chart_key] = box_event(xy, drawn_ids(at), box, labels)
    at.run()
    sel = at.session_state["plint"].editor.selection.ids
    assert 0 < sel.size < MAX
    at.button[[b.label for b in at.button].index("Show every point here")].click().run()
    assert not at.exception
    drawn = drawn_ids(at)
    assert np.isin(sel, drawn).all(), "every selected point is drawn in the window"
    assert any("inside the zoomed region" in str(c.value) for c in at.caption)
    at.button[[b.label for b in at.button].index("Show the whole map")].click().run()
    assert drawn_ids(at).size == MAX


def test_the_demo_map_is_not_thinned_by_default(app_environment):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/embedding.py").run()
    names = [t.get("name") for t in traces(at)]
    assert "density (all points)" not in names
    assert drawn_ids(at).size == 1437
    assert not any("Showing" in str(c.value) for c in at.caption)


def test_a_bad_limit_is_one_message_and_the_app_keeps_running(app_environment, monkeypatch):
    monkeypatch.setenv("PLINT_MAP_MAX_POINTS", "lots")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    errors = [str(e.value) for e in at.error]
    assert len(errors) == 1 and "PLINT_MAP_MAX_POINTS='lots' is not a number of points" in errors[0], errors
