"""Intervention specs: the target formula, JSON round trip, and every rejected input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from plint_core.errors import PlintError
from plint_core.intervention import InterventionSpec, Move, Selection

NAMES = ("cat", "dog", "eel")
LABELS = np.array([0, 0, 1, 1, 2, 2])
IDS = np.arange(6) + 100
Y = np.array([[0, 0], [2, 0], [10, 10], [10, 12], [-5, 3], [-5, 5]], dtype=np.float32)


def spec(*moves) -> InterventionSpec:
    return InterventionSpec.from_dict({"moves": list(moves)})


def test_targets_follow_the_formula():
    s = spec({"select": {"classes": ["cat"]}, "translate": [1.0, -2.0], "contract": 0.5},
             {"select": {"ids": [104]}, "translate": [0.0, 3.0]})
    target, moved = s.targets(Y, LABELS, IDS, NAMES)
    # cat: centroid (1, 0); y' = 0.5 y + 0.5 c + t
    np.testing.assert_allclose(target[:2], [[0.5 + 1, -2], [1.5 + 1, -2]])
    np.testing.assert_allclose(target[4], [-5, 6])
    np.testing.assert_allclose(target[[2, 3, 5]], Y[[2, 3, 5]])  # unedited points keep y
    np.testing.assert_array_equal(moved, [True, True, False, False, True, False])


def test_class_index_and_name_select_the_same_rows():
    by_name = spec({"select": {"classes": ["dog"]}, "translate": [1, 1]}).targets(Y, LABELS, IDS, NAMES)
    by_index = spec({"select": {"classes": [1]}, "translate": [1, 1]}).targets(Y, LABELS, IDS, NAMES)
    np.testing.assert_array_equal(by_name[0], by_index[0])


def test_json_round_trip_and_frozen():
    s = spec({"select": {"classes": [0, "eel"]}, "translate": [1.5, -2], "contract": 0.25},
             {"select": {"ids": [101, 102]}, "translate": [0, 0], "contract": 1})
    again = InterventionSpec.from_json(s.to_json())
    assert again == s
    assert json.loads(s.to_json())["moves"][1] == {"select": {"ids": [101, 102]}, "translate": [0.0, 0.0], "contract": 1.0}
    with pytest.raises(AttributeError):
        s.moves = ()  # type: ignore[misc]
    assert s.with_move(Move(Selection(ids=(105,)))).without(2) == s


@pytest.mark.parametrize("moves, message", [
    ([{"select": {"classes": ["cat"]}}, {"select": {"ids": [100, 103]}}], "move 2 overlaps move 1 in 1 points"),
    ([{"select": {"classes": ["cow"]}}], "unknown class 'cow'"),
    ([{"select": {"classes": [7]}}], "unknown class index 7"),
    ([{"select": {"ids": [100, 999]}}], r"unknown sample id\(s\) \[999\]"),
    ([{"select": {"ids": [100]}, "translate": [float("nan"), 0]}], "NaN and infinite"),
    ([{"select": {"ids": [100]}, "translate": [0, float("inf")]}], "NaN and infinite"),
    ([{"select": {"ids": [100]}, "contract": 0}], r"must lie in \(0, 1\]"),
    ([{"select": {"ids": [100]}, "contract": 1.5}], r"must lie in \(0, 1\]"),
    ([{"select": {"ids": [100]}, "contract": float("nan")}], "NaN"),
    ([{"select": {"ids": []}}], "non-empty list"),
    ([{"select": {"classes": [0], "ids": [1]}}], "select must be"),
    ([{"select": {"ids": [100]}, "translate": [1]}], r"translate must be \[dx, dy\]"),
    ([{"select": {"ids": [100]}, "scale": 2}], "unknown key"),
    ([{"select": {"ids": ["a"]}}], "integer sample ids"),
])
def test_bad_specs_are_rejected_with_a_message(moves, message):
    with pytest.raises(PlintError, match=message):
        spec(*moves).targets(Y, LABELS, IDS, NAMES)


def test_invalid_json_names_the_position():
    with pytest.raises(PlintError, match="not valid JSON.*line 1"):
        InterventionSpec.from_json('{"moves": [}')
    with pytest.raises(PlintError, match="must be"):
        InterventionSpec.from_json('"moves"')


def test_separate_classes_pushes_apart_and_contracts():
    from plint_core.intervention import separate_classes

    s = separate_classes(Y, LABELS, 0, 1, distance=4.0, contract=0.5)
    target, moved = s.targets(Y, LABELS, IDS, NAMES)
    # cat centroid (1, 0), dog centroid (10, 11): each moves 2 units along the line between them
    away = np.array([-9.0, -11.0]) / np.hypot(9.0, 11.0) * 2.0
    np.testing.assert_allclose(target[:2], 0.5 * Y[:2] + 0.5 * np.array([1.0, 0.0]) + away, rtol=1e-6)
    np.testing.assert_allclose(target[2:4], 0.5 * Y[2:4] + 0.5 * np.array([10.0, 11.0]) - away, rtol=1e-6)
    np.testing.assert_array_equal(moved, [True, True, True, True, False, False])
    assert all(m.contract == 0.5 for m in s.moves)
    assert separate_classes(Y, LABELS, 0, 1, distance=4.0).moves[0].contract == 1.0


def test_separate_classes_outward_heads_for_the_free_space_at_the_maps_edge():
    """A pair stacked at the map's left edge, a class above and one below it, the rest to the right: pushed straight
    apart (vertically) the pair lands on the classes above and below; with ``outward`` each class also turns away
    from the map's centre (leftwards, into free space): still as far and still apart, and its targets end further
    from every third class's points."""
    from sklearn.neighbors import NearestNeighbors

    from plint_core.intervention import separate_classes

    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 2.0], [-6.0, -2.0], [-6.0, 9.0], [-6.0, -9.0], [4.0, 0.0], [8.0, 0.0]])
    labels = np.repeat(np.arange(6), 50)
    y = centres[labels] + rng.normal(0, 0.5, (len(labels), 2))
    ids, names = np.arange(len(labels)), [str(k) for k in range(6)]
    straight = separate_classes(y, labels, 0, 1, distance=8.0)
    out = separate_classes(y, labels, 0, 1, distance=8.0, outward=True)
    for spec in (straight, out):  # each class moves 4 units, away from the other (0 up, 1 down)
        for move, sign in zip(spec.moves, (1, -1)):
            assert np.hypot(*move.translate) == pytest.approx(4.0)
            assert sign * move.translate[1] > 0
    assert all(abs(m.translate[0]) < 0.2 for m in straight.moves)
    assert all(m.translate[0] < -1.5 for m in out.moves)  # away from the centre, which lies to the right
    third = NearestNeighbors(n_neighbors=1).fit(y[labels >= 2])
    gaps = {}
    for name, spec in (("straight", straight), ("outward", out)):
        target, moved = spec.targets(y, labels, ids, names)
        gaps[name] = float(third.kneighbors(target[moved])[0].mean())
    assert gaps["outward"] > gaps["straight"] + 0.5, gaps


def test_send_home_moves_each_directions_misclassified_onto_its_class():
    from plint_core.intervention import send_home

    y = np.array([[0, 0], [2, 0], [9, 0], [10, 10], [12, 10], [1, 9], [50, 50]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0, 2])  # row 2: a 0 seen as 1; row 5: a 1 seen as 0
    ids = np.arange(7) + 100
    spec = send_home(y, labels, preds, ids, 0, 1, contract=0.3)
    assert [m.select.ids for m in spec.moves] == [(102,), (105,)] and all(m.contract == 0.3 for m in spec.moves)
    target, moved = spec.targets(y, labels, ids, ("a", "b", "c"))
    np.testing.assert_allclose(target[2], y[labels == 0].mean(0), rtol=1e-6)  # onto class 0's centroid
    np.testing.assert_allclose(target[5], y[labels == 1].mean(0), rtol=1e-6)
    assert moved.tolist() == [False, False, True, False, False, True, False]
    only_one_way = send_home(y, labels, np.array([0, 0, 1, 1, 1, 1, 2]), ids, 0, 1)
    assert [m.select.ids for m in only_one_way.moves] == [(102,)]
    with pytest.raises(PlintError, match="no misclassified points"):
        send_home(y, labels, labels, ids, 0, 1)


def test_the_edit_applies_to_validation_images_by_class_id_or_nearest_training_point():
    """``targets_for``: a class move takes the validation images of that class; an id move those with its ids
    (a held-out training slice) or, for another split, those whose nearest training point it moved; targets use
    the training group's centroid."""
    from plint_core.intervention import InterventionSpec

    train_xy = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]], np.float32)
    train_labels, train_ids = np.array([0, 0, 1, 1]), np.array([5, 6, 7, 8])
    spec = InterventionSpec.from_dict({"moves": [
        {"select": {"classes": [0]}, "translate": [0.0, 2.0], "contract": 0.5},
        {"select": {"ids": [7]}, "translate": [-1.0, 0.0], "contract": 1.0}]})
    val_xy = np.array([[0.2, 0.0], [9.9, 0.1], [11.2, 0.0], [30.0, 0.0]], np.float32)
    val_labels = np.array([0, 1, 1, 1])
    t, moved = spec.targets_for(val_xy, val_labels, None, train_xy, train_labels, train_ids, ["a", "b"])
    assert moved.tolist() == [True, True, False, False], "class 0; nearest to id 7; nearest to id 8; far"
    np.testing.assert_allclose(t[0], 0.5 * val_xy[0] + 0.5 * np.array([0.5, 0.0]) + [0.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(t[1], val_xy[1] + [-1.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(t[2:], val_xy[2:])
    # held-out training rows keep their ids: the id decides, and the result is spec.targets' own
    t2, moved2 = spec.targets_for(train_xy, train_labels, train_ids, train_xy, train_labels, train_ids, ["a", "b"])
    t_train, moved_train = spec.targets(train_xy, train_labels, train_ids, ["a", "b"])
    np.testing.assert_allclose(t2, t_train, rtol=1e-6)
    assert moved2.tolist() == moved_train.tolist() == [True, True, True, False]


def test_move_class_away_moves_one_class_only_contracted_and_away_from_the_other():
    """Class 0 (centroid (1, 0)) moved 3 units away from class 1 (centroid (10, 11)), contracted 0.5; class 1 and
    class 2 keep their places. Straight, the shift is along dog → cat; ``outward`` turns it halfway towards
    "away from the map's centre" (the mean of all points, (2.33, 5)), still 3 units long."""
    from plint_core.intervention import move_class_away

    s = move_class_away(Y, LABELS, 0, 1, distance=3.0, contract=0.5, outward=False)
    assert len(s.moves) == 1 and s.moves[0].select.classes == (0,) and s.moves[0].contract == 0.5
    away = np.array([-9.0, -11.0]) / np.hypot(9.0, 11.0)
    target, moved = s.targets(Y, LABELS, IDS, NAMES)
    np.testing.assert_allclose(target[:2], 0.5 * Y[:2] + 0.5 * np.array([1.0, 0.0]) + 3.0 * away, rtol=1e-6)
    np.testing.assert_array_equal(target[2:], Y[2:])
    np.testing.assert_array_equal(moved, [True, True, False, False, False, False])
    out = move_class_away(Y, LABELS, 0, 1, distance=3.0, contract=0.5)
    from_centre = np.array([1.0, 0.0]) - Y.astype(np.float64).mean(axis=0)
    half = away + from_centre / np.linalg.norm(from_centre)
    np.testing.assert_allclose(out.moves[0].translate, 3.0 * half / np.linalg.norm(half), rtol=1e-6)
    assert np.hypot(*out.moves[0].translate) == pytest.approx(3.0)
    for args, fragment in (((0, 0), "two different classes"), ((0, 7), "class 7 has no training points")):
        with pytest.raises(PlintError, match=fragment):
            move_class_away(Y, LABELS, *args, distance=1.0)
