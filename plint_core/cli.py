"""Command-line interface: ``python -m plint_core {train,embed,run,layers,runs} ...``.

Every user error ends with exit code 2 and one line on stderr that names the
problem; nothing is half-written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .atomic import write_atomic, write_json_atomic
from .baselines import BASELINES, FLAG_KINDS, Baseline, check_pair
from .data.loader import WORKERS_ENV
from .data.loading import load_data
from .device import DEVICE_CHOICES, resolve_device, set_threads
from .embedding.parametric_tsne import TSNEConfig
from .errors import PlintError, RunCancelled
from .finetune import (
    CLASS_WEIGHTS,
    EMBED_ON,
    OPTIMIZERS,
    SELECT_RULES,
    WEIGHTINGS,
    FinetuneConfig,
    Progress,
    format_duration,
)
from .flags import FlagBook, stored_flags
from .inputs import fit_to_shape, open_inputs
from .intervention import InterventionSpec
from .latent_cache import cached_latents
from .latents import list_layers, pick_default, resolve_layer
from .models.sources import ModelOptions, describe, load_classifier, parse_floats, parse_names, parse_size
from .models.training import TrainConfig, train_classifier
from .models.weights import save_model
from .pipeline import load_embedding, load_run, run_baseline
from .report.summaries import confirmed
from .runs.archive import Expected, export_run, import_run
from .runs.executor import Status
from .runs.select import make_executor
from .runs.tasks import EmbeddingTask, Outcome, RunTask, Source
from .store import DEFAULT_ROOT, RunStore


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _arg_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse ``type``: its ``PlintError`` becomes argparse's one-line usage error."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except PlintError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_size, _floats, _names = _arg_type(parse_size), _arg_type(parse_floats), _arg_type(parse_names)


def _count(text: str, what: str, zero: str) -> int:
    """``text`` as a whole number of 0 or more; otherwise argparse's one-line error naming ``what`` and what 0
    means."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what}: give 0 ({zero}) or a positive "
                                         "whole number")
    return value


def _patience(text: str) -> int | None:
    """``--patience``: a positive whole number, or 0 for none (never stop early)."""
    return _count(text, "evaluations", "never stop early") or None


def _threads(text: str) -> int:
    return _count(text, "threads", "automatic")


def _moved_rows(text: str) -> int:
    return _count(text, "moved rows", "off")


def _common(p: argparse.ArgumentParser, *, data: bool | str = True, model: bool | str = True) -> None:
    """Options shared by the commands; ``data="optional"`` (``model="optional"``) makes ``--data`` (``--model``)
    optional."""
    if data:
        p.add_argument("--data", required=data is True, metavar="SRC",
                       help="'digits', 'mnist', 'fashion-mnist', an .npz, an image folder (one sub-folder per class, "
                            "optionally under train/ and test/) or a .zip of one")
    if model:
        p.add_argument("--model", required=model is True, metavar="MODEL",
                       help="'demo', a TorchScript file, or a state_dict (.pt/.pth/.safetensors) with a .json sidecar "
                            "or --arch")
        g = p.add_argument_group("what the model's sidecar would state (default: sidecar, weights, then data)")
        g.add_argument("--arch", help="architecture of a state_dict: plint-cnn or a torchvision model (resnet18, …)")
        g.add_argument("--classes", type=_names, metavar="A,B,…", help="class names in output order")
        g.add_argument("--input-size", type=_size, metavar="H[xW]", help="input height x width in pixels")
        g.add_argument("--channels", type=int, choices=(1, 3), help="input channels: 1 grayscale, 3 RGB")
        g.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean for images in [0, 1]")
        g.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std for images in [0, 1]")
    p.add_argument("--runs-dir", default=DEFAULT_ROOT, metavar="D", help="cache folder (default: runs/)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: CUDA if available (default)")
    p.add_argument("--threads", type=_threads, default=0, metavar="N",
                   help="torch CPU threads (default 0: torch's own, capped at the container's CPU quota); "
                        "on a machine busy with other work, 1 is often much faster")
    if model is True:
        p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="automatic mixed precision for latents and fine-tuning (bfloat16, or float16 with a "
                            "gradient scaler on GPUs without bfloat16); default: on for CUDA, off on the CPU")
        p.add_argument("--workers", type=_threads, default=None, metavar="N",
                       help="data loader worker processes (default: none for arrays on the CPU; for image files "
                            "or a GPU one per spare core, at most 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plint_core", description="Projective Latent Interventions engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train plint's CNN on a data set")
    _common(p, model=False)
    p.add_argument("--input-size", type=_size, metavar="H[xW]", help="resize the images to this size first")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="weights (.pt or .safetensors); sidecar .json beside")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("layers", help="list a model's candidate latent layers")
    _common(p, data="optional")

    for name, helptext in (("embed", "fit the parametric t-SNE and write embedding.csv"),
                           ("run", "fine-tune with a spec (PLI) and its control; write result.json")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("--out", required=True, metavar="DIR")
        p.add_argument("--layer", default=None,
                       help="module name (default: the logits; for a two-class model the last wider layer)")
        p.add_argument("--seed", type=int, default=0, help="seeds the embedding (and the fine-tuning)")
        p.add_argument("--tsne-config", default="", metavar="JSON",
                       help='t-SNE settings that differ from the defaults, as a JSON object, e.g. \'{"n_iter": 500}\' '
                            "(the app's PLINT_TSNE_CONFIG); part of the embedding's key")
    run = p
    run.add_argument("--spec", required=True, metavar="SPEC.json")
    run.add_argument("--steps", type=int, default=FinetuneConfig.steps,
                     help=f"optimisation steps of each run, PLI and control (default {FinetuneConfig.steps:,})")
    run.add_argument("--epochs", type=int, default=None, help="passes over the training rows instead of --steps")
    run.add_argument("--select", choices=SELECT_RULES, default=FinetuneConfig.select,
                     help="checkpoint each run keeps, on the validation images (the val split, or a fixed slice held "
                          "out of the training split; never the test split): follow (default), the PLI checkpoint "
                          "nearest the edit within --tolerance of the best validation accuracy of the start and the "
                          "control (the control its best); best-val, each its best, the start included; or last")
    run.add_argument("--tolerance", type=float, default=FinetuneConfig.tolerance, metavar="SHARE",
                     help=f"follow: validation accuracy given up to follow the edit, at most (default "
                          f"{FinetuneConfig.tolerance}, half a percentage point)")
    run.add_argument("--weighting", choices=WEIGHTINGS, default=FinetuneConfig.weighting,
                     help="the embedding term's multiplier: calibrated (default; its gradient is lam/(1-lam) times "
                          "the cross-entropy's at the start), paper (none, the paper's loss) or scaled (1/scale^2)")
    run.add_argument("--optimizer", choices=OPTIMIZERS, default=FinetuneConfig.optimizer,
                     help="adam (default) or sgd (Nesterov momentum 0.9, the paper's; give it --lr 0.01 or more)")
    run.add_argument("--patience", type=_patience, default=FinetuneConfig.patience, metavar="N",
                     help="best-val: stop a run after N evaluations in a row below its best (default "
                          f"{FinetuneConfig.patience}; 0: never early)")
    run.add_argument("--evaluations", type=int, default=FinetuneConfig.evaluations, metavar="N",
                     help=f"validation evaluations per run, the checkpoints of its path (default "
                          f"{FinetuneConfig.evaluations})")
    run.add_argument("--embed-on", choices=EMBED_ON, default=FinetuneConfig.embed_on,
                     help="rows the embedding term acts on: auto (default: moved where under 5 %% of the rows were "
                          "moved, else all), all (the method: unedited points keep their place as target), moved "
                          "(only the moved points) or balanced (every point keeps its target, the moved and the "
                          "unmoved points carry half of the term each)")
    run.add_argument("--moved-per-batch", type=_moved_rows, default=FinetuneConfig.moved_per_batch, metavar="N",
                     help="where the embedding term acts on the moved points only: N moved points added to every PLI "
                          "step for that term, so a small edit pulls at every step (default "
                          f"{FinetuneConfig.moved_per_batch}; 0: off)")
    run.add_argument("--class-weight", choices=CLASS_WEIGHTS, default=FinetuneConfig.class_weight,
                     help="none (default: plain cross-entropy) or inverse: PLI and its control both weight their "
                          "cross-entropy by 1 / each class's frequency among the fine-tuning rows (a rare class)")
    run.add_argument("--val-points", type=int, default=FinetuneConfig.val_points, metavar="N",
                     help=f"best-val: validation images scored, at most (default {FinetuneConfig.val_points:,})")
    run.add_argument("--lam", type=float, default=FinetuneConfig.lam)
    run.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    run.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size)
    run.add_argument("--train-points", type=int, default=None, metavar="N",
                     help="fine-tune on a stratified subset of N training points, the moved points always included "
                          "(default: all)")
    b = run.add_argument_group("baseline instead of PLI (plint_core.baselines): CE trained exactly like the control "
                               "on the same rows, in this process; result.json has its figures as 'baseline'")
    b.add_argument("--baseline", choices=BASELINES, default=None,
                   help="upweight: the pair's classes weighted in the cross-entropy; oversample: the pair's hard "
                        "training points drawn more often; classweight: every class weighted by 1 / its count in the "
                        "fine-tuning rows (no --pair); relabel: the images flagged 'label wrong' trained with their "
                        "suggested class; drop_flagged: without the images flagged 'label wrong' or 'ambiguous' "
                        "(the flags of this data and model in --runs-dir, made in the app; no --pair)")
    b.add_argument("--pair", type=_pair, default=None, metavar="A,B", help="the class pair, as indices, e.g. 2,4")
    b.add_argument("--weight", type=float, default=Baseline.weight,
                   help=f"upweight: the pair's class weight (default {Baseline.weight:g})")
    b.add_argument("--repeats", type=int, default=Baseline.repeats,
                   help=f"oversample: draws of each hard point per pass (default {Baseline.repeats})")
    b.add_argument("--margin", type=float, default=Baseline.margin,
                   help="oversample: a point of the pair whose softmax margin p(true) - max p(other) is below this "
                        f"is hard (default {Baseline.margin:g})")

    p = sub.add_parser("runs", help="list, show, delete, export, import or report stored runs",
                       description="list | show RUN_ID | delete RUN_ID | export RUN_ID --out run.zip | "
                                   "import run.zip [--data SRC --model MODEL] | report RUN_ID --out report.html "
                                   "[--data SRC]")
    p.add_argument("action", choices=("list", "show", "delete", "export", "import", "report"))
    p.add_argument("run_id", nargs="?", metavar="RUN_ID|ARCHIVE", help="a run id, or for 'import' the .zip")
    p.add_argument("--out", metavar="FILE", help="export: the archive to write (run.zip); report: the HTML file")
    p.add_argument("--no-latents", dest="latents", action="store_false",
                   help="export: leave the embedding's latents out (smaller; the importer recomputes them if needed)")
    p.add_argument("--step", type=int, default=None, metavar="STEP",
                   help="report: the PLI checkpoint to show (a step of the run's path; default: the one its rule kept)")
    _common(p, data="optional", model="optional")

    p = sub.add_parser("flags", help="list, add, delete or export the flags on images of a data set and model",
                       description="list | add --ids I,J,… --kind KIND --who NAME [--suggested CLASS] [--note TEXT] | "
                                   "delete FLAG_ID | export --out flags.csv; the flags the app makes, in --runs-dir")
    p.add_argument("action", choices=("list", "add", "delete", "export"))
    p.add_argument("flag_id", nargs="?", metavar="FLAG_ID", help="delete: the flag's id (see 'flags list')")
    p.add_argument("--ids", type=_ids, default=None, metavar="I,J,…", help="add: training sample ids")
    p.add_argument("--kind", default=None, metavar="KIND", help="add: label_wrong, ambiguous or note")
    p.add_argument("--suggested", default=None, metavar="CLASS", help="add, label_wrong: a class name or index")
    p.add_argument("--note", default="", help="add: free text (required with --kind note)")
    p.add_argument("--who", default="", metavar="NAME", help="add: your name, recorded with the flag")
    p.add_argument("--out", metavar="FILE.csv", help="export: the CSV to write")
    _common(p)
    return parser


def _ids(text: str) -> list[int]:
    """``--ids I,J,…``: sample ids (whole numbers); empty gives none (refused by the flag book in one line)."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not all(t.isdigit() for t in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of sample ids: give whole numbers, e.g. 3,17,42")
    return [int(t) for t in parts]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _model_options(a: argparse.Namespace) -> ModelOptions:
    return ModelOptions(arch=a.arch, classes=a.classes, input_size=a.input_size, channels=a.channels,
                        mean=a.mean, std=a.std)


def cmd_train(a: argparse.Namespace) -> None:
    data = load_data(a.data, image_size=a.input_size)
    if a.input_size:
        data = fit_to_shape(data, (data.input_shape[0], *a.input_size))
    if Path(a.out).suffix not in (".pt", ".pth", ".safetensors"):
        raise PlintError(f"--out {a.out!r} must end in .pt, .pth or .safetensors")
    cfg = TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed, device=a.device)
    bundle = train_classifier(data, cfg, progress=lambda e, loss: _log(f"epoch {e}/{cfg.epochs}: loss {loss:.4f}"))
    save_model(bundle, a.out)
    _log(f"wrote {a.out} and its sidecar")


def cmd_layers(a: argparse.Namespace) -> None:
    if a.data:
        inputs = open_inputs(a.model, a.data, _model_options(a))
        _log_notes(inputs)
        bundle = inputs.bundle
    else:
        bundle = load_classifier(a.model, **_model_options(a).as_kwargs())
    layers = list_layers(bundle)
    chosen = pick_default(layers)
    for info in layers:
        default = "  (default)" if info.name == chosen else ""
        print(f"{info.name}\t{info.kind}\t{list(info.output_shape)}{default}")


def _log_notes(inputs) -> None:
    """What was assumed about the model or done to the data, if anything."""
    if inputs.notes:
        _log(f"model: {describe(inputs.bundle.spec)}")
        for note in inputs.notes:
            _log(note)


def _checked_inputs(a: argparse.Namespace, spec: InterventionSpec | None = None):
    """Open and check the inputs here, so that their errors stay one line, before a worker process reopens them;
    ``(data, bundle, layer)``."""
    inputs = open_inputs(a.model, a.data, _model_options(a))
    data, bundle = inputs.data, inputs.bundle
    # Checked before anything is printed, so that these errors stay one line.
    layer = resolve_layer(bundle, a.layer)
    if spec is not None:
        spec.groups(data.train.labels, data.train.ids, data.class_names)
    _log_notes(inputs)
    if a.workers is not None:
        os.environ[WORKERS_ENV] = str(a.workers)  # read by the worker process it is passed on to
    return data, bundle, layer


def _embedding(a: argparse.Namespace):
    """Fit or find the embedding in a worker process: ``(data, bundle, embedding as stored)``, its
    ``cache_hit`` saying whether it was there already."""
    tsne = _tsne(a)
    data, bundle, _ = _checked_inputs(a)
    task = EmbeddingTask(_source(a), str(a.runs_dir), layer=a.layer, seed=a.seed, config=tsne, device=a.device,
                         amp=a.amp)
    outcome = _execute(task, _stage_printer())
    emb = load_embedding(RunStore(a.runs_dir), outcome.key)
    return data, bundle, replace(emb, cache_hit=outcome.cache_hit)


def _tsne(a: argparse.Namespace) -> TSNEConfig:
    return TSNEConfig.from_json(a.tsne_config, "--tsne-config")


def _source(a: argparse.Namespace) -> Source:
    return Source(str(a.model), str(a.data), _model_options(a))


def _stage_printer():
    """Logs ``<stage>: 0%`` when a stage of the embedding begins and ``<stage>: 100%`` when it ends."""
    last = [None]

    def show(status: Status) -> None:
        if status.stage == last[0] or status.stage in ("queued", "starting"):
            return
        if last[0] is not None:
            _log(f"{last[0]}: 100%")
        if status.stage != "done":
            _log(f"{status.stage}: 0%")
        last[0] = status.stage

    return show


def _execute(task, show: Callable[[Status], None]) -> Outcome:
    """Run ``task`` in a worker process, or on Ray with ``PLINT_EXECUTOR=ray``, as the app does
    (:mod:`plint_core.runs`), showing each of its reports; Ctrl-C cancels it (nothing half-written is kept)."""
    executor = make_executor(1, threads=torch.get_num_threads())  # a local worker gets this command's threads
    handle = executor.submit(task, on_report=show)
    try:
        handle.wait()
        return handle.outcome()
    except KeyboardInterrupt:
        handle.cancel()
        raise
    finally:
        executor.shutdown()


def cmd_embed(a: argparse.Namespace) -> None:
    data, bundle, emb = _embedding(a)
    out = Path(a.out)
    table = emb.table(data)
    lat = cached_latents(data, bundle, emb.layer, RunStore(a.runs_dir), device=resolve_device(a.device), amp=a.amp)
    parts = [lat.latents("train"), lat.latents("test")]

    def write_latents(path: Path) -> None:  # train rows then test rows, copied from the cache chunk by chunk
        out_array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                              shape=(sum(len(x) for x in parts), parts[0].shape[1]))
        start = 0
        for part in parts:
            for chunk in range(0, len(part), 65536):
                block = part[chunk:chunk + 65536]
                out_array[start:start + len(block)] = block
                start += len(block)
        out_array.flush()
        del out_array

    write_atomic(out / "embedding.csv", lambda p: table.to_csv(p, index=False))
    write_atomic(out / "latents.npy", write_latents)
    write_json_atomic(out / "embedding_quality.json", emb.quality)
    _log(f"wrote {out}/embedding.csv ({len(table)} rows), latents.npy, embedding_quality.json"
         f"{' (cached embedding)' if emb.cache_hit else ''}")


def cmd_run(a: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec_path = Path(a.spec)
    if not spec_path.is_file():
        raise PlintError(f"spec file {a.spec!r} does not exist")
    spec = InterventionSpec.from_json(spec_path.read_text(encoding="utf-8"))
    config = FinetuneConfig(lam=a.lam, epochs=a.epochs, steps=a.steps, lr=a.lr, batch_size=a.batch_size,
                            seed=a.seed, train_points=a.train_points, select=a.select, patience=a.patience,
                            evaluations=a.evaluations, val_points=a.val_points, embed_on=a.embed_on,
                            class_weight=a.class_weight, moved_per_batch=a.moved_per_batch,
                            tolerance=a.tolerance, weighting=a.weighting, optimizer=a.optimizer,
                            device=a.device, amp=a.amp,
                            workers=a.workers)
    if a.baseline is not None or a.pair is not None:
        _run_baseline(a, spec, config, started)
        return
    tsne = _tsne(a)
    _, _, layer = _checked_inputs(a, spec)
    last = [0.0]
    stages = _stage_printer()

    def report(status: Status) -> None:  # the embedding's stages if it is fitted first, then the fine-tuning
        p, now = status.detail, time.perf_counter()
        if not isinstance(p, Progress):
            stages(status)
            return
        if p.step == p.steps or now - last[0] > 5:
            last[0] = now
            left = "" if p.seconds_left is None else f", about {format_duration(p.seconds_left)} left"
            _log(f"{p.run} epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps}: ce {p.ce:.4f} embed {p.embed:.4f}"
                 f"{left}")

    store = RunStore(a.runs_dir)
    outcome = _execute(RunTask(_source(a), str(a.runs_dir), spec, config, layer=layer, seed=a.seed,
                               config=tsne, device=a.device, amp=a.amp), report)
    res = load_run(store, outcome.key, cache_hit=outcome.cache_hit)
    result = dict(res.result, seconds=round(time.perf_counter() - started, 3), run_dir=str(res.directory))
    write_json_atomic(Path(a.out) / "result.json", result)
    acc = result["accuracy"]
    for name, sel in result.get("selection", {}).items():
        if sel.get("rule") in ("best-val", "follow"):
            stop = f", stopped early after {sel['steps_run']}" if sel.get("stopped_early") else ""
            _log(f"{name}: kept step {sel['step']} (validation accuracy {sel['score']:.4f}{stop}{confirmed(sel)})")
    path = result.get("path")
    if path:
        d = result["target_distance"]
        _log(f"path: {len(path['pli'])} checkpoints per run; the moved points end {d['after']:.2f} from their "
             f"targets after PLI, {d['control']:.2f} in the control ({d['before']:.2f} before)")
    _log(f"accuracy before {acc['before']:.4f} after {acc['after']:.4f} control {acc['control']:.4f}; "
         f"wrote {a.out}/result.json{' (cached run)' if outcome.cache_hit else ''}")


def _pair(text: str) -> tuple[int, int]:
    """``--pair A,B``: two different class indices."""
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != 2 or not all(t.isdigit() for t in parts) or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class pair: give two different class indices, e.g. 2,4")
    return int(parts[0]), int(parts[1])


def _run_baseline(a: argparse.Namespace, spec: InterventionSpec, config: FinetuneConfig, started: float) -> None:
    """``run --baseline KIND --pair A,B`` (``classweight``: no pair): the embedding as for a PLI run (for the spec's
    targets and distances), then the baseline trained here on the rows the spec's control would use; its
    result.json."""
    if a.baseline == "classweight":
        if a.pair is not None:
            raise PlintError("--baseline classweight weights every class by 1 / its count and takes no --pair: "
                             "leave --pair out")
    elif a.baseline in FLAG_KINDS:
        if a.pair is not None:
            raise PlintError(f"--baseline {a.baseline} follows the flags on images and takes no --pair: leave "
                             "--pair out")
    elif a.baseline is None or a.pair is None:
        raise PlintError("a baseline needs both --baseline (upweight or oversample) and --pair A,B "
                         "(--baseline classweight, relabel or drop_flagged needs no pair)")
    if a.baseline in FLAG_KINDS:
        data, bundle, _ = _checked_inputs(a, spec)
        baseline = FlagBook(RunStore(a.runs_dir), data, bundle.fingerprint).baseline(a.baseline)
    else:
        baseline = Baseline(a.baseline, a.pair, weight=a.weight, repeats=a.repeats, margin=a.margin)
        data, bundle, _ = _checked_inputs(a, spec)
    if baseline.pair is not None:
        check_pair(baseline.pair, data.n_classes)
    data, bundle, emb = _embedding(a)
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.perf_counter()
        if p.step == p.steps or now - last[0] > 5:
            last[0] = now
            _log(f"{p.run} epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps}: ce {p.ce:.4f}")

    result, _, hit = run_baseline(data, bundle, emb, spec, config, baseline, store=RunStore(a.runs_dir),
                                  progress=report)
    result = dict(result, seconds=round(time.perf_counter() - started, 3), cache_hit=hit)
    write_json_atomic(Path(a.out) / "result.json", result)
    sel = result["selection"][baseline.kind]
    if sel.get("rule") == "best-val":
        _log(f"{baseline.kind}: kept step {sel['step']} (validation accuracy {sel['score']:.4f})")
    acc = result["accuracy"]
    _log(f"{baseline.name}: accuracy before {acc['before']:.4f} baseline {acc['baseline']:.4f}; "
         f"wrote {a.out}/result.json{' (cached baseline)' if hit else ''}")


def cmd_runs(a: argparse.Namespace) -> None:
    store = RunStore(a.runs_dir)
    if a.action == "list":
        for r in store.list_runs():
            acc = r["accuracy"]
            print(f"{r['run_id']}\t{r['created']}\t{r['data']}\tlam={r['finetune']['lam']}\t"
                  f"after={acc['after']:.4f}\tcontrol={acc['control']:.4f}")
        return
    if a.action == "import":
        _import_run(a, store)
        return
    if not a.run_id:
        raise PlintError(f"'runs {a.action}' needs a run id (see 'runs list')")
    if a.action == "show":
        print(json.dumps(store.load_run(a.run_id), indent=2))
    elif a.action == "report":
        _report(a, store)
    elif a.action == "export":
        if not a.out:
            raise PlintError("'runs export' needs --out run.zip: the archive to write")
        manifest = export_run(store, a.run_id, a.out, latents=a.latents)
        parts = ["the run"] + [p for p, k in (("its embedding", "embedding_key"), ("its latents", "latents_key"))
                               if manifest[k]]
        _log(f"wrote {a.out} ({Path(a.out).stat().st_size / 2**20:.1f} MiB): {', '.join(parts)}")
    else:
        store.delete_run(a.run_id)
        _log(f"deleted run {a.run_id}")


def _report(a: argparse.Namespace, store: RunStore) -> None:
    """``runs report RUN_ID --out report.html``: one self-contained HTML file (:mod:`plint_core.report.html`).
    Thumbnails of the moved images come from ``--data`` (or the data set the run names, if it opens)."""
    from .pipeline import load_embedding, load_run
    from .report.html import write_report

    if not a.out:
        raise PlintError("'runs report' needs --out report.html: the file to write")
    run = load_run(store, a.run_id)
    data, note = None, ""
    try:
        data = load_data(a.data or run.result["data"])
        if len(data.train) != len(run.moved) or list(data.class_names) != list(run.result["classes"]):
            raise PlintError(f"{data.name} is not the data set run {a.run_id} was made on")
    except PlintError as exc:
        if a.data:
            raise
        data, note = None, f" (no thumbnails: {exc}; give --data SRC)"
    key = run.result.get("embedding_key", "")
    train_xy = load_embedding(store, key).train_xy if key and store.has_embedding(key) else None
    arrays = run.path_arrays()
    result, table = run.result, run.test_embedding
    if a.step is not None:
        steps = [c["step"] for c in (run.result.get("path") or {}).get("pli", [])]
        if a.step not in steps:
            raise PlintError(f"run {a.run_id} has no checkpoint at step {a.step}: its checkpoints are "
                             + (", ".join(map(str, steps)) if steps else "none (it was stored without a path)"))
        from .pick import picked_view

        result, table = picked_view(run.result, run.test_embedding, arrays, a.step)
    flags = stored_flags(store, run.result.get("data_fingerprint"), run.result.get("model_fingerprint"))
    path = write_report(a.out, result, table, train_targets=run.train_targets, moved=run.moved,
                        data=data, train_xy=train_xy, path_arrays=arrays, flags=flags)
    listed = f", {len(flags)} flag{'s' if len(flags) != 1 else ''} on images" if flags else ""
    _log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{listed}){note}")


def _import_run(a: argparse.Namespace, store: RunStore) -> None:
    """``runs import ARCHIVE``: checked against ``--data``/``--model`` when given (both or neither)."""
    if not a.run_id:
        raise PlintError("'runs import' needs the archive: runs import run.zip [--data SRC --model MODEL]")
    if bool(a.data) != bool(a.model):
        raise PlintError("give both --data and --model (the project the run must belong to), or neither")
    expected = None
    if a.data:
        inputs = open_inputs(a.model, a.data, _model_options(a))
        expected = Expected.of(inputs.data, inputs.bundle)
    report = import_run(a.run_id, store, expected)
    checked = "" if expected else " (not checked against a data set and model: give --data and --model for that)"
    _log(f"imported into {store.root}: {report.describe()}{checked}")


def cmd_flags(a: argparse.Namespace) -> None:
    """``flags list|add|delete|export``: the flag book of ``--data`` and ``--model`` in ``--runs-dir``
    (:class:`plint_core.flags.FlagBook`, the one the app shows)."""
    inputs = open_inputs(a.model, a.data, _model_options(a))
    book = FlagBook(RunStore(a.runs_dir), inputs.data, inputs.bundle.fingerprint)
    names = inputs.data.class_names
    if a.action == "list":
        for f in book.flags():
            print(f"{f.flag_id}\t{f.when}\t{f.describe(names)}")
        return
    if a.action == "add":
        if a.kind is None:
            raise PlintError("'flags add' needs --kind: label_wrong (with --suggested), ambiguous or note (with "
                             "--note)")
        flag = book.add(a.ids or [], a.kind, a.who, suggested=a.suggested, note=a.note)
        _log(f"flag {flag.flag_id} added: {flag.describe(names)}")
        return
    if a.action == "delete":
        if not a.flag_id:
            raise PlintError("'flags delete' needs the flag's id (see 'flags list')")
        _log(f"flag deleted: {book.delete(a.flag_id).describe(names)}")
        return
    if not a.out:
        raise PlintError("'flags export' needs --out flags.csv: the file to write")
    data = book.to_csv()
    write_atomic(a.out, lambda tmp: tmp.write_bytes(data))
    _log(f"wrote {a.out} ({len(book.table())} rows, {len(book.flags())} flags)")


COMMANDS = {"train": cmd_train, "layers": cmd_layers, "embed": cmd_embed, "run": cmd_run, "runs": cmd_runs,
            "flags": cmd_flags}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(getattr(args, "threads", 0))
    try:
        COMMANDS[args.command](args)
    except PlintError as exc:
        print(f"plint_core: error: {exc}", file=sys.stderr)
        return 2
    except RunCancelled as exc:
        print(f"plint_core: cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("plint_core: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return 0
