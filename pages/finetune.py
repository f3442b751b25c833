"""Page 3 · Fine-tune: PLI run and its CE-only control, live progress, cancel, run history."""
import streamlit as st

from plint_app.navigation import through_app

through_app()  # first of all: a deep link on a fresh server comes back through app.py before this page's
# modules (torch among them) load, so that app.py can paint the first visit while they do (plint_app.first_paint)

import time
from dataclasses import replace

from plint_app.history import history_table, run_label
from plint_app.jobs import CANCELLED, DONE, FAILED, Job, Queued, relay
from plint_app.project import Project
from plint_app.resources import embedding_job, executor, session_workspace
from plint_app.run_archives import export_bytes, import_upload
from plint_app.session import session
from plint_app.ui import (
    POLL_SECONDS,
    current_embedding_seed,
    current_layer,
    device_label,
    load_project,
    page_link,
    show_flash,
)
from plint_core.errors import PlintError
from plint_core.finetune import (
    AUTO_MOVED_SHARE,
    CLASS_WEIGHTS,
    EMBED_ON,
    OPTIMIZERS,
    SELECT_RULES,
    WEIGHTINGS,
    FinetuneConfig,
    Progress,
    format_duration,
    preset_batch_size,
)
from plint_core.report.style import class_colors
from plint_core.pipeline import load_run, run_key
from plint_core.report.summaries import selection_summary, spec_summary
from plint_core.runs.tasks import RunTask

DEFAULTS = FinetuneConfig()
LR_CHOICES = tuple(sorted({1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, DEFAULTS.lr}))
SELECT_LABELS = {"follow": "Follows the edit most, within the tolerance (default)",
                 "best-val": "Best validation checkpoint", "last": "The last step"}
WEIGHTING_LABELS = {"calibrated": "Calibrated: λ is the embedding term's share of the pull (default)",
                    "paper": "The paper's: no scaling (the embedding term dominates)",
                    "scaled": "Divided by the map's scale² (plint before calibration)"}
EMBED_ON_LABELS = {"auto": f"Automatic: the moved points only for a small edit (under {AUTO_MOVED_SHARE:.0%} of the "
                              "points), else every point (default)",
                   "all": "Every point (the method: unmoved points keep their place)",
                   "moved": "The moved points only", "balanced": "Every point, moved and unmoved half each"}
CLASS_WEIGHT_LABELS = {"none": "None: plain cross-entropy (default)",
                       "inverse": "1 / frequency, in both runs (a rare class)"}
OPTIMIZER_LABELS = {"adam": "Adam (default)", "sgd": "SGD, Nesterov momentum 0.9 (the paper's; lr 1e-2 or more)"}
RUN_TITLES = {"pli": "PLI run (cross-entropy + embedding term)", "control": "Control run (cross-entropy only)"}


def settings(proj: Project) -> FinetuneConfig:
    """The config from the widgets (raises ``PlintError`` on a bad value)."""
    s = st.session_state
    points, epochs, patience = int(s["w_points"]), int(s["w_epochs"]), int(s["w_patience"])
    return FinetuneConfig(lam=float(s["w_lam"]), steps=int(s["w_steps"]), epochs=epochs or None, lr=float(s["w_lr"]),
                          batch_size=int(s["w_batch"]), seed=int(s["w_seed"]), device=proj.config.device,
                          train_points=points if 0 < points < len(proj.data.train) else None,
                          select=s["w_select"], patience=patience or None, weighting=s["w_weighting"],
                          optimizer=s["w_optimizer"], tolerance=float(s["w_tolerance"]) / 100,
                          embed_on=s["w_embed_on"], class_weight=s["w_class_weight"],
                          moved_per_batch=int(s["w_moved_per_batch"]))


def start_run(proj: Project) -> None:
    """Run button callback: check everything, then start the PLI + control job in the background."""
    sess = session()
    try:
        config = settings(proj)
        spec = sess.editor.spec
        if not spec.moves:
            raise PlintError("there are no moves yet: select a group on 'Embedding & interventions', move it "
                             "and commit, then run")
        job = embedding_job(proj, current_layer(proj), current_embedding_seed(), start=False)
        if job is None or job.status != DONE:
            state = "still being fitted" if job is not None and job.running else "not computed yet"
            raise PlintError(f"the embedding is {state}: open 'Model & data' and wait until it is ready, then run")
        emb = job.result
        if sess.run_job is not None and sess.run_job.running:
            raise PlintError("a run is already in progress: wait for it or cancel it")
    except PlintError as exc:
        sess.flash("run", "error", str(exc))
        return

    seeds = [config.seed + i for i in range(int(st.session_state["w_seeds"]))]

    def work(job: Job):
        results = []
        for i, seed in enumerate(seeds):  # one after another: each is a PLI run and its control
            cfg = replace(config, seed=seed)
            job.part = (i, len(seeds), seed)
            run_id = run_key(emb, spec, cfg)
            if proj.store.has_run(run_id):  # run before with these settings: read it, no worker needed
                result = load_run(proj.store, run_id, time.perf_counter())
            else:
                task = RunTask(proj.source, str(proj.store.root), spec, cfg, layer=emb.layer, seed=emb.seed,
                               config=proj.config.tsne, device=proj.config.device)
                result = relay(job, executor(), task,
                               lambda outcome: load_run(proj.store, outcome.key, cache_hit=outcome.cache_hit),
                               part=(i, len(seeds)))
            results.append(result)
        job.results = results
        sess.current_run_id = results[0].run_id
        return results[0]

    sess.run_job = Job(work, name="fine-tuning").start()


def cancel_run() -> None:
    job = session().run_job
    if job is not None:
        job.cancel()


@st.fragment(run_every=POLL_SECONDS)
def run_progress(job: Job) -> None:
    """Live progress of the running job (polled), with a cancel button."""
    report = job.progress
    p = report.detail
    if isinstance(p, Queued):
        text = f"Waiting for a free worker: {p.in_line()} (runs go one after another, first come, first served)"
    elif isinstance(p, Progress):
        left = "" if p.seconds_left is None else f" · about {format_duration(p.seconds_left)} left"
        text = (f"{RUN_TITLES[p.run]} · epoch {p.epoch}/{p.epochs} · step {p.step}/{p.steps} · "
                f"CE {p.ce:.4f} · embedding term {p.embed:.4f} · loss {p.loss:.4f}{left}")
    else:
        text = "Preparing the run …"
    part = job.part
    if part is not None and part[1] > 1:
        text = f"Seed {part[2]} ({part[0] + 1} of {part[1]}) · {text}"
    st.progress(report.fraction, text=text)
    st.button("Cancel run", on_click=cancel_run, icon=":material/stop_circle:",
              disabled=job.cancel_event.is_set())
    if not job.running:
        st.rerun()


LIVE_MAP_SECONDS = 2.0


@st.fragment(run_every=LIVE_MAP_SECONDS)
def live_map(job: Job, labels, class_names) -> None:
    """The test map through the frozen E at the running run's newest checkpoint (redrawn every few seconds)."""
    import plotly.graph_objects as go

    p = job.progress.detail
    snap = p.snapshot if isinstance(p, Progress) else None
    if not snap or not job.running:
        return
    xy, moved = snap["test_xy"], snap["moved_xy"]
    fig = go.Figure()
    colors = class_colors(len(class_names))
    for k, name in enumerate(class_names):
        m = labels[:len(xy)] == k
        fig.add_trace(go.Scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(name), hoverinfo="skip",
                                 marker={"color": colors[k], "size": 4, "opacity": 0.7}))
    fig.add_trace(go.Scatter(x=moved[:, 0], y=moved[:, 1], mode="markers", name="moved training points",
                             hoverinfo="skip", marker={"color": "#000000", "size": 4, "opacity": 0.6}))
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, uirevision="live",
                      title={"text": f"{RUN_TITLES[p.run]}: the map at step {snap['step']:,} (test images through "
                                     "the frozen E; black = moved training points)", "font": {"size": 13}})
    st.plotly_chart(fig, key="live_map", config={"displaylogo": False})


def run_outcome(job: Job) -> None:
    """What the last run of this session produced."""
    if job.status == DONE:
        res = job.result
        acc = res.result["accuracy"]
        if res.cache_hit:
            st.success(f"Identical settings were run before: reused the stored run `{res.run_id}` instantly "
                       f"(no training; it took {res.result.get('compute_seconds') or 0:.0f} s when computed).",
                       icon=":material/bolt:")
        else:
            st.success(f"Run `{res.run_id}` finished in {res.result['seconds']:.1f} s on "
                       f"{res.result['device'].upper()}.", icon=":material/check_circle:")
        others = job.results[1:]
        if others:
            seeds = ", ".join(str(o.result["finetune"]["seed"]) for o in [res, *others])
            st.success(f"{len(others) + 1} seeds run: {seeds} (the first is shown here; Compare takes them "
                       "together).", icon=":material/stacks:")
        if selection_summary(res.result):
            st.caption(selection_summary(res.result))
        c1, c2, c3 = st.columns(3)
        c1.metric("Test accuracy before", f"{acc['before']:.4f}")
        c2.metric("After PLI fine-tuning", f"{acc['after']:.4f}", f"{acc['after'] - acc['before']:+.4f}")
        c3.metric("Control (CE only)", f"{acc['control']:.4f}", f"{acc['control'] - acc['before']:+.4f}")
        page_link("compare", "Compare before / after / control in detail", icon=":material/arrow_forward:")
    elif job.status == CANCELLED:
        st.warning("The run was cancelled; nothing was stored. Change the settings or run again.",
                   icon=":material/cancel:")
    elif job.status == FAILED:
        st.error(f"The run failed: {job.user_error()}", icon=":material/error:")


def open_run(run_id: str) -> None:
    session().current_run_id = run_id


def import_archive(proj: Project) -> None:
    """*Import run* callback: check the uploaded archive against this project and store it."""
    sess = session()
    upload = st.session_state.get("w_run_archive")
    if upload is None:
        sess.flash("import", "error", "choose a run archive (.zip, from 'Download run' or 'runs export') first")
        return
    try:
        report = import_upload(proj, session_workspace(), upload)
    except PlintError as exc:
        sess.flash("import", "error", f"Not imported: {exc}")
        return
    sess.current_run_id = report.run_id
    sess.flash("import", "success", f"Imported {report.describe()}. It is in the run history below; the same "
                                    "moves and settings here reuse it instead of fine-tuning again.")


st.title("Fine-tune")
proj = load_project()
sess = session()
spec = sess.editor.spec
if spec.moves:
    st.markdown(f"**Moves to apply:** {spec_summary(spec.to_dict())}")
else:
    st.info("There are no moves yet. Select groups of points and move them first.", icon=":material/info:")
    page_link("embedding", "Go to Embedding & interventions", icon=":material/scatter_plot:")

preset = preset_batch_size(proj.data.input_shape, proj.config.memory_bytes, proj.device.type)
for key, value in (("w_lam", DEFAULTS.lam), ("w_steps", DEFAULTS.steps), ("w_epochs", 0), ("w_lr", DEFAULTS.lr),
                   ("w_seed", DEFAULTS.seed), ("w_batch", preset), ("w_points", 0),
                   ("w_select", DEFAULTS.select), ("w_patience", DEFAULTS.patience or 0), ("w_seeds", 1),
                   ("w_weighting", DEFAULTS.weighting), ("w_optimizer", DEFAULTS.optimizer),
                   ("w_embed_on", DEFAULTS.embed_on), ("w_moved_per_batch", DEFAULTS.moved_per_batch),
                   ("w_class_weight", DEFAULTS.class_weight),
                   ("w_tolerance", DEFAULTS.tolerance * 100)):
    st.session_state.setdefault(key, value)
c1, c2, c3, c4 = st.columns(4)
c1.slider("λ (weight of the embedding term)", 0.0, 1.0, step=0.01, key="w_lam", persist_state="session",
          help="0 = cross-entropy only (like the control); larger values follow the moves more strongly. With the "
               f"default calibrated weighting λ is the embedding term's share of the pull on the weights at the start "
               f"({DEFAULTS.lam}: as strong as cross-entropy); with the paper's weighting the paper uses 0.1.")
c2.number_input("Steps", min_value=1, max_value=1_000_000, step=100, key="w_steps", persist_state="session",
                help="Optimisation steps of the PLI run and of the control, whatever the size of the data set. "
                     "Each keeps the step with the best validation accuracy (see More settings).")
c3.select_slider("Learning rate", LR_CHOICES, key="w_lr", persist_state="session", format_func=lambda v: f"{v:.0e}",
                 help="Step size. Small values change the classifier gently; Adam wants about 1e-3, SGD 1e-2 or more "
                      "(the paper: 0.1 on ultrasound, 0.01 on MNIST).")
c4.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="w_seed", persist_state="session",
                help="Same seed and settings → same result (and the stored run is reused).")
with st.expander("More settings"):
    st.number_input("Batch size", min_value=1, max_value=4096, step=1, key="w_batch", persist_state="session",
                    help="Images per optimisation step.")
    if preset < DEFAULTS.batch_size:
        st.caption(f"Preset to {preset} instead of {DEFAULTS.batch_size}: this server may use "
                   f"{proj.config.memory_bytes / 1e9:.1f} GB, and a batch's activations at "
                   f"{'×'.join(map(str, proj.data.input_shape))} are large (PLINT_MEMORY_GB).")
    st.number_input("Seeds to run", min_value=1, max_value=10, step=1, key="w_seeds", persist_state="session",
                    help="Run the seed above and the next ones (seed, seed + 1, …), each a PLI run with its control, "
                         "one after another. Compare then shows the targeted pair's confusions as the mean over the "
                         "seeds with a 95 % interval over test images and seeds: one seed's figures move with the "
                         "batch order alone.")
    st.number_input("Training points (0 = all)", min_value=0, max_value=len(proj.data.train), step=100,
                    key="w_points", persist_state="session",
                    help=f"Fine-tune on a subset of this many of the {len(proj.data.train):,} training images, "
                         "stratified by class; the moved points are always included. For large data sets, where "
                         "an epoch over everything takes long.")
    st.number_input("Epochs (0 = the steps above decide)", min_value=0, max_value=1000, step=1, key="w_epochs",
                    persist_state="session",
                    help="Passes over the training images instead of a number of steps.")
    st.selectbox("Weighting of the embedding term", WEIGHTINGS, key="w_weighting", persist_state="session",
                 format_func=WEIGHTING_LABELS.get,
                 help="Calibrated: at the start the embedding term's gradient is set to λ / (1 − λ) times the "
                      "cross-entropy's, so λ means the same on any data and map. The paper's: the squared distance "
                      "as it is. Scaled: divided by the map's scale squared.")
    st.selectbox("Points the embedding term acts on", EMBED_ON, key="w_embed_on", persist_state="session",
                 format_func=EMBED_ON_LABELS.get,
                 help="Every point: each keeps its place in the map as target, the moved ones their new place. With "
                      "only a few points moved (misclassified images sent to their class), holding all the others "
                      "in place outweighs the move; the moved points only then follow further at about the same "
                      "accuracy (bench/RESULTS.md). Automatic picks by the share of points moved.")
    st.number_input("Moved points in every step (0 = as the batch holds them)", min_value=0, max_value=1024, step=1,
                    key="w_moved_per_batch", persist_state="session",
                    help="Where the embedding term acts on the moved points only: this many moved points are added to "
                         "every PLI step for that term (cross-entropy stays on the step's own images, the control's). "
                         "With a few dozen points moved among thousands most steps hold none, and the edit pulls in "
                         "rare jolts.")
    st.selectbox("Cross-entropy's class weights", CLASS_WEIGHTS, key="w_class_weight", persist_state="session",
                 format_func=CLASS_WEIGHT_LABELS.get,
                 help="For a class that is rare among the training images: both runs, PLI and its control, weight "
                      "each class by 1 / its frequency, so the comparison shows what the edit adds to a "
                      "class-weighted loss.")
    st.selectbox("Optimiser", OPTIMIZERS, key="w_optimizer", persist_state="session", format_func=OPTIMIZER_LABELS.get)
    st.selectbox("Checkpoint each run keeps", SELECT_RULES, key="w_select", persist_state="session",
                 format_func=SELECT_LABELS.get,
                 help="Both runs are scored on the data set's val split (or a fixed slice held out of the training "
                      "split, never the test split) at every evaluation, and record their path: validation accuracy "
                      "and how far the edit is from done. Follows the edit: the PLI checkpoint nearest the edit among "
                      "those within the tolerance of the best validation accuracy of the start and the control (where "
                      "none is, within the tolerance of the PLI run's own best); the control keeps its best. Best "
                      "validation: each its best, the start included. Compare shows the whole path, and any "
                      "checkpoint can be picked there.")
    st.number_input("Tolerance (percentage points of validation accuracy)", min_value=0.0, max_value=50.0, step=0.1,
                    key="w_tolerance", persist_state="session", format="%.1f",
                    disabled=st.session_state["w_select"] != "follow",
                    help="How much validation accuracy, below the best of the start and the control, the rule "
                         "gives up to follow the edit.")
    st.number_input("Early stopping: evaluations below the best before a run stops (0 = never)", min_value=0,
                    max_value=100, step=1, key="w_patience", persist_state="session",
                    disabled=st.session_state["w_select"] != "best-val")
    st.caption(f"Device: {device_label()} (PLINT_DEVICE={proj.config.device})")

job = sess.run_job
running = job is not None and job.running
st.button("Run fine-tuning and control", type="primary", on_click=start_run, args=(proj,), disabled=running,
          icon=":material/play_arrow:")
show_flash("run")
if running:
    run_progress(job)
    live_map(job, proj.data.test.labels, proj.data.class_names)
elif job is not None:
    run_outcome(job)

st.subheader("Run history")
table = history_table(proj.runs())
if table.empty:
    st.caption("No runs stored yet.")
else:
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"lr": st.column_config.NumberColumn(format="%.0e"),
                                **{c: st.column_config.NumberColumn(format="%.4f") for c in table.columns
                                   if c.startswith("accuracy")}})
    labels = {row["run id"]: run_label(row) for _, row in table.iterrows()}
    ids = list(labels)
    c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Reopen a run", ids, format_func=labels.get,
                          index=ids.index(sess.current_run_id) if sess.current_run_id in ids else 0)
    if c2.button("Open in Compare", on_click=open_run, args=(chosen,), icon=":material/open_in_new:"):
        st.switch_page("pages/compare.py")
    c3.download_button("Download run", lambda: export_bytes(proj, chosen), file_name=f"plint-run-{chosen}.zip",
                       mime="application/zip", on_click="ignore", icon=":material/download:", key="w_export",
                       help="The run, its embedding and latents in one .zip, to import on another plint server "
                            "(for example one on Streamlit Cloud) or with 'python -m plint_core runs import'.")

with st.expander("Import a run computed elsewhere", icon=":material/upload:"):
    st.caption("A run archive from another plint server's 'Download run', or from "
               "`python -m plint_core runs export RUN_ID --out run.zip` on a GPU machine. It must have been "
               "computed on this data set and model; it is checked before anything is stored.")
    st.file_uploader("Run archive (.zip)", type=["zip"], key="w_run_archive")
    st.button("Import run", on_click=import_archive, args=(proj,), icon=":material/input:", key="w_import")
    show_flash("import")
