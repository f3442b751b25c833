"""Shared helpers for the benchmark scripts: data locations, seeded subsets and validation splits,
cached models, epoch timing, machine facts, table printing, JSON and figure output."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from plint_core.data.dataset import Dataset, Split  # noqa: E402
from plint_core.data.loading import load_data  # noqa: E402
from plint_core.embedding.parametric_tsne import TSNEConfig  # noqa: E402
from plint_core.models.sources import load_model  # noqa: E402
from plint_core.models.training import TrainConfig, train_classifier  # noqa: E402
from plint_core.models.weights import save_model  # noqa: E402
from plint_core.store import RunStore  # noqa: E402

SHARED = Path(os.environ.get("PLINT_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "bench" / "out"
FIGURES = REPO / "docs" / "figures"
QUICK_TSNE = TSNEConfig(n_iter=200, early_exaggeration_iter=50, pca_iter=25)
"""The small t-SNE config of the ``--quick`` smoke runs (structure, not quality or speed)."""
SOURCES = {"digits": "digits", "mnist": str(SHARED / "mnist70k.npz"), "pneumonia": str(SHARED / "pneumoniamnist.npz"),
           "fashion": str(SHARED / "fashionmnist.npz")}


def data_source(name: str) -> str:
    """``digits``, ``mnist``, ``pneumonia`` or ``fashion`` → what :func:`load_data` takes; exits if the file is
    absent."""
    src = SOURCES.get(name, name)
    if src != "digits" and not Path(src).exists():
        sys.exit(f"{src} not found: the shared data folder is needed for this benchmark")
    return src


def cached_model(name: str, epochs: int, seed: int = 0, data: Dataset | None = None, tag: str = ""):
    """The plint CNN trained on data set ``name`` (``demo`` for digits), cached in bench/out/.

    ``data`` (e.g. one with a validation split carved out, see :func:`with_val_split`)
    replaces the engine's split; ``tag`` then names it in the cache file.
    """
    if name == "digits":
        return load_model("demo")
    path = OUT / f"{name}{tag}_cnn_e{epochs}_s{seed}.pt"
    if not path.exists():
        t = time.perf_counter()
        OUT.mkdir(parents=True, exist_ok=True)
        bundle = train_classifier(data or load_data(data_source(name)), TrainConfig(epochs=epochs, seed=seed))
        save_model(bundle, path)
        print(f"trained {path.name} in {time.perf_counter() - t:.1f} s", flush=True)
    return load_model(path)


def _take(split: Split, rows: np.ndarray) -> Split:
    """Rows of ``split``; ids keep the engine's row numbers, so points stay traceable."""
    return split.subset(rows)


def with_val_split(data: Dataset, n_val: int, seed: int = 0) -> Dataset:
    """``data`` itself if it has a validation split, else ``n_val`` training points (stratified, drawn
    with ``seed``) moved to a new ``val`` split; a classifier must then be trained on the rest."""
    if data.val is not None:
        return data
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(data.train))
    train_rows, val_rows = train_test_split(rows, test_size=n_val, random_state=seed, stratify=data.train.labels)
    return replace(data, train=_take(data.train, np.sort(train_rows)), val=_take(data.train, np.sort(val_rows)))


def subset_train(data: Dataset, n: int, seed: int = 0) -> Dataset:
    """``data`` with its training split cut to ``n`` points drawn with ``seed`` (all if it has no more)."""
    if n >= len(data.train):
        return data
    rows = np.sort(np.random.default_rng(seed).choice(len(data.train), size=n, replace=False))
    return replace(data, train=_take(data.train, rows))


class EpochTimer:
    """A fine-tuning ``progress`` callback: seconds per epoch of the PLI run and of the control.

    Each run is timed from the end of its own first step, so one-off costs before it (the run's
    set-up, a process's first autograd pass) count for neither run; the first epoch, short of
    that one step, is scaled up by ``steps / (steps - 1)``. Call :meth:`start` before each
    ``run_intervention``.
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.first: dict[str, float] = {}
        self.ends: dict[str, list[float]] = {"pli": [], "control": []}
        self.steps = 1

    def __call__(self, p) -> None:
        now = time.perf_counter()
        if p.epoch == 1 and p.step == 1:
            self.first[p.run], self.steps = now, p.steps
        if p.step == p.steps:
            self.ends[p.run].append(now)

    def seconds(self) -> dict[str, list[float]]:
        out = {}
        for run, ends in self.ends.items():
            epochs = list(np.diff([self.first[run]] + ends)) if ends else []
            if epochs and self.steps > 1:
                epochs[0] *= self.steps / (self.steps - 1)
            elif len(epochs) > 1:  # one step per epoch: the first epoch is not timed at all
                epochs = epochs[1:]
            out[run] = [float(e) for e in epochs]
        return out

    def mean(self) -> tuple[float, float]:
        """Mean seconds per epoch ``(pli, control)``."""
        s = self.seconds()
        return float(np.mean(s["pli"])), float(np.mean(s["control"]))


@contextmanager
def fresh_store() -> Iterator[RunStore]:
    """A temporary run store: runs in it are computed, never loaded."""
    with tempfile.TemporaryDirectory() as d:
        yield RunStore(d)


def write_json(name: str, obj: dict) -> Path:
    """Write ``obj`` to bench/out/``name`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(obj, indent=2, default=float))
    return path


def save_figure(fig, stem: str, folder: Path = FIGURES, png: bool = True, width: int = 1100, height: int = 420) -> list[Path]:
    """Write a Plotly figure as ``stem.html`` (plotly.js from its CDN, so the file stays small) and,
    with ``png``, ``stem.png`` rendered by Debian's Chromium through Playwright (nothing downloaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"{stem}.html"
    fig.write_html(html, include_plotlyjs="cdn")
    paths = [html]
    if png:
        from playwright.sync_api import sync_playwright

        from plint_app.serve import launch_chromium

        with tempfile.TemporaryDirectory() as d:
            page_file = Path(d) / "figure.html"  # plotly.js inlined: the browser has no network
            fig.write_html(page_file, include_plotlyjs=True, full_html=True,
                           default_width=f"{width}px", default_height=f"{height}px")
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_page(viewport={"width": width + 20, "height": height + 20}, device_scale_factor=1.5)
                page.goto(page_file.as_uri())
                page.wait_for_selector(".js-plotly-plot .main-svg")
                page.locator(".js-plotly-plot").screenshot(path=str(folder / f"{stem}.png"))
                browser.close()
        paths.append(folder / f"{stem}.png")
    return paths


_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"status": status, "maxrss_kib": usage.ru_maxrss}, f)
"""


def peak_of(command: list[str], log: Path, cwd: Path = REPO) -> dict:
    """Run ``command`` (its output to ``log``): ``{"returncode", "peak_gb", "maxrss_kib", "seconds"}``.

    The peak is the child's ``ru_maxrss`` (GB of 10⁹ bytes): the largest resident set of the process and of each
    descendant it waited for (not their sum). Linux starts a child's count at the resident set of the process
    it was forked from (``exec`` keeps the high-water mark of the replaced image), so a child forked straight
    from a large benchmark process reports at least that process's size. The command is therefore forked from a
    fresh, small interpreter that reports what ``wait4`` says.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plint-peak-") as tmp, log.open("w") as f:
        report = Path(tmp) / "usage.json"
        launcher = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *command], cwd=cwd, stdout=f,
                                  stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if launcher.returncode != 0 or not report.exists():
            raise RuntimeError(f"the launcher of {command[:3]} failed with {launcher.returncode}: {log.read_text()[-2000:]}")
        usage = json.loads(report.read_text())
    return {"returncode": os.waitstatus_to_exitcode(usage["status"]), "peak_gb": usage["maxrss_kib"] * 1024 / 1e9,
            "maxrss_kib": usage["maxrss_kib"], "seconds": seconds}


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}")


def print_table(rows: list[dict]) -> None:
    """Print ``rows`` (dicts with the same keys) as a Markdown table."""
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")


PNEUMONIA_CLASSES = ("normal", "pneumonia")


def write_replicated_pneumonia(path: Path, n: int, seed: int = 0) -> None:
    """A MedMNIST-layout ``.npz`` (uncompressed) at ``path``: PneumoniaMNIST's training images in a seeded
    order (the file's is sorted by class), cycled to ``n`` rows with a seeded integer jitter of ±2 (uint8,
    clipped), their labels with them; val and test as in the real file; ``class_names``."""
    with np.load(data_source("pneumonia")) as f:
        real = dict(f)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real["train_images"]))
    rows = order[np.arange(n) % len(order)]
    images = real["train_images"][rows].astype(np.int16)
    images += rng.integers(-2, 3, size=images.shape, dtype=np.int16)
    np.savez(path, train_images=np.clip(images, 0, 255).astype(np.uint8), train_labels=real["train_labels"][rows],
             **{f"{s}_{k}": real[f"{s}_{k}"] for s in ("val", "test") for k in ("images", "labels")},
             class_names=np.array(PNEUMONIA_CLASSES))


def write_resnet18(path: Path, seed: int = 0, input_size: int | None = None) -> None:
    """A seeded, untrained two-class ResNet-18 ``state_dict`` at ``path`` (weights do not change the cost);
    with ``input_size`` also its sidecar (3×size×size, ImageNet's mean/std)."""
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=len(PNEUMONIA_CLASSES)).state_dict(), path)
    if input_size is not None:
        path.with_suffix(".json").write_text(json.dumps(
            {"arch": "resnet18", "classes": list(PNEUMONIA_CLASSES), "input_shape": [3, input_size, input_size],
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, indent=2))


def floats(text: str) -> list[float]:
    """``"0.1,0.5"`` → ``[0.1, 0.5]`` (a command line's list of numbers)."""
    return [float(x) for x in text.split(",") if x.strip()]
