"""Opening a user's model and data together, as the CLI's ``embed``/``run`` and the app do.

What neither the caller nor the model's sidecar states is taken from the data:
the class names, the input size (height × width) and, for TorchScript, the
input channels. The data's images are then resized and converted to the
model's input (:func:`fit_to_model`), and the model is
checked against the data before anything long starts. Every choice made on the
user's behalf is returned as a note, to be shown to them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data.dataset import Dataset, Split
from .data.loading import load_data
from .data.transforms import convert_channels
from .models.sources import (TORCHSCRIPT, ModelOptions, load_classifier, model_format, model_path,
                             normalisation_text, stated_options)
from .models.spec import ModelBundle, ModelSpec


@dataclass(frozen=True)
class Inputs:
    """A checked model, the data fitted to its input, and notes on what was assumed or converted.

    ``notes`` is empty when the sidecar stated everything and the images fitted
    as they were; :func:`~plint_core.model_sources.describe` summarises the model.
    """

    bundle: ModelBundle
    data: Dataset
    notes: tuple[str, ...]


def open_inputs(model_src: str | Path, data_src: str | Path, options: ModelOptions = ModelOptions(), *,
                sidecar: str | Path | None = None) -> Inputs:
    """Load the model ``model_src`` and the data ``data_src`` so that they fit each other.

    ``options`` are what the user stated (``None`` fields: from the sidecar,
    the weights or the data). Raises :class:`~plint_core.errors.PlintError`
    with what to do when they cannot be made to fit.
    """
    _, hints = stated_options(model_src, options, sidecar)
    data = load_data(data_src, image_size=hints.input_size)
    notes: list[str] = []
    fill: dict = {}
    if hints.classes is None:
        fill["classes"] = data.class_names
        notes.append(f"class names taken from the data: {', '.join(data.class_names)}")
    if hints.input_size is None:
        fill["input_size"] = data.input_shape[1:]
        notes.append(f"input size {data.input_shape[1]}×{data.input_shape[2]} (height×width) taken from the data; "
                     "state --input-size if the model was trained at another size")
    if hints.channels is None and model_format(model_path(model_src)) == TORCHSCRIPT:
        fill["channels"] = data.input_shape[0]
    bundle = load_classifier(model_src, **{**options.as_kwargs(), **fill}, sidecar=sidecar)
    if hints.mean is None or hints.std is None:
        notes.append(f"normalisation not stated, using {normalisation_text(bundle.spec)}; state --mean/--std "
                     "if the model was trained with other values")
    if bundle.spec.classes != data.class_names and len(bundle.spec.classes) == data.n_classes:
        pairs = [f"{m}={d}" for m, d in zip(bundle.spec.classes, data.class_names) if m != d]
        pairs = ", ".join(pairs[:5]) + (", …" if len(pairs) > 5 else "")
        notes.append(f"the model's class names differ from the data's ({pairs}): output k is read as the data's "
                     "class k (class folders are sorted by name)")
    fitted = fit_to_model(data, bundle.spec)
    note = describe_fit(data.input_shape, fitted.input_shape)
    if note:
        notes.append(note)
    bundle.check_data(fitted)
    return Inputs(bundle, fitted, tuple(notes))


def fit_to_model(data: Dataset, spec: ModelSpec) -> Dataset:
    """``data`` with every split's images converted to ``spec.input_shape``; ``data`` itself if they fit already."""
    return fit_to_shape(data, spec.input_shape)


def fit_to_shape(data: Dataset, input_shape: tuple[int, int, int]) -> Dataset:
    """``data`` read as ``input_shape`` = (channels, height, width); ``data`` itself if it is already.

    No pixels are converted here: each split's images become a view that
    converts rows as they are read (:meth:`plint_core.data.images.Images.with_target`).
    """
    if tuple(data.input_shape) == tuple(input_shape):
        return data
    if data.input_shape[0] != input_shape[0] and {data.input_shape[0], input_shape[0]} != {1, 3}:
        convert_channels(torch.zeros((1, data.input_shape[0], 1, 1)), input_shape[0])  # raises the message

    def fit(split: Split | None) -> Split | None:
        return None if split is None else split.with_images(split.images.with_target(tuple(input_shape)))

    return data.with_splits(train=fit(data.train), test=fit(data.test), val=fit(data.val))


def describe_fit(before: tuple[int, ...], after: tuple[int, ...]) -> str:
    """A note for the user: how the images are changed to fit the model (``""`` if they are not)."""
    if tuple(before) == tuple(after):
        return ""
    return (f"images converted from {_shape_text(before)} to the model's input {_shape_text(after)} "
            "(channels×height×width), batch by batch as they are read")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(v) for v in shape)
