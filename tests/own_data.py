"""Builders for "bring your own model and data" tests: PNG folders, zips, TorchScript, one torch thread."""
from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from conftest import make_npz_arrays
from PIL import Image

from plint_core.models.cnn import SmallCNN

CLASSES = ("apple", "banana", "cherry")


def write_image_folder(root: Path, *, n_per_class: int = 12, size: int = 16, rgb: bool = False,
                       split: bool = False) -> Path:
    """Three classes of band images as PNGs: ``root/<class>/k.png`` or ``root/{train,test}/<class>/k.png``."""
    images, labels = make_npz_arrays(n_per_class=n_per_class, n_classes=len(CLASSES), size=size)
    for i, (img, lab) in enumerate(zip(images, labels)):
        part = ("test" if i % n_per_class < n_per_class // 4 else "train") if split else ""
        folder = root / part / CLASSES[lab]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.stack([img, img // 2, 255 - img], axis=-1) if rgb else img
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def zip_folder(folder: Path, zip_path: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    """``folder`` zipped as ``<folder name>/…`` (as an OS's 'compress folder' does), plus ``extra`` entries."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return zip_path


def save_torchscript(path: Path, *, in_channels: int = 1, n_classes: int = 3, trace: bool = False,
                     sidecar: dict | None = None) -> Path:
    """A small CNN (random weights, seed 0) saved with ``torch.jit.save``; optionally a JSON sidecar beside it."""
    torch.manual_seed(0)
    model = SmallCNN(in_channels, n_classes, width=8, hidden=16).eval()
    save_scripted(model, path, trace_input=torch.zeros(1, in_channels, 16, 16) if trace else None)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def save_scripted(module: torch.nn.Module, path: Path, trace_input: torch.Tensor | None = None) -> Path:
    """``module`` scripted (or traced on ``trace_input``) and saved with ``torch.jit.save``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still what labs ship
        scripted = torch.jit.script(module) if trace_input is None else torch.jit.trace(module, trace_input)
        torch.jit.save(scripted, str(path))
    return path


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


class WritesAFile:
    """Pickles to a call of ``open(target, "w")``: loading it with code execution would create ``target``."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def write_evil_pickle(path: Path, marker: Path, key: str = "fc.weight") -> Path:
    """A "state_dict" pickle whose loading would run code (create ``marker``)."""
    with open(path, "wb") as fh:
        pickle.dump({key: WritesAFile(marker)}, fh)
    return path
