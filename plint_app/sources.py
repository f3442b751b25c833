"""Opening a session's own model and data: uploaded files or (if allowed) server paths.

Pure Python (no Streamlit): the Model & data page collects the files or
paths and the options, and these functions turn them into a checked
:class:`~plint_core.inputs.Inputs` with :func:`plint_core.inputs.open_inputs`,
which explains every problem in a :class:`~plint_core.errors.PlintError`.

Each loader returns the :class:`~plint_core.inputs.Inputs` and the
:class:`~plint_core.runs.tasks.Source` from which a worker process opens the
same inputs again (long jobs run there, see :mod:`plint_core.runs`).

Uploads are written into the session's :class:`~plint_core.workspace.Workspace`
(never over a file). A refused upload is removed at once; an accepted one stays
there while the session lasts, for the worker processes that fit its embedding
and fine-tune its model, and is removed with the workspace when the session
ends (or by the next server, after a crash). Nothing a user uploads outlives
the session on the server's disk.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from plint_core.errors import PlintError
from plint_core.inputs import Inputs, open_inputs
from plint_core.models.sources import (
    SAFETENSORS_SUFFIX,
    STATE_DICT_SUFFIXES,
    TORCHSCRIPT_SUFFIXES,
    ModelOptions,
    parse_floats,
    parse_names,
    parse_size,
)
from plint_core.runs.tasks import Source
from plint_core.workspace import MAX_UPLOAD_BYTES, Workspace

KINDS = {"demo": "Built-in demo", "upload": "Upload files", "path": "Paths on the server"}
"""Source choices of the Model & data page; ``path`` only where ``PLINT_ALLOW_PATHS`` is set."""
MODEL_SUFFIXES = (*STATE_DICT_SUFFIXES, SAFETENSORS_SUFFIX, *TORCHSCRIPT_SUFFIXES)
"""Model file suffixes accepted (TorchScript is recognised by content; see :mod:`plint_core.models.sources`)."""
DATA_SUFFIXES = (".zip", ".npz")
"""Data file suffixes accepted for upload: a zipped image folder or an ``.npz``."""


class Upload(Protocol):
    """What an uploaded file offers (Streamlit's ``UploadedFile`` is one): a name, a size and ``read``."""

    name: str
    size: int

    def read(self, n: int = -1) -> bytes: ...

    def seek(self, offset: int) -> int: ...


def parse_options(*, arch: str | None = None, classes: str = "", input_size: str = "", channels: int | None = None,
                  mean: str = "", std: str = "") -> ModelOptions:
    """The form's fields as :class:`ModelOptions`; empty text (or ``None``) leaves a field to the sidecar or data.

    Same syntax as the CLI's ``--classes a,b,c``, ``--input-size 64`` or
    ``224x288`` (height × width, pixels), ``--mean``/``--std`` one value or one
    per channel. Raises :class:`PlintError` naming the field that is malformed.
    """
    def text(name: str, value: str, parse):
        value = (value or "").strip()
        if not value:
            return None
        try:
            return parse(value)
        except PlintError as exc:
            raise PlintError(f"{name}: {exc}") from None

    return ModelOptions(arch=arch or None, classes=text("classes", classes, parse_names),
                        input_size=text("input size", input_size, parse_size), channels=channels,
                        mean=text("mean", mean, parse_floats), std=text("std", std, parse_floats))


def load_uploads(workspace: Workspace, model: Upload | None, data: Upload | None, options: ModelOptions, *,
                 sidecar: Upload | None = None, max_bytes: int | None = None) -> tuple[Inputs, Source]:
    """Open uploaded ``model`` (+ optional JSON ``sidecar``) and ``data`` via ``workspace``.

    Each upload may be at most ``max_bytes`` (default :data:`MAX_UPLOAD_BYTES`,
    200 MiB). The saved files stay in the workspace if they are accepted (for the
    worker processes) and are removed before this raises otherwise.
    """
    if model is None or data is None:
        raise PlintError(f"upload {'a model' if model is None else 'the data'} first, then load")
    limit = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    with ExitStack() as saved:
        def save(upload: Upload) -> Path:
            upload.seek(0)  # a retry after a failed load reads the same upload again
            path = workspace.save_upload(upload.name, upload, max_bytes=limit)
            saved.callback(path.unlink, missing_ok=True)
            return path

        model_path, data_path = save(model), save(data)
        sidecar_path = save(sidecar) if sidecar is not None else None
        inputs = open_inputs(model_path, data_path, options, sidecar=sidecar_path)
        saved.pop_all()  # accepted: kept for the workers until the workspace goes
    return inputs, Source(str(model_path), str(data_path), options, str(sidecar_path) if sidecar_path else None)


def load_paths(model: str, data: str, options: ModelOptions, *, sidecar: str = "") -> tuple[Inputs, Source]:
    """Open the model and data at server paths (files are only read; ``~`` is expanded)."""
    model, data, sidecar = (model or "").strip(), (data or "").strip(), (sidecar or "").strip()
    if not model or not data:
        raise PlintError(f"give the path of {'the model' if not model else 'the data'}, then load")
    paths = [str(Path(p).expanduser()) if p else None for p in (model, data, sidecar)]
    inputs = open_inputs(paths[0], paths[1], options, sidecar=paths[2])
    return inputs, Source(paths[0], paths[1], options, paths[2])

