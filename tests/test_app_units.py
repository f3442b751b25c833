"""Unit tests of the dashboard's pure helpers (no Streamlit runtime involved)."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from plint_app.chart_events import customdata_row, parse_event
from plint_app.config import AppConfig
from plint_app.editor import Editor, TrainIndex
from plint_app.history import history_table
from plint_app.jobs import CANCELLED, DONE, FAILED, Job, JobRegistry
from plint_app.scatter import PointSet, base_traces, destination_grid, marker_size
from plint_app.scatter_view import move_target
from plint_core.data.replicate import replicate_train
from plint_core.device import choose_threads, cpu_quota
from plint_core.errors import PlintError, RunCancelled
from plint_core.intervention import InterventionSpec, Move, Selection
from plint_core.report.figures import before_after_figure, confusion_figure, difference_figure, moved_groups
from plint_core.report.summaries import metrics_csv, per_class_table, spec_summary
from plint_core.report.thumbnails import montage, pick


@pytest.fixture
def index() -> TrainIndex:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    return TrainIndex(np.arange(30), labels, rng.normal(size=(30, 2)).astype(np.float32), ("a", "b", "c"))


# --- config -------------------------------------------------------------------
def test_config_defaults_and_overrides(tmp_path):
    assert AppConfig.from_env({}).runs_dir.as_posix() == "runs"
    cfg = AppConfig.from_env({"PLINT_RUNS_DIR": str(tmp_path), "PLINT_TSNE_CONFIG": '{"n_iter": 7}',
                              "PLINT_SCALE_POINTS": "2000"})
    assert cfg.runs_dir == tmp_path and cfg.tsne.n_iter == 7 and cfg.scale_points == 2000


@pytest.mark.parametrize("env, fragment", [({"PLINT_TSNE_CONFIG": "{oops"}, "not valid JSON"),
                                           ({"PLINT_TSNE_CONFIG": '{"bogus": 1}'}, "unknown keys"),
                                           ({"PLINT_SCALE_POINTS": "-3"}, "is not a number of points: give 0 or"),
                                           ({"PLINT_DEVICE": "tpu"}, "PLINT_DEVICE")])
def test_config_errors_are_plint_errors(env, fragment):
    with pytest.raises(PlintError, match=fragment):
        AppConfig.from_env(env)


def test_thread_count_respects_setting_and_cpu_quota(tmp_path):
    auto, fixed = AppConfig.from_env({}), AppConfig.from_env({"PLINT_TORCH_THREADS": "1"})
    assert choose_threads(fixed.torch_threads, 8, None) == 1
    assert choose_threads(auto.torch_threads, 8, 2) == 2 and choose_threads(auto.torch_threads, 8, None) == 8
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None and cpu_quota(tmp_path / "absent") is None


# --- editor -------------------------------------------------------------------
def test_editor_selection_modes(index):
    ed = Editor()
    ed.select_ids([3, 1, 2, 2])
    assert ed.selection.ids.tolist() == [1, 2, 3]
    ed.select_ids([5], "add")
    ed.select_ids([1], "remove")
    assert ed.selection.ids.tolist() == [2, 3, 5] and ed.selection.from_chart is None
    ed.select_classes([2], index)
    assert ed.selection.classes == (2,) and ed.selection.ids.tolist() == list(range(20, 30))
    assert ed.pending_move((1.0, 0.0), 1.0).select == Selection(classes=(2,))


def test_editor_commit_undo_delete_and_validation(index):
    ed = Editor()
    with pytest.raises(PlintError, match="nothing is selected"):
        ed.pending_move((1.0, 0.0), 1.0)
    ed.select_ids([0, 1, 2])
    ed.commit(ed.pending_move((1.0, -1.0), 0.5), index)
    assert len(ed.spec.moves) == 1 and ed.spec.moves[0].select.ids == (0, 1, 2) and not len(ed.selection)
    ed.select_ids([2, 3])  # overlaps move 1 in point 2
    with pytest.raises(PlintError, match="overlaps"):
        ed.commit(ed.pending_move((0.0, 1.0), 1.0), index)
    assert len(ed.spec.moves) == 1  # rejected moves never reach the spec
    ed.select_classes([1], index)
    ed.commit(ed.pending_move((0.0, 2.0), 1.0), index)
    ed.delete(0, index)
    assert [m.select for m in ed.spec.moves] == [Selection(classes=(1,))]
    ed.undo()
    assert len(ed.spec.moves) == 2
    with pytest.raises(PlintError, match="unknown sample id"):
        ed.set_spec(InterventionSpec((Move(Selection(ids=(99,)), (1.0, 0.0)),)), index)


def test_editor_select_confused_and_add_moves_as_one_undo_step(index):
    from plint_core.intervention import separate_classes

    preds = index.labels.copy()
    preds[[0, 1]] = 1  # two a's predicted as b
    preds[12] = 0  # one b predicted as a
    preds[25] = 0  # a c predicted as a: not the pair's
    ed = Editor()
    assert ed.select_confused(0, 1, index, preds) == 3 and ed.selection.ids.tolist() == [0, 1, 12]
    with pytest.raises(PlintError, match="nothing to select"):
        ed.select_confused(1, 2, index, preds)
    assert ed.selection.ids.tolist() == [0, 1, 12]  # a refused selection leaves the old one
    with pytest.raises(PlintError, match="two different"):
        ed.select_confused(1, 1, index, preds)
    ed.select_ids([20])
    ed.commit(ed.pending_move((0.0, 1.0), 1.0), index)
    ed.add_moves(separate_classes(index.xy, index.labels, 0, 1, distance=2.0), index)
    assert [m.select for m in ed.spec.moves] == [Selection(ids=(20,)), Selection(classes=(0,)),
                                                   Selection(classes=(1,))]
    with pytest.raises(PlintError, match="overlaps"):  # class 2 holds point 20, moved by move 1: nothing is added
        ed.add_moves(separate_classes(index.xy, index.labels, 0, 2, distance=2.0), index)
    assert len(ed.spec.moves) == 3
    ed.undo()  # both moves of the pair edit go at once
    assert [m.select for m in ed.spec.moves] == [Selection(ids=(20,))]


def test_index_rows_of_non_contiguous_ids():
    idx = TrainIndex(np.array([10, 30, 20]), np.zeros(3, int), np.zeros((3, 2)), ("a",))
    assert idx.rows_of(np.array([20, 10])).tolist() == [2, 0]


# --- chart events -------------------------------------------------------------
def test_parse_event_reads_browser_customdata_and_skips_test_points():
    state = {"selection": {"points": [
        {"x": 0.5, "y": 1.0, "customdata": {"0": 7, "1": 3, "2": 3, "3": 0}},
        {"x": 0.1, "y": 0.2, "customdata": [4, 1, 2, 0]},
        {"x": 0.0, "y": 0.0, "customdata": {"0": 7, "1": 3, "2": 3, "3": 1}},  # a test point
        {"x": 2.0, "y": 3.0}],  # a grid point
        "point_indices": [0, 1, 2, 3], "box": [{"x": [0, 2], "y": [1, 3]}], "lasso": []}}
    ev = parse_event(state)
    assert ev.train_ids.tolist() == [4, 7] and ev.n_test == 1
    assert ev.destination() == (1.0, 2.0)  # centre of the box
    assert parse_event(None).empty and parse_event(state).signature == ev.signature
    assert customdata_row({"0": 1, "1": 2}) == [1, 2] and customdata_row(5) is None


def test_click_destination_is_the_clicked_point():
    ev = parse_event({"selection": {"points": [{"x": 1.5, "y": -2.0}], "point_indices": [0], "box": [], "lasso": []}})
    assert ev.train_ids.size == 0 and ev.destination() == (1.5, -2.0)


# --- figures ------------------------------------------------------------------
def test_base_traces_one_per_class_with_ids_in_customdata():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    preds = labels.copy()
    preds[:5] = 1
    train = PointSet.of(rng.normal(size=(100, 2)), np.arange(100), labels, preds, 0)
    test = PointSet.of(rng.normal(size=(20, 2)), np.arange(20), labels[::5], labels[::5], 1)
    traces = base_traces(train, None, ["0", "1", "2", "3"], "label")
    assert len(traces) == 4 and sum(len(t.x) for t in traces) == 100
    first = traces[0]
    assert first.type == "scattergl" and np.asarray(first.customdata)[:, 0].tolist() == list(range(25))
    assert len(base_traces(train, test, ["0", "1", "2", "3"], "label")) == 8
    correct = base_traces(train, None, ["0", "1", "2", "3"], "correct")
    assert [t.name for t in correct] == ["correct", "misclassified"] and len(correct[1].x) == 5
    named = base_traces(train, None, ["w", "x", "y", "z"], "prediction")
    assert "label w" in named[0].text[0]


def test_marker_size_shrinks_with_points():
    assert marker_size(500) > marker_size(20_000) >= marker_size(50_000) >= 3.0


def test_destination_grid_covers_ranges():
    grid = destination_grid((-1.0, 1.0), (0.0, 2.0), steps=5).traces[0]
    assert len(grid.x) == 25 and min(grid.x) == -1.0 and max(grid.y) == 2.0


def test_move_target_matches_engine(index):
    spec = InterventionSpec((Move(Selection(ids=(0, 1, 2, 3)), (1.0, -2.0), 0.5),))
    engine, moved = spec.targets(index.xy, index.labels, index.ids, index.class_names)
    np.testing.assert_allclose(move_target(index.xy[:4], (1.0, -2.0), 0.5), engine[:4], rtol=1e-5)
    assert moved.sum() == 4


def test_montage_frames_by_correctness():
    images = np.zeros((3, 1, 8, 8), np.float32)
    out = montage(images, np.array([True, False, True]), columns=2)
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert tuple(out[0, 0]) == (44, 160, 44) and tuple(out[0, out.shape[1] // 2 + 2]) == (214, 39, 40)
    assert pick(np.arange(100), 10).tolist()[0] == 0 and len(pick(np.arange(100), 10)) == 10


def fake_result() -> dict:
    eye = (np.eye(3, dtype=int) * 10).tolist()
    after = [[9, 1, 0], [0, 10, 0], [0, 0, 10]]
    pc = lambda f: [{"class": c, "precision": f, "recall": f, "f1": f, "support": 10} for c in "abc"]  # noqa: E731
    return {"run_id": "r1", "created": "2026-11-26T10:00:00", "data": "digits", "layer": "logits",
            "classes": ["a", "b", "c"], "n_test": 30, "n_moved": 10, "device": "cpu",
            "spec": {"moves": [{"select": {"classes": [1]}, "translate": [1.0, 0.0], "contract": 1.0}]},
            "finetune": {"lam": 0.1, "epochs": 2, "lr": 5e-4, "batch_size": 64, "seed": 0},
            "accuracy": {"before": 1.0, "after": 29 / 30, "control": 1.0},
            "confusion": {"before": eye, "after": after, "control": eye},
            "per_class": {"before": pc(1.0), "after": pc(0.9), "control": pc(0.95)}}


def test_per_class_table_deltas_and_csv():
    r = fake_result()
    table = per_class_table(r)
    assert table.loc["a", "Δ f1"] == pytest.approx(-0.1) and table.loc["b", "Δ recall vs control"] == pytest.approx(-0.05)
    csv = pd.read_csv(pd.io.common.StringIO(metrics_csv(r)))
    assert list(csv["class"]) == ["a", "b", "c", "accuracy (all)"]


def test_confusion_figures_share_scale_and_difference():
    r = fake_result()
    fig = confusion_figure(r["confusion"]["after"], r["classes"], "After", zmax=10)
    assert fig.data[0].zmax == 10 and np.asarray(fig.data[0].z).sum() == 30
    diff = difference_figure(r["confusion"]["before"], r["confusion"]["after"], r["classes"])
    assert np.asarray(diff.data[0].z).tolist()[0] == [-1, 1, 0] and diff.data[0].zmid == 0


def test_before_after_figure_marks_errors_and_moved_groups():
    table = pd.DataFrame({"id": range(6), "label": [0, 0, 1, 1, 2, 2], "pred_before": [0, 1, 1, 1, 2, 2],
                          "pred_after": [0, 0, 1, 1, 2, 0], "x_before": np.arange(6.0), "y_before": np.zeros(6),
                          "x_after": np.arange(6.0) + 1, "y_after": np.ones(6)})
    groups = [(np.zeros((2, 2)), np.full((2, 2), 9.0))]
    fig = before_after_figure(table, ["a", "b", "c"], groups)
    wrong = [t for t in fig.data if t.name == "misclassified"]
    assert [len(t.x) for t in wrong] == [1, 1] and wrong[0].x[0] == 1.0 and wrong[1].x[0] == 6.0
    assert sum(t.name == "moved group targets" for t in fig.data) == 2 and len(fig.layout.annotations) >= 2
    assert fig.layout.xaxis.range[1] >= 9.0  # both panels share ranges that include the targets


def test_history_and_summary():
    r = fake_result()
    assert spec_summary(r["spec"]) == "class 1 → (+1.0, +0.0)"
    table = history_table([r, {"run_id": "broken"}])
    assert len(table) == 1 and table.loc[0, "accuracy after"] == pytest.approx(29 / 30)


def test_moved_groups_from_spec():
    labels, ids = np.array([0, 1, 1, 2]), np.arange(4)
    targets = np.arange(8, dtype=float).reshape(4, 2)
    xy = targets - 1
    groups = moved_groups(fake_result()["spec"], targets, np.array([0, 1, 1, 0], bool), labels, ids, "abc", xy)
    assert len(groups) == 1 and groups[0][1].tolist() == targets[1:3].tolist() and groups[0][0][0, 0] == 1.0


# --- jobs ---------------------------------------------------------------------
def test_job_reports_and_finishes():
    job = Job(lambda j: (j.report("work", 0.5), 42)[1]).start()
    assert job.wait(10) and job.status == DONE and job.result == 42 and job.progress.fraction == 0.5


def test_job_cancel_and_failure():
    started = threading.Event()

    def work(job):
        started.set()
        while not job.cancel_event.wait(0.01):
            pass
        raise RunCancelled("stop")

    job = Job(work).start()
    started.wait(5)
    job.cancel()
    assert job.wait(5) and job.status == CANCELLED
    bad = Job(lambda j: (_ for _ in ()).throw(PlintError("bad input"))).start()
    bad.wait(5)
    assert bad.status == FAILED and bad.user_error() == "bad input"


def test_a_failed_job_keeps_its_message_but_not_its_locals(caplog):
    """The error stays on the page; the frames it was raised in (a loader's workers, an upload's temporary
    folder) do not stay with it. Unexpected failures go to the server log with their traceback."""
    import gc
    import weakref

    class Held:  # stands for a DataLoader with worker processes
        pass

    refs = []

    def work(job):
        held = Held()
        refs.append(weakref.ref(held))
        try:
            raise OSError("disk gone")
        except OSError as exc:
            raise ValueError("could not read the batch") from exc

    job = Job(work, "fine-tuning").start()
    assert job.wait(5) and job.status == FAILED
    gc.collect()
    assert refs[0]() is None, "the failed job's traceback keeps its locals alive"
    assert job.error.__traceback__ is None and job.error.__cause__.__traceback__ is None
    assert job.user_error() == ("fine-tuning failed unexpectedly (ValueError: could not read the batch). "
                                "Try again; if it keeps failing, report it with the server log.")
    assert "fine-tuning failed" in caplog.text and "disk gone" in caplog.text  # the log has the whole chain


def test_registry_shares_jobs_and_retries_failures():
    reg = JobRegistry()
    calls = []
    first = reg.ensure("k", lambda j: calls.append(1))
    first.wait(5)
    assert reg.ensure("k", lambda j: calls.append(2)) is first and calls == [1]
    failing = reg.ensure("f", lambda j: 1 / 0)
    failing.wait(5)
    assert reg.ensure("f", lambda j: 1) is failing, "a failure stays until the user retries"
    assert reg.ensure("f", lambda j: 1, retry=True) is not failing
    cancelled = reg.ensure("c", lambda j: (j.cancel(), j.check_cancelled()))
    cancelled.wait(5)
    assert cancelled.status == CANCELLED and reg.ensure("c", lambda j: 1) is not cancelled


# --- scaled data --------------------------------------------------------------
def test_replicate_train_cycles_rows_and_keeps_test(digits):
    big = replicate_train(digits, 3000)
    n = len(digits.train)
    assert len(big.train) == 3000 and big.train.ids.tolist() == list(range(3000))
    assert np.array_equal(big.train.images[:n], digits.train.images)
    assert np.array_equal(big.train.labels[n:2 * n], digits.train.labels)
    assert not np.array_equal(big.train.images[n:2 * n], digits.train.images)
    assert np.asarray(big.train.images).min() >= 0 and np.asarray(big.train.images).max() <= 1 and big.test is digits.test


def test_replicated_rows_are_read_on_demand_and_projected_once(tmp_path, digits, demo, demo_embedding, monkeypatch):
    import plint_core.latent_cache as cache_module
    from plint_core.data.replicate import JitteredCopies
    from plint_core.pipeline import project_embedding
    from plint_core.store import RunStore

    big = replicate_train(digits, 3000)
    images = big.train.images
    assert isinstance(images, JitteredCopies) and images.shape == (3000, 1, 8, 8)
    np.testing.assert_array_equal(images[np.array([2999, 5])], images[np.array([2999, 5])])  # same noise each read
    calls = []
    real = cache_module.forward_pass
    monkeypatch.setattr(cache_module, "forward_pass", lambda *a, **k: calls.append(1) or real(*a, **k))
    store = RunStore(tmp_path)
    first = project_embedding(demo_embedding, big, demo, store=store)
    n_calls = len(calls)
    again = project_embedding(demo_embedding, big, demo, store=store)
    assert len(calls) == n_calls, "the replicated set's latents come from the cache the second time"
    assert first.train_xy.shape == (3000, 2) and np.array_equal(first.train_xy, again.train_xy)
    # the same frozen E: equal up to float32 rounding (another batch composition sums in another order)
    np.testing.assert_allclose(first.train_xy[:len(digits.train)], demo_embedding.train_xy, rtol=1e-5, atol=1e-5)
