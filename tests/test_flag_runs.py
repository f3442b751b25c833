"""Runs that follow the flags on images: the relabelled run and the run without the flagged images
(plint_core.baselines' ``relabel`` and ``drop_flagged``), stored and compared like the other baselines."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from plint_core.baselines import Baseline, flag_rows
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig
from plint_core.flags import FlagBook
from plint_core.intervention import InterventionSpec
from plint_core.pipeline import baseline_key, run_baseline, training_source, validation_set
from plint_core.store import RunStore

QUICK = dict(steps=40, evaluations=2, lr=3e-3, device="cpu")


@pytest.fixture
def store(tmp_path, demo_runs):
    """A store of its own holding the demo's embedding (the flags written here stay here)."""
    root = tmp_path / "runs"
    shutil.copytree(demo_runs, root)
    return RunStore(root)


def flagged_book(store, digits, demo) -> tuple[FlagBook, np.ndarray, np.ndarray]:
    """Five 1s flagged label wrong → 7, three 8s ambiguous, one image with a note."""
    book = FlagBook(store, digits, demo.fingerprint)
    ones = digits.train.ids[digits.train.labels == 1][:5]
    eights = digits.train.ids[digits.train.labels == 8][:3]
    book.add(ones, "label_wrong", who="Ana", suggested=7)
    book.add(eights, "ambiguous", who="Ben")
    book.add([int(digits.train.ids[digits.train.labels == 2][0])], "note", who="Ben", note="a fine two")
    return book, ones, eights


def test_the_flags_make_a_baseline_whose_key_follows_them(store, digits, demo):
    book, ones, eights = flagged_book(store, digits, demo)
    relabel, drop = book.baseline("relabel"), book.baseline("drop_flagged")
    assert relabel == Baseline("relabel", relabel=tuple((int(i), 7) for i in ones))
    assert drop.drop == tuple(sorted(int(i) for i in np.r_[ones, eights]))  # the note's image stays
    assert relabel.name == "relabelled (5 flagged images)" and drop.name == "without the 8 flagged images"
    assert relabel.key_dict() == {"kind": "relabel", "relabel": [[int(i), 7] for i in ones]}
    # a changed suggestion is another run; a changed note changes nothing the run trains on
    flag = book.flags()[0]
    book.edit(flag.flag_id, suggested=4)
    assert book.baseline("relabel").key_dict() != relabel.key_dict()
    book.edit(book.flags()[1].flag_id, note="blurred")
    assert book.baseline("drop_flagged") == drop
    with pytest.raises(PlintError, match="not 'upweight'"):
        book.baseline("upweight")


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="relabel"), "needs images flagged 'label wrong' with a suggested class: flag some first"),
    (dict(kind="drop_flagged"), "needs flagged images to leave out: flag some first"),
    (dict(kind="relabel", relabel=((1, 2),), pair=(0, 1)), "takes no pair"),
    (dict(kind="relabel", relabel=((1, 2), (1, 3))), "gives one image two classes"),
])
def test_a_flag_baseline_without_flags_or_with_a_pair_is_refused(kwargs, message):
    with pytest.raises(PlintError, match=message):
        Baseline(**kwargs)


def test_flag_rows_and_the_training_source_they_make(digits, demo_embedding):
    ids, labels = digits.train.ids, digits.train.labels
    relabel = Baseline("relabel", relabel=((int(ids[0]), 9), (int(ids[5]), 2)))
    new, drop = flag_rows(relabel, ids, labels, digits.n_classes)
    assert drop is None and new[0] == 9 and new[5] == 2
    assert np.array_equal(np.delete(new, [0, 5]), np.delete(labels, [0, 5]))
    dropped, rows = flag_rows(Baseline("drop_flagged", drop=(int(ids[3]), int(ids[7]))), ids, labels,
                              digits.n_classes)
    assert dropped is None and rows.tolist() == [3, 7]
    with pytest.raises(PlintError, match="not a training image of this data"):
        flag_rows(Baseline("drop_flagged", drop=(10**6,)), ids, labels, digits.n_classes)
    with pytest.raises(PlintError, match="outside the model's classes"):
        flag_rows(Baseline("relabel", relabel=((0, 12),)), ids, labels, digits.n_classes)

    spec, config = InterventionSpec(), FinetuneConfig(**QUICK)
    targets, moved = spec.targets(demo_embedding.train_xy, labels, ids, digits.class_names)
    plain, val = training_source(digits, targets, moved, config)
    held = validation_set(digits, moved, config)[1]
    assert len(plain.labels) == len(labels) - len(held)
    # the flags' labels are trained on; the validation images and their labels are the same as without them
    kept = np.setdiff1d(np.arange(len(labels)), held)
    source, val2 = training_source(digits, targets, moved, config, labels=new)
    assert np.array_equal(source.labels, new[kept]) and np.array_equal(val2.labels, val.labels)
    out = np.array([kept[0], kept[10]])
    source, val3 = training_source(digits, targets, moved, config, drop=out)
    assert len(source.labels) == len(plain.labels) - 2 and np.array_equal(val3.labels, val.labels)
    assert np.array_equal(source.labels, labels[np.setdiff1d(kept, out)])


def test_a_relabelled_run_and_a_run_without_the_flagged_images_are_stored_and_compared(store, digits, demo,
                                                                                      demo_embedding):
    book, ones, eights = flagged_book(store, digits, demo)
    spec, config = InterventionSpec(), FinetuneConfig(**QUICK)  # no moves needed: the flags are the edit
    results = {}
    for kind in ("relabel", "drop_flagged"):
        baseline = book.baseline(kind)
        result, pred, hit = run_baseline(digits, demo, demo_embedding, spec, config, baseline, store=store)
        assert not hit and len(pred) == len(digits.test)
        assert (store.baseline_dir(result["run_id"]) / "result.json").is_file()
        assert set(result["accuracy"]) == {"before", "baseline"} and set(result["confusion"]) == {"before", "baseline"}
        assert np.asarray(result["confusion"]["baseline"]).sum() == len(digits.test)
        assert result["baseline"]["name"] == baseline.name
        assert result["validation"]["source"] == "held-out slice of the training split"  # picked as other runs
        assert result["target_distance"] is None  # no moves: no edit to follow
        results[kind] = result
    held = validation_set(digits, np.zeros(len(digits.train), bool), config)[1]
    n_all = len(digits.train) - len(held)
    assert results["relabel"]["n_relabelled"] == len(ones) and results["relabel"]["n_train"] == n_all
    assert results["drop_flagged"]["n_dropped"] == len(ones) + len(eights)
    flagged_rows = np.flatnonzero(np.isin(digits.train.ids, np.r_[ones, eights]))
    assert results["drop_flagged"]["n_train"] == len(digits.train) - len(np.union1d(held, flagged_rows))
    # the same flags again: the stored run; a changed flag book: a new run
    again, _, hit = run_baseline(digits, demo, demo_embedding, spec, config, book.baseline("relabel"), store=store)
    assert hit and again == results["relabel"]
    book.edit(book.flags()[0].flag_id, suggested=4)
    changed = book.baseline("relabel")
    assert baseline_key(demo_embedding, spec, config, changed) != results["relabel"]["run_id"]


def test_the_command_line_runs_the_relabelled_baseline_from_the_stored_flags(run_cli, store, digits, demo,
                                                                           tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text('{"moves": []}')
    argv = ("run", "--data", "digits", "--model", "demo", "--spec", spec, "--out", tmp_path / "o", "--runs-dir",
            store.root, "--steps", "40", "--evaluations", "2", "--threads", "1", "--device", "cpu")
    code, _, err = run_cli(*argv, "--baseline", "relabel")  # no flags yet: one line, nothing written
    assert code == 2 and "needs images flagged 'label wrong'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(*argv, "--baseline", "drop_flagged", "--pair", "3,8")
    assert code == 2 and "takes no --pair" in err and err.count("\n") == 1, err
    flagged_book(store, digits, demo)
    code, out, err = run_cli(*argv, "--baseline", "relabel")
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["baseline"]["kind"] == "relabel" and result["n_relabelled"] == 5
    assert "relabelled (5 flagged images): accuracy before" in err + out
