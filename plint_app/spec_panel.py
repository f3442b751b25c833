"""The list of committed moves with delete and undo, and the spec's JSON download and upload."""
from __future__ import annotations

import hashlib

import streamlit as st

from plint_core.errors import PlintError
from plint_core.intervention import InterventionSpec

from .project import Project
from .scatter_view import ScatterView
from .session import SessionData, session
from .ui import show_flash

UPLOAD_KEY = "w_spec_upload"


def _delete(position: int, view: ScatterView) -> None:
    sess = session()
    try:
        sess.editor.delete(position, view.index)
        sess.flash("spec", "success", f"Move {position + 1} deleted.")
    except PlintError as exc:
        sess.flash("spec", "error", str(exc))


def _undo() -> None:
    sess = session()
    try:
        sess.editor.undo()
        sess.flash("spec", "success", "Undone: the previous list of moves is back.")
    except PlintError as exc:
        sess.flash("spec", "error", str(exc))


def _upload(view: ScatterView) -> None:
    """Uploader callback: replace the spec by the uploaded one if it is valid for this data."""
    sess = session()
    file = st.session_state.get(UPLOAD_KEY)
    if file is None:
        sess.upload_seen = None
        return
    data = file.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    if digest == sess.upload_seen:
        return
    sess.upload_seen = digest
    try:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlintError(f"{file.name!r} is not a text file: upload the JSON spec saved by this app") from exc
        spec = InterventionSpec.from_json(text)
        sess.editor.set_spec(spec, view.index)
    except PlintError as exc:
        sess.flash("spec", "error", f"The uploaded spec {file.name!r} was not loaded: {exc}")
        return
    sess.flash("spec", "success", f"Loaded {len(spec.moves)} move(s) from {file.name!r}.")


def moves_panel(proj: Project, view: ScatterView, sess: SessionData, group_sizes: list[int]) -> None:
    """Committed moves, one row each with a delete button; undo; spec download and upload."""
    spec = sess.editor.spec
    st.subheader(f"Committed moves ({len(spec.moves)})")
    if not spec.moves:
        st.caption("No moves yet. Select a group, set dx/dy (or click a destination) and commit.")
    for k, move in enumerate(spec.moves):
        c1, c2 = st.columns([6, 1], vertical_alignment="center")
        n = group_sizes[k] if k < len(group_sizes) else 0
        c1.markdown(f"**{k + 1}.** {move.select.describe()} ({n:,} points) → translate "
                    f"({move.translate[0]:+.2f}, {move.translate[1]:+.2f}), contraction {move.contract:g}")
        c2.button("Delete", key=f"delete_move_{k}", on_click=_delete, args=(k, view), icon=":material/delete:")
    c1, c2, c3 = st.columns([1, 1.4, 2.6], vertical_alignment="bottom")
    c1.button("Undo", on_click=_undo, disabled=not sess.editor.can_undo, icon=":material/undo:")
    c2.download_button("Download spec (JSON)", spec.to_json(), file_name="plint_spec.json", mime="application/json",
                       disabled=not spec.moves, icon=":material/download:")
    c3.file_uploader("Upload a spec (JSON)", type=["json"], key=UPLOAD_KEY, on_change=_upload, args=(view,),
                     help="A spec saved by this app or written by hand in the engine's format: "
                          '{"moves": [{"select": {"classes": [3]}, "translate": [-5, 0], "contract": 1}]}')
    show_flash("spec")
