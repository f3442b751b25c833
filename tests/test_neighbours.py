"""plint_core.neighbours: nearest neighbours in latent space, found by sample id or file name."""
from __future__ import annotations

import numpy as np
import pytest
from own_data import write_image_folder

from plint_core.data.image_folder import load_image_folder
from plint_core.errors import PlintError
from plint_core.neighbours import NeighbourIndex, file_names, fit_neighbours


def brute_force(X: np.ndarray, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of ``row`` and their distances, by numpy alone."""
    d = np.sqrt(((X.astype(np.float64) - X[row]) ** 2).sum(1))
    d[row] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    ids = np.arange(100, 140)  # ids that are not row numbers
    labels = rng.integers(0, 3, 40)
    preds = labels.copy()
    preds[::7] = (preds[::7] + 1) % 3
    return X, ids, labels, preds


def test_neighbours_match_a_brute_force_search(small):
    X, ids, labels, preds = small
    index = NeighbourIndex().fit(X, ids, labels, preds)
    for row in (0, 7, 39):
        found = index.search(int(ids[row]))
        rows, dists = brute_force(X, row, 10)
        assert found.sample.row == row and found.sample.id == ids[row] and found.sample.distance == 0.0
        assert (found.sample.label, found.sample.prediction) == (labels[row], preds[row])
        assert len(found) == 10
        np.testing.assert_array_equal([n.row for n in found.neighbours], rows)
        np.testing.assert_array_equal([n.id for n in found.neighbours], ids[rows])
        np.testing.assert_array_equal([n.label for n in found.neighbours], labels[rows])
        np.testing.assert_array_equal([n.prediction for n in found.neighbours], preds[rows])
        np.testing.assert_allclose([n.distance for n in found.neighbours], dists, rtol=1e-5)
        assert row not in [n.row for n in found.neighbours], "the image is not its own neighbour"


def test_an_id_may_be_typed_and_a_test_point_named_by_its_split(small):
    X, ids, labels, preds = small
    splits = ["train"] * 30 + ["test"] * 10
    test_ids = np.r_[ids[:30], np.arange(10)]  # test ids restart at 0, as each split's ids do
    index = NeighbourIndex(n_neighbors=4).fit(X, test_ids, labels, preds, splits=splits)
    assert index.search(" 105 ").sample.row == 5 == index.search(105).sample.row
    hit = index.search("test 3")
    assert (hit.sample.split, hit.sample.id, hit.sample.row, hit.sample.split_row) == ("test", 3, 33, 3)
    assert index.search("TEST:3").sample.row == 33 and index.search("train 105").sample.row == 5
    assert len(hit) == 4 and {n.split for n in index.search("test 0").neighbours} <= {"train", "test"}


@pytest.mark.parametrize("query, message", [
    (1000, "no train point has id 1000: train ids run from 100 to 139"),
    ("99", "no train point has id 99: train ids run from 100 to 139"),
    ("test 2", "test point 2 is not on the map: test points are not shown; turn on Show test points to search them"),
    ("   ", "type a sample id (from 100 to 139) to find an image"),
    ("cat.png", "'cat.png' is not a sample id, and this data set has no file names: search by sample id "
                "(from 100 to 139), or 'test 5' for a test point"),
])
def test_a_search_that_finds_nothing_says_what_to_type(small, query, message):
    X, ids, labels, preds = small
    index = NeighbourIndex().fit(X, ids, labels, preds)
    with pytest.raises(PlintError) as err:
        index.search(query)
    assert str(err.value) == message


def test_file_names_match_exactly_by_unique_part_or_list_the_candidates(tmp_path):
    ds = load_image_folder(write_image_folder(tmp_path / "fruit", split=True))
    names = file_names(ds.train)
    assert len(names) == len(ds.train) and names[0].startswith("train/apple/") and names[0].endswith(".png")
    assert file_names(ds.test)[0].startswith("test/apple/")
    rng = np.random.default_rng(0)
    index = fit_neighbours(ds, rng.normal(size=(len(ds.train), 5)), ds.train.labels,
                           rng.normal(size=(len(ds.test), 5)), ds.test.labels)
    target = names[4]
    assert index.search(target).sample.name == target  # the whole relative path
    hit = index.search(target.rsplit("/", 1)[-1])  # the file's own name
    assert (hit.sample.split, hit.sample.split_row, hit.sample.id) == ("train", 4, int(ds.train.ids[4]))
    assert index.search(names[20].upper()).sample.split_row == 20  # a unique part, in any case
    assert index.search("test/cherry/" + file_names(ds.test)[-1].rsplit("/", 1)[-1]).sample.split == "test"
    assert len(index.search(target)) == 10 and all(n.name for n in index.search(target).neighbours)
    with pytest.raises(PlintError, match=r"^no image's file name contains 'durian': type a sample id or part of a "
                                         r"file name, such as 'train/apple/"):
        index.search("durian")
    with pytest.raises(PlintError) as err:
        index.search("apple/")
    message = str(err.value)
    assert message.startswith("'apple/' matches 12 file names: train/apple/") and message.endswith(
        " and 4 more; type more of the name")


def test_one_point_has_no_neighbours_and_few_points_give_fewer(small):
    X, ids, labels, preds = small
    assert len(NeighbourIndex().fit(X[:1], ids[:1], labels[:1], preds[:1]).search(100)) == 0
    assert len(NeighbourIndex().fit(X[:4], ids[:4], labels[:4], preds[:4]).search(100)) == 3
