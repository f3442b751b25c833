"""``load_data``: one entry point for every data source plint reads.

Sources: scikit-learn's digits (:mod:`.arrays`), MedMNIST-style ``.npz`` and
``images``/``labels`` ``.npz`` (:mod:`.arrays`), image folders and their
``.zip`` (:mod:`.image_folder`), torchvision's MNIST and FashionMNIST
(:mod:`.torchvision_data`). Every source becomes a
:class:`~plint_core.data.dataset.Dataset` with a ``train`` and a ``test`` split
(and ``val`` where the source has one). The model's own normalisation is
applied later, by :class:`plint_core.models.spec.ModelBundle`.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import PlintError
from .arrays import DIGITS, _class_names_from, _from_images_labels, _from_medmnist, _load_digits
from .dataset import Dataset
from .image_folder import load_image_folder, load_image_zip
from .torchvision_data import TORCHVISION_DATASETS, load_torchvision_dataset


def load_data(src: str | Path, *, image_size: tuple[int, int] | None = None) -> Dataset:
    """Load ``digits``, ``mnist``, ``fashion-mnist``, an ``.npz`` file (MedMNIST layout or
    ``images`` + ``labels``), an ImageFolder or a ``.zip`` of one.

    ``image_size`` (height, width) resizes the images of a folder or zip as they
    are read (they may then differ in size); other sources keep their size.
    """
    if str(src) == DIGITS:
        return _load_digits()
    if str(src) in TORCHVISION_DATASETS:
        return load_torchvision_dataset(str(src))
    path = Path(src)
    if not path.exists():
        raise PlintError(f"data {str(path)!r} does not exist: give 'digits', an .npz file, an image folder or a .zip of one")
    if path.is_dir() or path.suffix.lower() == ".zip":
        load = load_image_folder if path.is_dir() else load_image_zip
        return load(path, image_size=image_size)
    if path.suffix.lower() != ".npz":
        raise PlintError(
            f"unsupported data file type {path.suffix or '(none)'!r} for {path.name!r}: give 'digits', an .npz "
            "with train_/test_ arrays or images + labels, an image folder (one sub-folder per class) or a .zip of one"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PlintError(f"cannot read {path.name!r} as an .npz file ({exc}): is it complete and uncorrupted?") from exc
    names = _class_names_from(arrays)
    if "train_images" in arrays:
        return _from_medmnist(path.stem, arrays, names)
    if "images" in arrays and "labels" in arrays:
        return _from_images_labels(path.stem, arrays["images"], arrays["labels"], names)
    raise PlintError(
        f"{path.name!r} has arrays {sorted(arrays)}: expected train_images/train_labels/test_images/test_labels "
        "(MedMNIST layout) or images + labels"
    )
