"""Data held as arrays: scikit-learn's digits and ``.npz`` files (MedMNIST layout or ``images`` + ``labels``).

Images stay as stored (:class:`~plint_core.data.images.ArrayImages`): ``uint8``
pixels (read as ``/ 255``) or floats already in ``[0, 1]``; digits' 0..16
values are scaled by 1/16 once (the set is tiny). ``.npz`` members are
memory-mapped (:mod:`plint_core.data.npz`). A source without a split of its
own is split 80/20, stratified, with :data:`~plint_core.data.dataset.SPLIT_SEED`;
the splits are views of rows of the one array, not copies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PlintError
from .dataset import SPLIT_SEED, TEST_FRACTION, Dataset, Split, _check_classes
from .images import Images, array_images
from .npz import open_npz

DIGITS = "digits"
DIGITS_TEST_ROWS = Path(__file__).resolve().parents[2] / "data" / "digits_test_rows.npy"
"""The rows of the digits' test split, as :func:`from_images_labels` draws them (scikit-learn's stratified
``train_test_split`` with :data:`SPLIT_SEED`), kept so that the demo loads without importing scikit-learn (and
SciPy): a second or more of a first visit on a small machine. tests/test_shipped.py checks they are still those
rows; ``python -m plint_core.shipped`` writes them again (:func:`write_digits_test_rows`)."""


def load_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8×8, 10 classes), split 80/20.

    Read straight from scikit-learn's ``digits.csv.gz`` and split by :data:`DIGITS_TEST_ROWS`, without importing
    scikit-learn; the same data set (same fingerprint) as through scikit-learn, which is the way taken when the
    file or the rows are not where they are expected.
    """
    fast = _digits_without_sklearn()
    if fast is not None:
        return fast
    return _digits_with_sklearn()


def _digits_with_sklearn() -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return from_images_labels(DIGITS, array_images(images, "digits"), bunch.target,
                              tuple(str(c) for c in bunch.target_names))


def _digits_csv() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _digits_without_sklearn() -> Dataset | None:
    import gzip

    path = _digits_csv()
    if path is None or not DIGITS_TEST_ROWS.is_file():
        return None
    try:
        with gzip.open(path, mode="rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        test_rows = np.load(DIGITS_TEST_ROWS, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError):
        return None
    if table.shape != (1797, 65) or test_rows.ndim != 1 or len(test_rows) != 360:
        return None
    target = table[:, -1].astype(int)
    images = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)
    train_rows = np.setdiff1d(np.arange(len(target)), test_rows)
    return _split_by_rows(DIGITS, array_images(images, "digits"), _to_labels(target, "labels"),
                          tuple(str(c) for c in range(10)), train_rows, np.sort(test_rows))


def load_npz(path: str | Path) -> Dataset:
    """An ``.npz`` in MedMNIST's layout (``train_images``, ``train_labels``, ``val_…``, ``test_…``)
    or with ``images`` + ``labels`` (+ optional ``class_names``) split 80/20."""
    path = Path(path)
    arrays = open_npz(path)
    names = _class_names_from(arrays)
    if "train_images" in arrays:
        return _from_medmnist(path.stem, arrays, names)
    if "images" in arrays and "labels" in arrays:
        return from_images_labels(path.stem, array_images(arrays["images"], "images"), arrays["labels"], names)
    raise PlintError(
        f"{path.name!r} has arrays {sorted(arrays)}: expected train_images/train_labels/test_images/test_labels "
        "(MedMNIST layout) or images + labels"
    )


def _class_names_from(arrays: dict[str, np.ndarray]) -> tuple[str, ...] | None:
    if "class_names" not in arrays:
        return None
    return tuple(str(n) for n in np.asarray(arrays["class_names"]).ravel())


def _from_medmnist(name: str, arrays: dict[str, np.ndarray], names: tuple[str, ...] | None) -> Dataset:
    missing = [k for k in ("train_images", "train_labels", "test_images", "test_labels") if k not in arrays]
    if missing:
        raise PlintError(f"MedMNIST-style file {name!r} lacks {', '.join(missing)}")
    parts = {}
    for split in ("train", "val", "test"):
        if f"{split}_images" in arrays:
            images = array_images(arrays[f"{split}_images"], f"{split}_images")
            labels = _to_labels(arrays[f"{split}_labels"], split)
            if len(images) != len(labels):
                raise PlintError(f"{name!r}: {len(images)} {split} images but {len(labels)} labels; they must match "
                                 "one to one")
            parts[split] = (images, labels)
    shapes = {split: images.source_shape for split, (images, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise PlintError(f"{name!r}: the splits' images differ in shape {shapes} (C, H, W); they must share one")
    all_labels = np.concatenate([lab for _, lab in parts.values()])
    class_names = _resolve_names(names, all_labels, name)
    splits = {k: Split(img, lab, np.arange(len(lab), dtype=np.int64)) for k, (img, lab) in parts.items()}
    ds = Dataset(name, class_names, splits["train"], splits["test"], splits.get("val"))
    _check_classes(ds)
    return ds


def from_images_labels(name: str, images: Images, labels: np.ndarray, names: tuple[str, ...] | None) -> Dataset:
    """A data set of ``images`` and ``labels`` split 80/20, stratified, with :data:`SPLIT_SEED`."""
    from sklearn.model_selection import train_test_split

    labs = _to_labels(labels, "labels")
    if len(images) != len(labs):
        raise PlintError(f"{name!r}: {len(images)} images but {len(labs)} labels; they must match one to one")
    class_names = _resolve_names(names, labs, name)
    counts = np.bincount(labs, minlength=len(class_names))
    if counts.min() < 2:
        rare = [class_names[i] for i in np.flatnonzero(counts < 2)]
        raise PlintError(f"{name!r}: class(es) {rare} have fewer than 2 samples, too few to split into train and test")
    idx = np.arange(len(labs))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labs)
    return _split_by_rows(name, images, labs, class_names, np.sort(train_idx), np.sort(test_idx))


def _split_by_rows(name: str, images: Images, labs: np.ndarray, class_names: tuple[str, ...], train_idx: np.ndarray,
                   test_idx: np.ndarray) -> Dataset:
    def split(rows: np.ndarray) -> Split:
        return Split(images.subset(rows), labs[rows], np.arange(len(rows), dtype=np.int64))

    ds = Dataset(name, class_names, split(train_idx), split(test_idx))
    _check_classes(ds)
    return ds


def write_digits_test_rows(out: Path = DIGITS_TEST_ROWS) -> np.ndarray:
    """Draw the digits' split through scikit-learn as :func:`from_images_labels` does and keep its test rows in
    ``out`` (see :data:`DIGITS_TEST_ROWS`); returns them."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    labels = _to_labels(sk_digits().target, "labels")
    _, test = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                               stratify=labels)
    rows = np.sort(test).astype(np.int16)
    np.save(out, rows)
    return rows


def _to_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise PlintError(f"{what} labels have shape {labels.shape}: expected one integer class per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise PlintError(f"{what} labels have dtype {labels.dtype}: expected integer class indices 0..K-1")
    if labels.size and labels.min() < 0:
        raise PlintError(f"{what} labels contain {labels.min()}: class indices must be 0..K-1")
    return labels.astype(np.int64)


def _resolve_names(names: tuple[str, ...] | None, labels: np.ndarray, name: str) -> tuple[str, ...]:
    k = int(labels.max()) + 1
    if names is None:
        names = tuple(str(i) for i in range(k))
    if k > len(names):
        raise PlintError(f"{name!r}: label {k - 1} is outside 0..{len(names) - 1} for the {len(names)} class names given")
    if len(names) < 2:
        raise PlintError(f"{name!r} has only {len(names)} class: a classifier needs at least 2")
    return names
