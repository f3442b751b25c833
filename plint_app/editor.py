"""One session's intervention editor: the current selection and the spec being built, with undo.

Pure Python: the pages call these methods and render the result. Every
change of the spec goes through :meth:`Editor.set_spec`, which validates the
new spec against the training data first (the engine raises ``PlintError``
on overlaps, unknown ids, ...), so an invalid spec is never stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from plint_core.errors import PlintError
from plint_core.intervention import InterventionSpec, Move, Selection, pair_errors

SELECT_MODES = ("replace", "add", "remove")
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class TrainIndex:
    """The training split's ids, labels and 2-D coordinates, row-aligned, plus the class names."""

    ids: np.ndarray
    labels: np.ndarray
    xy: np.ndarray
    class_names: tuple[str, ...]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers of sample ``ids`` (ids are row numbers in plint's data sets, but don't rely on it)."""
        if len(self.ids) and np.array_equal(self.ids, np.arange(len(self.ids))):
            return np.asarray(ids, dtype=np.int64)
        order = np.argsort(self.ids)
        return order[np.searchsorted(self.ids[order], ids)]

    def validate(self, spec: InterventionSpec) -> tuple[np.ndarray, np.ndarray]:
        """``spec``'s targets and moved mask; raises ``PlintError`` if the spec does not fit the data."""
        return spec.targets(self.xy, self.labels, self.ids, self.class_names)


@dataclass
class CurrentSelection:
    """Selected training ids (sorted, unique); ``classes`` is set when they are exactly whole classes."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    classes: tuple[int, ...] = ()
    from_chart: str | None = None
    """Signature of the chart whose native (Plotly) selection equals this one, if any."""

    def __len__(self) -> int:
        return int(self.ids.size)

    def as_engine_selection(self) -> Selection:
        return Selection(classes=self.classes) if self.classes else Selection(ids=tuple(int(i) for i in self.ids))


@dataclass
class Editor:
    """Selection, spec and undo history of one browser session."""

    spec: InterventionSpec = field(default_factory=InterventionSpec)
    selection: CurrentSelection = field(default_factory=CurrentSelection)
    history: list[InterventionSpec] = field(default_factory=list)

    # --- selection ---------------------------------------------------------
    def select_ids(self, ids: Sequence[int] | np.ndarray, mode: str = "replace", from_chart: str | None = None) -> None:
        """Combine ``ids`` with the current selection (``replace``, ``add`` or ``remove``)."""
        if mode not in SELECT_MODES:
            raise PlintError(f"unknown selection mode {mode!r}: use one of {', '.join(SELECT_MODES)}")
        new = np.unique(np.asarray(ids, dtype=np.int64))
        if mode == "add":
            new = np.union1d(self.selection.ids, new)
        elif mode == "remove":
            new = np.setdiff1d(self.selection.ids, new)
        self.selection = CurrentSelection(new, (), from_chart if mode == "replace" else None)

    def select_classes(self, classes: Sequence[int], index: TrainIndex) -> None:
        """Select every training point of ``classes`` (class indices)."""
        classes = tuple(sorted({int(c) for c in classes}))
        if not classes:
            raise PlintError("pick at least one class to select")
        ids = np.sort(index.ids[np.isin(index.labels, classes)])
        self.selection = CurrentSelection(ids, classes)

    def select_confused(self, a: int, b: int, index: TrainIndex, preds: np.ndarray, mode: str = "replace") -> int:
        """Select the training points of class ``a`` predicted as ``b`` and of ``b`` predicted as ``a`` (the pair's
        misclassified points, red under *Errors*), combined with the selection by ``mode``; returns how many."""
        if a == b:
            raise PlintError("pick two different classes")
        wrong = pair_errors(index.labels, preds, a, b)
        if not wrong.any():
            raise PlintError(f"no training point of {index.class_names[a]} is predicted as {index.class_names[b]}, "
                             "nor the other way round: nothing to select")
        self.select_ids(index.ids[wrong], mode)
        return int(wrong.sum())

    def clear_selection(self) -> None:
        self.selection = CurrentSelection()

    # --- moves -------------------------------------------------------------
    def pending_move(self, translate: tuple[float, float], contract: float) -> Move:
        """The move the current selection would make; raises ``PlintError`` if nothing is selected."""
        if not len(self.selection):
            raise PlintError("nothing is selected: drag a box or lasso on the plot, or select classes, "
                             "then set the move")
        if not 0.0 < contract <= 1.0:
            raise PlintError(f"contraction is {contract}: it must lie in (0, 1] (1 = keep the group's spread)")
        return Move(self.selection.as_engine_selection(), (float(translate[0]), float(translate[1])), float(contract))

    def set_spec(self, spec: InterventionSpec, index: TrainIndex) -> None:
        """Replace the spec (validated first), remembering the old one for :meth:`undo`."""
        index.validate(spec)
        self.history = (self.history + [self.spec])[-HISTORY_LIMIT:]
        self.spec = spec

    def commit(self, move: Move, index: TrainIndex) -> None:
        """Append ``move`` to the spec and clear the selection."""
        self.set_spec(self.spec.with_move(move), index)
        self.clear_selection()

    def add_moves(self, moves: InterventionSpec, index: TrainIndex) -> None:
        """Append every move of ``moves`` to the spec as one step (one :meth:`undo` takes them all back).

        Raises ``PlintError``, and changes nothing, if one of them moves a point an earlier move already moves."""
        spec = self.spec
        for move in moves.moves:
            spec = spec.with_move(move)
        self.set_spec(spec, index)

    def delete(self, position: int, index: TrainIndex) -> None:
        if not 0 <= position < len(self.spec.moves):
            raise PlintError(f"there is no move {position + 1} to delete")
        self.set_spec(self.spec.without(position), index)

    @property
    def can_undo(self) -> bool:
        return bool(self.history)

    def undo(self) -> None:
        if not self.history:
            raise PlintError("nothing to undo")
        self.spec = self.history.pop()
