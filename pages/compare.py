"""Page 4 · Compare: before / after / control confusion matrices, per-class metrics, test embeddings."""
import streamlit as st

from plint_app.navigation import through_app

through_app()  # first of all: a deep link on a fresh server comes back through app.py before this page's
# modules (torch among them) load, so that app.py can paint the first visit while they do (plint_app.first_paint)

import json

import numpy as np

from plint_app.baseline_versus import accuracy_versus, baseline_label, per_class_against, project_baselines
from plint_app.history import history_table, run_label
from plint_app.jobs import DONE
from plint_app.links import follow, show_in_address
from plint_app.project import Project
from plint_app.replay_panel import replay_panel
from plint_app.resources import embedding_job, seed_bootstrap, stored_run
from plint_app.run_versus import accuracy_table, comparable, per_class_versus, settings_table
from plint_app.seeds import pair_summary, seed_group
from plint_app.session import session
from plint_app.ui import current_embedding_seed, current_layer, load_project, page_link
from plint_core.errors import PlintError
from plint_core.metrics import targeted_pair
from plint_core.pipeline import load_embedding
from plint_core.pick import picked_view
from plint_core.report.figures import (
    before_after_figure,
    confusion_figure,
    confusion_max,
    difference_figure,
    moved_groups,
    path_animation_figure,
    path_figure,
    validation_figure,
)
from plint_core.flags import stored_flags
from plint_core.report.html import render_report
from plint_core.report.summaries import (
    MODEL_TITLES,
    MODELS,
    delta_columns,
    metrics_csv,
    per_class_table,
    schedule_summary,
    selection_summary,
    spec_summary,
)


def run_train_xy(proj: Project, embedding_key: str) -> np.ndarray | None:
    """Training coordinates of the embedding a run used: the session's own, or from the store."""
    job = embedding_job(proj, current_layer(proj), current_embedding_seed(), start=False)
    if job is not None and job.status == DONE and job.result.key == embedding_key:
        return job.result.train_xy
    if embedding_key and proj.store.has_embedding(embedding_key):
        return load_embedding(proj.store, embedding_key).train_xy
    return None


def report_html(proj: Project, res, result: dict, table, arrays) -> str:
    """The run's HTML report (:mod:`plint_core.report.html`) for the picked checkpoint (``result``, ``table``:
    :func:`plint_core.pick.picked_view`), with thumbnails when the run is on these images and the path's
    animation where it has one."""
    fits = res.moved is not None and len(res.moved) == len(proj.data.train)
    train_xy = run_train_xy(proj, res.result.get("embedding_key", ""))
    flags = stored_flags(proj.store, res.result.get("data_fingerprint"), res.result.get("model_fingerprint"))
    return render_report(result, table, train_targets=res.train_targets, moved=res.moved,
                         data=proj.data if fits else None, train_xy=train_xy, path_arrays=arrays, flags=flags)


def pick_section(res, arrays) -> int | None:
    """The trade-off path and the user's pick of a PLI checkpoint (``None`` for a run stored without a path).
    The pick is made on validation figures; everything below follows it. It is part of the page's address
    (``&step=``)."""
    r = res.result
    path = r.get("path")
    if not path or arrays is None:
        return None
    st.subheader("Trade-off path: follow the edit, keep the accuracy")
    cps = {c["step"]: c for c in path["pli"]}
    steps = list(cps)
    own = r["selection"]["pli"]["step"]
    key = f"w_pick_{res.run_id}"
    linked, unknown = follow("step", [str(s) for s in steps])
    if linked:
        st.session_state[key] = int(linked)
    if unknown:
        st.warning(f"Run {res.run_id} has no checkpoint at step {unknown}: showing its own pick, step {own:,}.",
                   icon=":material/link_off:")
    if st.session_state.get(key) not in cps:
        st.session_state[key] = own
    tolerance = (r["selection"]["pli"].get("pick") or {}).get("tolerance")

    def label(step: int) -> str:
        c = cps[step]
        d = c["distance"] if c["distance"] is not None else c["train_distance"]
        mark = " ★ rule" if step == own else ""
        return f"step {step:,} · val acc {c['accuracy']:.3f} · distance {d:.2f}{mark}"

    picked = st.select_slider("PLI checkpoint shown (validation figures only)", steps, key=key, format_func=label,
                              help="Every checkpoint of the PLI run: its validation accuracy and how far the moved "
                                   "validation images are from their targets. The ★ is the run's rule ("
                                   f"{r['selection']['pli']['rule']}"
                                   + (f", {tolerance * 100:.1f} pp tolerance" if tolerance is not None else "")
                                   + "). The matrices, tables, map, report and downloads below follow the pick; the "
                                     "control keeps its best validation checkpoint.")
    show_in_address("step", str(picked))
    fig = path_figure(r, picked)
    if fig is not None:
        st.plotly_chart(fig, key="path_figure", config={"displaylogo": False})
    rule = r["selection"]["pli"].get("pick") or {}
    if rule.get("within") is False:
        st.caption("No PLI checkpoint came within the tolerance of the best validation accuracy of the start and "
                   "the control: the rule kept " + ("the checkpoint nearest the edit within the tolerance of the PLI "
                                                    "run's own best." if rule.get("fallback") == "own-best" else
                                                    "the PLI run's best validation checkpoint."))
    return picked


def color_delta(value: float) -> str:
    if not isinstance(value, (int, float)) or abs(value) < 1e-12:
        return ""
    return "background-color: #d4f0d4; color: #145214" if value > 0 else "background-color: #f8d4d4; color: #7a1010"


def pair_section(proj: Project, res, runs: list[dict], picked: int | None = None) -> None:
    """The targeted pair's confusions first: mean over the seeds run with these settings (among ``runs``, the
    project's stored runs), with 95 % intervals; with ``picked``, each seed's PLI checkpoint at that step."""
    r, names = res.result, res.result["classes"]
    labels = proj.data.train.labels
    moved = res.moved if res.moved is not None and len(res.moved) == len(labels) else np.zeros(len(labels), bool)
    default = targeted_pair(labels[moved], np.asarray(r["confusion"]["before"]))
    group = seed_group(runs, r)
    seeds = tuple(g["finetune"]["seed"] for g in group)
    st.subheader("Targeted pair")
    c1, c2, _ = st.columns([1, 1, 2])
    a = c1.selectbox("Class", range(len(names)), index=default[0], format_func=names.__getitem__,
                     key=f"w_pair_a_{res.run_id}", help="Preset: the two classes with the most moved points.")
    b = c2.selectbox("and class", range(len(names)), index=default[1], format_func=names.__getitem__,
                     key=f"w_pair_b_{res.run_id}")
    if a == b:
        st.warning("Choose two different classes.", icon=":material/warning:")
        return
    try:
        summary = pair_summary(seed_bootstrap(proj, tuple(g["run_id"] for g in group), picked), (a, b), seeds,
                               r["n_test"])
    except PlintError as exc:
        st.error(f"Cannot take the seeds together: {exc}", icon=":material/error:")
        return
    conf, accs, ratio = summary.confusions, summary.accuracy, summary.ratio
    has_ratio = conf["control"].estimate > 0

    def change(model: str) -> str | None:
        delta = conf[model].estimate - conf["before"].estimate
        return f"{delta:+.1f}" if abs(delta) >= 0.05 else None

    m1, m2, m3, m4 = st.columns(4)
    m1.metric(f"{names[a]} ↔ {names[b]} confusions before", f"{conf['before'].estimate:.0f}")
    m2.metric("After PLI", f"{conf['after'].estimate:.1f}", change("after"), delta_color="inverse",
              help=f"95 % interval {conf['after'].format()}")
    m3.metric("Control (CE only)", f"{conf['control'].estimate:.1f}", change("control"), delta_color="inverse",
              help=f"95 % interval {conf['control'].format()}")
    m4.metric("PLI ÷ control", f"{ratio.estimate:.2f}" if has_ratio else "–",
              help=f"95 % interval {ratio.format('.2f')}" if has_ratio else "The control left no such confusions.")
    where = (f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" if len(seeds) > 1 else f"seed {seeds[0]} only")
    st.caption(
        f"Test images of either class predicted as the other, both directions; means over {where}. 95 % intervals "
        f"(bootstrap over the {summary.n_test:,} test images and the seeds): after PLI {conf['after'].format()}, "
        f"control {conf['control'].format()}"
        + (f", PLI ÷ control {ratio.format('.2f')}" if has_ratio and np.isfinite(ratio.low) else "")
        + f"; accuracy after PLI {accs['after'].format('.4f')}, control {accs['control'].format('.4f')}, PLI − "
          f"control {summary.accuracy_difference.format('+.4f')}."
        + ("" if len(seeds) > 1 else " One seed says nothing of how much the seed alone moves these figures: run "
                                     "several (Fine-tune → More settings → Seeds to run)."))


st.title("Compare")
proj = load_project()
sess = session()
runs = proj.runs()  # every result.json, read once per rerun
table = history_table(runs)
if table.empty:
    st.info("No fine-tuning runs yet: run one on the Fine-tune page.", icon=":material/info:")
    page_link("finetune", "Go to Fine-tune", icon=":material/model_training:")
    st.stop()

labels = {row["run id"]: run_label(row) for _, row in table.iterrows()}
linked, unknown = follow("run", labels)
if linked:
    sess.current_run_id = linked
if unknown:
    st.warning(f"There is no run `{unknown}` in this project's history (another data set or model, or a store "
               f"that does not have it): pick one of its {len(labels)} runs below.", icon=":material/link_off:")
if sess.current_run_id not in labels:
    sess.current_run_id = next(iter(labels))
run_id = st.selectbox("Run", list(labels), index=list(labels).index(sess.current_run_id), format_func=labels.get,
                      help="The page's address links to the run shown: paste it to open this run elsewhere.")
sess.current_run_id = run_id
show_in_address("run", run_id)
try:
    res = stored_run(proj, run_id)
except PlintError as exc:
    st.error(f"Cannot open run {run_id}: {exc}", icon=":material/error:")
    st.stop()
ft = res.result["finetune"]
st.caption(f"**Moves** {spec_summary(res.result['spec'])} · **λ** {ft['lam']:g} · "
           f"**{ft.get('weighting', 'scaled')}** weighting · **{ft.get('optimizer', 'adam')}** · "
           f"**{schedule_summary(ft)}** · **lr** {ft['lr']:.0e} · **seed** {ft['seed']} · "
           f"**layer** {res.result['layer']} · **device** {res.result['device']} · "
           + ("**class-weighted** cross-entropy in both runs · " if ft.get("class_weight") == "inverse" else "")
           + f"{res.result['n_moved']:,} training points moved · {res.result['n_test']:,} test images")
arrays = res.path_arrays()
picked = pick_section(res, arrays)
r, test_table = (res.result, res.test_embedding) if picked is None else \
    picked_view(res.result, res.test_embedding, arrays, picked)
names = r["classes"]

pair_section(proj, res, runs, picked)

acc = r["accuracy"]
c1, c2, c3 = st.columns(3)
c1.metric("Test accuracy before", f"{acc['before']:.4f}")
c2.metric("After PLI fine-tuning", f"{acc['after']:.4f}", f"{acc['after'] - acc['before']:+.4f}")
c3.metric("Control (CE only)", f"{acc['control']:.4f}", f"{acc['control'] - acc['before']:+.4f}")
if selection_summary(r):
    st.caption(selection_summary(r))
curves = validation_figure(r)
if curves is not None:
    with st.expander("Validation during fine-tuning: which step each run kept"):
        st.plotly_chart(curves, config={"displaylogo": False})

st.subheader("Confusion matrices (test set; rows = true class, columns = prediction)")
zmax = confusion_max(r)
for col, model in zip(st.columns(3), MODELS):
    col.plotly_chart(confusion_figure(r["confusion"][model], names, MODEL_TITLES[model], zmax),
                     key=f"confusion_{model}", config={"displaylogo": False})
c1, c2 = st.columns(2)
c1.plotly_chart(difference_figure(r["confusion"]["before"], r["confusion"]["after"], names, "After − before"),
                key="confusion_diff", config={"displaylogo": False})
c2.plotly_chart(difference_figure(r["confusion"]["control"], r["confusion"]["after"], names, "After − control"),
                key="confusion_diff_control", config={"displaylogo": False})
st.caption("Differences count test images per cell: blue = more after PLI fine-tuning, red = fewer. On the "
           "diagonal (correct) more is better; off the diagonal (confusions) fewer is better.")

st.subheader("Per-class precision, recall and F1")
metrics = per_class_table(r)
deltas = delta_columns(metrics)
st.dataframe(metrics.style.format("{:.3f}", subset=[c for c in metrics.columns if c != "support"])
             .map(color_delta, subset=deltas), width="stretch")
st.caption("Δ columns: after − before and after − control; green = better, red = worse.")

st.subheader("Test embedding before and after")
groups = moved_groups(r["spec"], res.train_targets, res.moved, proj.data.train.labels, proj.data.train.ids,
                      proj.data.class_names, run_train_xy(proj, r.get("embedding_key", "")))
st.plotly_chart(before_after_figure(test_table, names, groups), key="test_embedding",
                config={"displaylogo": False})
st.caption("Grey rings: where the moved training groups were asked to go; arrows: from each group's original "
           "centre. Black rings mark misclassified test images.")
if arrays is not None and "pli_test_xy" in arrays:
    with st.expander("Play back: the map while the PLI run trained", icon=":material/play_circle:"):
        targets = res.train_targets[arrays["moved_rows"]] if res.train_targets is not None else None
        st.plotly_chart(path_animation_figure(r, res.test_embedding, arrays, names, targets), key="path_animation",
                        config={"displaylogo": False})
        st.caption("One frame per checkpoint: the test images through the frozen embedding, the moved training "
                   "points (black) and their targets (grey rings). ▶ plays the path, the slider scrubs it.")

st.subheader("Run against run")
others = [k for k in labels if k != run_id]
if not others:
    st.caption("Only one run is stored: run another (other moves, λ, schedule or seed) to put two runs side by side.")
else:
    other_id = st.selectbox("Against run B (the run above is A)", others, format_func=labels.get, key="w_versus")
    try:
        other = stored_run(proj, other_id).result
    except PlintError as exc:
        st.error(f"Cannot open run {other_id}: {exc}", icon=":material/error:")
    else:
        why = comparable(r, other)
        if why:
            st.warning(f"These two runs cannot be compared figure by figure: {why}.", icon=":material/warning:")
        else:
            settings = settings_table(r, other)
            st.dataframe(settings.style.apply(lambda row: ["font-weight: bold" if row["differs"] else ""] * len(row),
                                              axis=1), width="stretch")
            c1, c2, c3 = st.columns([2, 3, 3])
            c1.dataframe(accuracy_table(r, other).style.format("{:+.4f}", subset=["B − A"])
                         .format("{:.4f}", subset=["run A", "run B"]).map(color_delta, subset=["B − A"]),
                         width="stretch")
            zmax = max(confusion_max(r), confusion_max(other))
            c2.plotly_chart(confusion_figure(other["confusion"]["after"], names, "Run B after PLI", zmax),
                            key="versus_b", config={"displaylogo": False})
            c3.plotly_chart(difference_figure(r["confusion"]["after"], other["confusion"]["after"], names,
                                              "After PLI: B − A"), key="versus_diff", config={"displaylogo": False})
            versus = per_class_versus(r, other)
            st.dataframe(versus.style.format("{:.3f}", subset=[c for c in versus.columns if c != "support"])
                         .map(color_delta, subset=[c for c in versus.columns if c.startswith("Δ")]), width="stretch")
            st.caption("After PLI fine-tuning in each run; Δ = B − A, green = B better. Bold settings differ.")

st.subheader("Against a baseline run")
bases = {b["run_id"]: b for b in project_baselines(proj)}
if not bases:
    st.caption("No baseline runs on this project yet: fine-tune with the review's flags (Embedding page, *Flags*) or "
               "run a practitioner's baseline from the command line (`run --baseline classweight`).")
else:
    base_id = st.selectbox("Baseline run", list(bases), format_func=lambda k: baseline_label(bases[k]),
                           key="w_baseline_versus",
                           help="A single fine-tuned model: a run with the flags (the suggested labels, or without "
                                "the flagged images) or a practitioner's baseline, beside this PLI run.")
    base = bases[base_id]
    why = comparable(r, base)
    if why:
        st.warning(f"This baseline and the PLI run cannot be compared figure by figure: {why}.",
                   icon=":material/warning:")
    else:
        c1, c2, c3 = st.columns([2, 3, 3])
        c1.dataframe(accuracy_versus(r, base).style.format("{:.4f}", subset=["test accuracy"])
                     .format("{:+.4f}", subset=["baseline − it"]).map(color_delta, subset=["baseline − it"]),
                     width="stretch")
        zmax = max(confusion_max(r), max(max(row) for row in base["confusion"]["baseline"]))
        c2.plotly_chart(confusion_figure(base["confusion"]["baseline"], names, base["baseline"]["name"], zmax),
                        key="baseline_confusion", config={"displaylogo": False})
        c3.plotly_chart(difference_figure(r["confusion"]["after"], base["confusion"]["baseline"], names,
                                          "Baseline − after PLI"), key="baseline_diff", config={"displaylogo": False})
        against = per_class_against(r, base)
        st.dataframe(against.style.format("{:.3f}", subset=[c for c in against.columns if c != "support"])
                     .map(color_delta, subset=[c for c in against.columns if c.startswith("Δ")]), width="stretch")
        st.caption(f"{base.get('n_train', 0):,} training images, {(base.get('finetune') or {}).get('steps', '?')} "
                   "steps; Δ = baseline − after PLI, green = the baseline better.")

st.subheader("Downloads")
c1, c2, c3, c4 = st.columns(4)
weights = res.weights(picked)
sidecar = weights.with_suffix(".json") if weights is not None else None
step_name = "" if picked is None else f"_step{picked}"
if weights is not None:
    c1.download_button("Fine-tuned weights (safetensors)", weights.read_bytes(),
                       file_name=f"plint_{run_id}{step_name}.safetensors", mime="application/octet-stream",
                       icon=":material/download:", help="The PLI checkpoint picked above.")
else:
    replay_panel(proj, run_id, picked, c1)
if sidecar is not None and sidecar.is_file():
    c1.download_button("Model sidecar (JSON)", sidecar.read_bytes(), file_name=f"plint_{run_id}.json",
                       mime="application/json", icon=":material/download:",
                       help="Architecture, classes and normalisation; keep it beside the weights to load them.")
c2.download_button("Spec (JSON)", json.dumps(r["spec"], indent=2), file_name=f"plint_spec_{run_id}.json",
                   mime="application/json", icon=":material/download:")
c3.download_button("Metrics (CSV)", metrics_csv(r), file_name=f"plint_metrics_{run_id}.csv", mime="text/csv",
                   icon=":material/download:")
c4.download_button("Report (HTML)", lambda: report_html(proj, res, r, test_table, arrays),
                   file_name=f"plint_report_{run_id}{step_name}.html",
                   mime="text/html", on_click="ignore", icon=":material/description:", key="w_report",
                   help="One self-contained HTML file (plotly.js inlined, about 5 MB): the moves with thumbnails, "
                        "the confusion matrices, per-class figures, the test embedding and the settings. It opens "
                        "offline from a mail attachment.")
