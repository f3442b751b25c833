"""A live review meeting: one session presents, the sessions that open its meeting link follow.

What a follower sees is the presenter's *view*: the page, the widgets of :data:`plint_app.view_keys.SHARED` (the
layer, the colouring, test points shown, the pending move and the class pair's settings, the fine-tuning
settings), the selection, the committed moves, the run on Compare with its picked checkpoint. The presenter's
session publishes that view after each of its runs (:func:`publish_view`, called by ``app.py`` once the page has
run); a follower's sidebar holds a fragment that polls the meeting's file every :data:`POLL_SECONDS` and reruns
the follower's app when it changed, and before every page run the follower takes the presenter's view over
(:func:`meeting_bar`). A follower's own clicks are undone on its next run (it cannot change the presenter's
state, which only a presenter key may publish); *Stop following* keeps the view as the follower's own.

The addresses: the presenter's is ``?meeting=ID&presenter_key=KEY`` (kept in the address across page switches,
so that a reload goes on presenting, with the view it had), the meeting link handed to the room is
``?meeting=ID``. The meetings themselves are files in the run store (:mod:`plint_core.meetings`, where the README
says why no server of its own).

Before the page runs only Streamlit and :mod:`plint_core.meetings` are imported here, unless the session is in a
meeting: the first visit's frame (:mod:`plint_app.first_paint`) is drawn before the engine loads.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from plint_core.errors import PlintError
from plint_core.meetings import MeetingStore, check_id

from .navigation import PAGES
from .view_keys import PICK_PREFIX, RUN_PAIR_PREFIXES, SHARED

F = TypeVar("F", bound=Callable)
ROLE_KEY = "_plint_meeting"
"""Session state: this session's :class:`Role` (``None``: in no meeting)."""
LEFT_KEY = "_plint_meetings_left"
"""Session state: the meetings this session stopped following (their link no longer pulls it back)."""
MEETING_PARAM, KEY_PARAM = "meeting", "presenter_key"
POLL_SECONDS = 0.2
"""How often a follower looks at the meeting's file (one ``stat``); with a rerun of the page on a change, a
follower shows a presenter's change within about a second (bench/RESULTS.md, "Meetings")."""
PAGE_NAMES = {"": "model", "model": "model", "model_data": "model", "embedding": "embedding", "finetune": "finetune",
              "compare": "compare"}
"""Page names (:data:`plint_app.navigation.PAGES`) by URL path."""


@dataclass
class Role:
    """This session's part in a meeting."""

    meeting_id: str
    key: str | None = None
    """The presenter key (``None``: this session follows)."""
    stamp: int = 0
    """Follower: the meeting file's time stamp last taken over."""
    published: dict | None = None
    """Presenter: the view last published (an unchanged view is not written again)."""
    page: str = ""
    """Follower: the page this session showed last (:data:`PAGE_NAMES`)."""
    page_hash: str = ""
    """Follower: that page's script hash, as Streamlit names it in a run."""
    notices: list = field(default_factory=list)

    @property
    def presenting(self) -> bool:
        return self.key is not None


def meeting_store() -> MeetingStore:
    """The meetings of the app's run store."""
    from .resources import app_config  # the engine: only once a meeting is asked for

    return MeetingStore(app_config().runs_dir)


def role() -> Role | None:
    return st.session_state.get(ROLE_KEY)


def _notice(kind: str, text: str) -> None:
    st.session_state.setdefault("_plint_meeting_notices", []).append((kind, text))


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _leave(text: str | None = None, kind: str = "info") -> None:
    r = role()
    if r is not None:
        st.session_state.setdefault(LEFT_KEY, set()).add(r.meeting_id)
    st.session_state[ROLE_KEY] = None
    for param in (MEETING_PARAM, KEY_PARAM):
        if param in st.query_params:
            del st.query_params[param]
    if text:
        _notice(kind, text)


def start_presenting() -> None:
    """Button callback: open a meeting with this session as its presenter."""
    from .session import session

    if session().project is not None:
        _notice("error", "A meeting shows the app's shared model and data, and this session works on a model and data "
                         "of its own, which only it can open: go back to the demo (Model & data) to present.")
        return
    meeting_id, key = meeting_store().start()
    st.session_state[ROLE_KEY] = Role(meeting_id, key)
    st.query_params[MEETING_PARAM], st.query_params[KEY_PARAM] = meeting_id, key


def end_meeting() -> None:
    """Button callback: the presenter ends the meeting; the followers keep what they see as their own."""
    r = role()
    if r is None or not r.presenting:
        return
    try:
        meeting_store().end(r.meeting_id, r.key)
    except PlintError as exc:
        _notice("error", _sentence(exc))
    _leave(f"Meeting {r.meeting_id} ended.")


def stop_following() -> None:
    """Button callback: keep the presenter's last view as this session's own, and stop following."""
    r = role()
    if r is not None and not r.presenting:
        _leave(f"You stopped following meeting {r.meeting_id}: what you see is now your own to explore.")


def meeting_link(meeting_id: str) -> str:
    """The address a follower opens: the app's address with ``?meeting=ID`` (a relative one where the app's
    address is not known)."""
    query = urlencode({MEETING_PARAM: meeting_id})
    try:
        url = st.context.url
    except Exception:  # noqa: BLE001 (no browser: AppTest)
        url = None
    if not url:
        return f"/?{query}"
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/", query, ""))


def page_name(url_path: str) -> str:
    return PAGE_NAMES.get(url_path or "", "model")


# ------------------------------------------------------------------------------------------------------------
def _join(url_path: str) -> Role | None:
    """The session's role, joining the meeting its address names where it is in none yet."""
    r = role()
    wanted = st.query_params.get(MEETING_PARAM)
    if r is not None or not wanted or wanted in st.session_state.get(LEFT_KEY, set()):
        return r
    try:
        check_id(wanted)
        store = meeting_store()
        meeting = store.read(wanted)
    except PlintError as exc:
        st.session_state.setdefault(LEFT_KEY, set()).add(wanted)
        del st.query_params[MEETING_PARAM]
        _notice("error", _sentence(exc))
        return None
    key = st.query_params.get(KEY_PARAM)
    r = Role(wanted, key) if key and store.is_presenter(wanted, key) else Role(wanted)
    st.session_state[ROLE_KEY] = r
    if r.presenting:  # a presenter's reload: its view comes back (this may switch the page), and it goes on
        take_view(meeting.state, r, url_path)
    return r


def meeting_bar(url_path: str) -> None:
    """Before the page runs: join the meeting the address names, take the presenter's view over (a follower; this
    may switch to the presenter's page), and draw the sidebar's meeting section."""
    r = _join(url_path)
    if r is not None and not r.presenting:
        store = meeting_store()
        try:
            meeting = store.read(r.meeting_id)
        except PlintError as exc:
            _leave(_sentence(exc), "warning")
            r = None
        else:
            r.stamp, r.page, r.page_hash = store.stamp(r.meeting_id), page_name(url_path), _page_hash()
            take_view(meeting.state, r, url_path)
    elif r is not None:
        if st.query_params.get(MEETING_PARAM) != r.meeting_id:
            st.query_params[MEETING_PARAM], st.query_params[KEY_PARAM] = r.meeting_id, r.key  # kept across pages
        if r.published is not None and r.published.get("page") != page_name(url_path):
            publish_view(url_path)  # a new page: the followers switch while this run draws it
    _sidebar(r)


def _sidebar(r: Role | None) -> None:
    with st.sidebar.container(key="plint_meeting"):
        for kind, text in st.session_state.pop("_plint_meeting_notices", []):
            getattr(st, kind)(text)
        if r is None:
            st.button("Present this view", icon=":material/co_present:", on_click=start_presenting,
                      key="w_meeting_start", help="Start a meeting: whoever opens its link sees what you show, live.")
        elif r.presenting:
            st.markdown(f"**Presenting meeting `{r.meeting_id}`**")
            st.caption("Followers open this link and see your view, live:")
            st.code(meeting_link(r.meeting_id), language=None)
            st.button("End meeting", icon=":material/stop_screen_share:", on_click=end_meeting, key="w_meeting_end")
        else:
            st.markdown(f"**Following meeting `{r.meeting_id}`**")
            st.caption("You see the presenter's view; what you click is undone. Stop following to explore on your "
                       "own from here.")
            st.button("Stop following", icon=":material/logout:", on_click=stop_following, key="w_meeting_leave")
            _watch(r.meeting_id)


@st.fragment(run_every=POLL_SECONDS)
def _watch(meeting_id: str) -> None:
    """A follower's poll: rerun the app when the meeting's file changed, or when the meeting went idle."""
    r = role()
    if r is None or r.presenting or r.meeting_id != meeting_id:
        return
    if r.page in PAGES and _page_hash() != r.page_hash:
        # a poll the browser sent for the page it showed before a page switch: run as it is, it would take the
        # browser back to that page's (empty) view; go to the page this session is on instead
        st.switch_page(PAGES[r.page], query_params={MEETING_PARAM: meeting_id})
    store = meeting_store()
    stamp = store.stamp(meeting_id)
    if stamp == r.stamp and store.clock() - stamp / 1e9 <= store.idle_seconds:
        return
    try:
        page = store.read(meeting_id).state.get("page")
    except PlintError:
        page = None  # the full run says why
    if page in PAGES and page != r.page:
        st.switch_page(PAGES[page], query_params={MEETING_PARAM: meeting_id})  # one run, on the presenter's page
    st.rerun()


# ------------------------------------------------------------------------------------------------------------
def _page_hash() -> str:
    """The page this run is for, as Streamlit names it (``""`` outside a run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.page_script_hash if ctx is not None else ""


def _fragment_run() -> bool:
    """Whether this run reruns fragments only (a click on a fragment), not the whole app."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def shared_key(key: str) -> bool:
    return key in SHARED or key.startswith(PICK_PREFIX) or key.startswith(RUN_PAIR_PREFIXES)


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()  # a numpy scalar
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else None


def current_view(url_path: str) -> dict:
    """What this session shows: the page, the shared widgets' values, the selection, the moves, the run."""
    from .neighbour_panel import FOCUS_KEY
    from .session import session

    sess = session()
    state = st.session_state
    widgets = {k: _plain(state[k]) for k in list(state.keys()) if isinstance(k, str) and shared_key(k)}
    sel = sess.editor.selection
    return {"page": page_name(url_path), "widgets": {k: v for k, v in widgets.items() if v is not None},
            "selection": {"ids": [int(i) for i in sel.ids], "classes": [int(c) for c in sel.classes]},
            "spec": sess.editor.spec.to_dict(), "run": sess.current_run_id, "own_project": sess.project is not None,
            "focus": _focus_dict(state.get(FOCUS_KEY))}


def _focus_dict(focus) -> dict | None:
    if focus is None:
        return None
    d = dataclasses.asdict(focus)
    return {**d, "centre": list(d["centre"]) if d.get("centre") is not None else None}


def publish_view(url_path: str) -> None:
    """After the page ran: a presenter publishes its view where it changed."""
    r = role()
    if r is None or not r.presenting:
        return
    view = current_view(url_path)
    if view == r.published:
        return
    try:
        meeting_store().publish(r.meeting_id, r.key, view)
    except PlintError as exc:
        _leave(_sentence(exc), "warning")
        return
    r.published = view


def presented(page: str) -> Callable[[F], F]:
    """Decorate a page's fragment: after each of its runs a presenter publishes its view (a fragment's rerun does
    not run ``app.py``, which publishes after a full run); a follower's click on it reruns the whole app instead,
    which takes the presenter's view back (:func:`meeting_bar`). ``page``: the page's URL path."""
    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*args, **kwargs):
            r = role()
            if r is not None and not r.presenting and _fragment_run():
                st.rerun()
            try:
                return func(*args, **kwargs)
            finally:
                publish_view(page)
        return run  # type: ignore[return-value]
    return wrap


def take_view(view: dict, r: Role, url_path: str) -> None:
    """Make this session show ``view`` (a presenter's): widgets, selection, moves and run; switch to its page."""
    if not view:
        return
    import numpy as np

    from plint_core.intervention import InterventionSpec

    from .chart_events import parse_event
    from .drag_map import drag_events
    from .editor import CurrentSelection
    from .neighbour_panel import FOCUS_KEY, Focus
    from .session import session

    sess = session()
    if view.get("own_project"):
        _notice("info", "The presenter is showing a model and data of their own, which only their session can "
                        "open: you see their last view of the shared project.")
        return
    if sess.project is not None:
        sess.use_project(None)  # a meeting shows the shared project
    state = st.session_state
    for key, value in view.get("widgets", {}).items():
        if shared_key(key) and (key not in state or _plain(state[key]) != value):
            state[key] = value
    sel = view.get("selection") or {}
    ids = np.asarray(sel.get("ids", []), dtype=np.int64)
    classes = tuple(int(c) for c in sel.get("classes", []))
    editor = sess.editor
    if not np.array_equal(ids, editor.selection.ids) or classes != editor.selection.classes:
        editor.selection = CurrentSelection(ids=ids, classes=classes)
        sess.reset_chart()
    spec = InterventionSpec.from_dict(view["spec"]) if view.get("spec") else InterventionSpec()
    if spec.to_dict() != editor.spec.to_dict():
        editor.spec, editor.history = spec, []
        sess.reset_chart()
    sess.current_run_id = view.get("run")
    focus = view.get("focus")  # the image searched for or inspected, with its neighbours
    if focus != _focus_dict(state.get(FOCUS_KEY)):
        if focus:
            state[FOCUS_KEY] = Focus(**{**focus, "centre": tuple(focus["centre"]) if focus.get("centre") else None})
        else:
            state.pop(FOCUS_KEY, None)
    # the follower's own chart events of the last run are undone: a fresh chart drops them
    chart = parse_event(state.get(sess.chart_key))
    dragged = [name for _, _, name in drag_events(state.get(sess.drag_key)) if name != sess.last_drag_event]
    if (not chart.empty and chart.signature != sess.last_event) or dragged:
        sess.last_drag_event = dragged[-1] if dragged else sess.last_drag_event
        sess.reset_chart()
    linked = parse_event(state.get(sess.linked_key))
    if not linked.empty and linked.signature != sess.last_linked_event:
        sess.reset_linked()
    if r.presenting:
        r.published = None
    page = view.get("page")
    if page in PAGES and page != page_name(url_path):
        st.switch_page(PAGES[page], query_params={MEETING_PARAM: r.meeting_id, **(
            {KEY_PARAM: r.key} if r.presenting else {})})
