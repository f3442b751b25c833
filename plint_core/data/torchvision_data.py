"""torchvision's MNIST and FashionMNIST as plint data sets (``--data mnist`` / ``fashion-mnist``).

They are read from :func:`cache_dir` (``$PLINT_DATA_CACHE``, default
``~/.cache/plint``) and downloaded there by torchvision on first use, which
needs the internet; offline and not cached, loading says so. Their own
train/test split is kept (60 000 / 10 000 images of 1×28×28).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from ..errors import PlintError
from .dataset import Dataset, Split, _check_classes
from .images import array_images

TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
"""``--data`` names → torchvision dataset classes."""
def cache_dir() -> Path:
    """``$PLINT_DATA_CACHE`` as it is now (read at each call, not at import: a worker's modules are imported
    once, by its fork server), default ``~/.cache/plint``."""
    return Path(os.environ.get("PLINT_DATA_CACHE", Path.home() / ".cache" / "plint"))
_DOWNLOAD_HOST = ("ossci-datasets.s3.amazonaws.com", 443)


def is_cached(name: str, root: str | Path | None = None) -> bool:
    """Whether data set ``name`` can be loaded without downloading."""
    _dataset_class(name)
    return _raw_files_present(name, root)


def is_online(timeout: float = 2.0) -> bool:
    """Whether torchvision's download server answers within ``timeout`` seconds."""
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def load_torchvision_dataset(name: str, *, root: str | Path | None = None, download: bool = True) -> Dataset:
    """MNIST or FashionMNIST from the cache, downloading it first if ``download`` and it is missing."""
    cls = _dataset_class(name)
    root = str(root or cache_dir())
    if not _raw_files_present(name, root):
        if not download:
            raise PlintError(f"{name} is not in the cache {root!r} and downloading was not allowed")
        try:
            cls(root=root, train=True, download=True)
            cls(root=root, train=False, download=True)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError… when offline
            raise PlintError(f"{name} is not cached in {root!r} and could not be downloaded (is this machine "
                             f"offline?): use an .npz or an image folder instead ({type(exc).__name__})") from exc
    splits = {}
    for split in ("train", "test"):
        ds = cls(root=root, train=split == "train", download=False)
        images = array_images(ds.data.numpy(), f"{name} {split} images")  # uint8, read as / 255
        labels = ds.targets.numpy().astype(np.int64)
        splits[split] = Split(images, labels, np.arange(len(labels), dtype=np.int64))
    data = Dataset(name, tuple(str(c) for c in cls.classes), splits["train"], splits["test"])
    _check_classes(data)
    return data


def _dataset_class(name: str):
    import torchvision.datasets as tvd

    if name not in TORCHVISION_DATASETS:
        raise PlintError(f"unknown torchvision data set {name!r}: use {', '.join(TORCHVISION_DATASETS)}")
    return getattr(tvd, TORCHVISION_DATASETS[name])


def _raw_files_present(name: str, root: str | Path | None) -> bool:
    raw = Path(root or cache_dir()) / TORCHVISION_DATASETS[name] / "raw"
    return all((raw / f"{prefix}-{kind}-idx{dims}-ubyte").is_file()
               for prefix in ("train", "t10k") for kind, dims in (("images", 3), ("labels", 1)))
