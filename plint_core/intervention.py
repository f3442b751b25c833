"""Interventions: the user's edit of the embedding, as a frozen, JSON-round-trippable spec.

A spec is a list of moves. Each move selects a group of training points, by
class (index or name) or by sample id (the ``id`` column of the train rows of
``embedding.csv``), and moves it::

    y' = a * y + (1 - a) * centroid(group) + t

with ``t = translate`` in embedding units and ``a = contract`` in ``(0, 1]``
(1 = no contraction, 0.5 halves the group's spread about its centroid). Points
no move selects keep ``y' = y``. JSON form::

    {"moves": [{"select": {"classes": [3]}, "translate": [-5.0, 0.0], "contract": 1.0},
               {"select": {"ids": [10, 11, 12]}, "translate": [0.0, 4.0], "contract": 0.5}]}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import PlintError


@dataclass(frozen=True)
class Selection:
    """Which training points a move takes: whole ``classes`` (indices or names) or sample ``ids``."""

    classes: tuple[int | str, ...] = ()
    ids: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"classes": list(self.classes)} if self.classes else {"ids": list(self.ids)}

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``class 3, 8`` or ``42 points``."""
        if self.classes:
            return "class " + ", ".join(str(c) for c in self.classes)
        return f"{len(self.ids)} points"


@dataclass(frozen=True)
class Move:
    """One move: ``select`` a group, ``translate`` it by ``(dx, dy)`` embedding units, ``contract`` by ``a``."""

    select: Selection
    translate: tuple[float, float] = (0.0, 0.0)
    contract: float = 1.0

    def to_dict(self) -> dict:
        return {"select": self.select.to_dict(), "translate": list(self.translate), "contract": self.contract}


@dataclass(frozen=True)
class InterventionSpec:
    """An ordered tuple of non-overlapping :class:`Move` s."""

    moves: tuple[Move, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"moves": [m.to_dict() for m in self.moves]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "InterventionSpec":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlintError(f"the spec is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> "InterventionSpec":
        """Parse and validate the JSON form (also accepts a bare list of moves)."""
        moves = obj.get("moves") if isinstance(obj, dict) else obj
        if not isinstance(moves, list):
            raise PlintError('the spec must be {"moves": [...]} with a list of moves')
        return cls(tuple(_parse_move(m, i) for i, m in enumerate(moves)))

    def with_move(self, move: Move) -> "InterventionSpec":
        return InterventionSpec(self.moves + (move,))

    def without(self, index: int) -> "InterventionSpec":
        return InterventionSpec(self.moves[:index] + self.moves[index + 1:])

    def groups(self, labels: np.ndarray, ids: np.ndarray, class_names: Sequence[str]) -> list[np.ndarray]:
        """Row indices each move selects; rejects unknown classes/ids, empty and overlapping groups."""
        row_of = {int(i): r for r, i in enumerate(ids)}
        taken = np.full(len(labels), -1, dtype=np.int64)
        out = []
        for k, move in enumerate(self.moves):
            rows = _select_rows(move.select, labels, row_of, class_names, k)
            clash = taken[rows] >= 0
            if clash.any():
                other = int(taken[rows][clash][0])
                raise PlintError(f"move {k + 1} overlaps move {other + 1} in {int(clash.sum())} points: "
                                 "each point may be moved by at most one move; remove them from one of the groups")
            taken[rows] = k
            out.append(rows)
        return out

    def targets(self, y: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Targets ``y'`` for every training point and a boolean mask of the moved ones."""
        target = np.array(y, dtype=np.float64, copy=True)
        moved = np.zeros(len(y), dtype=bool)
        for move, rows in zip(self.moves, self.groups(labels, ids, class_names)):
            group = y[rows].astype(np.float64)
            centroid = group.mean(axis=0)
            a = move.contract
            target[rows] = a * group + (1 - a) * centroid + np.asarray(move.translate)
            moved[rows] = True
        return target.astype(np.float32), moved

    def targets_for(self, xy: np.ndarray, labels: np.ndarray, ids: np.ndarray | None, train_xy: np.ndarray,
                    train_labels: np.ndarray, train_ids: np.ndarray,
                    class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The edit applied to other points (validation images) at ``xy`` in the same map: targets ``y'`` and a
        boolean mask of the moved ones.

        A point is moved by a move that selects its class; by a move of sample ids when its own ``ids`` entry is
        among them (rows held out of the training split keep their ids), or, with ``ids=None`` (images of
        another split), when its nearest training point in the map is in that move's group. Its target is
        ``a * y + (1 - a) * centroid + t`` with the *training* group's centroid, as for the training points.
        """
        xy = np.asarray(xy, dtype=np.float64)
        labels = np.asarray(labels)
        train_xy = np.asarray(train_xy, dtype=np.float64)
        groups = self.groups(train_labels, train_ids, class_names)
        target, moved = xy.copy(), np.zeros(len(xy), dtype=bool)
        nearest = None
        for k, (move, rows) in enumerate(zip(self.moves, groups)):
            if move.select.classes:
                wanted = [_class_index(c, class_names, f"move {k + 1}") for c in move.select.classes]
                mine = np.isin(labels, wanted)
            elif ids is not None:
                mine = np.isin(np.asarray(ids), np.asarray(train_ids)[rows])
            else:
                if nearest is None:
                    from sklearn.neighbors import NearestNeighbors

                    nearest = NearestNeighbors(n_neighbors=1).fit(train_xy).kneighbors(xy, return_distance=False)[:, 0] \
                        if len(xy) else np.zeros(0, dtype=np.int64)
                in_group = np.zeros(len(train_xy), dtype=bool)
                in_group[rows] = True
                mine = in_group[nearest]
            mine &= ~moved
            centroid = train_xy[rows].mean(axis=0)
            a = move.contract
            target[mine] = a * xy[mine] + (1 - a) * centroid + np.asarray(move.translate)
            moved |= mine
        return target.astype(np.float32), moved


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlintError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PlintError(f"{what} is {value!r}: NaN and infinite values are not allowed")
    return float(value)


def _parse_move(obj: Any, index: int) -> Move:
    where = f"move {index + 1}"
    if not isinstance(obj, dict):
        raise PlintError(f"{where} must be an object with select, translate and contract")
    unknown = set(obj) - {"select", "translate", "contract"}
    if unknown:
        raise PlintError(f"{where} has unknown key(s) {sorted(unknown)}: allowed are select, translate, contract")
    sel = obj.get("select")
    if not isinstance(sel, dict) or len(sel) != 1 or not ({"classes", "ids"} & set(sel)):
        raise PlintError(f'{where}: select must be {{"classes": [...]}} or {{"ids": [...]}}')
    (kind, values), = sel.items()
    if not isinstance(values, list) or not values:
        raise PlintError(f"{where}: select.{kind} must be a non-empty list")
    if kind == "ids":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise PlintError(f"{where}: select.ids must be integer sample ids")
        selection = Selection(ids=tuple(values))
    else:
        if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in values):
            raise PlintError(f"{where}: select.classes must be class indices or class names")
        selection = Selection(classes=tuple(values))
    t = obj.get("translate", [0.0, 0.0])
    if not isinstance(t, (list, tuple)) or len(t) != 2:
        raise PlintError(f"{where}: translate must be [dx, dy]")
    translate = (_finite(t[0], f"{where} translate dx"), _finite(t[1], f"{where} translate dy"))
    a = _finite(obj.get("contract", 1.0), f"{where} contract")
    if not 0.0 < a <= 1.0:
        raise PlintError(f"{where}: contract is {a}, it must lie in (0, 1] (1 = no contraction)")
    return Move(selection, translate, a)


def _class_index(value: int | str, class_names: Sequence[str], where: str) -> int:
    if isinstance(value, str):
        if value in class_names:
            return list(class_names).index(value)
        raise PlintError(f"{where}: unknown class {value!r}; classes are {', '.join(class_names)}")
    if 0 <= value < len(class_names):
        return int(value)
    raise PlintError(f"{where}: unknown class index {value}; valid are 0..{len(class_names) - 1}")


def _select_rows(sel: Selection, labels: np.ndarray, row_of: dict[int, int], class_names: Sequence[str],
                 k: int) -> np.ndarray:
    where = f"move {k + 1}"
    if sel.classes:
        wanted = [_class_index(c, class_names, where) for c in sel.classes]
        rows = np.flatnonzero(np.isin(labels, wanted))
    else:
        missing = [i for i in sel.ids if i not in row_of]
        if missing:
            raise PlintError(f"{where}: unknown sample id(s) {missing[:5]}{' …' if len(missing) > 5 else ''}; "
                             f"ids are the train rows' id column of embedding.csv (0..{len(row_of) - 1})")
        rows = np.array(sorted({row_of[i] for i in sel.ids}), dtype=np.int64)
    if rows.size == 0:
        raise PlintError(f"{where} selects no training points: pick a class or points that exist")
    return rows


def separate_classes(y: np.ndarray, labels: np.ndarray, a: int, b: int, distance: float,
                     contract: float = 1.0, outward: bool = False) -> InterventionSpec:
    """A spec that pushes classes ``a`` and ``b`` apart along the line joining their centroids.

    Each class moves ``distance / 2`` embedding units away from the other, so
    their centroids end ``distance`` further apart; ``contract`` (in (0, 1],
    default 1 = none) also pulls each class towards its own centroid, which
    brings its stragglers (the points lying towards the other class) home.

    ``outward`` turns each class's direction halfway towards "away from the map's
    centre" (the mean of ``y``), as one would drag two clusters apart into the free
    space at the map's edge; each still moves ``distance / 2``, so their centroids
    end somewhat less than ``distance`` further apart. Pushed straight apart, two
    classes in the middle of the map land on a third class's ground; since the
    embedding is frozen, such targets ask the classifier to make them look like
    that class.
    """
    if a == b:
        raise PlintError("pick two different classes to separate")
    ca, cb = (y[labels == k].astype(np.float64).mean(axis=0) for k in (a, b))
    center = np.asarray(y, dtype=np.float64).mean(axis=0)
    moves = []
    for k, mine, other in ((a, ca, cb), (b, cb, ca)):
        direction = _unit(mine - other)
        if outward:
            direction = _unit(direction + _unit(mine - center, fallback=direction), fallback=direction)
        half = direction * distance / 2.0
        moves.append(Move(Selection(classes=(int(k),)), (float(half[0]), float(half[1])), contract))
    return InterventionSpec(tuple(moves))


def move_class_away(y: np.ndarray, labels: np.ndarray, k: int, away_from: int, distance: float,
                    contract: float = 1.0, outward: bool = True) -> InterventionSpec:
    """A one-move spec: class ``k`` alone moved ``distance`` embedding units away from class ``away_from`` (which
    stays where it is), contracted by ``contract`` towards its own centroid.

    The direction is from ``away_from``'s centroid to ``k``'s; with ``outward`` (default) it is turned halfway
    towards "away from the map's centre" (the mean of ``y``), into the free space at the map's edge, as in
    :func:`separate_classes`. For a rare class lost among a frequent one: its stragglers, the points lying in the
    other class's cluster, are asked to join their own class's cluster, moved clear of the other.
    """
    if k == away_from:
        raise PlintError("pick two different classes: the class to move and the one to move it away from")
    labels = np.asarray(labels)
    for c in (k, away_from):
        if not (labels == c).any():
            raise PlintError(f"class {c} has no training points in the map")
    y = np.asarray(y, dtype=np.float64)
    mine, other = (y[labels == c].mean(axis=0) for c in (k, away_from))
    direction = _unit(mine - other)
    if outward:
        direction = _unit(direction + _unit(mine - y.mean(axis=0), fallback=direction), fallback=direction)
    shift = direction * float(distance)
    return InterventionSpec((Move(Selection(classes=(int(k),)), (float(shift[0]), float(shift[1])), float(contract)),))


def pair_errors(labels: np.ndarray, preds: np.ndarray, a: int, b: int) -> np.ndarray:
    """Which points are of class ``a`` predicted as ``b`` or of ``b`` predicted as ``a`` (a boolean mask)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    return ((labels == a) & (preds == b)) | ((labels == b) & (preds == a))

def send_home(y: np.ndarray, labels: np.ndarray, preds: np.ndarray, ids: np.ndarray, a: int, b: int,
              contract: float = 0.3) -> InterventionSpec:
    """An instance-level spec: the training points of class ``a`` the model predicts as ``b``, and those of ``b``
    predicted as ``a``, each group moved onto its true class's cluster.

    Each group is translated by (its class's centroid − the group's centroid) and contracted by ``contract``
    towards its own centre, so it lands as a tight group in the middle of its class. ``ids`` name the rows of
    ``y``; a direction without such points adds no move. Raises ``PlintError`` when the pair has none at all.
    """
    if a == b:
        raise PlintError("pick two different classes")
    y, labels, preds = np.asarray(y, dtype=np.float64), np.asarray(labels), np.asarray(preds)
    moves = []
    for k, other in ((a, b), (b, a)):
        wrong = np.flatnonzero((labels == k) & (preds == other))
        if len(wrong):
            shift = y[labels == k].mean(axis=0) - y[wrong].mean(axis=0)
            moves.append(Move(Selection(ids=tuple(int(i) for i in np.asarray(ids)[wrong])),
                              (float(shift[0]), float(shift[1])), float(contract)))
    if not moves:
        raise PlintError(f"no training point of class {a} is predicted as {b}, nor the other way round: "
                         "this pair has no misclassified points to move")
    return InterventionSpec(tuple(moves))


def _unit(v: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """``v`` scaled to length 1; ``fallback`` (default: the x axis) where ``v`` is (nearly) zero."""
    norm = float(np.linalg.norm(v))
    if norm > 1e-12:
        return v / norm
    return np.array([1.0, 0.0]) if fallback is None else fallback
