"""Image folders in torchvision's ImageFolder layout, and ``.zip`` files of them.

Two layouts are read (class names are the sub-folder names, sorted)::

    root/<class>/<image>                      split 80/20 into train and test, stratified,
                                              with dataset.SPLIT_SEED (as for images/labels .npz)
    root/train/<class>/<image>                the split as given; val/ (or valid/, validation/)
    root/test/<class>/<image>                 is optional

Images may sit in nested folders below their class folder. Hidden files and
folders and macOS's ``__MACOSX`` are skipped, as are files without an image
suffix (:data:`IMAGE_SUFFIXES`). A folder holding nothing but one folder (as a
zip of a folder unpacks) is looked into. Grayscale images (8- or 16-bit) give
1 channel; if any image is in colour, all are read as RGB. Pixels are scaled
to ``[0, 1]``. Without ``image_size`` all images must share one size; with it
each is resized (bilinear, antialiased) to ``image_size`` = (height, width).

Loading reads only each file's header and checks its integrity (no pixels are
kept): the images are :class:`~plint_core.data.images.FileImages`, decoded when
a batch reads them. A zip is unpacked (safely) into a temporary folder that
lives as long as the data set that reads it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PlintError
from ..safe_zip import ZipLimits, extract_zip
from ..scratch import scratch_dir
from .arrays import from_images_labels
from .dataset import Dataset, Split, _check_classes
from .decode import GRAY_MODES, WIDE_MODES
from .images import FileImages

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
"""Folder names (lower-case) that mark the split layout, and the split each one is."""


def load_image_folder(root: str | Path, *, image_size: tuple[int, int] | None = None,
                      name: str | None = None, keep: object = None) -> Dataset:
    """Read the ImageFolder at ``root`` into a :class:`Dataset` (named ``name``, default: the folder's name).

    ``keep`` is held by the images for as long as they are read (a temporary folder's owner).

    Raises :class:`PlintError` naming the folder or file for: fewer than 2
    classes, a class without samples in a split, an empty or unreadable image,
    images of different sizes when no ``image_size`` is given.
    """
    root = Path(root)
    if not root.is_dir():
        raise PlintError(f"data folder {str(root)!r} does not exist")
    name = name or root.name
    base = _content_root(root)
    layout = _scan(base, root)
    classes = sorted({c for files in layout.values() for c in files})
    if len(classes) < 2:
        raise PlintError(f"{name!r} has {len(classes)} class folder(s) {classes}: a classifier needs at least 2, "
                         "one sub-folder per class")
    index = {c: i for i, c in enumerate(classes)}
    order = [(split, cls, path) for split, files in layout.items() for cls in sorted(files) for path in files[cls]]
    paths = [path for _, _, path in order]
    channels, size = _survey([path for _, _, path in order], root, image_size)
    images = FileImages(paths=tuple(paths), shown=tuple(_rel(p, root) for p in paths), channels=channels, size=size,
                        keep=keep)
    labels = np.array([index[cls] for _, cls, _ in order], dtype=np.int64)
    if "all" in layout:
        return from_images_labels(name, images, labels, tuple(classes))
    splits = {}
    for split in layout:
        rows = np.array([i for i, (s, _, _) in enumerate(order) if s == split], dtype=np.int64)
        splits[split] = Split(images.subset(rows), labels[rows], np.arange(len(rows), dtype=np.int64))
    ds = Dataset(name, tuple(classes), splits["train"], splits["test"], splits.get("val"))
    _check_classes(ds)
    return ds


def load_image_zip(path: str | Path, *, image_size: tuple[int, int] | None = None,
                   limits: ZipLimits = ZipLimits()) -> Dataset:
    """Read a ``.zip`` of an ImageFolder: unpacked safely (see :mod:`plint_core.safe_zip`) into a
    temporary folder on disk (:func:`plint_core.scratch.scratch_dir`) that is removed when the returned data set is garbage-collected (or the
    process ends), or at once if reading fails."""
    path = Path(path)
    tmp = tempfile.TemporaryDirectory(prefix="plint-zip-", dir=scratch_dir())
    try:
        folder = extract_zip(path, Path(tmp.name) / "data", limits)
        return load_image_folder(folder, image_size=image_size, name=path.stem, keep=tmp)
    except BaseException:
        tmp.cleanup()
        raise


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible(folder: Path) -> tuple[list[Path], list[Path]]:
    entries = sorted(p for p in folder.iterdir() if not _hidden(p.name))
    return [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _content_root(root: Path) -> Path:
    while True:
        dirs, files = _visible(root)
        if len(dirs) != 1 or any(_is_image(f) for f in files) or dirs[0].name.lower() in SPLIT_FOLDERS:
            return root
        inner_dirs, _ = _visible(dirs[0])
        if not inner_dirs:  # a single class folder: not a wrapper
            return root
        root = dirs[0]


def _scan(base: Path, shown_root: Path) -> dict[str, dict[str, list[Path]]]:
    """``{split or "all": {class: [image paths]}}``."""
    dirs, files = _visible(base)
    split_dirs = {SPLIT_FOLDERS[d.name.lower()]: d for d in dirs if d.name.lower() in SPLIT_FOLDERS}
    if not split_dirs:
        loose = [f for f in files if _is_image(f)]
        if loose:
            raise PlintError(f"{_rel(loose[0], shown_root)!r} lies directly in the data folder: put the images of "
                             "each class in their own sub-folder (ImageFolder layout)")
        return {"all": _class_files(base)}
    missing = [s for s in ("train", "test") if s not in split_dirs]
    if missing:
        present = ", ".join(sorted(d.name + "/" for d in split_dirs.values()))
        raise PlintError(f"the data folder has {present} but no {missing[0]}/: give both train/ and test/, "
                         "or put the class folders at the top for a seeded split")
    extra = [d.name for d in dirs if d not in split_dirs.values()]
    if extra:
        raise PlintError(f"folder {extra[0]!r} lies beside train/ and test/: in the split layout each class is a "
                         "sub-folder of train/ and test/")
    return {split: _class_files(split_dirs[split]) for split in ("train", "val", "test") if split in split_dirs}


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    for class_dir in _visible(folder)[0]:
        found = []
        for here, subdirs, names in os.walk(class_dir):
            subdirs[:] = sorted(d for d in subdirs if not _hidden(d))
            found += [Path(here) / n for n in sorted(names) if not _hidden(n) and _is_image(Path(n))]
        classes[class_dir.name] = found
    return classes


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _survey(paths: list[Path], root: Path, image_size: tuple[int, int] | None) -> tuple[int, tuple[int, int]]:
    """``(channels, (height, width))`` the images are read as: 3 if any is in colour, else 1; their
    common size, or ``image_size``. Opens each file's header and verifies its integrity; raises
    :class:`PlintError` naming the first empty, unreadable or differently sized image."""
    channels, first = 1, None
    for path in paths:
        shown = _rel(path, root)
        mode, size = _inspect(path, shown)
        if mode not in GRAY_MODES + WIDE_MODES + ("F",):
            channels = 3
        if image_size is None:
            if first is None:
                first = (shown, size)
            elif size != first[1]:
                raise PlintError(f"images differ in size: {first[0]!r} is {_hw(first[1])}, {shown!r} is {_hw(size)}; "
                                 "state the model's input size (--input-size) to resize them all")
    size = tuple(image_size) if image_size is not None else (first[1] if first else (1, 1))
    return channels, size  # type: ignore[return-value]


def _inspect(path: Path, shown: str) -> tuple[str, tuple[int, int]]:
    """An image's mode and (height, width) from its header, after checking that the file is intact."""
    if path.stat().st_size == 0:
        raise PlintError(f"image {shown!r} is empty (0 bytes): remove or replace it")
    try:
        with Image.open(path) as img:
            mode, (width, height) = img.mode, img.size
            img.verify()  # checks the file's structure (PNG checksums, …) without decoding the pixels
    except Image.DecompressionBombError as exc:
        raise PlintError(f"image {shown!r} is too large to read safely ({exc}): downscale it first") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlintError(f"cannot read image {shown!r}: it is truncated, corrupt or not an image "
                         f"({type(exc).__name__})") from exc
    return mode, (height, width)


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]} (height×width)"
