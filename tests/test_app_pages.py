"""AppTest tests of every dashboard page, run in-process against a temporary run store.

Selections are simulated the way the browser reports them: a ``PlotlyState``
put into ``session_state`` under the scatter's key, with each point's
customdata as the index-keyed object Plotly's typed arrays turn into.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from app_helpers import APP, RUN_CLASS, RUN_TRANSLATE, TEST_EPOCHS, browser_points, plotly_selection
from streamlit.testing.v1 import AppTest

from plint_app.resources import embedding_jobs
from plint_core.data.loading import load_data
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import InterventionSpec, Move, Selection

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment, stored_run

TIMEOUT = 120


@pytest.fixture(scope="module")
def digits_data():
    return load_data("digits")


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def decode(array) -> np.ndarray:
    """A Plotly JSON array: a list, or the typed-array form ``{dtype, bdata, shape}``."""
    if isinstance(array, dict):
        out = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        shape = array.get("shape")
        if shape:
            out = out.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return out
    return np.asarray(array)


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def scatter_traces(at: AppTest) -> dict[str, dict]:
    return {t.get("name"): t for t in figures(at)[0]["data"]}


def session_data(at: AppTest):
    return at.session_state["plint"]


def select(at: AppTest, ids: np.ndarray, xy: np.ndarray, labels: np.ndarray) -> AppTest:
    at.session_state[session_data(at).chart_key] = plotly_selection(browser_points(ids, xy, labels))
    return at.run()


def embedding_job_for(runs_dir) -> "object":
    """The server's embedding job for the run store ``runs_dir``."""

    return next(job for key, job in embedding_jobs().items() if json.dumps(str(runs_dir.resolve())) in key)


def train_xy(at: AppTest, runs_dir) -> np.ndarray:
    job = embedding_job_for(runs_dir)
    assert job.wait(60) and job.status == "done"
    return job.result.train_xy


# --- page 1: Model & data ------------------------------------------------------
def test_model_page_shows_data_model_and_cached_embedding(app_environment, digits_data):
    at = start()
    assert not at.error
    assert "Model & data" in texts(at.title)
    counts = at.table[0].value
    assert counts.loc["train"].sum() == len(digits_data.train) == 1437 and counts.loc["test"].sum() == 360
    layers = at.dataframe[0].value
    assert layers["layer"].iloc[-1] == "logits"
    assert at.selectbox(key="w_layer").value == "logits"
    assert any(m.label == "Device" and (m.value == "CPU" or m.value.startswith("GPU")) for m in at.metric)
    assert any("loaded from the run store" in s for s in texts(at.success))


def test_after_its_first_page_the_server_hides_its_loaded_modules_from_the_garbage_collector(app_environment):
    """Streamlit collects garbage after every rerun; the modules, model and data loaded by then are frozen
    (gc.freeze), so that collection stays cheap while other sessions' progress bars rerun (bench_concurrency)."""
    import gc

    import pandas
    import plotly
    import torch

    from plint_app.resources import settled_heap

    start()
    assert settled_heap() > 0 and gc.get_freeze_count() > 0
    generations = {id(o) for o in gc.get_objects()}
    for module in (torch, torch.nn.modules.module, pandas, plotly):
        assert id(vars(module)) not in generations, f"{module.__name__} is still scanned by every collection"


def test_bad_configuration_is_an_error_message_not_a_traceback(app_environment, monkeypatch):
    monkeypatch.setenv("PLINT_TSNE_CONFIG", "{not json")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("PLINT_TSNE_CONFIG is not valid JSON" in e for e in texts(at.error))


# --- page 2: Embedding & interventions -----------------------------------------
def test_scatter_has_one_trace_per_class_with_sample_ids(app_environment, digits_data):
    at = start("pages/embedding.py")
    traces = scatter_traces(at)
    assert [str(k) for k in range(10)] == [n for n in traces if n.isdigit()]
    ids = np.concatenate([decode(traces[str(k)]["customdata"])[:, 0] for k in range(10)])
    assert sorted(ids.tolist()) == list(range(1437))
    at.toggle(key="w_show_test").set_value(True).run()
    assert "3 (test)" in scatter_traces(at)


def test_box_selection_preview_and_commit(app_environment, digits_data):
    at = start("pages/embedding.py")
    xy, labels = train_xy(at, app_environment), digits_data.train.labels
    ids = np.array([5, 17, 42])
    select(at, ids, xy[ids], labels[ids])
    assert "**Selection: 3 training points**" in texts(at.markdown)
    assert at.get("image"), "thumbnails of the selection"
    at.number_input(key="w_dx").set_value(1.5).run()
    at.slider(key="w_contract").set_value(0.5).run()
    traces = scatter_traces(at)
    preview = traces["preview targets"]
    expected = 0.5 * xy[ids] + 0.5 * xy[ids].mean(0) + np.array([1.5, 0.0])
    np.testing.assert_allclose(np.c_[decode(preview["x"]), decode(preview["y"])], expected, rtol=1e-4, atol=1e-5)
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    spec = session_data(at).editor.spec
    assert spec.moves == (Move(Selection(ids=(5, 17, 42)), (1.5, 0.0), 0.5),)
    assert any("Move 1 committed" in s for s in texts(at.success))
    assert "committed targets" in scatter_traces(at) and "**Selection: 0 training points**" in texts(at.markdown)
    assert at.number_input(key="w_dx").value == 0.0  # the move settings reset for the next group
    download = next(d for d in at.get("download_button") if d.label == "Download spec (JSON)")
    assert not download.proto.disabled


def test_linked_layer_side_by_side_shares_the_selection(app_environment, digits_data):
    at = start("pages/embedding.py")
    xy, labels = train_xy(at, app_environment), digits_data.train.labels
    at.selectbox(key="w_linked_layer").set_value("act3").run()
    job = next(j for key, j in embedding_jobs().items()
               if key.endswith("|act3|0") and json.dumps(str(app_environment.resolve())) in key)
    assert job.wait(300) and job.status == "done", job.user_error()
    at.run()
    figs = figures(at)
    assert len(figs) == 2, "the run's map and the linked layer's, side by side"
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert titles == ["Layer logits (moves are made here)", "Layer act3 (linked: selecting here selects in both maps)"]
    # a selection in the run's map is ringed in the linked one, at the linked layer's coordinates
    ids = np.array([5, 17, 42])
    select(at, ids, xy[ids], labels[ids])
    linked = {t.get("name"): t for t in figures(at)[1]["data"]}
    other_xy = job.result.train_xy
    np.testing.assert_allclose(np.c_[decode(linked["selected"]["x"]), decode(linked["selected"]["y"])],
                               other_xy[np.sort(ids)], rtol=1e-5)
    # a box in the linked map selects in both: the run's map now rings them
    new = np.array([3, 8, 13, 21])
    at.session_state[session_data(at).linked_key] = plotly_selection(browser_points(new, other_xy[new], labels[new]))
    at.run()
    assert "**Selection: 4 training points**" in texts(at.markdown)
    np.testing.assert_array_equal(session_data(at).editor.selection.ids, new)
    main = scatter_traces(at)
    np.testing.assert_allclose(np.c_[decode(main["selected"]["x"]), decode(main["selected"]["y"])], xy[new], rtol=1e-5)
    # moves stay in the run's map
    at.number_input(key="w_dx").set_value(1.0).run()
    assert "preview targets" in scatter_traces(at) and "preview targets" not in {
        t.get("name") for t in figures(at)[1]["data"]}
    at.selectbox(key="w_linked_layer").set_value("(none)").run()
    assert len(figures(at)) == 1


def test_drag_map_events_set_the_move_and_undo_restores_it(app_environment, digits_data):
    from plint_app.scatter_view import digest

    at = start("pages/embedding.py")
    at.segmented_control(key="w_click_mode").set_value("drag").run()
    assert not at.exception and not figures(at), "the drag map replaces Streamlit's chart"
    sess = session_data(at)
    # a box on the drag map selects, with the sample ids the component reports
    at.session_state[sess.drag_key] = {"selection": {"ids": [5, 17, 42], "n_test": 0, "seq": 1}}
    at.run()
    assert "**Selection: 3 training points**" in texts(at.markdown)
    ids = session_data(at).editor.selection.ids
    # a drag of that group: its translation goes to dx/dy, to be committed
    at.session_state[sess.drag_key] = {"drag": {"dx": 1.2345, "dy": -0.5, "n": 3, "digest": digest(ids), "seq": 2}}
    at.run()
    assert (at.number_input(key="w_dx").value, at.number_input(key="w_dy").value) == (1.234, -0.5)
    assert any("Dragged by (+1.23, -0.50)" in i for i in texts(at.info))
    # a second drag, then Undo drag: back to the first drag's values
    at.session_state[sess.drag_key] = {"drag": {"dx": 3.0, "dy": 1.0, "n": 3, "digest": digest(ids), "seq": 3}}
    at.run()
    assert at.number_input(key="w_dx").value == 3.0
    at.button[[b.label for b in at.button].index("Undo drag")].click().run()
    assert (at.number_input(key="w_dx").value, at.number_input(key="w_dy").value) == (1.234, -0.5)
    # an event already acted on, or a drag of a group that is no longer the selection, changes nothing
    at.session_state[sess.drag_key] = {"drag": {"dx": 9.0, "dy": 9.0, "n": 3, "digest": digest(ids), "seq": 3}}
    at.run()
    assert at.number_input(key="w_dx").value == 1.234
    # a redrawn map counts its events from 1 again: its first drag is acted on
    at.session_state[sess.drag_key] = {"drag": {"dx": 2.0, "dy": 2.0, "n": 3, "digest": digest(ids), "seq": 1,
                                                "token": "redrawn"}}
    at.run()
    assert at.number_input(key="w_dx").value == 2.0
    at.button[[b.label for b in at.button].index("Undo drag")].click().run()
    at.session_state[sess.drag_key] = {"drag": {"dx": 9.0, "dy": 9.0, "n": 2, "digest": "other", "seq": 4}}
    at.run()
    assert at.number_input(key="w_dx").value == 1.234
    assert any("The selection changed during the drag" in i for i in texts(at.info))
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    assert session_data(at).editor.spec.moves == (Move(Selection(ids=(5, 17, 42)), (1.234, -0.5), 1.0),)
    assert "Undo drag" not in [b.label for b in at.button], "the drags belong to the committed move"


def components(at: AppTest) -> dict[str, dict]:
    """The page's custom components (``st.components.v2``) by name: each one's data, as the browser gets it."""
    return {el.proto.component_name: json.loads(el.proto.json or "null") for el in at.get("bidi_component")}


def test_drag_map_sends_the_data_traces_once_and_a_drag_only_the_overlays(app_environment, digits_data):
    from plint_app.scatter_view import digest

    at = start("pages/embedding.py")
    at.segmented_control(key="w_click_mode").set_value("drag").run()
    at.session_state[session_data(at).drag_key] = {"selection": {"ids": [5, 17, 42], "n_test": 0, "seq": 1}}
    at.run()
    base_json = next(el.proto.json for el in at.get("bidi_component") if el.proto.component_name == "plint.drag_base")
    shown = components(at)
    base, drawn = shown["plint.drag_base"], shown["plint.drag_map"]
    # every training point is in the data traces, which the map itself does not carry: only their signature
    ids = np.concatenate([decode(t["customdata"])[:, 0] for t in base["traces"]])
    assert sorted(ids.tolist()) == sorted(digits_data.train.ids.tolist())
    assert drawn["base"] == base["sig"]
    assert not any("customdata" in t for t in drawn["figure"]["data"]), "the map's own traces are overlays"
    assert {t.get("name") for t in drawn["figure"]["data"]} == {"selected"}
    # a drag changes the overlays and acknowledges the event; the data traces' element stays byte for byte the
    # same, so Streamlit's message cache sends a reference instead of every point again
    ids = session_data(at).editor.selection.ids
    at.session_state[session_data(at).drag_key] = {"drag": {"dx": 1.5, "dy": -0.5, "n": 3, "digest": digest(ids),
                                                             "seq": 2, "token": "t"}}
    at.run()
    after = components(at)["plint.drag_map"]
    assert {t.get("name") for t in after["figure"]["data"]} == {"selected", "preview targets"}
    assert after["ack"] == "t:2" and after["ack"] != drawn["ack"]
    assert next(el.proto.json for el in at.get("bidi_component")
                if el.proto.component_name == "plint.drag_base") == base_json
    # another colour: other data traces, under another signature
    at.segmented_control(key="w_color_by").set_value("correct").run()
    recoloured = components(at)
    assert recoloured["plint.drag_base"]["sig"] != base["sig"]
    assert recoloured["plint.drag_map"]["base"] == recoloured["plint.drag_base"]["sig"]
    assert {t["name"] for t in recoloured["plint.drag_base"]["traces"]} == {"correct", "misclassified"}


def test_commit_with_empty_selection_explains_what_to_do(app_environment):
    at = start("pages/embedding.py")
    at.number_input(key="w_dx").set_value(1.0).run()
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    assert not at.exception
    assert any("nothing is selected" in e for e in texts(at.error))
    assert session_data(at).editor.spec.moves == ()


def test_select_by_class_overlap_undo_and_delete(app_environment, digits_data):
    at = start("pages/embedding.py")
    at.multiselect(key="w_classes").set_value([3]).run()
    at.button[[b.label for b in at.button].index("Select classes")].click().run()
    n3 = int((digits_data.train.labels == 3).sum())
    assert f"**Selection: {n3} training points**" in texts(at.markdown)
    at.number_input(key="w_dy").set_value(-2.0).run()
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    assert session_data(at).editor.spec.moves[0].select == Selection(classes=(3,))
    # the same class again overlaps move 1: an error, and the spec is unchanged
    at.button[[b.label for b in at.button].index("Select classes")].click().run()
    at.number_input(key="w_dy").set_value(1.0).run()
    at.button[[b.label for b in at.button].index("Commit move")].click().run()
    assert any("overlaps move 1" in e for e in texts(at.error)) and len(session_data(at).editor.spec.moves) == 1
    at.button(key="delete_move_0").click().run()
    assert session_data(at).editor.spec.moves == ()
    at.button[[b.label for b in at.button].index("Undo")].click().run()
    assert len(session_data(at).editor.spec.moves) == 1


def test_click_destination_sets_the_translation(app_environment, digits_data):
    at = start("pages/embedding.py")
    xy, labels = train_xy(at, app_environment), digits_data.train.labels
    ids = np.flatnonzero(labels == 0)[:20]
    select(at, ids, xy[ids], labels[ids])
    at.segmented_control(key="w_click_mode").set_value("destination").run()
    assert "destination" in scatter_traces(at)
    centroid = xy[ids].mean(0)
    at.session_state[session_data(at).chart_key] = plotly_selection([{"x": 1.25, "y": -0.5, "curve_number": 10}])
    at.run()
    assert at.number_input(key="w_dx").value == pytest.approx(round(1.25 - centroid[0], 2))
    assert at.number_input(key="w_dy").value == pytest.approx(round(-0.5 - centroid[1], 2))
    assert len(session_data(at).editor.selection) == 20, "a destination click keeps the selection"


def test_spec_upload_valid_and_invalid(app_environment):
    at = start("pages/embedding.py")
    good = InterventionSpec((Move(Selection(classes=(1,)), (0.0, 1.0)),)).to_json().encode()
    at.file_uploader(key="w_spec_upload").set_value(("spec.json", good, "application/json")).run()
    assert any("Loaded 1 move(s)" in s for s in texts(at.success))
    assert session_data(at).editor.spec.moves[0].select == Selection(classes=(1,))
    bad = b'{"moves": [{"select": {"classes": [42]}, "translate": [1, 0]}]}'
    at.file_uploader(key="w_spec_upload").set_value(("bad.json", bad, "application/json")).run()
    assert not at.exception
    assert any("was not loaded" in e and "unknown class index 42" in e for e in texts(at.error))
    assert len(session_data(at).editor.spec.moves) == 1


def test_sessions_do_not_share_selections(app_environment, digits_data):
    a, b = start("pages/embedding.py"), start("pages/embedding.py")
    xy, labels = train_xy(a, app_environment), digits_data.train.labels
    select(a, np.array([1, 2]), xy[[1, 2]], labels[[1, 2]])
    b.run()
    assert "**Selection: 2 training points**" in texts(a.markdown)
    assert "**Selection: 0 training points**" in texts(b.markdown)


# --- page 3: Fine-tune --------------------------------------------------------
def run_button(at: AppTest):
    return at.button[[b.label for b in at.button].index("Run fine-tuning and control")]


def test_finetune_without_moves_or_embedding_explains(app_environment):
    at = start("pages/finetune.py")
    assert any("no moves yet" in i for i in texts(at.info))
    run_button(at).click().run()
    assert not at.exception and any("there are no moves yet" in e for e in texts(at.error))
    session_data(at).editor.spec = InterventionSpec((Move(Selection(classes=(2,)), (1.0, 0.0)),))
    at.session_state["w_layer"] = "fc1"  # a layer whose embedding nobody has fitted yet
    at.run()
    run_button(at).click().run()
    assert any("the embedding is not computed yet" in e for e in texts(at.error))


def test_finetune_run_progress_result_and_cache_hit(app_environment, stored_run):
    at = start("pages/finetune.py")
    defaults = {b.key: b.value for b in at.number_input}
    engine = FinetuneConfig()
    assert defaults["w_steps"] == engine.steps and defaults["w_epochs"] == 0 and defaults["w_seed"] == engine.seed
    assert at.selectbox(key="w_select").value == engine.select == "follow"
    assert at.selectbox(key="w_weighting").value == engine.weighting == "calibrated"
    assert at.selectbox(key="w_optimizer").value == engine.optimizer == "adam"
    assert defaults["w_tolerance"] == pytest.approx(engine.tolerance * 100)
    assert defaults["w_patience"] == engine.patience
    assert defaults["w_moved_per_batch"] == engine.moved_per_batch == 8
    assert at.slider(key="w_lam").value == pytest.approx(engine.lam)
    assert at.select_slider(key="w_lr").value == pytest.approx(engine.lr)
    # identical settings to the stored run: reused at once
    session_data(at).editor.spec = InterventionSpec((Move(Selection(classes=(RUN_CLASS,)), RUN_TRANSLATE),))
    at.number_input(key="w_epochs").set_value(TEST_EPOCHS).run()
    run_button(at).click().run()
    job = session_data(at).run_job
    assert job.wait(60) and job.status == "done"
    at.run()
    assert job.result.cache_hit and any("reused the stored run" in s for s in texts(at.success))
    assert session_data(at).current_run_id == stored_run.run_id
    # new settings: a real run (1 epoch) with live progress, then in the history
    at.number_input(key="w_seed").set_value(1).run()
    at.number_input(key="w_epochs").set_value(1).run()
    run_button(at).click().run()
    assert at.get("progress"), "a progress bar while the run is going"
    job = session_data(at).run_job
    assert job.wait(300) and job.status == "done", job.user_error()
    at.run()
    assert not job.result.cache_hit and any("finished in" in s for s in texts(at.success))
    assert job.result.result["executor"] == "local", "fine-tuned in a worker process, not in the server"
    assert job.result.result["seconds"] > 0 and "compute_seconds" not in job.result.result
    assert [m.label for m in at.metric] == ["Test accuracy before", "After PLI fine-tuning", "Control (CE only)"]
    history = at.dataframe[0].value
    assert job.result.run_id in set(history["run id"]) and stored_run.run_id in set(history["run id"])


def test_several_seeds_run_in_turn_and_compare_takes_them_together(app_environment, stored_run):
    at = start("pages/finetune.py")
    session_data(at).editor.spec = InterventionSpec((Move(Selection(classes=(RUN_CLASS,)), RUN_TRANSLATE),))
    at.number_input(key="w_epochs").set_value(TEST_EPOCHS).run()
    at.number_input(key="w_seeds").set_value(2).run()
    run_button(at).click().run()
    job = session_data(at).run_job
    assert job.wait(300) and job.status == "done", job.user_error()
    at.run()
    # seed 0 is the stored run (reused), seed 1 is fine-tuned after it
    assert [r.result["finetune"]["seed"] for r in job.results] == [0, 1] and job.result.run_id == stored_run.run_id
    assert job.results[0].cache_hit and not job.results[1].cache_hit
    assert any("2 seeds run: 0, 1" in s for s in texts(at.success))
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    before = np.array(stored_run.result["confusion"]["before"])
    both = before[RUN_CLASS] + before[:, RUN_CLASS]
    both[RUN_CLASS] = -1
    a, b = sorted((RUN_CLASS, int(np.argmax(both))))  # one class moved: with the class it was most confused with
    assert [m.label for m in at.metric][:4] == [f"{a} ↔ {b} confusions before", "After PLI", "Control (CE only)",
                                                "PLI ÷ control"], "the targeted pair comes first"
    caption = next(c for c in texts(at.caption) if "95 % intervals" in c)
    assert "means over 2 seeds (0, 1)" in caption and "bootstrap over the 360 test images" in caption
    after = [np.array(r.result["confusion"]["after"]) for r in job.results]
    assert at.metric[1].value == f"{np.mean([c[a, b] + c[b, a] for c in after]):.1f}"
    assert at.metric[0].value == f"{before[a, b] + before[b, a]:.0f}"


def test_cancel_stops_the_run(app_environment):
    at = start("pages/finetune.py")
    session_data(at).editor.spec = InterventionSpec((Move(Selection(classes=(4,)), (0.0, 3.0)),))
    at.number_input(key="w_epochs").set_value(50).run()
    run_button(at).click().run()
    at.button[[b.label for b in at.button].index("Cancel run")].click().run()
    job = session_data(at).run_job
    assert job.wait(60) and job.status == "cancelled"
    at.run()
    assert any("cancelled; nothing was stored" in w for w in texts(at.warning))


def test_the_map_moves_on_the_fine_tune_page_while_a_run_trains(app_environment):
    """While a run trains, the page draws the test map through the frozen E at its newest checkpoint, and
    redraws it when a later checkpoint comes in."""
    import time

    from plint_core.finetune import Progress

    at = start("pages/finetune.py")
    session_data(at).editor.spec = InterventionSpec((Move(Selection(classes=(4,)), (0.0, 3.0)),))
    at.number_input(key="w_epochs").set_value(50).run()
    run_button(at).click().run()
    job = session_data(at).run_job
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.running:
        p = job.progress.detail
        if isinstance(p, Progress) and p.snapshot and p.snapshot["step"] > 0:
            break
        time.sleep(0.5)
    snap = job.progress.detail.snapshot
    assert snap["step"] > 0, "a checkpoint after the start came in"
    at.run()
    live = [f for f in figures(at) if "the map at step" in (f["layout"].get("title", {}).get("text") or "")]
    assert len(live) == 1, "the live map is drawn"
    points = sum(len(decode(t["x"])) for t in live[0]["data"] if t.get("name") != "moved training points")
    assert points == len(load_data("digits").test.labels), "every test image (fewer than the snapshot's limit)"
    moved = next(t for t in live[0]["data"] if t.get("name") == "moved training points")
    assert len(decode(moved["x"])) == len(snap["moved_xy"]) > 0
    at.button[[b.label for b in at.button].index("Cancel run")].click().run()
    assert job.wait(60) and job.status == "cancelled"


# --- page 4: Compare ----------------------------------------------------------
def test_compare_shows_three_confusion_matrices_and_downloads(app_environment, stored_run):
    at = start()
    session_data(at).current_run_id = stored_run.run_id
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    figs = figures(at)
    titles = [f["layout"].get("title", {}).get("text") for f in figs]
    for title in ("Before fine-tuning", "After PLI fine-tuning", "Control (CE only)"):
        z = decode(figs[titles.index(title)]["data"][0]["z"])
        assert z.shape == (10, 10) and z.sum() == 360
    diff = decode(figs[titles.index("After − before")]["data"][0]["z"])
    np.testing.assert_array_equal(diff, np.array(stored_run.result["confusion"]["after"]) -
                                  np.array(stored_run.result["confusion"]["before"]))
    table = at.dataframe[0].value
    assert "Δ f1" in table.columns and len(table) == 10
    labels = [d.label for d in at.get("download_button")]
    assert labels[:1] == ["Fine-tuned weights (safetensors)"] and "Spec (JSON)" in labels and "Metrics (CSV)" in labels


def test_compare_draws_the_trade_off_path_and_a_pick_changes_what_follows(app_environment, stored_run):
    """The path of both runs (validation accuracy against the edit's distance), a pick of a PLI checkpoint on it,
    and everything below following the pick: step 0 shows the model before fine-tuning as "after"; the address
    links to the pick; the playback has a frame per checkpoint."""
    at = start()
    session_data(at).current_run_id = stored_run.run_id
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    path = stored_run.result["path"]
    steps = [c["step"] for c in path["pli"]]
    own = stored_run.result["selection"]["pli"]["step"]
    picker = at.select_slider(key=f"w_pick_{stored_run.run_id}")
    assert len(picker.options) == len(steps) and any("★ rule" in o for o in picker.options)
    assert picker.value == own and at.query_params["step"] == str(own)
    figs = figures(at)
    titles = [f["layout"].get("title", {}).get("text") or "" for f in figs]
    trade = figs[next(i for i, t in enumerate(titles) if t.startswith("Trade-off path"))]
    pli_trace = next(t for t in trade["data"] if t.get("name") == "PLI")
    np.testing.assert_allclose(decode(pli_trace["y"]), [c["accuracy"] for c in path["pli"]])
    animation = figs[next(i for i, t in enumerate(titles) if t.startswith("The test map while"))]
    assert [f["name"] for f in animation["frames"]] == [str(s) for s in steps]

    def after_matrix():
        figs = figures(at)
        names = [f["layout"].get("title", {}).get("text") for f in figs]
        return decode(figs[names.index("After PLI fine-tuning")]["data"][0]["z"])

    np.testing.assert_array_equal(after_matrix(), stored_run.result["confusion"]["after"])
    picker.set_value(0).run()
    assert not at.exception and not at.error
    np.testing.assert_array_equal(after_matrix(), stored_run.result["confusion"]["before"])
    assert at.query_params["step"] == "0"
    assert any("step 0 picked" in c for c in texts(at.caption))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["After PLI fine-tuning"] == f"{stored_run.result['accuracy']['before']:.4f}"
    labels = [d.label for d in at.get("download_button")]
    assert labels[0] == "Fine-tuned weights (safetensors)", "step 0's weights are stored too"


def test_compare_recomputes_a_checkpoint_a_large_model_did_not_keep(app_environment, monkeypatch):
    """A run over the weights budget keeps only the checkpoints a rule can pick; picking another on Compare offers
    to recompute its weights, a worker does, and its download appears."""
    import time

    import plint_core.finetune as finetune_module
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.pipeline import run_intervention

    project = Project.load(AppConfig.from_env())
    one = sum(v.numel() * v.element_size() for v in project.bundle.module.state_dict().values())
    monkeypatch.setattr(finetune_module, "CHECKPOINT_BUDGET_BYTES", one)
    spec = InterventionSpec((Move(Selection(classes=(RUN_CLASS,)), RUN_TRANSLATE),))
    run = run_intervention(project.data, project.bundle, project.embedding(project.default_layer, 0), spec,
                           FinetuneConfig(epochs=TEST_EPOCHS, device="cpu", seed=7), store=project.store)
    missing = [c["step"] for c in run.result["path"]["pli"] if c["step"] not in run.result["path"]["stored_weights"]]
    assert missing
    at = start()
    session_data(at).current_run_id = run.run_id
    at.switch_page("pages/compare.py").run()
    at.select_slider(key=f"w_pick_{run.run_id}").set_value(missing[0]).run()
    assert "Fine-tuned weights (safetensors)" not in [d.label for d in at.get("download_button")]
    assert any("were not stored" in c for c in texts(at.caption))
    at.button(key=f"w_replay_{run.run_id}_{missing[0]}").click().run()
    job = at.session_state["_plint_replay_jobs"][(run.run_id, missing[0])]
    assert job.wait(300) and job.status == "done", job.user_error()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Fine-tuned weights (safetensors)" not in \
            [d.label for d in at.get("download_button")]:
        at.run()
    assert not at.exception and "Fine-tuned weights (safetensors)" in [d.label for d in at.get("download_button")]
    assert json.loads((run.directory / "checkpoints" / f"pli-{missing[0]:07d}.replay.json").read_text())[
        "differing_test_predictions"] == 0, "recomputed in the worker: the path's own checkpoint"


def test_a_deep_link_to_an_unknown_checkpoint_says_so(app_environment, stored_run):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["run"] = stored_run.run_id
    at.query_params["step"] = "12345"
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    assert any("has no checkpoint at step 12345" in w for w in texts(at.warning))
    assert at.query_params["step"] == str(stored_run.result["selection"]["pli"]["step"])


def test_run_against_run_on_compare(app_environment, stored_run):
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.pipeline import run_intervention

    project = Project.load(AppConfig.from_env())
    spec = InterventionSpec((Move(Selection(classes=(RUN_CLASS,)), RUN_TRANSLATE),))
    other = run_intervention(project.data, project.bundle, project.embedding(project.default_layer, 0), spec,
                             FinetuneConfig(epochs=TEST_EPOCHS, device="cpu", seed=2, lam=0.3), store=project.store)
    a, b = stored_run.result, other.result
    at = start()
    session_data(at).current_run_id = stored_run.run_id
    at.switch_page("pages/compare.py").run()
    at.selectbox(key="w_versus").set_value(other.run_id).run()
    assert not at.exception and not at.error
    frames = [d.value for d in at.dataframe]
    settings = next(f for f in frames if "differs" in f.columns)
    assert settings.loc["seed", "differs"] and settings.loc["λ", "differs"] and not settings.loc["moves", "differs"]
    assert (settings.loc["seed", "run A"], settings.loc["seed", "run B"]) == ("0", "2")
    acc = next(f for f in frames if "B − A" in f.columns)
    for model, title in (("after", "After PLI fine-tuning"), ("control", "Control (CE only)")):
        assert acc.loc[title, "B − A"] == pytest.approx(b["accuracy"][model] - a["accuracy"][model])
    per_class = next(f for f in frames if "Δ f1" in f.columns and "f1 A" in f.columns)
    np.testing.assert_allclose(per_class["Δ f1"].to_numpy(), [fb["f1"] - fa["f1"] for fa, fb in
                                                             zip(a["per_class"]["after"], b["per_class"]["after"])])
    figs = figures(at)
    diff = next(f for f in figs if f["layout"].get("title", {}).get("text") == "After PLI: B − A")
    np.testing.assert_array_equal(decode(diff["data"][0]["z"]),
                                  np.array(b["confusion"]["after"]) - np.array(a["confusion"]["after"]))


def test_deep_link_opens_a_run_on_compare_and_the_address_follows_the_page(app_environment, stored_run):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["run"] = stored_run.run_id
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    assert session_data(at).current_run_id == stored_run.run_id
    assert at.query_params["run"] == stored_run.run_id and not at.warning


def test_deep_link_to_an_unknown_run_says_so_and_offers_the_history(app_environment, stored_run):
    at = start()
    at.query_params["run"] = "0123456789abcdef0123"
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    assert any("There is no run `0123456789abcdef0123` in this project's history" in w for w in texts(at.warning))
    assert [b.label for b in at.selectbox][:1] == ["Run"], "the history to pick from"
    assert at.query_params["run"] == session_data(at).current_run_id, "the address now links to the run shown"
    at.run()
    assert not at.warning, "said once"


def test_deep_link_to_a_layer(app_environment):
    at = start()
    at.query_params["layer"] = "fc1"
    at.switch_page("pages/embedding.py").run()
    assert not at.exception and not at.error
    assert at.session_state["w_layer"] == "fc1" and at.query_params["layer"] == "fc1"
    at.query_params["layer"] = "no_such_layer"
    at.run()
    warning = next(w for w in texts(at.warning) if "no layer" in w)
    assert "The model has no layer `no_such_layer`: showing `fc1`" in warning and "logits" in warning
    assert at.query_params["layer"] == "fc1"


def test_fresh_store_fits_with_progress_then_compare_has_nothing_yet(app_environment, monkeypatch, tmp_path):
    monkeypatch.setenv("PLINT_RUNS_DIR", str(tmp_path))
    at = start()
    assert any("is being fitted" in i for i in texts(at.info)) and at.get("progress")
    job = embedding_job_for(tmp_path)
    assert job.wait(300) and job.status == "done"
    at.run()
    assert any("is ready (fitted on this server" in s for s in texts(at.success))
    assert any(p.is_dir() for p in (tmp_path / "embeddings").iterdir()), "the fit is stored for the next start"
    at.switch_page("pages/compare.py").run()
    assert any("No fine-tuning runs yet" in i for i in texts(at.info))
