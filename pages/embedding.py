"""Page 2 · Embedding & interventions: select groups in the scatter, move them, build the spec."""
import streamlit as st

from plint_app.navigation import through_app

through_app()  # first of all: a deep link on a fresh server comes back through app.py before this page's
# modules (torch among them) load, so that app.py can paint the first visit while they do (plint_app.first_paint)

import numpy as np

from plint_app.chart_events import parse_event
from plint_app.drag_map import drag_events, drag_map, group_payload
from plint_app.editor import SELECT_MODES
from plint_app.flags_panel import flagged_of, flags_overlay, flags_panel
from plint_app.jobs import DONE, FAILED
from plint_app.links import follow, show_in_address
from plint_app.map_thinning import MapSample
from plint_app.map_window import map_window, window_buttons
from plint_app.meeting import presented, publish_view
from plint_app.neighbour_panel import focused, map_view, neighbour_overlay, neighbour_panel, open_clicked, search_field
from plint_app.pair_panel import pair_panel
from plint_app.project import Project
from plint_app.resources import cached_base_payload, cached_base_traces, embedding_job, map_sample, scatter_view
from plint_app.scatter import COLOR_MODES, Overlay, assemble, destination_grid, selection_overlay
from plint_app.scatter_view import ScatterView, committed_overlay, digest, pending_overlay, signature
from plint_app.selection_geometry import resolved, whole_selection
from plint_app.session import SessionData, session
from plint_app.spec_panel import moves_panel
from plint_app.ui import (
    LAYER_KEY,
    current_embedding_seed,
    current_layer,
    embedding_or_progress,
    load_project,
    page_link,
    poll_embedding,
    show_flash,
)
from plint_app.view_keys import CLASSES_KEY, COLOR_KEY, CONTRACT, DX, DY, LINKED_KEY, SHOW_TEST_KEY
from plint_core.errors import PlintError
from plint_core.report.thumbnails import MAX_THUMBNAILS, montage, pick

CLICK_MODES = {"select": "Select", "inspect": "Inspect", "destination": "Destination", "drag": "Drag"}
PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["autoScale2d"]}


def consume_chart_event(proj: Project, emb, sess: SessionData, view: ScatterView, select_mode: str,
                        sample: MapSample, show_test: bool) -> None:
    """Act on the scatter's selection event from the previous run, once."""
    state = st.session_state.get(sess.chart_key)
    event = parse_event(state)
    if event.signature == sess.last_event:
        return
    sess.last_event = event.signature
    if sess.last_chart_mode == "select":
        event = whole_selection(event, state, view, sample, show_test)
    editor = sess.editor
    if sess.last_chart_mode == "destination":
        dest = event.destination()
        if dest is None:
            return
        if not len(editor.selection):
            sess.flash("move", "info", "Select a group first, then click where it should go.")
            return
        centroid = view.xy_of(editor.selection.ids).mean(0)
        st.session_state[DX] = round(float(dest[0] - centroid[0]), 2)
        st.session_state[DY] = round(float(dest[1] - centroid[1]), 2)
        return
    if sess.last_chart_mode == "inspect":
        open_clicked(proj, emb, view, event)  # one point clicked: its image and neighbours, below the map
        return
    if event.train_ids.size:
        editor.select_ids(event.train_ids, select_mode, from_chart=sess.last_chart)
        sess.reset_linked()
    elif event.n_test:
        sess.flash("move", "info", "Only test points were selected: moves act on training points. "
                            "Hide the test points or select training points.")
    elif event.empty and editor.selection.from_chart == sess.last_chart:
        editor.clear_selection()  # the user cleared Plotly's selection on the chart that made it


def consume_drag_event(sess: SessionData, select_mode: str, view: ScatterView, sample: MapSample,
                       show_test: bool) -> None:
    """Act on the drag map's event of the previous run: a box or lasso selection, or a group dragged."""
    for kind, event, name in drag_events(st.session_state.get(sess.drag_key)):
        if name == sess.last_drag_event:  # a trigger lasts one rerun; a stored state repeats
            continue
        sess.last_drag_event = name
        if kind == "selection":
            ids = np.asarray(event.get("ids", []), dtype=np.int64)
            found = resolved(event, view, sample, show_test)  # a thinned map: every point inside, drawn or not
            if found is not None:
                ids, event = found[0], {**event, "n_test": found[1]}
            if ids.size:
                sess.editor.select_ids(ids, select_mode)
            elif event.get("n_test"):
                sess.flash("move", "info", "Only test points were selected: moves act on training points.")
            continue
        sel = sess.editor.selection
        if not len(sel) or event.get("digest") != digest(sel.ids):
            sess.flash("move", "info", "The selection changed during the drag; drag the group again.")
            continue
        sess.drag_undo.append(move_settings()[0])
        st.session_state[DX], st.session_state[DY] = round(float(event["dx"]), 3), round(float(event["dy"]), 3)
        sess.flash("move", "info", f"Dragged by ({event['dx']:+.2f}, {event['dy']:+.2f}): commit the move to keep "
                                   "it, or *Undo drag*.")


def undo_drag() -> None:
    sess = session()
    if sess.drag_undo:
        st.session_state[DX], st.session_state[DY] = sess.drag_undo.pop()


def consume_linked_event(proj: Project, sess: SessionData, layer: str, select_mode: str, show_test: bool) -> None:
    """Act on the linked layer's scatter: its box or lasso selects the same training points in both maps."""
    state = st.session_state.get(sess.linked_key)
    event = parse_event(state)
    if event.signature == sess.last_linked_event:
        return
    sess.last_linked_event = event.signature
    job = embedding_job(proj, layer, current_embedding_seed(), start=False)
    if job is not None and job.status == DONE:
        view = scatter_view(proj, job.result)
        event = whole_selection(event, state, view, map_sample(proj, view, show_test), show_test)
    if event.train_ids.size:
        sess.editor.select_ids(event.train_ids, select_mode, from_chart=f"linked:{sess.linked_key}")
        sess.chart_nonce += 1  # the main map drops its own highlight and rings the new selection instead
        sess.last_event = ""
    elif event.n_test:
        sess.flash("move", "info", "Only test points were selected: moves act on training points.")


def linked_map(proj: Project, sess: SessionData, layer: str, color_by: str, show_test: bool) -> None:
    """The same points embedded from another layer, the selection ringed; selecting here selects in both maps."""
    job = embedding_job(proj, layer, current_embedding_seed())
    if job.status != DONE:
        if job.status == FAILED:
            st.error(f"The embedding of layer {layer!r} could not be computed: {job.user_error()}",
                     icon=":material/error:")
        else:
            st.info(f"Fitting the embedding of layer **{layer}** for the linked view …",
                    icon=":material/hourglass_top:")
            poll_embedding(job)
        return
    view = scatter_view(proj, job.result)
    sample = map_sample(proj, view, show_test)
    size = sample.marker_size()
    sel = sess.editor.selection
    overlay = Overlay([], [])
    own = f"linked:{sess.linked_key}"
    if len(sel) and sel.from_chart != own:
        overlay += selection_overlay(sample.only_drawn(view.xy_of(sel.ids), view.index.rows_of(sel.ids)), size)
    fig = assemble(cached_base_traces(proj, view, color_by, show_test), overlay, ranges=view.ranges, dragmode="select",
                   uirevision=view.key)
    fig.update_layout(title=dict(text=f"Layer {layer} (linked: selecting here selects in both maps)", x=0.5,
                                 xanchor="center", font=dict(size=13)), showlegend=False)
    st.plotly_chart(fig, key=sess.linked_key, on_select="rerun", config=PLOTLY_CONFIG, selection_mode=("box", "lasso"))


def move_settings() -> tuple[tuple[float, float], float]:
    return (float(st.session_state.get(DX, 0.0)), float(st.session_state.get(DY, 0.0))), \
        float(st.session_state.get(CONTRACT, 1.0))


def reset_move() -> None:
    st.session_state[DX], st.session_state[DY], st.session_state[CONTRACT] = 0.0, 0.0, 1.0


def commit(proj: Project, view: ScatterView) -> None:
    """Button callback: append the pending move to the spec (or say why not)."""
    sess = session()
    translate, contract = move_settings()
    try:
        move = sess.editor.pending_move(translate, contract)
        if translate == (0.0, 0.0) and contract == 1.0:
            raise PlintError("this move would not change anything: set a translation (dx, dy) or a contraction "
                             "below 1, or click a destination on the plot")
        sess.editor.commit(move, view.index)
    except PlintError as exc:
        sess.flash("move", "error", str(exc))
        return
    sess.reset_chart()
    reset_move()
    sess.drag_undo.clear()  # the drags made this move
    sess.flash("move", "success", f"Move {len(sess.editor.spec.moves)} committed: "
                           f"{move.select.describe()} → ({move.translate[0]:+.2f}, "
                           f"{move.translate[1]:+.2f}), contraction {move.contract:g}.")


def select_classes(view: ScatterView) -> None:
    sess = session()
    try:
        sess.editor.select_classes(st.session_state.get(CLASSES_KEY) or [], view.index)
    except PlintError as exc:
        sess.flash("move", "error", str(exc))
        return
    sess.reset_chart()


def clear_selection() -> None:
    sess = session()
    sess.editor.clear_selection()
    sess.reset_chart()


def selection_panel(proj: Project, view: ScatterView, sess: SessionData) -> None:
    """Right-hand panel: what is selected, select by class, and the move of the selection."""
    sel = sess.editor.selection
    names = proj.data.class_names
    st.markdown(f"**Selection: {len(sel):,} training points**")
    if len(sel):
        labels = view.train.labels[view.index.rows_of(sel.ids)]
        counts = np.bincount(labels, minlength=len(names))
        st.caption("by label: " + ", ".join(f"{names[k]}: {c}" for k, c in enumerate(counts) if c))
    st.multiselect("Select whole classes", list(range(len(names))), format_func=lambda k: names[k], key=CLASSES_KEY,
                   persist_state="session", placeholder="choose classes")
    c1, c2 = st.columns(2)
    c1.button("Select classes", on_click=select_classes, args=(view,), width="stretch")
    c2.button("Clear selection", on_click=clear_selection, width="stretch", disabled=not len(sel))

    st.markdown("**Move the selection**")
    step = float(f"{max(view.scale / 20, 0.01):.1g}")
    for key, default in ((DX, 0.0), (DY, 0.0), (CONTRACT, 1.0)):
        st.session_state.setdefault(key, default)
    c1, c2 = st.columns(2)
    c1.number_input("dx", step=step, format="%.2f", key=DX, persist_state="session",
                    help="Horizontal shift of the group, in embedding units. Or click a destination on the plot.")
    c2.number_input("dy", step=step, format="%.2f", key=DY, persist_state="session",
                    help="Vertical shift of the group, in embedding units.")
    st.slider("Contraction a", min_value=0.05, max_value=1.0, step=0.05, key=CONTRACT, persist_state="session",
              help="1 keeps the group's spread; 0.5 pulls every point halfway to the group's centre.")
    translate, contract = move_settings()
    if len(sel):
        c = view.xy_of(sel.ids).mean(0)
        st.caption(f"Centroid ({c[0]:.2f}, {c[1]:.2f}) → ({c[0] + translate[0]:.2f}, {c[1] + translate[1]:.2f}). "
                   "Dark grey points on the plot preview where the group goes.")
    c1, c2 = st.columns(2)
    c1.button("Commit move", type="primary", on_click=commit, args=(proj, view), width="stretch")
    c2.button("Reset move", on_click=reset_move, width="stretch")
    if sess.drag_undo:
        st.button("Undo drag", on_click=undo_drag, icon=":material/undo:",
                  help=f"Back to dx/dy before the last drag: {sess.drag_undo[-1][0]:+.2f}, {sess.drag_undo[-1][1]:+.2f}")
    show_flash("move")


@st.fragment
@presented("embedding")  # a selection or a move reruns only this fragment: a presenter publishes it from here
def editor(proj: Project, emb) -> None:
    """The interactive part; a fragment, so a selection reruns only this, not the page."""
    sess = session()
    view = scatter_view(proj, emb)
    t1, t3, t4 = st.columns([1.25, 1.95, 1.2], vertical_alignment="bottom")
    t2, t5 = st.columns([1, 4.4], vertical_alignment="bottom")  # the test points' toggle beside the linked layer
    # a follower's colouring is set through the session state (the presenter's): no default beside it
    color_by = t1.segmented_control("Colour by", list(COLOR_MODES), format_func=COLOR_MODES.get,
                                    default=None if COLOR_KEY in st.session_state else "label",
                                    required=True, key=COLOR_KEY, persist_state="session")
    show_test = t2.toggle("Show test points", key=SHOW_TEST_KEY, persist_state="session")
    click_mode = t3.segmented_control("Clicking the plot", list(CLICK_MODES), format_func=CLICK_MODES.get,
                                      default="select", required=True, key="w_click_mode", persist_state="session",
                                      help="Select: drag a box (or a lasso, from the toolbar) over points. "
                                           "Inspect: click one point to see its image and its nearest neighbours. "
                                           "Destination: click where the selected group should move to. "
                                           "Drag: grab the selected group (or its preview) and drag it where it "
                                           "should go; Escape cancels. A box started elsewhere selects.")
    select_mode = t4.segmented_control("New selection", SELECT_MODES, format_func=str.capitalize, default="replace",
                                       required=True, key="w_select_mode", persist_state="session",
                                       help="Replace the selection, add to it or remove from it.")
    layers = [info.name for info in proj.layers if info.name != emb.layer]
    linked = t5.selectbox("Linked layer, side by side", ["(none)", *layers], key=LINKED_KEY, persist_state="session",
                          help="Embed the same points from another layer next to this map. A selection in either map "
                               "selects the same training points in both; moves are made in this layer's map, the one "
                               "the fine-tuning run uses.")
    linked = None if linked == "(none)" or linked not in layers else linked
    window = map_window(sess, view)
    sample = map_sample(proj, view, show_test, window)
    if click_mode == "drag":
        consume_drag_event(sess, select_mode, view, sample, show_test)
    else:
        consume_chart_event(proj, emb, sess, view, select_mode, sample, show_test)
    if linked:
        consume_linked_event(proj, sess, linked, select_mode, show_test)
    publish_view("embedding")  # a presenter's followers start on the change while this run draws it

    left, right = st.columns([3, 1.25])
    with right:
        selection_panel(proj, view, sess)
        pair_panel(view)
    size = sample.marker_size()
    shown = sample.drawn_mask() if sample.thinned else None  # a thinned map's overlays draw the points it draws
    # the drag map keeps the data traces on the page (cached_base_payload): its figure only has the overlays
    base = () if click_mode == "drag" else cached_base_traces(proj, view, color_by, show_test, window)
    committed, group_sizes = committed_overlay(view, sess.editor.spec, size, shown)
    translate, contract = move_settings()
    found = focused(proj, emb, view)  # the image searched for or clicked, and its neighbours
    overlay = flags_overlay(proj, view, size) + committed \
        + pending_overlay(view, sess.editor.selection.ids, translate, contract, size, shown) \
        + neighbour_overlay(view, found, size)
    plain = signature(view.key, color_by, str(show_test), click_mode, str(window), overlay.signature())
    chart_sig = plain
    sel = sess.editor.selection
    if len(sel) and (sel.from_chart != plain or click_mode == "drag"):  # Plotly's own highlight is gone: ours
        overlay += selection_overlay(sample.only_drawn(view.xy_of(sel.ids), view.index.rows_of(sel.ids)), size)
        chart_sig = signature(plain, "ring", digest(sel.ids))
    if click_mode == "destination":
        overlay += destination_grid(*view.ranges)
    ranges, revision = (window, signature(view.key, "window", str(window))) if window else map_view(view)
    fig = assemble(base, overlay, ranges=ranges, dragmode="select" if click_mode == "select" else "pan",
                   uirevision=revision)
    if click_mode == "inspect":
        fig.update_layout(selectionrevision=chart_sig)  # the clicked point is ringed: drop Plotly's own highlight
    with left:
        search_field(proj, emb, view)
        main, other = st.columns(2) if linked else (st.container(), None)
        if linked:
            fig.update_layout(title=dict(text=f"Layer {emb.layer} (moves are made here)", x=0.5, xanchor="center",
                                         font=dict(size=13)),
                              legend=dict(orientation="h", yanchor="top", y=-0.08, x=0))  # half the width: below
        if click_mode == "drag":
            fig.update_layout(dragmode="select", selectionrevision=chart_sig)  # a rerun drops Plotly's own box
            fig.update_layout(margin=dict(l=45, b=35))  # room for the tick labels (drawn by plotly.js itself)
            group = group_payload(view.xy_of(sel.ids), translate, contract, size, digest(sel.ids),
                                  None if shown is None else shown[view.index.rows_of(sel.ids)]) if len(sel) else None
            with main:
                drag_map(cached_base_payload(proj, view, color_by, show_test, window), fig, group, sess.drag_key,
                         PLOTLY_CONFIG, on_change=lambda: None, ack=sess.last_drag_event)
        else:
            main.plotly_chart(fig, key=sess.chart_key, on_select="rerun", config=PLOTLY_CONFIG,
                              selection_mode=("box", "lasso") if click_mode == "select" else ("points",))
        sess.last_chart, sess.last_chart_mode = chart_sig, click_mode
        if sample.thinned:
            window_buttons(sess, view, sample)
        if other is not None:
            with other:
                linked_map(proj, sess, linked, color_by, show_test)
        neighbour_panel(proj, emb, found)
        if len(sel):
            shown = pick(sel.ids)
            st.image(montage(proj.data.train.images.native(view.index.rows_of(shown)), view.correct_of(shown),
                             marked=flagged_of(proj, shown)),
                     caption=f"{len(shown)} of {len(sel):,} selected images (green frame: classified correctly, "
                             f"red: misclassified)", width="content")
        else:
            st.caption(f"Drag a box over points to select them (lasso in the toolbar); up to {MAX_THUMBNAILS} "
                       "selected images appear here.")
    moves_panel(proj, view, sess, group_sizes)
    flags_panel(proj, view, sess)


st.title("Embedding & interventions")
st.caption("① Drag a box (or lasso) over a group of points, or pick whole classes. ② Set where it should go: "
           "dx/dy, or switch *Clicking the plot* to *Destination* and click the spot; a contraction below 1 "
           "also tightens the group. ③ Commit the move. Repeat, then fine-tune.")
project = load_project()
layers = [info.name for info in project.layers]
linked, unknown = follow("layer", layers)
if linked:
    st.session_state[LAYER_KEY] = linked
if unknown:
    st.warning(f"The model has no layer `{unknown}`: showing `{current_layer(project)}`. Its layers: "
               f"{', '.join(layers)} (choose on Model & data).", icon=":material/link_off:")
show_in_address("layer", current_layer(project))
embedding = embedding_or_progress(project)
if embedding is not None:
    editor(project, embedding)
    page_link("finetune", "Next: fine-tune the classifier with these moves", icon=":material/arrow_forward:")
