"""Flags on images (plint_core.flags) and the label-error ranking (plint_core.label_errors)."""
from __future__ import annotations

import io
import json
import threading

import numpy as np
import pandas as pd
import pytest
from own_data import CLASSES, write_image_folder

from plint_core.data.image_folder import load_image_folder
from plint_core.errors import PlintError
from plint_core.flags import CSV_COLUMNS, FlagBook, book_key, file_names
from plint_core.label_errors import class_thresholds, rank_label_errors, softmax
from plint_core.store import RunStore

MODEL = "f" * 64


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    return load_image_folder(write_image_folder(tmp_path_factory.mktemp("fruit") / "fruit"))


def test_a_flag_is_stored_and_a_new_book_on_the_same_store_reads_it(digits, tmp_path):
    book = FlagBook(tmp_path, digits, MODEL)
    labels = digits.train.labels
    ones = digits.train.ids[labels == 1][:3]
    flag = book.add(ones, "label_wrong", who="  Ana  ", suggested="7", note="look like sevens")
    book.add([int(digits.train.ids[0])], "ambiguous", who="Ben")
    assert flag.who == "Ana" and flag.suggested == 7 and flag.ids == tuple(sorted(int(i) for i in ones))
    assert flag.when.endswith("+00:00")  # UTC
    again = FlagBook(RunStore(tmp_path), digits, MODEL)  # a restart: nothing in memory, the same store
    assert again.flags() == book.flags() and len(again) == 2
    assert again.path == tmp_path / "flags" / f"{book_key(digits.fingerprint(), MODEL)}.json"
    assert again.suggested_labels() == {int(i): 7 for i in ones}
    np.testing.assert_array_equal(again.flagged_ids(), np.sort(np.r_[ones, digits.train.ids[0]]))
    np.testing.assert_array_equal(again.flagged_ids(["ambiguous"]), [digits.train.ids[0]])
    # another model (or other data) is another project: it sees none of them
    assert FlagBook(tmp_path, digits, "0" * 64).flags() == []


def test_edit_and_delete(digits, tmp_path):
    book = FlagBook(tmp_path, digits, MODEL)
    first = book.add([0, 1], "ambiguous", who="Ana")
    second = book.add([2], "note", who="Ben", note="blurred")
    given = int(digits.train.labels[0])
    other = (given + 1) % digits.n_classes
    edited = book.edit(first.flag_id, kind="label_wrong", suggested=other, note="check")
    assert (edited.kind, edited.suggested, edited.note, edited.who, edited.when) == \
        ("label_wrong", other, "check", "Ana", first.when)
    assert edited.edited is not None
    assert FlagBook(tmp_path, digits, MODEL).get(first.flag_id) == edited
    back = book.edit(first.flag_id, kind="ambiguous")  # another kind drops the suggestion
    assert back.suggested is None and back.note == "check"
    book.delete(second.flag_id)
    assert [f.flag_id for f in FlagBook(tmp_path, digits, MODEL).flags()] == [first.flag_id]
    with pytest.raises(PlintError, match="there is no flag"):
        book.delete(second.flag_id)


@pytest.mark.parametrize("call, message", [
    (lambda b: b.add([], "ambiguous", who="Ana"), "no images are selected: select images on the map"),
    (lambda b: b.add(np.zeros(0, np.int64), "ambiguous", who="Ana"), "no images are selected"),
    (lambda b: b.add([0], "label_wrong", who="Ana", suggested="eleven"), "suggested class 'eleven' does not exist"),
    (lambda b: b.add([0], "label_wrong", who="Ana", suggested=10), "suggested class 10 does not exist"),
    (lambda b: b.add([0], "label_wrong", who="Ana"), "needs the class the images should have"),
    (lambda b: b.add([0], "wrong", who="Ana"), "flag kind 'wrong' is unknown: use one of label_wrong, ambiguous, note"),
    (lambda b: b.add([0], "ambiguous", who="  "), "give your name"),
    (lambda b: b.add([0], "note", who="Ana", note=" "), "a note flag needs its text"),
    (lambda b: b.add([99_999], "ambiguous", who="Ana"), "sample id 99999 is not a training image"),
])
def test_bad_input_is_refused_with_one_message_and_nothing_is_stored(digits, tmp_path, call, message):
    book = FlagBook(tmp_path, digits, MODEL)
    kept = book.add([5], "ambiguous", who="Ana")
    before = book.path.read_bytes()
    with pytest.raises(PlintError, match=message):
        call(book)
    assert book.path.read_bytes() == before and book.flags() == [kept]


def test_a_suggestion_equal_to_every_given_label_and_a_bad_edit_are_refused(digits, tmp_path):
    book = FlagBook(tmp_path, digits, MODEL)
    threes = digits.train.ids[digits.train.labels == 3][:2]
    with pytest.raises(PlintError, match="already labelled '3'"):
        book.add(threes, "label_wrong", who="Ana", suggested=3)
    flag = book.add(threes, "ambiguous", who="Ana")
    with pytest.raises(PlintError, match="suggested class 'x' does not exist"):
        book.edit(flag.flag_id, kind="label_wrong", suggested="x")
    assert book.get(flag.flag_id) == flag


def test_a_killed_write_leaves_the_old_book(digits, tmp_path, monkeypatch):
    import plint_core.atomic as atomic

    book = FlagBook(tmp_path, digits, MODEL)
    book.add([1], "ambiguous", who="Ana")
    before = book.path.read_bytes()
    written = []

    def killed(src, dst):  # the process dies after writing the new book beside the old one, before the rename
        written.append(open(src, encoding="utf-8").read())
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        book.add([2], "ambiguous", who="Ben")
    monkeypatch.undo()
    assert "Ben" in written[0]  # the new content was complete in the temporary file ...
    assert book.path.read_bytes() == before  # ... and the book is the old one
    # a SIGKILL leaves its half-written temporary file behind: the book reads past it, and the next write works
    (book.path.parent / f".{book.path.name}.x1y2.tmp").write_text('{"flags": [{"fla', encoding="utf-8")
    again = FlagBook(tmp_path, digits, MODEL)
    assert [f.who for f in again.flags()] == ["Ana"]
    again.add([3], "ambiguous", who="Cy")
    assert [f.who for f in FlagBook(tmp_path, digits, MODEL).flags()] == ["Ana", "Cy"]


def test_a_book_changed_by_hand_is_reported_and_not_overwritten(digits, tmp_path):
    book = FlagBook(tmp_path, digits, MODEL)
    book.path.parent.mkdir(parents=True)
    book.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(PlintError, match="cannot be read .*restore it or move it away"):
        book.add([1], "ambiguous", who="Ana")
    assert book.path.read_text(encoding="utf-8") == "{not json"


def test_two_sessions_flagging_at_once_keep_every_flag(digits, tmp_path):
    errors = []

    def flag_many(who: str, start: int) -> None:
        book = FlagBook(tmp_path, digits, MODEL)  # each session has its own book object
        try:
            for k in range(10):
                book.add([start + k], "ambiguous", who=who)
        except Exception as exc:  # pragma: no cover - shown by the assert
            errors.append(exc)

    threads = [threading.Thread(target=flag_many, args=(name, start)) for name, start in (("Ana", 0), ("Ben", 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    flags = FlagBook(tmp_path, digits, MODEL).flags()
    assert len(flags) == 20 and sorted(f.ids[0] for f in flags) == [*range(10), *range(100, 110)]


def test_csv_has_one_row_per_flagged_image_with_labels_and_no_file_names_for_array_data(digits, tmp_path):
    book = FlagBook(tmp_path, digits, MODEL)
    ones = digits.train.ids[digits.train.labels == 1][:2]
    book.add(ones, "label_wrong", who="Ana", suggested=7)
    book.add([int(ones[0])], "note", who="Ben", note="faint, with a comma")
    table = pd.read_csv(io.BytesIO(book.to_csv()), keep_default_na=False, dtype=str)
    assert tuple(table.columns) == CSV_COLUMNS
    assert table["id"].tolist() == [str(i) for i in ones] + [str(ones[0])]
    assert table["given_label"].tolist() == ["1", "1", "1"]
    assert table["suggested_label"].tolist() == ["7", "7", ""]
    assert table["kind"].tolist() == ["label_wrong", "label_wrong", "note"]
    assert table["note"].tolist() == ["", "", "faint, with a comma"]
    assert table["who"].tolist() == ["Ana", "Ana", "Ben"]
    assert table["file_name"].tolist() == ["", "", ""]  # the digits have no files


def test_csv_of_image_folder_data_names_each_file(folder_data, tmp_path):
    names = file_names(folder_data.train)
    assert names is not None and len(names) == len(folder_data.train)
    train = folder_data.train
    apple = int(train.ids[train.labels == 0][0])
    book = FlagBook(tmp_path, folder_data, MODEL)
    book.add([apple], "label_wrong", who="Ana", suggested="cherry")
    row = pd.read_csv(io.BytesIO(book.to_csv()), keep_default_na=False, dtype=str).iloc[0]
    assert row["file_name"] == names[list(train.ids).index(apple)]
    assert row["file_name"].startswith("apple/") and row["file_name"].endswith(".png")
    assert (row["given_label"], row["suggested_label"]) == ("apple", "cherry")
    stored = json.loads(book.path.read_text(encoding="utf-8"))
    assert stored["classes"] == list(CLASSES) and stored["flags"][0]["suggested"] == 2


# --- label errors -----------------------------------------------------------------------------------------------

def noisy_logits(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 30)
    logits = 4.0 * np.eye(3)[labels] + rng.normal(0, 0.6, (len(labels), 3))
    wrong = np.array([4, 37, 71])
    logits[wrong] = 6.0 * np.eye(3)[labels[wrong]]  # the model is sure of their true class
    given = labels.copy()
    given[wrong] = [1, 2, 0]  # three images with a wrong given label
    return logits, labels, given, wrong


def test_the_wrong_labels_rank_first_as_likely_errors_with_their_true_class():
    logits, truth, given, wrong = noisy_logits()
    ids = np.arange(len(given)) + 1000
    r = rank_label_errors(logits, given, ids)
    assert set(r.ids[:3]) == set(wrong + 1000)
    assert set(r.likely_ids) == set(wrong + 1000)
    assert dict(zip(r.ids[:3], r.suggested[:3])) == {int(w) + 1000: int(truth[w]) for w in wrong}
    assert np.all(np.diff(r.confidence) >= 0)  # least confident first
    table = r.table(["a", "b", "c"], only_likely=True)
    assert table.columns.tolist() == ["id", "given_label", "suggested_label", "confidence", "likely"]
    assert len(table) == 3 and table["likely"].all() and len(r.table(list("abc"), limit=10)) == 10


def test_thresholds_are_the_mean_self_confidence_per_class():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(class_thresholds(probs, labels), [0.8, 0.6])
    r = rank_label_errors(probs, labels, probabilities=True)
    # image 3 (labelled 1) has p1 = 0.4 < t1 = 0.6 and p0 = 0.6 < t0 = 0.8: low, but no confident other class
    assert r.ids[0] == 3 and not r.likely.any()
    np.testing.assert_allclose(softmax(np.log(probs)), probs)


def test_bad_scores_are_refused():
    with pytest.raises(PlintError, match="outside the model's classes"):
        rank_label_errors(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(PlintError, match="NaN"):
        rank_label_errors(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(PlintError, match="shape"):
        rank_label_errors(np.zeros((3, 2)), np.array([0, 1]))


def test_flagged_thumbnails_get_an_orange_corner_and_the_others_none():
    from plint_core.report.thumbnails import FLAG_RGB, montage

    images = np.full((2, 1, 8, 8), 0.5, np.float32)
    grid = montage(images, np.array([True, True]), columns=2, marked=np.array([True, False]))
    plain = montage(images, np.array([True, True]), columns=2)
    orange = np.all(grid == FLAG_RGB, axis=-1)
    tile_w = grid.shape[1] // 2
    assert orange[:, :tile_w].any() and not orange[:, tile_w:].any()
    assert orange[0, tile_w - 3] and not orange[-1, 0]  # the top right corner of the first tile
    assert np.array_equal(grid[:, tile_w:], plain[:, tile_w:]) and not np.all(plain == FLAG_RGB, axis=-1).any()


def test_the_command_line_adds_lists_exports_and_deletes_flags(run_cli, digits, demo, tmp_path):
    base = ("--data", "digits", "--model", "demo", "--runs-dir", tmp_path, "--threads", "1")
    ones = [int(i) for i in digits.train.ids[digits.train.labels == 1][:3]]
    for argv, message in [
        (("--kind", "label_wrong", "--suggested", "12", "--ids", "1,2", "--who", "Ana"),
         "suggested class '12' does not exist: the classes are 0, 1, 2"),
        (("--kind", "label_wrong", "--suggested", "7", "--ids", "", "--who", "Ana"), "no images are selected"),
        (("--kind", "odd", "--ids", "1", "--who", "Ana"), "flag kind 'odd' is unknown"),
        (("--kind", "ambiguous", "--ids", "1"), "give your name"),
        (("--ids", "1", "--who", "Ana"), "'flags add' needs --kind"),
    ]:
        code, _, err = run_cli("flags", "add", *base, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "flags").exists()  # nothing stored
    code, _, err = run_cli("flags", "add", *base, "--kind", "label_wrong", "--suggested", "7", "--who", "Ana",
                           "--ids", ",".join(map(str, ones)), "--note", "sevens")
    assert code == 0 and "added: label wrong → 7 · 3 images · Ana · sevens" in err, err
    code, out, _ = run_cli("flags", "list", *base)
    [line] = out.splitlines()
    flag_id = line.split("\t")[0]
    assert code == 0 and line.endswith("label wrong → 7 · 3 images · Ana · sevens")
    code, _, err = run_cli("flags", "export", *base, "--out", tmp_path / "flags.csv")
    assert code == 0 and "3 rows, 1 flags" in err
    table = pd.read_csv(tmp_path / "flags.csv", keep_default_na=False)
    assert table["id"].tolist() == ones and set(table["suggested_label"]) == {7}
    code, _, err = run_cli("flags", "delete", flag_id, *base)
    assert code == 0 and FlagBook(tmp_path, digits, demo.fingerprint).flags() == []
    code, _, err = run_cli("flags", "delete", flag_id, *base)
    assert code == 2 and "there is no flag" in err
