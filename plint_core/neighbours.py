"""Find an image and its nearest neighbours in a layer's latent space.

The map is a 2-D picture of the latent space, and t-SNE keeps close points close but not their order nor
their distances; what the model itself takes as similar is read off the latents. :class:`NeighbourIndex`
fits scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors` (Euclidean) once on the latents of the
points shown, then answers :meth:`NeighbourIndex.search` by sample id or by file name, as the TensorFlow
Embedding Projector lists a point's neighbours with their distances.

A sample is named as the scatter names it: its split (``train`` or ``test``) and its ``id`` within the
split (:class:`plint_core.data.dataset.Split`). A query is

- an ``int``, or a string of digits: the training point with that id;
- ``"test 17"`` (or ``"test:17"``, ``"train 17"``): the point of that split with that id;
- any other string: a file name, for data read from image files (:mod:`plint_core.data.image_folder`).
  A name matches by the whole relative path (``apple/003.png``) or the file's own name (``003.png``);
  else by a unique part of the path, ignoring case. Several matches are an error that lists them.

Every query that finds nothing raises :class:`~plint_core.errors.PlintError` with a message that names the
problem and what to type instead.

Examples
--------
>>> index = NeighbourIndex(n_neighbors=10).fit(latents, ids, labels, predictions)
>>> found = index.search("17")
>>> found.sample.label, [(n.id, round(n.distance, 2)) for n in found.neighbours]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .data.dataset import Dataset, Split
from .data.images import FileImages
from .errors import PlintError

N_NEIGHBOURS = 10
"""Neighbours listed per image, as the Embedding Projector's default."""
SPLITS = ("train", "test")
MAX_LISTED = 8
"""File names listed in the message of an ambiguous name."""
_SPLIT_ID = re.compile(r"^\s*(train|test)\s*[:#\s]\s*(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One point of the index: where it is, what it is, and (as a neighbour) how far from the query.

    Attributes
    ----------
    row : int
        Its row in the fitted arrays (train rows first, then test rows, as given to :meth:`NeighbourIndex.fit`).
    split : str
        ``train`` or ``test``.
    split_row : int
        Its row within its split (``data.train.images[split_row]`` is its image).
    id : int
        Its sample id, as the scatter shows it.
    label, prediction : int
        The given class and the model's prediction (class indices).
    name : str or None
        Its file name (path relative to the data folder) where the data has file names.
    distance : float
        Euclidean distance in latent space to the query (0 for the query itself).
    """

    row: int
    split: str
    split_row: int
    id: int
    label: int
    prediction: int
    name: str | None = None
    distance: float = 0.0

    @property
    def correct(self) -> bool:
        return self.label == self.prediction

    def describe(self) -> str:
        """``id 17 (train)``, with the file name where there is one."""
        return f"id {self.id} ({self.split})" + (f", {self.name}" if self.name else "")


@dataclass(frozen=True)
class Neighbourhood:
    """The result of a search: the image found and its nearest neighbours, nearest first."""

    sample: Sample
    neighbours: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.neighbours)


class NeighbourIndex:
    """Nearest neighbours of the points shown, in a layer's latent space.

    Parameters
    ----------
    n_neighbors : int, default=10
        Neighbours returned per query (fewer if fewer other points were fitted).

    Attributes
    ----------
    n_samples_ : int
        Number of points fitted.
    ids_, labels_, predictions_ : ndarray of shape (n_samples_,)
        Row-aligned with the fitted latents.
    splits_ : ndarray of shape (n_samples_,)
        ``"train"`` or ``"test"`` per row.
    split_rows_ : ndarray of shape (n_samples_,)
        Each point's row within its split.
    names_ : tuple of str, or None
        File names per row, or ``None`` when the data has none.
    nn_ : sklearn.neighbors.NearestNeighbors
        The fitted estimator.
    """

    def __init__(self, n_neighbors: int = N_NEIGHBOURS):
        if int(n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be at least 1, not {n_neighbors}")
        self.n_neighbors = int(n_neighbors)

    def fit(self, X: np.ndarray, ids: np.ndarray, labels: np.ndarray, predictions: np.ndarray, *,
            splits: Sequence[str] | None = None, split_rows: np.ndarray | None = None,
            names: Sequence[str] | None = None) -> "NeighbourIndex":
        """Fit the index on latents ``X`` (``[n, F]``) and the points' identities, row-aligned.

        Parameters
        ----------
        X : array-like of shape (n, F)
            The layer's activations, flattened (any float dtype; a memory map is read once).
        ids, labels, predictions : array-like of shape (n,)
            Sample ids, given classes and predicted classes.
        splits : sequence of str, default=all ``"train"``
        split_rows : array-like of shape (n,), default=the rows' position within their split, in order
        names : sequence of str, optional
            File names, where the data has them.

        Returns
        -------
        self
        """
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or not len(X):
            raise PlintError(f"there are no latents to search ({X.shape}): embed a layer first")
        n = len(X)
        self.ids_ = np.asarray(ids, dtype=np.int64)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.predictions_ = np.asarray(predictions, dtype=np.int64)
        self.splits_ = np.asarray(["train"] * n if splits is None else list(splits), dtype=object)
        if split_rows is None:
            split_rows = np.zeros(n, np.int64)
            for s in SPLITS:
                mask = self.splits_ == s
                split_rows[mask] = np.arange(int(mask.sum()))
        self.split_rows_ = np.asarray(split_rows, dtype=np.int64)
        self.names_ = None if names is None else tuple(str(v) for v in names)
        lengths = {len(self.ids_), len(self.labels_), len(self.predictions_), len(self.splits_), len(self.split_rows_),
                   n if self.names_ is None else len(self.names_)}
        if lengths != {n}:
            raise ValueError(f"X has {n} rows but ids, labels, predictions, splits, rows or names differ in length")
        self.n_samples_ = n
        self.nn_ = NearestNeighbors(metric="euclidean").fit(X)
        self._X = X
        self._rows = {(s, int(i)): r for r, (s, i) in enumerate(zip(self.splits_, self.ids_))}
        return self

    # ------------------------------------------------------------------ queries
    def search(self, query: int | str) -> Neighbourhood:
        """The sample ``query`` names (see the module's docstring) and its nearest neighbours.

        Raises
        ------
        PlintError
            Nothing typed, an id not among the points shown, a file name that matches nothing or several, a
            file name on data without file names.
        """
        return self.neighbours_of(self.find(query))

    def find(self, query: int | str) -> int:
        """The fitted row ``query`` names (see :meth:`search`)."""
        self._check_fitted()
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            return self.row_of("train", int(query))
        text = str(query).strip()
        if not text:
            raise PlintError(f"type a sample id ({self._id_range('train')}){' or a file name' if self.names_ else ''} "
                             "to find an image")
        if text.isdigit():
            return self.row_of("train", int(text))
        m = _SPLIT_ID.match(text)
        if m:
            return self.row_of(m.group(1).lower(), int(m.group(2)))
        return self._by_name(text)

    def row_of(self, split: str, sample_id: int) -> int:
        """The fitted row of the point ``sample_id`` of ``split`` (raises ``PlintError`` if it is not shown)."""
        self._check_fitted()
        row = self._rows.get((split, int(sample_id)))
        if row is not None:
            return row
        if not (self.splits_ == split).any():
            raise PlintError(f"{split} point {sample_id} is not on the map: {split} points are not shown"
                             + ("; turn on Show test points to search them" if split == "test" else ""))
        raise PlintError(f"no {split} point has id {sample_id}: {split} ids run {self._id_range(split)}")

    def neighbours_of(self, row: int) -> Neighbourhood:
        """The point at fitted ``row`` and its :attr:`n_neighbors` nearest others, nearest first."""
        self._check_fitted()
        k = min(self.n_neighbors, self.n_samples_ - 1)
        if k <= 0:
            return Neighbourhood(self.sample(row), ())
        dist, idx = self.nn_.kneighbors(self._X[row:row + 1], n_neighbors=k + 1)
        pairs = [(int(i), float(d)) for i, d in zip(idx[0], dist[0]) if int(i) != row][:k]
        return Neighbourhood(self.sample(row), tuple(self.sample(i, d) for i, d in pairs))

    def sample(self, row: int, distance: float = 0.0) -> Sample:
        """The :class:`Sample` at fitted ``row`` (``distance`` from a query, 0 for the query itself)."""
        return Sample(int(row), str(self.splits_[row]), int(self.split_rows_[row]), int(self.ids_[row]),
                      int(self.labels_[row]), int(self.predictions_[row]),
                      None if self.names_ is None else self.names_[row], float(distance))

    # ------------------------------------------------------------------ helpers
    def _by_name(self, text: str) -> int:
        if self.names_ is None:
            raise PlintError(f"{text!r} is not a sample id, and this data set has no file names: search by sample id "
                             f"({self._id_range('train')}), or 'test 5' for a test point")
        names = self.names_
        exact = [r for r, name in enumerate(names) if name == text]
        if not exact:
            exact = [r for r, name in enumerate(names) if name.rsplit("/", 1)[-1] == text]
        if len(exact) == 1:
            return exact[0]
        found = exact or [r for r, name in enumerate(names) if text.lower() in name.lower()]
        if len(found) == 1:
            return found[0]
        if not found:
            raise PlintError(f"no image's file name contains {text!r}: type a sample id or part of a file name, "
                             f"such as {names[0]!r}")
        listed = ", ".join(names[r] for r in found[:MAX_LISTED])
        more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        raise PlintError(f"{text!r} matches {len(found)} file names: {listed}{more}; type more of the name")

    def _id_range(self, split: str) -> str:
        ids = self.ids_[self.splits_ == split]
        return f"from {int(ids.min())} to {int(ids.max())}" if ids.size else "none"

    def _check_fitted(self) -> None:
        if not hasattr(self, "nn_"):
            raise RuntimeError("this NeighbourIndex is not fitted yet: call fit() first")


def file_names(split: Split) -> tuple[str, ...] | None:
    """Each sample's file name (path relative to the data folder), or ``None`` if its images are not files."""
    images = split.images
    if not isinstance(images, FileImages) or len(images.shown) != images.n_source:
        return None
    return tuple(images.shown[int(r)] for r in images.source_rows())


def fit_neighbours(data: Dataset, train_latents: np.ndarray, train_pred: np.ndarray,
                   test_latents: np.ndarray | None = None, test_pred: np.ndarray | None = None, *,
                   n_neighbors: int = N_NEIGHBOURS) -> NeighbourIndex:
    """A :class:`NeighbourIndex` of ``data``'s training points (and its test points, when their latents are
    given), with their ids, labels, the predictions given and their file names where the data has them."""
    parts = [("train", data.train, train_latents, train_pred)]
    if test_latents is not None:
        parts.append(("test", data.test, test_latents, test_pred))
    names = [file_names(split) for _, split, _, _ in parts]
    return NeighbourIndex(n_neighbors).fit(
        np.concatenate([np.asarray(x, dtype=np.float32) for _, _, x, _ in parts]),
        np.concatenate([split.ids for _, split, _, _ in parts]),
        np.concatenate([split.labels for _, split, _, _ in parts]),
        np.concatenate([np.asarray(p) for _, _, _, p in parts]),
        splits=[s for s, split, _, _ in parts for _ in range(len(split))],
        split_rows=np.concatenate([np.arange(len(split)) for _, split, _, _ in parts]),
        names=None if any(n is None for n in names) else [v for n in names for v in n])
