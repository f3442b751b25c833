"""AppTest tests of the Embedding page's flags (plint_app.flags_panel): flag the selection, errors, edit, delete,
the map's marker, another session seeing the flags, the likely label errors."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from app_helpers import APP
from streamlit.testing.v1 import AppTest

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment

TIMEOUT = 120


@pytest.fixture
def flag_store(app_environment):
    """The app's run store, with no flags before and after the test (other tests draw the same map)."""
    shutil.rmtree(app_environment / "flags", ignore_errors=True)
    yield app_environment
    shutil.rmtree(app_environment / "flags", ignore_errors=True)


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    return at


def sess(at: AppTest):
    return at.session_state["plint"]


def book_of(at: AppTest):
    """The app's flag book (as a new FlagBook reads it from the store) and its project."""
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_core.flags import FlagBook

    proj = Project.load(AppConfig.from_env(dict(os.environ)))
    return FlagBook(proj.store, proj.data, proj.bundle.fingerprint), proj


def flag_button(at: AppTest):
    return at.button(key="flag_selection")


def errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def n_points(array) -> int:
    """The length of a Plotly JSON array: a list, or the typed-array form ``{dtype, bdata}``."""
    if isinstance(array, dict):
        return len(np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])))
    return len(array)


def scatter_names(at: AppTest) -> dict[str, dict]:
    return {t.get("name"): t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}


def select_class(at: AppTest, k: int) -> AppTest:
    at.multiselect(key="w_classes").set_value([k]).run()
    at.button[[b.label for b in at.button].index("Select classes")].click().run()
    return at


def test_flag_the_selection_edit_delete_and_another_session_sees_it(flag_store, digits):
    at = start()
    assert "Flags (0)" in [str(s.value) for s in at.subheader]
    # a flag on no selection: one message, nothing stored
    at.text_input(key="w_flag_who").set_value("Ana").run()
    at.selectbox(key="w_flag_suggested").set_value(7).run()
    flag_button(at).click().run()
    assert not at.exception
    assert any("no images are selected: select images on the map" in e for e in errors(at))
    book, proj = book_of(at)
    assert book.flags() == [] and not book.path.exists()

    select_class(at, 1)
    ones = np.flatnonzero(digits.train.labels == 1)
    assert len(sess(at).editor.selection) == len(ones)
    at.text_input(key="w_flag_who").set_value("").run()  # no name: refused
    flag_button(at).click().run()
    assert any("give your name" in e for e in errors(at)) and book.flags() == []
    at.text_input(key="w_flag_who").set_value("Ana").run()
    at.text_input(key="w_flag_note").set_value("these look like sevens").run()
    flag_button(at).click().run()
    assert not at.exception and not errors(at)
    assert any("Flagged: label wrong → 7" in str(s.value) for s in at.success)
    [flag] = book.flags()
    assert (flag.kind, flag.suggested, flag.who, flag.note) == ("label_wrong", 7, "Ana", "these look like sevens")
    assert flag.ids == tuple(int(i) for i in digits.train.ids[ones])
    assert "Flags (1)" in [str(s.value) for s in at.subheader]
    assert at.text_input(key="w_flag_note").value == ""  # ready for the next flag
    # the map marks the flagged points; the CSV has one row per image
    flagged = scatter_names(at)["flagged"]
    assert n_points(flagged["x"]) == n_points(flagged["y"]) == len(ones)  # a cross on every flagged image
    assert "Download flags (CSV)" in [d.label for d in at.get("download_button")]
    table = pd.read_csv(io.BytesIO(book.to_csv()), keep_default_na=False)
    assert len(table) == len(ones) and set(table["suggested_label"].astype(str)) == {"7"}

    # a second session (another browser, or the app after a restart) sees the flag
    other = start()
    assert "Flags (1)" in [str(s.value) for s in other.subheader]
    assert "flagged" in scatter_names(other)

    # edit: the kind becomes ambiguous (the suggestion goes), then delete
    fid = flag.flag_id
    at.segmented_control(key=f"w_flag_kind_{fid}").set_value("ambiguous").run()
    at.button(key="flag_save").click().run()
    assert not at.exception and not errors(at)
    assert (book.get(fid).kind, book.get(fid).suggested) == ("ambiguous", None)
    at.button(key="flag_select").click().run()  # its images back on the map as the selection
    assert np.array_equal(sess(at).editor.selection.ids, digits.train.ids[ones])
    at.button(key="flag_delete").click().run()
    assert not at.exception and book.flags() == []
    assert "Flags (0)" in [str(s.value) for s in at.subheader]
    assert "flagged" not in scatter_names(at)


def test_a_label_wrong_flag_needs_its_class_and_a_note_its_text(flag_store, digits):
    at = start()
    select_class(at, 2)
    at.text_input(key="w_flag_who").set_value("Ben").run()
    flag_button(at).click().run()  # label wrong, no suggested class
    assert any("needs the class the images should have" in e for e in errors(at))
    at.segmented_control(key="w_flag_kind").set_value("note").run()
    flag_button(at).click().run()
    assert any("a note flag needs its text" in e for e in errors(at))
    book, _ = book_of(at)
    assert book.flags() == []
    at.segmented_control(key="w_flag_kind").set_value("ambiguous").run()
    flag_button(at).click().run()
    assert [f.kind for f in book.flags()] == ["ambiguous"]


def test_likely_label_errors_are_ranked_and_selected(flag_store, digits):
    from plint_core.label_errors import rank_training_labels

    at = start()
    at.button(key="flag_rank").click().run()
    assert not at.exception, at.exception
    _, proj = book_of(at)
    expected = rank_training_labels(proj.data, proj.bundle, proj.store, layers=proj.layers)
    # the demo model's three misclassified training images are the least confident in their label; in-sample, the
    # model is so sure of every class (thresholds 0.99-0.999) that confident learning marks none of them likely
    wrong = np.flatnonzero(expected.suggested != expected.labels)
    assert set(expected.ids[:3]) == set(expected.ids[wrong]) and len(wrong) == 3
    assert f"**{len(expected.likely_ids):,} likely label errors** among 1,437 training images; the least " \
        "confident first:" in [str(m.value) for m in at.markdown]
    shown = at.dataframe[-1].value
    assert shown["id"].tolist() == expected.ids[:20].tolist()
    assert shown["suggested_label"].tolist()[:3] == [str(k) for k in expected.suggested[:3]]
    at.number_input(key="w_flag_least").set_value(3).run()
    at.button(key="flag_select_least").click().run()
    assert not at.exception
    assert np.array_equal(sess(at).editor.selection.ids, np.sort(expected.ids[:3]))


def test_fine_tune_with_the_flags_runs_in_a_worker_is_stored_and_compared(flag_store, digits):
    at = start()
    at.button(key="flag_run_relabel").click().run()  # no flags yet
    assert any("needs images flagged 'label wrong' with a suggested class: flag some first" in e
               for e in errors(at))
    assert "plint_flag_run" not in at.session_state  # nothing started
    book, proj = book_of(at)
    ones = digits.train.ids[digits.train.labels == 1][:6]
    book.add(ones, "label_wrong", who="Ana", suggested=7)
    at.session_state["w_steps"] = 30  # as the Fine-tune page sets it
    at.run()
    at.button(key="flag_run_relabel").click().run()
    assert not at.exception and not errors(at)
    job = at.session_state["plint_flag_run"]
    assert job.wait(300) and job.status == "done", job.user_error()
    at.run()
    result = job.result
    try:
        assert result["baseline"]["name"] == "relabelled (6 flagged images)" and result["n_relabelled"] == 6
        assert result["finetune"]["steps"] == 30 and not result["cache_hit"]
        assert (proj.store.baseline_dir(result["run_id"]) / "baseline.safetensors").is_file()
        assert any("relabelled (6 flagged images): test accuracy" in str(s.value) for s in at.success)
        table = at.dataframe[-1].value
        assert table["run id"].tolist() == [result["run_id"]]
        assert table["after"].iloc[0] == round(result["accuracy"]["baseline"], 4)
        # the same flags again: the stored run
        at.button(key="flag_run_relabel").click().run()
        again = at.session_state["plint_flag_run"]
        assert again.wait(120) and again.status == "done" and again.result["cache_hit"]
        at.run()
        assert any("(the stored run, reused)" in str(s.value) for s in at.success)
    finally:
        shutil.rmtree(proj.store.baseline_dir(result["run_id"]), ignore_errors=True)
