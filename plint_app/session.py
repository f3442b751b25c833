"""Per-browser-session state: the editor, the chosen layer, the running fine-tune job, the own project.

Everything a user changes lives in ``st.session_state`` (one object under
:data:`KEY`), so two people using the app at once never see each other's
selection or moves. Widget values that must survive page switches use
``persist_state="session"`` on the widget itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from .editor import Editor
from .jobs import Job
from .project import Project

KEY = "plint"


@dataclass
class SessionData:
    """What one session keeps between script runs."""

    editor: Editor = field(default_factory=Editor)
    chart_nonce: int = 0
    """Bumped to give the scatter a fresh widget key, which drops Plotly's own selection."""
    last_event: str = ""
    """Signature of the last scatter event acted on (events repeat on every rerun)."""
    last_chart: str = ""
    """Signature of the scatter figure drawn in the previous run."""
    last_chart_mode: str = "select"
    """What a click on that figure meant: ``select`` points or pick a ``destination``."""
    last_drag_event: str = ""
    """The last event of the drag map acted on (``token:seq``: the drawn map and its event count)."""
    drag_undo: list = field(default_factory=list)
    """The (dx, dy) each drag replaced, most recent last (*Undo drag*)."""
    map_window: tuple | None = None
    """``(embedding key, ranges)`` of *Show every point here* on a thinned map (:mod:`plint_app.map_thinning`), or
    ``None`` for the whole map."""
    linked_nonce: int = 0
    """Bumped to give the linked layer's scatter a fresh widget key (drops its own Plotly selection)."""
    last_linked_event: str = ""
    """Signature of the last event of the linked layer's scatter acted on."""
    run_job: Job | None = None
    current_run_id: str | None = None
    upload_seen: str | None = None
    notices: dict[str, tuple[str, str]] = field(default_factory=dict)
    """One-shot messages by page area: ``area -> (kind, text)``, set by callbacks, shown once."""
    project: Project | None = None
    """The model and data this session loaded itself; ``None``: the shared, configured project."""

    @property
    def chart_key(self) -> str:
        return f"scatter-{self.chart_nonce}"

    @property
    def drag_key(self) -> str:
        return f"drag-map-{self.chart_nonce}"

    def flash(self, area: str, kind: str, text: str) -> None:
        """Queue a message (``kind``: success, info or error) for ``area``'s next render."""
        self.notices[area] = (kind, text)

    def reset_chart(self) -> None:
        self.chart_nonce += 1
        self.last_event = ""
        self.reset_linked()

    def reset_linked(self) -> None:
        self.linked_nonce += 1
        self.last_linked_event = ""

    @property
    def linked_key(self) -> str:
        return f"linked-{self.linked_nonce}"

    def use_project(self, project: Project | None) -> None:
        """Work on ``project`` (``None``: the shared one) from now on, with a fresh editor.

        Selections, moves and the open run name samples, classes and runs of the
        previous project. A fine-tuning run still going on it finishes in the
        background and is stored (it then shows in that project's run history).
        """
        self.project = project
        self.editor = Editor()
        self.run_job = None
        self.current_run_id = None
        self.upload_seen = None
        self.reset_chart()


def session() -> SessionData:
    """This browser session's :class:`SessionData`."""
    if KEY not in st.session_state:
        st.session_state[KEY] = SessionData()
    return st.session_state[KEY]
