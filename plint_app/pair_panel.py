"""The Embedding page's pair edits: what a domain expert asks for in a meeting, in one click.

"These two classes should not overlap": pick the pair (by default the one the model confuses most on the
training points shown) and either

- **push them apart**: both classes move away from each other by a distance in embedding scales, optionally
  contracted towards their own centres and turned outward, into the free space at the map's edge
  (:func:`plint_core.intervention.separate_classes`), or
- **send the misclassified home**: the pair's training points the model predicts as the other class move onto
  their true class's cluster (:func:`plint_core.intervention.send_home`, the paper's instance-level edit), or
- **select** those misclassified points (red under *Errors*), to move them by hand.

The moves are added to the spec like committed ones (one *Undo* takes a pair edit back); a pair edit that
would move a point an earlier move already moves is refused with the reason, and nothing changes.
"""
from __future__ import annotations

import streamlit as st

from plint_core.errors import PlintError
from plint_core.intervention import pair_errors, send_home, separate_classes
from plint_core.metrics import confusion_counts, most_confused_pair

from .scatter_view import ScatterView
from .session import session
from .ui import show_flash
from .view_keys import PAIR_A, PAIR_B
from .view_keys import PAIR_CONTRACT as CONTRACT
from .view_keys import PAIR_DISTANCE as DISTANCE
from .view_keys import PAIR_OUTWARD as OUTWARD

AREA = "pair"


def default_pair(view: ScatterView) -> tuple[int, int]:
    """The class pair the model confuses most on the training points (either direction)."""
    k = len(view.index.class_names)
    return most_confused_pair(confusion_counts(view.train.labels, view.train.preds, k))


def chosen_pair() -> tuple[int, int]:
    return int(st.session_state[PAIR_A]), int(st.session_state[PAIR_B])


def push_apart(view: ScatterView) -> None:
    """Button callback: add the two moves that push the chosen pair apart."""
    sess, (a, b) = session(), chosen_pair()
    names = view.index.class_names
    try:
        spec = separate_classes(view.index.xy, view.index.labels, a, b,
                                distance=float(st.session_state[DISTANCE]) * view.scale,
                                contract=float(st.session_state[CONTRACT]), outward=bool(st.session_state[OUTWARD]))
        sess.editor.add_moves(spec, view.index)
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    sess.reset_chart()
    sess.flash(AREA, "success", f"{names[a]} and {names[b]} pushed apart: moves {len(sess.editor.spec.moves) - 1} "
                                f"and {len(sess.editor.spec.moves)} added.")


def send_misclassified_home(view: ScatterView) -> None:
    """Button callback: add the moves that send the pair's misclassified training points onto their class."""
    sess, (a, b) = session(), chosen_pair()
    before = len(sess.editor.spec.moves)
    try:
        spec = send_home(view.index.xy, view.index.labels, view.train.preds, view.index.ids, a, b,
                         contract=float(st.session_state[CONTRACT]))
        sess.editor.add_moves(spec, view.index)
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    sess.reset_chart()
    n = sum(len(m.select.ids) for m in spec.moves)
    sess.flash(AREA, "success", f"{n:,} misclassified training points sent onto their own class "
                                f"({len(sess.editor.spec.moves) - before} moves added).")


def select_misclassified(view: ScatterView) -> None:
    """Button callback: select the pair's misclassified training points."""
    sess, (a, b) = session(), chosen_pair()
    try:
        n = sess.editor.select_confused(a, b, view.index, view.train.preds)
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    sess.reset_chart()
    sess.flash(AREA, "success", f"{n:,} misclassified training points of the pair selected: move them below.")


def pair_panel(view: ScatterView) -> None:
    """An expander with the pair, the distance, contraction and direction, and the three actions."""
    names = view.index.class_names
    if len(names) < 2:
        return
    with st.expander("Edit a class pair", expanded=False):
        if PAIR_A not in st.session_state or PAIR_B not in st.session_state:
            st.session_state[PAIR_A], st.session_state[PAIR_B] = default_pair(view)
        st.session_state.setdefault(DISTANCE, 1.0)
        st.session_state.setdefault(CONTRACT, 0.5)
        st.session_state.setdefault(OUTWARD, True)
        c1, c2 = st.columns(2)
        classes = list(range(len(names)))
        c1.selectbox("Class", classes, format_func=lambda k: names[k], key=PAIR_A)
        c2.selectbox("and class", classes, format_func=lambda k: names[k], key=PAIR_B,
                     help="By default the pair the model confuses most on the training points.")
        a, b = chosen_pair()
        if a == b:
            st.caption("Pick two different classes.")
        else:
            wrong = int(pair_errors(view.train.labels, view.train.preds, a, b).sum())
            st.caption(f"Of the pair, {wrong:,} training point{' is' if wrong == 1 else 's are'} predicted as the "
                       "other class." if wrong else "No training point of the pair is predicted as the other class.")
        st.slider("Distance apart (× the map's scale)", 0.25, 3.0, step=0.25, key=DISTANCE,
                  help=f"How much further apart the two classes' centres end; the map's scale is {view.scale:.1f} "
                       "embedding units.")
        st.slider("Contraction", 0.05, 1.0, step=0.05, key=CONTRACT,
                  help="Pulls each moved group towards its own centre (1 keeps its spread): brings the stragglers "
                       "lying towards the other class home.")
        st.checkbox("Into free space (outward)", key=OUTWARD,
                    help="Turn each class's direction halfway away from the map's centre. Pushed straight apart, "
                         "two classes in the middle of the map land on a third class, and the fine-tuned model "
                         "is then asked to make them look like it.")
        disabled = a == b
        st.button("Push apart", type="primary", on_click=push_apart, args=(view,), width="stretch",
                  disabled=disabled)
        st.button("Send misclassified home", on_click=send_misclassified_home, args=(view,), width="stretch",
                  disabled=disabled, help="Move the pair's misclassified training points onto the middle of their "
                                          "own class's cluster (contracted as set above).")
        st.button("Select misclassified", on_click=select_misclassified, args=(view,), width="stretch",
                  disabled=disabled, help="Select them, to move them by hand.")
        show_flash(AREA)
