"""Data held as arrays: scikit-learn's digits and ``.npz`` files (MedMNIST layout or ``images`` + ``labels``).

Images are float32 tensors of shape ``[N, C, H, W]`` scaled to ``[0, 1]``:
``uint8`` pixels are divided by 255, digits' 0..16 values by 16, float images
must already lie in ``[0, 1]``. A source without a split of its own is split
80/20, stratified, with :data:`~plint_core.data.dataset.SPLIT_SEED`.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import PlintError
from .dataset import SPLIT_SEED, TEST_FRACTION, Dataset, Split, _check_classes

DIGITS = "digits"



def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return _from_images_labels(DIGITS, images, bunch.target, tuple(str(c) for c in bunch.target_names))



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
            parts[split] = (_to_images(arrays[f"{split}_images"], f"{split}_images"), _to_labels(arrays[f"{split}_labels"], split))
    all_labels = np.concatenate([lab for _, lab in parts.values()])
    class_names = _resolve_names(names, all_labels, name)
    splits = {k: Split(img, lab, np.arange(len(lab), dtype=np.int64)) for k, (img, lab) in parts.items()}
    ds = Dataset(name, class_names, splits["train"], splits["test"], splits.get("val"))
    _check_classes(ds)
    return ds



def _from_images_labels(name: str, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...] | None) -> Dataset:
    from sklearn.model_selection import train_test_split

    imgs = _to_images(images, "images")
    labs = _to_labels(labels, "labels")
    if len(imgs) != len(labs):
        raise PlintError(f"{name!r}: {len(imgs)} images but {len(labs)} labels; they must match one to one")
    class_names = _resolve_names(names, labs, name)
    counts = np.bincount(labs, minlength=len(class_names))
    if counts.min() < 2:
        rare = [class_names[i] for i in np.flatnonzero(counts < 2)]
        raise PlintError(f"{name!r}: class(es) {rare} have fewer than 2 samples, too few to split into train and test")
    idx = np.arange(len(labs))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labs)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    def split(rows: np.ndarray) -> Split:
        return Split(np.ascontiguousarray(imgs[rows]), labs[rows], np.arange(len(rows), dtype=np.int64))

    ds = Dataset(name, class_names, split(train_idx), split(test_idx))
    _check_classes(ds)
    return ds



def _as_nchw(images: np.ndarray, what: str) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None, :, :]
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images
    raise PlintError(f"{what} has shape {images.shape}: expected [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 or 3")



def _to_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.shape[0] == 0:
        raise PlintError(f"{what} is empty: the data set needs images")
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if not np.isfinite(out).all():
            raise PlintError(f"{what} contains NaN or infinite values: clean the images first")
        if out.min() < 0.0 or out.max() > 1.0:
            raise PlintError(f"{what} are floats outside [0, 1] (range {out.min():.3g}..{out.max():.3g}): give uint8 pixels or floats scaled to [0, 1]")
    else:
        raise PlintError(f"{what} has dtype {images.dtype}: expected uint8 pixels or floats in [0, 1]")
    return _as_nchw(out, what)



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
