"""The Embedding page's *Find an image*: search by id or file name, or a click on one point, and the panel of the
image's nearest neighbours in latent space (AppTest, in-process, against the test run store)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from app_helpers import APP, app_env, browser_points, plotly_selection
from own_data import save_torchscript, write_image_folder
from streamlit.testing.v1 import AppTest
from streamlit.typing import PlotlyState

from plint_app.neighbour_panel import FOCUS_KEY, QUERY_KEY
from plint_core.latent_cache import cached_latents
from plint_core.neighbours import file_names

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment

TIMEOUT = 120


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def main_figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def traces(at: AppTest) -> dict[str, dict]:
    return {t.get("name"): t for t in main_figure(at)["data"]}


def xy_of(trace: dict) -> np.ndarray:
    from test_app_pages import decode

    return np.c_[decode(trace["x"]), decode(trace["y"])]


def neighbour_table(at: AppTest):
    return at.dataframe[0].value


def search(at: AppTest, query: str) -> AppTest:
    return at.text_input(key=QUERY_KEY).input(query).run()


@pytest.fixture(scope="module")
def demo(app_runs):
    """The demo project's logits latents, predictions and map, as the app has them."""
    from plint_app.config import AppConfig
    from plint_app.project import Project

    project = Project.load(AppConfig.from_env(app_env(app_runs)))
    emb = project.embedding(project.default_layer, 0)
    lat = cached_latents(project.data, project.bundle, emb.layer, project.store)
    return project, emb, np.asarray(lat.latents("train"), dtype=np.float64)


def nearest(latents: np.ndarray, row: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((latents - latents[row]) ** 2).sum(1))
    d[row] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


def test_search_by_id_rings_and_centres_the_image_and_lists_its_ten_neighbours(app_environment, demo):
    project, emb, latents = demo
    at = start()
    assert "found" not in traces(at) and not at.dataframe, "no panel before a search"
    search(at, "17")
    assert not at.exception and not at.error
    names = project.data.class_names
    label, pred = int(project.data.train.labels[17]), int(emb.train_pred[17])
    assert any(m.startswith(f"**Image id 17 (train)**: label **{names[label]}**, prediction **{names[pred]}**")
               for m in texts(at.markdown))
    table = neighbour_table(at)
    rows, dists = nearest(latents, 17)
    assert len(table) == 10 and table["rank"].tolist() == list(range(1, 11))
    np.testing.assert_array_equal(table["id"].to_numpy(), project.data.train.ids[rows])
    np.testing.assert_allclose(table["distance"].to_numpy(), dists, atol=1e-3)
    assert table["label"].tolist() == [names[k] for k in project.data.train.labels[rows]]
    assert any(len(img.proto.imgs) == 10 for img in at.get("image")), "the ten neighbours' images"
    # the map rings the image and its neighbours, and is centred on it
    shown = traces(at)
    np.testing.assert_allclose(xy_of(shown["found"]), emb.train_xy[[17]], rtol=1e-5)
    np.testing.assert_allclose(xy_of(shown["neighbours"]), emb.train_xy[rows], rtol=1e-5)
    layout = main_figure(at)["layout"]
    centre = [np.mean(layout["xaxis"]["range"]), np.mean(layout["yaxis"]["range"])]
    np.testing.assert_allclose(centre, emb.train_xy[17], rtol=1e-4, atol=1e-4)
    first = layout["uirevision"]
    search(at, "test 4")
    assert any("test point 4 is not on the map" in e for e in texts(at.error)), "test points are hidden"
    at.toggle(key="w_show_test").set_value(True).run()
    search(at, "test:4")
    assert not at.error and any(m.startswith("**Image id 4 (test)**") for m in texts(at.markdown))
    assert main_figure(at)["layout"]["uirevision"] != first, "a new search centres the map again"
    at.button(key="w_neighbour_close").click().run()
    assert "found" not in traces(at) and not at.dataframe and FOCUS_KEY not in at.session_state


@pytest.mark.parametrize("query, message", [
    ("99999", "no train point has id 99999: train ids run from 0 to 1436"),
    ("seven.png", "'seven.png' is not a sample id, and this data set has no file names: search by sample id "
                  "(from 0 to 1436), or 'test 5' for a test point"),
])
def test_a_search_that_finds_nothing_says_so_once_and_changes_nothing(app_environment, query, message):
    at = start()
    search(at, "17")
    before, focus = main_figure(at), at.session_state[FOCUS_KEY]
    search(at, query)
    assert not at.exception
    assert texts(at.error) == [message]
    assert at.session_state[FOCUS_KEY] == focus and main_figure(at) == before
    assert len(neighbour_table(at)) == 10 and any(m.startswith("**Image id 17 (train)**") for m in texts(at.markdown))


def test_clicking_one_point_in_inspect_mode_opens_its_panel_and_box_selection_still_selects(app_environment, demo):
    project, emb, latents = demo
    at = start()
    labels = project.data.train.labels
    whole = main_figure(at)["layout"]["xaxis"]["range"]
    at.segmented_control(key="w_click_mode").set_value("inspect").run()
    sess = at.session_state["plint"]
    assert main_figure(at)["layout"]["dragmode"] == "pan"
    at.session_state[sess.chart_key] = plotly_selection(browser_points([42], emb.train_xy[[42]], labels[[42]]))
    at.run()
    assert not at.exception and not at.error
    assert any(m.startswith("**Image id 42 (train)**") for m in texts(at.markdown))
    np.testing.assert_array_equal(neighbour_table(at)["id"].to_numpy(), project.data.train.ids[nearest(latents, 42)[0]])
    assert at.text_input(key=QUERY_KEY).value == "42", "the search box names the clicked point"
    np.testing.assert_allclose(xy_of(traces(at)["found"]), emb.train_xy[[42]], rtol=1e-5)
    assert main_figure(at)["layout"]["xaxis"]["range"] == whole, "a click does not move the map"
    assert "**Selection: 0 training points**" in texts(at.markdown), "inspecting selects nothing"
    at.button(key="w_neighbour_select").click().run()
    assert "**Selection: 1 training points**" in texts(at.markdown)
    np.testing.assert_array_equal(at.session_state["plint"].editor.selection.ids, [42])
    # back in Select mode, a box around three points selects them, as before, and the panel stays on the image
    at.segmented_control(key="w_click_mode").set_value("select").run()
    sess = at.session_state["plint"]
    ids = np.array([5, 17, 23])
    points = browser_points(ids, emb.train_xy[ids], labels[ids])
    at.session_state[sess.chart_key] = PlotlyState({"selection": {
        "points": points, "point_indices": [0, 1, 2], "lasso": [],
        "box": [{"x": [-100.0, 100.0], "y": [-100.0, 100.0], "xref": "x", "yref": "y"}]}})
    at.run()
    assert "**Selection: 3 training points**" in texts(at.markdown)
    assert any(m.startswith("**Image id 42 (train)**") for m in texts(at.markdown))
    # in Destination mode a click picks the destination, not an image
    at.segmented_control(key="w_click_mode").set_value("destination").run()
    sess = at.session_state["plint"]
    at.session_state[sess.chart_key] = plotly_selection(browser_points([7], emb.train_xy[[7]], labels[[7]]))
    at.run()
    assert any(m.startswith("**Image id 42 (train)**") for m in texts(at.markdown))
    assert at.number_input(key="w_dx").value != 0.0, "the click set the destination"


@pytest.fixture(scope="module")
def fruit(tmp_path_factory):
    """An image-folder project (36 PNGs, three classes, train/ and test/) and a TorchScript CNN, its embedding
    fitted into its own run store, as the app's environment variables name them."""
    from plint_app.config import AppConfig
    from plint_app.project import Project

    base = tmp_path_factory.mktemp("fruit")
    data = write_image_folder(base / "fruit", split=True)
    model = save_torchscript(base / "cnn.pt")
    env = {**app_env(base / "runs"), "PLINT_DATA": str(data), "PLINT_MODEL": str(model)}
    project = Project.load(AppConfig.from_env(env))
    project.embedding(project.default_layer, 0)
    return env, project


def test_search_by_file_name_exact_or_unique_part_and_an_ambiguous_one_lists_them(fruit, monkeypatch):
    env, project = fruit
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = start()
    names = file_names(project.data.train)
    target = names[5]
    assert target.startswith("train/")
    search(at, target.rsplit("/", 1)[-1])  # the file's own name
    assert not at.exception and not at.error
    assert any(m.startswith(f"**Image id 5 (train), {target}**") for m in texts(at.markdown))
    table = neighbour_table(at)
    assert len(table) == 10 and all(f.startswith("train/") for f in table["file"])
    search(at, "durian")
    assert texts(at.error) == ["no image's file name contains 'durian': type a sample id or part of a file name, "
                               f"such as {names[0]!r}"]
    search(at, "banana")
    (error,) = texts(at.error)
    assert error.startswith("'banana' matches 9 file names: train/banana/")
    assert error.endswith("; type more of the name")
    assert any(m.startswith(f"**Image id 5 (train), {target}**") for m in texts(at.markdown)), "unchanged"
