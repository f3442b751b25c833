"""The Source section of the Model & data page: the built-in demo, uploaded files, or server paths.

A successful *Load* gives the session its own :class:`~plint_app.project.Project`
(:meth:`SessionData.use_project`), which every page then gets from
:func:`~plint_app.ui.load_project`; a rejected one shows why with ``st.error``
and leaves the session on what it had. Paths are offered only with
``PLINT_ALLOW_PATHS`` (:class:`~plint_app.config.AppConfig`).
"""
from __future__ import annotations

import logging
from typing import Callable

import streamlit as st

from plint_core.errors import PlintError
from plint_core.inputs import Inputs
from plint_core.models.sources import ModelOptions, available_architectures, describe
from plint_core.runs.tasks import Source

from .config import AppConfig
from .project import Origin, Project
from .resources import app_config, session_workspace
from .session import SessionData, session
from .sources import DATA_SUFFIXES, KINDS, MODEL_SUFFIXES, load_paths, load_uploads, parse_options
from .ui import show_flash
from .view_keys import CLASSES_KEY, LAYER_KEY

LOG = logging.getLogger("plint_app")
SOURCE_KEY = "w_source"
UPLOADER_NONCE = "w_source_nonce"
"""Bumped after a successful upload, which gives the uploaders new keys and so frees the uploaded bytes."""
PROJECT_WIDGETS = (LAYER_KEY, CLASSES_KEY)
"""Widget values that name the previous project's layers or classes; dropped when the project changes."""
FROM_FILE = ""
"""Architecture choice: whatever the sidecar states (or none, for TorchScript)."""
CHANNEL_CHOICES = {0: "from the sidecar or the data", 1: "1 (grayscale)", 3: "3 (RGB)"}


def source_section() -> None:
    """Render the Source section; on *Load* switch the session to the loaded model and data."""
    try:
        config = app_config()
    except PlintError:
        return  # the page's load_project() shows what is wrong with the configuration
    sess = session()
    kinds = [k for k in KINDS if k != "path" or config.allow_paths]
    if st.session_state.get(SOURCE_KEY) not in kinds:
        own = sess.project.origin.kind if sess.project is not None and sess.project.origin else "demo"
        st.session_state[SOURCE_KEY] = own if own in kinds else "demo"
    st.subheader("Source")
    kind = st.radio("Model and data", kinds, format_func=KINDS.get, key=SOURCE_KEY, horizontal=True,
                    persist_state="session",
                    help="The built-in demo, or your own classifier and images: uploaded"
                         f"{', or read from paths on this server' if config.allow_paths else ''}.")
    show_flash("source")
    loaded_panel(sess)
    if kind == "upload":
        upload_form(config, sess)
    elif kind == "path":
        path_form(config, sess)
    elif sess.project is None:
        st.caption("The app's own model and data are loaded (below). Choose *Upload files* to work on your "
                   "own classifier and images.")


def loaded_panel(sess: SessionData) -> None:
    """What the session loaded itself (model, data, the notes on what was assumed), with the way back."""
    proj = sess.project
    if proj is None or proj.origin is None:
        return
    origin = proj.origin
    lines = [f"Working on your model **{origin.model}** and data **{origin.data}** "
             f"({len(proj.data.train):,} training and {len(proj.data.test):,} test images). "
             f"Model: {describe(proj.bundle.spec)}."]
    lines += [f"- {note}" for note in origin.notes]
    st.info("\n".join(lines), icon=":material/upload_file:")
    st.button("Back to the demo", key="w_source_demo", on_click=use_demo, icon=":material/undo:",
              help="Work on the built-in demo again; your model and data are dropped from this session.")


def use_demo() -> None:
    switch(session(), None)
    session().flash("source", "info", "Back to the built-in demo.")


def switch(sess: SessionData, project: Project | None) -> None:
    """Make ``project`` (``None``: the shared demo) the session's, dropping widget values of the previous one."""
    sess.use_project(project)
    for key in PROJECT_WIDGETS:
        st.session_state.pop(key, None)


def option_fields(prefix: str) -> dict:
    """The model options, as the CLI's ``--arch --classes --input-size --channels --mean --std`` (raw values)."""
    c1, c2, c3 = st.columns(3)
    fields = {
        "arch": c1.selectbox("Architecture", [FROM_FILE, *available_architectures()], key=f"{prefix}_arch",
                             format_func=lambda a: a or "from the sidecar / TorchScript",
                             help="For a state_dict: plint-cnn or the torchvision model it was trained as "
                                  "(--arch). TorchScript files and weights with a sidecar need none."),
        "classes": c2.text_input("Class names", key=f"{prefix}_classes", placeholder="from the sidecar or the data",
                                 help="Comma-separated, in the order of the model's outputs (--classes). "
                                      "Default: the sidecar's, else the data's class folders, sorted."),
        "input_size": c3.text_input("Input size", key=f"{prefix}_size", placeholder="e.g. 64 or 224x288",
                                    help="Height x width in pixels the model was trained at (--input-size). "
                                         "Default: the sidecar's, else the images' own size."),
    }
    c1, c2, c3 = st.columns(3)
    fields["channels"] = c1.selectbox("Input channels", list(CHANNEL_CHOICES), format_func=CHANNEL_CHOICES.get,
                                      key=f"{prefix}_channels", help="--channels; images are converted to it.") or None
    fields["mean"] = c2.text_input("Mean", key=f"{prefix}_mean", placeholder="e.g. 0.5 or 0.485,0.456,0.406",
                                   help="Per-channel normalisation of images in [0, 1] (--mean). Default: the "
                                        "sidecar's; ImageNet's for 3-channel torchvision models; else none.")
    fields["std"] = c3.text_input("Std", key=f"{prefix}_std", placeholder="e.g. 0.25 or 0.229,0.224,0.225",
                                  help="Per-channel standard deviation (--std), as for the mean.")
    return fields


def upload_form(config: AppConfig, sess: SessionData) -> None:
    """File uploaders for model, sidecar and data, the options, and *Load*."""
    nonce = st.session_state.setdefault(UPLOADER_NONCE, 0)
    c1, c2, c3 = st.columns(3)
    model = c1.file_uploader("Model", key=f"w_up_model_{nonce}",
                             help="TorchScript (torch.jit.save), a state_dict (.pt, .pth, .ckpt, .bin) or "
                                  f".safetensors; accepted: {', '.join(MODEL_SUFFIXES)}. "
                                  "Pickles that would run code are refused.")
    sidecar = c2.file_uploader("Sidecar (optional)", type=["json"], key=f"w_up_sidecar_{nonce}",
                               help="The JSON that plint_core train writes beside the weights (arch, classes, "
                                    "input_shape, mean, std), or any part of it.")
    data = c3.file_uploader("Data", key=f"w_up_data_{nonce}",
                            help="A .zip of an image folder (one sub-folder per class, optionally under train/ and "
                                 f"test/) or an .npz (MedMNIST layout, or images + labels); accepted: "
                                 f"{', '.join(DATA_SUFFIXES)}.")
    fields = option_fields("w_up")
    if st.button("Load", type="primary", key="w_up_load", icon=":material/upload:"):
        origin = Origin("upload", getattr(model, "name", ""), getattr(data, "name", ""))
        if load(config, sess, origin, fields,
                lambda options: load_uploads(session_workspace(), model, data, options, sidecar=sidecar)):
            st.session_state[UPLOADER_NONCE] = nonce + 1
            st.rerun()


def path_form(config: AppConfig, sess: SessionData) -> None:
    """Text inputs for the model, sidecar and data paths on the server, the options, and *Load*."""
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("Model file", key="w_path_model", placeholder="/path/to/model.pt")
    sidecar = c2.text_input("Sidecar (optional)", key="w_path_sidecar", placeholder="default: model.json beside it")
    data = c3.text_input("Data", key="w_path_data", placeholder="/path/to/images/ (folder, .zip or .npz)")
    fields = option_fields("w_path")
    if st.button("Load", type="primary", key="w_path_load", icon=":material/folder_open:"):
        if load(config, sess, Origin("path", model.strip(), data.strip()), fields,
                lambda options: load_paths(model, data, options, sidecar=sidecar)):
            st.rerun()


def load(config: AppConfig, sess: SessionData, origin: Origin, fields: dict,
         opener: Callable[[ModelOptions], tuple[Inputs, Source]]) -> bool:
    """Open the inputs and switch the session to them; ``False`` (and an error on the page) if they are refused."""
    try:
        options = parse_options(**fields)
        with st.spinner("Loading and checking the model and the data …"):
            inputs, source = opener(options)
            project = Project.from_inputs(config, inputs, Origin(origin.kind, origin.model, origin.data,
                                                                 inputs.notes), source)
    except Exception as exc:  # noqa: BLE001 - foreign files can make torch fail in any way; the app goes on
        if isinstance(exc, PlintError):
            message = str(exc)
        else:
            LOG.error("loading the user's model and data failed", exc_info=exc)
            message = (f"loading failed unexpectedly ({type(exc).__name__}: {exc}); check the files and the "
                       "options, or try the command line, which gives the same checks")
        still = "your previous model and data" if sess.project is not None else "the built-in demo"
        st.error(f"Not loaded: {message.rstrip('.')}.  \nThe app goes on with {still}.", icon=":material/error:")
        return False
    switch(sess, project)
    sess.flash("source", "success", f"Loaded {origin.model} and {origin.data}; every page now works on them.")
    return True
