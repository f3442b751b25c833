"""The Embedding page's flags: what a review says about the images, kept with the project.

Select images (a box, a lasso, a class or one point) and flag them *label wrong* (with the class they should
have), *ambiguous* or with a *note*, under the name you give. The flags are the project's
(:class:`plint_core.flags.FlagBook` in the run store): every session on the same data and model sees them, and
they survive a restart. Here they are listed and edited, drawn on the map as orange crosses and marked on the
thumbnails, and downloaded as CSV. *Likely label errors* ranks the training images by the model's confidence in
their given label (:mod:`plint_core.label_errors`) and selects the likely errors, to look at and flag. *Fine-tune
with the flags* trains the model with the suggested labels, or without the flagged images (the baselines
``relabel`` and ``drop_flagged`` of :mod:`plint_core.baselines`) in a worker process, with the Fine-tune page's
steps, learning rate and seed, and compares each such run with the model before.
"""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

from plint_core.baselines import FLAG_KINDS
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig
from plint_core.flags import KINDS, Flag, FlagBook
from plint_core.label_errors import LabelErrorRanking, rank_training_labels
from plint_core.report.thumbnails import montage, pick

from .baseline_versus import project_baselines
from .jobs import DONE, FAILED, Job, relay
from .project import Project
from .resources import embedding_job, executor
from .scatter import Overlay, flag_overlay
from .scatter_view import ScatterView
from .session import SessionData, session
from .ui import current_embedding_seed, current_layer, show_flash

AREA = "flags"
KIND_KEY, SUGGEST_KEY, NOTE_KEY, WHO_KEY = "w_flag_kind", "w_flag_suggested", "w_flag_note", "w_flag_who"
EDIT_KEY = "w_flag_edit"
RANKED_KEY, LEAST_KEY = "w_flag_ranked", "w_flag_least"
JOB_KEY = "plint_flag_run"
"""Session state: this session's fine-tuning job with the flags (a :class:`~plint_app.jobs.Job`)."""
RUN_KINDS = {"relabel": "Fine-tune with the suggested labels", "drop_flagged": "Fine-tune without the flagged images"}
POLL_SECONDS = 0.5
SHOWN_ERRORS = 20


def flag_book(proj: Project) -> FlagBook:
    """The project's flag book (read from the run store on every use)."""
    return FlagBook(proj.store, proj.data, proj.bundle.fingerprint)


def flags_overlay(proj: Project, view: ScatterView, size: float) -> Overlay:
    """The flagged training points as orange crosses (nothing when there are none)."""
    try:
        ids = flag_book(proj).flagged_ids()
    except PlintError:
        return Overlay.empty()  # the panel says why the book cannot be read
    ids = ids[np.isin(ids, view.index.ids)]
    return flag_overlay(view.xy_of(ids), size) if ids.size else Overlay.empty()


def flagged_of(proj: Project, ids: np.ndarray) -> np.ndarray:
    """Whether each of the training ``ids`` has a flag (for the thumbnails' corner)."""
    try:
        return np.isin(np.asarray(ids), flag_book(proj).flagged_ids())
    except PlintError:
        return np.zeros(len(ids), dtype=bool)


# --- callbacks ---------------------------------------------------------------------------------------------------

def _add(proj: Project) -> None:
    sess = session()
    kind = st.session_state.get(KIND_KEY) or "label_wrong"
    try:
        flag = flag_book(proj).add(sess.editor.selection.ids, kind, st.session_state.get(WHO_KEY, ""),
                                   suggested=st.session_state.get(SUGGEST_KEY) if kind == "label_wrong" else None,
                                   note=st.session_state.get(NOTE_KEY, ""))
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    st.session_state[NOTE_KEY] = ""
    st.session_state[EDIT_KEY] = flag.flag_id
    sess.flash(AREA, "success", f"Flagged: {flag.describe(proj.data.class_names)}.")


def _save(proj: Project, flag_id: str) -> None:
    sess = session()
    kind = st.session_state.get(f"{KIND_KEY}_{flag_id}") or "label_wrong"
    try:
        flag = flag_book(proj).edit(flag_id, kind=kind, note=st.session_state.get(f"{NOTE_KEY}_{flag_id}", ""),
                                    suggested=st.session_state.get(f"{SUGGEST_KEY}_{flag_id}")
                                    if kind == "label_wrong" else None)
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    sess.flash(AREA, "success", f"Flag saved: {flag.describe(proj.data.class_names)}.")


def _delete(proj: Project, flag_id: str) -> None:
    sess = session()
    try:
        flag = flag_book(proj).delete(flag_id)
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    st.session_state.pop(EDIT_KEY, None)
    sess.flash(AREA, "success", f"Flag deleted: {flag.describe(proj.data.class_names)}.")


def _select(ids: np.ndarray, what: str) -> None:
    sess = session()
    sess.editor.select_ids(ids)
    sess.reset_chart()
    sess.flash(AREA, "success", f"{len(ids):,} {what} selected on the map.")


# --- the panel ---------------------------------------------------------------------------------------------------

def flags_panel(proj: Project, view: ScatterView, sess: SessionData) -> None:
    """Flag the selection, the list of flags with their editor and thumbnails, the CSV, the likely label errors."""
    names = proj.data.class_names
    book = flag_book(proj)
    try:
        flags = book.flags()
    except PlintError as exc:
        st.subheader("Flags")
        st.error(str(exc), icon=":material/error:")
        return
    st.subheader(f"Flags ({len(flags)})")
    n_sel = len(sess.editor.selection)
    c1, c2, c3, c4 = st.columns([1.5, 1, 1.6, 1], vertical_alignment="bottom")
    kind = c1.segmented_control("Flag as", list(KINDS), format_func=KINDS.get, default="label_wrong", required=True,
                                key=KIND_KEY)
    c2.selectbox("Suggested class", list(range(len(names))), format_func=lambda k: names[k], index=None,
                 placeholder="choose", key=SUGGEST_KEY, disabled=kind != "label_wrong",
                 help="The class the images should have (label wrong only).")
    c3.text_input("Note", key=NOTE_KEY, placeholder="optional; the text of a note flag", max_chars=2000)
    c4.text_input("Your name", key=WHO_KEY, max_chars=100, persist_state="session",
                  help="Each flag records who made it, and when (UTC). Kept for this session's next flags.")
    st.button(f"Flag the {n_sel:,} selected image{'s' if n_sel != 1 else ''}", key="flag_selection",
              on_click=_add, args=(proj,), icon=":material/flag:", type="primary" if n_sel else "secondary")
    show_flash(AREA)
    if flags:
        _flag_list(proj, view, book, flags)
    else:
        st.caption("No flags yet. Select images on the map (a box, a lasso, a class or one point), choose what is "
                   "wrong with them and flag them; they are kept with this data and model for every session.")
    _label_errors(proj, view)
    _flag_runs(proj, sess)


def _flag_list(proj: Project, view: ScatterView, book: FlagBook, flags: list[Flag]) -> None:
    names = proj.data.class_names
    st.dataframe([{"#": k + 1, "kind": KINDS[f.kind],
                   "suggested": "" if f.suggested is None else names[f.suggested], "images": len(f.ids),
                   "note": f.note, "who": f.who, "when (UTC)": f.when.replace("+00:00", "")}
                  for k, f in enumerate(flags)], hide_index=True, width="stretch")
    by_id = {f.flag_id: f for f in flags}
    if st.session_state.get(EDIT_KEY) not in by_id:
        st.session_state[EDIT_KEY] = flags[-1].flag_id
    order = [f.flag_id for f in flags]
    c1, c2 = st.columns([3, 1.2], vertical_alignment="bottom")
    fid = c1.selectbox("Flag to edit", order, key=EDIT_KEY,
                       format_func=lambda i: f"{order.index(i) + 1}. {by_id[i].describe(names)}")
    c2.download_button("Download flags (CSV)", book.to_csv(), file_name="plint_flags.csv", mime="text/csv",
                       icon=":material/download:", width="stretch",
                       help="One row per flagged image: id, file name, given and suggested label, kind, note, "
                            "who, when.")
    flag = by_id[fid]
    k1, k2, k3 = f"{KIND_KEY}_{fid}", f"{SUGGEST_KEY}_{fid}", f"{NOTE_KEY}_{fid}"
    st.session_state.setdefault(k1, flag.kind)
    st.session_state.setdefault(k2, flag.suggested)
    st.session_state.setdefault(k3, flag.note)
    e1, e2, e3 = st.columns([1.5, 1, 2.6], vertical_alignment="bottom")
    kind = e1.segmented_control("Kind", list(KINDS), format_func=KINDS.get, required=True, key=k1)
    e2.selectbox("Suggested", list(range(len(names))), format_func=lambda k: names[k], placeholder="choose", key=k2,
                 disabled=kind != "label_wrong")
    e3.text_input("Edit the note", key=k3, max_chars=2000)
    b1, b2, b3 = st.columns(3)
    b1.button("Save flag", key="flag_save", on_click=_save, args=(proj, fid), icon=":material/save:",
              width="stretch")
    b2.button("Delete flag", key="flag_delete", on_click=_delete, args=(proj, fid), icon=":material/delete:",
              width="stretch")
    ids = np.asarray(flag.ids, dtype=np.int64)
    b3.button("Select its images", key="flag_select", on_click=_select, args=(ids, "flagged images"),
              icon=":material/select_all:", width="stretch")
    shown = pick(ids[np.isin(ids, view.index.ids)])
    if len(shown):
        st.image(montage(proj.data.train.images.native(view.index.rows_of(shown)), view.correct_of(shown),
                         marked=np.ones(len(shown), dtype=bool)),
                 caption=f"{len(shown)} of the flag's {len(ids):,} images, by {flag.who} at {flag.when}",
                 width="content")


@st.cache_resource(max_entries=4, show_spinner="Ranking the training images by the model's confidence…")
def _ranking(key: str, _proj: Project) -> LabelErrorRanking:
    return rank_training_labels(_proj.data, _proj.bundle, _proj.store, layers=_proj.layers, device=_proj.device)


def _label_errors(proj: Project, view: ScatterView) -> None:
    names = proj.data.class_names
    with st.expander("Likely label errors", expanded=bool(st.session_state.get(RANKED_KEY))):
        st.caption("The training images ranked by the model's confidence in their given label, lowest first (the "
                   "idea of confident learning). A likely error is one where the model is more confident in "
                   "another class than the images labelled with that class usually are; that class is the "
                   "suggestion. The model has seen these labels in training, so this finds candidates to look "
                   "at, not a verdict.")
        if not st.session_state.get(RANKED_KEY):
            st.button("Rank the training images", key="flag_rank",
                      on_click=lambda: st.session_state.__setitem__(RANKED_KEY, True))
            return
        try:
            ranking = _ranking(proj.cache_key, proj)
        except PlintError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        likely = ranking.likely_ids
        st.markdown(f"**{len(likely):,} likely label errors** among {len(ranking):,} training images; the least "
                    "confident first:")
        st.dataframe(ranking.table(names, limit=SHOWN_ERRORS), hide_index=True, width="stretch")
        top = ranking.ids[:SHOWN_ERRORS]
        st.image(montage(proj.data.train.images.native(view.index.rows_of(top)), view.correct_of(top),
                         marked=flagged_of(proj, top)),
                 caption=f"The {len(top)} least confident (orange corner: flagged)", width="content")
        c1, c2 = st.columns(2, vertical_alignment="bottom")
        n = int(c1.number_input("How many of the least confident", 1, len(ranking), min(SHOWN_ERRORS, len(ranking)),
                                key=LEAST_KEY))
        c2.button(f"Select the {n:,} least confident", key="flag_select_least", on_click=_select,
                  args=(ranking.ids[:n], "least confident training images"), icon=":material/select_all:",
                  width="stretch")
        if len(likely):
            st.button(f"Select the {len(likely):,} likely errors on the map", key="flag_select_errors",
                      on_click=_select, args=(likely, "likely label errors"), icon=":material/select_all:")


# --- fine-tuning with the flags ----------------------------------------------------------------------------------

def run_settings(proj: Project) -> FinetuneConfig:
    """The Fine-tune page's steps (or epochs), learning rate, batch size and seed where this session set them,
    the engine's defaults otherwise (a flags' run has no embedding term: λ and its weighting do not apply)."""
    s, d = st.session_state, FinetuneConfig()
    epochs = int(s.get("w_epochs", 0) or 0)
    return FinetuneConfig(steps=int(s.get("w_steps", d.steps)), epochs=epochs or None, lr=float(s.get("w_lr", d.lr)),
                          batch_size=int(s.get("w_batch", d.batch_size)), seed=int(s.get("w_seed", d.seed)),
                          device=proj.config.device)


def _start_flag_run(proj: Project, kind: str) -> None:
    """Button callback: the relabelled run, or the run without the flagged images, in the background."""
    from plint_core.runs.tasks import BaselineTask

    sess = session()
    try:
        baseline = flag_book(proj).baseline(kind)
        job = embedding_job(proj, current_layer(proj), current_embedding_seed(), start=False)
        if job is None or job.status != DONE:
            raise PlintError("the embedding is not ready yet: wait until the map is drawn, then run")
        running = st.session_state.get(JOB_KEY)
        if running is not None and running.running:
            raise PlintError("a run with the flags is already in progress: wait for it to finish")
    except PlintError as exc:
        sess.flash(AREA, "error", str(exc))
        return
    emb, spec, config = job.result, sess.editor.spec, run_settings(proj)
    task = BaselineTask(proj.source, str(proj.store.root), spec, baseline, config, layer=emb.layer, seed=emb.seed,
                        config=proj.config.tsne, device=proj.config.device)

    def work(job: Job) -> dict:
        def load(outcome) -> dict:
            d = proj.store.baseline_dir(outcome.key)
            return json.loads((d / "result.json").read_text(encoding="utf-8")) | {"cache_hit": outcome.cache_hit}

        return relay(job, executor(), task, load)

    st.session_state[JOB_KEY] = Job(work, name=f"flags run ({kind})").start()


def flag_runs(proj: Project) -> list[dict]:
    """This project's stored runs with the flags (``relabel``, ``drop_flagged``), newest first (Compare puts each
    beside a PLI run: :mod:`plint_app.baseline_versus`)."""
    return project_baselines(proj, FLAG_KINDS)


@st.fragment(run_every=POLL_SECONDS)
def _poll(job: Job) -> None:
    report = job.progress
    st.progress(min(max(report.fraction, 0.0), 1.0), text=f"{job.name}: {report.stage} … {report.fraction:.0%} "
                                                           f"({job.seconds:.0f} s)")
    if not job.running:
        st.rerun()


def _flag_runs(proj: Project, sess: SessionData) -> None:
    with st.expander("Fine-tune with the flags", expanded=st.session_state.get(JOB_KEY) is not None):
        st.caption("Cross-entropy fine-tuning exactly like the control of a PLI run (same start, rows, validation "
                   "images and pick), with the Fine-tune page's steps, learning rate and seed, on the rows of the "
                   "committed moves (every training row without moves): either with the suggested class of the "
                   "images flagged *label wrong*, or without the images flagged *label wrong* or *ambiguous*. "
                   "A changed flag is a new run; the same flags again reuse the stored one.")
        c1, c2 = st.columns(2)
        for col, (kind, label) in zip((c1, c2), RUN_KINDS.items()):
            col.button(label, key=f"flag_run_{kind}", on_click=_start_flag_run, args=(proj, kind), width="stretch")
        job = st.session_state.get(JOB_KEY)
        if job is not None and job.running:
            _poll(job)
        elif job is not None and job.status == FAILED:
            st.error(f"The run with the flags failed: {job.user_error()}", icon=":material/error:")
        elif job is not None and job.status == DONE:
            r = job.result
            acc = r["accuracy"]
            st.success(f"{r['baseline']['name']}: test accuracy {acc['before']:.4f} before → {acc['baseline']:.4f} "
                       f"after{' (the stored run, reused)' if r.get('cache_hit') else ''}.",
                       icon=":material/check_circle:")
        runs = flag_runs(proj)
        if runs:
            st.dataframe([{"run": r["baseline"]["name"], "created": str(r.get("created", "")).replace("T", " "),
                           "training images": r.get("n_train"), "steps": (r.get("finetune") or {}).get("steps"),
                           "seed": (r.get("finetune") or {}).get("seed"),
                           "test accuracy before": round(r["accuracy"]["before"], 4),
                           "after": round(r["accuracy"]["baseline"], 4),
                           "change (pp)": round(100 * (r["accuracy"]["baseline"] - r["accuracy"]["before"]), 2),
                           "run id": r["run_id"]} for r in runs], hide_index=True, width="stretch")
