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

from pathlib import Path

from ..errors import PlintError
from .arrays import DIGITS, load_digits, load_npz
from .dataset import Dataset
from .image_folder import load_image_folder, load_image_zip
from .torchvision_data import TORCHVISION_DATASETS, load_torchvision_dataset


def load_data(src: str | Path, *, image_size: tuple[int, int] | None = None) -> Dataset:
    """Load ``digits``, ``mnist``, ``fashion-mnist``, an ``.npz`` file (MedMNIST layout or
    ``images`` + ``labels``), an ImageFolder or a ``.zip`` of one.

    No image is decoded or converted here (files are only opened for their
    size and mode): splits read their rows on demand. ``image_size`` (height,
    width) resizes the images of a folder or zip as they are read (they may
    then differ in size); other sources keep their size.
    """
    if str(src) == DIGITS:
        return load_digits()
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
    return load_npz(path)
