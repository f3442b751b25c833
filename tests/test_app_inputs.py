"""The Model & data page's Source: the demo, uploaded files and (with PLINT_ALLOW_PATHS) server paths.

Uploads go through AppTest's ``file_uploader``. Every rejected input must be
an ``st.error`` with the engine's message, leave the session on what it had,
and leave no file in the session's upload folder. The inputs are tiny: 36
PNGs of 16×16 pixels and CNNs with a few thousand weights.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from app_helpers import APP, app_env
from own_data import CLASSES, save_scripted, save_torchscript, write_evil_pickle, write_image_folder, zip_folder
from safetensors.torch import save_file
from streamlit.runtime.caching import clear_session_resource_cache
from streamlit.testing.v1 import AppTest
from torch import nn

import plint_core.workspace as workspace_module
from plint_app.config import AppConfig
from plint_app.project import Origin, Project
from plint_app.sources import load_paths, load_uploads, parse_options
from plint_core.runs.tasks import Source
from plint_core.errors import PlintError
from plint_core.inputs import open_inputs
from plint_core.models.cnn import SmallCNN
from plint_core.models.sources import ModelOptions
from plint_core.workspace import Workspace

pytest_plugins = ("app_fixtures",)  # app_runs: the demo's embedding, fitted once per test session

TIMEOUT = 300  # a liveness bound, not a timing: the fit runs in a worker process that first imports torch
TEST_SESSION = "test session id"  # AppTest's session id, shared by every AppTest in the process
MARKER = ".plint-workspace"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad models and data sets, each as small as the check it exercises allows."""
    base = tmp_path_factory.mktemp("inputs")
    folder = write_image_folder(base / "fruit")
    png = (folder / "apple" / "000.png").read_bytes()
    f = {"folder": folder, "zip": zip_folder(folder, base / "fruit.zip"), "ts": save_torchscript(base / "cnn.pt"),
         "five": save_torchscript(base / "five.pt", n_classes=5),
         "fixed": save_scripted(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), base / "fixed.pt"),
         "evil": write_evil_pickle(base / "evil.pt", base / "pwned.txt"),
         "escape": zip_folder(folder, base / "escape.zip", extra={"../escape.png": png}),
         "onnx": base / "model.onnx", "csv": base / "table.csv"}
    f["onnx"].write_bytes(b"\x08\x07" * 32)
    f["csv"].write_text("a,b\n1,2\n")
    torch.manual_seed(0)
    save_file(SmallCNN(1, 3, width=8, hidden=16).state_dict(), str(base / "cnn.safetensors"))
    f["cut"] = base / "cut.safetensors"
    f["cut"].write_bytes((base / "cnn.safetensors").read_bytes()[:2000])
    f["unknown_arch"] = base / "arch.json"
    f["unknown_arch"].write_text('{"arch": "resnet999"}')
    one = write_image_folder(base / "one")
    for name in CLASSES[1:]:
        shutil.rmtree(one / name)
    f["one_class_zip"] = zip_folder(one, base / "one.zip")
    split = write_image_folder(base / "split", split=True)
    shutil.rmtree(split / "test" / "cherry")
    f["no_test_zip"] = zip_folder(split, base / "split.zip")
    broken = write_image_folder(base / "broken", n_per_class=4)
    (broken / "cherry" / "001.png").write_bytes(b"not a png at all")
    f["broken_zip"] = zip_folder(broken, base / "broken.zip")
    images = np.random.default_rng(0).integers(0, 255, (20, 16, 16), dtype=np.uint8)
    np.savez(base / "bad_labels.npz", images=images, labels=np.array([-1, *range(3)] * 5))
    f["bad_labels"] = base / "bad_labels.npz"
    return f


@pytest.fixture(scope="module")
def sessions_dir(app_runs, tmp_path_factory):
    """App environment for the module: the test run store, paths allowed, upload folders in a temp dir.

    Releases AppTest's session resources at the end (as Streamlit does when a
    session disconnects), so no upload folder outlives the module.
    """
    root = tmp_path_factory.mktemp("sessions")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in app_env(app_runs).items():
            mp.setenv(key, value)
        mp.setenv("PLINT_ALLOW_PATHS", "1")
        mp.setattr(workspace_module, "SESSIONS_DIR", root)
        yield root
        clear_session_resource_cache(TEST_SESSION)


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def own_project(at: AppTest) -> Project | None:
    return at.session_state["plint"].project


def uploaded_files(root: Path) -> list[str]:
    """Everything in the upload folders under ``root`` except their marker files."""
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != MARKER)


def set_options(at: AppTest, prefix: str, arch: str = "", classes: str = "", size: str = "", channels: int = 0,
                mean: str = "", std: str = "") -> None:
    at.selectbox(key=f"{prefix}_arch").set_value(arch)
    at.text_input(key=f"{prefix}_classes").set_value(classes)
    at.text_input(key=f"{prefix}_size").set_value(size)
    at.selectbox(key=f"{prefix}_channels").set_value(channels)
    at.text_input(key=f"{prefix}_mean").set_value(mean)
    at.text_input(key=f"{prefix}_std").set_value(std)


def upload(at: AppTest, model: Path | None, data: Path | None, sidecar: Path | None = None, **options) -> AppTest:
    """Choose *Upload files*, put the files into the uploaders, set the options and press *Load*."""
    at.radio(key="w_source").set_value("upload").run()
    uploaders = {u.label: u for u in at.file_uploader}
    for label, path in (("Model", model), ("Data", data), ("Sidecar (optional)", sidecar)):
        uploaders[label].set_value(None if path is None else (path.name, path.read_bytes(), "application/octet-stream"))
    set_options(at, "w_up", **options)
    return at.button(key="w_up_load").click().run()


def by_path(at: AppTest, model: Path, data: Path, sidecar: Path | None = None, **options) -> AppTest:
    at.radio(key="w_source").set_value("path").run()
    at.text_input(key="w_path_model").set_value(str(model))
    at.text_input(key="w_path_data").set_value(str(data))
    at.text_input(key="w_path_sidecar").set_value(str(sidecar or ""))
    set_options(at, "w_path", **options)
    return at.button(key="w_path_load").click().run()


def counts(at: AppTest) -> tuple[list[str], int, int]:
    table = at.table[0].value
    return list(table.columns), int(table.loc["train"].sum()), int(table.loc["test"].sum())


# --- the page -----------------------------------------------------------------
def test_upload_is_used_by_every_page_until_back_to_the_demo(sessions_dir, files):
    from plint_app.resources import embedding_jobs

    at = start()
    assert own_project(at) is None and counts(at)[1:] == (1437, 360)
    upload(at, files["ts"], files["zip"])
    assert not at.exception and not at.error, texts(at.error)
    assert any("Loaded cnn.pt and fruit.zip" in s for s in texts(at.success))
    info = texts(at.info)[0]
    assert "torchscript, input 1×16×16, 3 classes" in info and "class names taken from the data" in info
    assert counts(at) == (list(CLASSES), 28, 8)  # the zip's 36 images, split 80/20
    assert at.selectbox(key="w_layer").value == "output"
    assert uploaded_files(sessions_dir) == ["cnn.pt", "fruit.zip"], "kept in the session's workspace for the workers"
    proj = own_project(at)
    demo_key = Project.load(AppConfig.from_env()).cache_key
    assert proj.cache_key != demo_key and proj.origin == Origin("upload", "cnn.pt", "fruit.zip", proj.origin.notes)

    job = embedding_jobs().get(f"{proj.cache_key}|output|0")
    assert job is not None and job.wait(TIMEOUT) and job.status == "done", job.user_error()
    at.run()
    assert any("embedding of layer **output** is ready" in s for s in texts(at.success))

    # a rejected load keeps the loaded pair
    upload(at, files["five"], files["zip"])
    assert any("the model has 5 outputs but there are 3 classes" in e for e in texts(at.error))
    assert own_project(at) is proj and "cnn.pt" in texts(at.info)[0]
    assert any("goes on with your previous model and data" in e for e in texts(at.error))
    assert uploaded_files(sessions_dir) == ["cnn.pt", "fruit.zip"], "the refused upload is removed"

    at.switch_page("pages/embedding.py").run()
    assert not at.exception and not at.error
    scatter = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in scatter["data"] if t.get("name") in CLASSES] == list(CLASSES)
    for page in ("pages/finetune.py", "pages/compare.py"):
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, texts(at.error))
    assert any("No fine-tuning runs yet" in i for i in texts(at.info)), "runs of other data are not offered"

    at.switch_page("pages/model_data.py").run()
    at.button(key="w_source_demo").click().run()
    assert own_project(at) is None and counts(at)[1:] == (1437, 360)
    assert at.selectbox(key="w_layer").value == "logits"
    assert any("Back to the built-in demo" in i for i in texts(at.info))


def test_paths_only_with_the_flag(sessions_dir, files, monkeypatch):
    monkeypatch.delenv("PLINT_ALLOW_PATHS")
    at = start()
    assert at.radio(key="w_source").options == ["Built-in demo", "Upload files"]
    monkeypatch.setenv("PLINT_ALLOW_PATHS", "1")
    at = start()
    assert at.radio(key="w_source").options == ["Built-in demo", "Upload files", "Paths on the server"]
    by_path(at, files["ts"], files["folder"], classes="a, b, c")
    assert not at.error, texts(at.error)
    assert counts(at) == (list(CLASSES), 28, 8)
    proj = own_project(at)
    assert proj.origin.kind == "path" and proj.bundle.spec.classes == ("a", "b", "c")
    assert any("a=apple" in n for n in proj.origin.notes)


def test_sessions_keep_their_own_inputs(sessions_dir, files):
    a, b = start(), start()
    upload(a, files["ts"], files["zip"])
    b.run()
    assert own_project(a) is not None and own_project(b) is None
    assert counts(b)[1:] == (1437, 360)


REJECTED = [  # (how, model, data, sidecar, options, words of the message)
    ("upload", "five", "zip", None, {}, "the model has 5 outputs but there are 3 classes (apple, banana, cherry)"),
    ("upload", "ts", "zip", None, {"channels": 3}, "rejects input of shape 3×16×16"),
    ("upload", "fixed", "zip", None, {"size": "32"}, "rejects input of shape 1×32×32"),
    ("upload", "ts", "bad_labels", None, {}, "labels contain -1: class indices must be 0..K-1"),
    ("upload", "ts", "no_test_zip", None, {}, "class(es) ['cherry'] have no samples in the test split"),
    ("upload", "ts", "one_class_zip", None, {}, "has 1 class folder(s) ['apple']: a classifier needs at least 2"),
    ("upload", "ts", "broken_zip", None, {}, "cannot read image 'broken/cherry/001.png': it is truncated, corrupt or not an image"),
    ("upload", "cut", "zip", "unknown_arch", {}, "unknown architecture 'resnet999'"),
    ("upload", "cut", "zip", None, {"arch": "plint-cnn", "size": "16"}, "corrupt or truncated"),
    ("upload", "onnx", "zip", None, {}, "unsupported model file type '.onnx'"),
    ("upload", "ts", "csv", None, {}, "unsupported data file type '.csv'"),
    ("upload", "evil", "zip", None, {"arch": "resnet18"}, "could run code"),
    ("upload", "ts", "escape", None, {}, "'../escape.png', which points outside the folder"),
    ("upload", "ts", None, None, {}, "upload the data first"),
    ("upload", "ts", "zip", None, {"size": "big"}, "input size: 'big' is not a size"),
    ("path", "ts", "folder", None, {"mean": "0.1,0.2"}, "mean has 2 values but the model takes 1 channels"),
    ("path", "ts", "missing", None, {}, "does not exist"),
]


@pytest.fixture(scope="module")
def demo_app(sessions_dir) -> AppTest:
    """One session on the demo, reused by the rejection cases (each must leave it on the demo)."""
    return start()


@pytest.mark.parametrize("how, model, data, sidecar, options, message", REJECTED,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[5][:24]}" for r in REJECTED])
def test_rejected_inputs_explain_and_change_nothing(demo_app, sessions_dir, files, how, model, data, sidecar,
                                                    options, message):
    at = demo_app
    path = {**files, "missing": files["folder"].parent / "missing"}
    load = upload if how == "upload" else by_path
    before = uploaded_files(sessions_dir)  # accepted uploads of earlier tests' sessions stay while those last
    load(at, path[model], path.get(data), path.get(sidecar), **options)
    assert not at.exception
    errors = texts(at.error)
    assert any(message in e and e.startswith("Not loaded: ") for e in errors), errors
    assert own_project(at) is None and counts(at)[1:] == (1437, 360), "the demo stays loaded"
    assert uploaded_files(sessions_dir) == before, "nothing of a rejected upload stays on disk"
    assert not (files["folder"].parent / "pwned.txt").exists() and not (sessions_dir / "escape.png").exists()


def test_upload_over_the_limit(demo_app, sessions_dir, files, monkeypatch):
    monkeypatch.setattr("plint_app.sources.MAX_UPLOAD_BYTES", 1 << 10)
    before = uploaded_files(sessions_dir)
    upload(demo_app, files["ts"], files["zip"])
    assert any("upload 'cnn.pt' is" in e and "MiB limit" in e for e in texts(demo_app.error)), texts(demo_app.error)
    assert own_project(demo_app) is None and uploaded_files(sessions_dir) == before


def test_session_end_removes_its_upload_folder(sessions_dir, files):
    at = start()
    upload(at, files["ts"], files["zip"])
    folders = [d for d in sessions_dir.iterdir() if d.is_dir()]
    assert folders and all((d / MARKER).is_file() for d in folders)
    clear_session_resource_cache(TEST_SESSION)  # what Streamlit does when a session disconnects
    assert not any(d.exists() for d in folders)
    upload(at, files["ts"], files["zip"])  # a reconnected session gets a fresh folder
    assert not at.error and [d for d in sessions_dir.iterdir() if d.is_dir()]


# --- the loaders, without Streamlit -----------------------------------------------
class FakeUpload:
    """An uploaded file as Streamlit hands it over: a name, a size and a readable buffer."""

    def __init__(self, path: Path):
        self.name, self._blob = path.name, path.read_bytes()
        self.size, self._pos = len(self._blob), 0

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self._pos + n)
        chunk, self._pos = self._blob[self._pos:end], end
        return chunk

    def seek(self, offset: int) -> int:
        self._pos = offset
        return offset


def test_parse_options_mirrors_the_cli():
    assert parse_options() == ModelOptions()
    options = parse_options(arch="resnet18", classes="a, b", input_size="224x288", channels=3, mean="0.5",
                            std="0.2,0.3,0.4")
    assert options == ModelOptions("resnet18", ("a", "b"), (224, 288), 3, (0.5,), (0.2, 0.3, 0.4))
    with pytest.raises(PlintError, match="mean: 'x' is not a number"):
        parse_options(mean="x")
    with pytest.raises(PlintError, match="at least 2 distinct"):
        parse_options(classes="a")


def test_accepted_uploads_stay_for_the_workers_and_refused_ones_go(tmp_path, files):
    """An accepted upload stays in the session's workspace (worker processes open it again from its Source);
    a refused one is removed at once; the workspace goes with the session."""
    with Workspace(tmp_path) as ws:
        inputs, source = load_uploads(ws, FakeUpload(files["ts"]), FakeUpload(files["zip"]), ModelOptions())
        assert inputs.data.class_names == CLASSES
        kept = sorted(p.name for p in ws.root.iterdir())
        assert kept == sorted([MARKER, Path(source.model).name, Path(source.data).name])
        reopened = source.open()
        assert reopened.bundle.fingerprint == inputs.bundle.fingerprint
        assert reopened.data.fingerprint() == inputs.data.fingerprint()
        model = FakeUpload(files["ts"])
        with pytest.raises(PlintError, match="more than the 0 MiB limit"):
            load_uploads(ws, model, FakeUpload(files["zip"]), ModelOptions(), max_bytes=100)
        assert sorted(p.name for p in ws.root.iterdir()) == kept, "a refused upload leaves nothing behind"
        again, again_source = load_uploads(ws, model, FakeUpload(files["zip"]), ModelOptions())  # re-read
        assert again.bundle.fingerprint == inputs.bundle.fingerprint and again_source.model != source.model
        sneaky = FakeUpload(files["ts"])
        sneaky.name = "../../data/demo_cnn.pt"
        load_uploads(ws, sneaky, FakeUpload(files["zip"]), ModelOptions())
        assert [p.name for p in tmp_path.iterdir()] == [ws.root.name], "nothing is written outside the workspace"
    assert not ws.root.exists()
    with pytest.raises(PlintError, match="give the path of the data"):
        load_paths(str(files["ts"]), " ", ModelOptions())


def test_project_identity_and_run_history(app_runs, files):
    config = AppConfig.from_env(app_env(app_runs))
    origin = Origin("path", "cnn.pt", "fruit")
    source = Source(str(files["ts"]), str(files["folder"]))
    first = Project.from_inputs(config, open_inputs(files["ts"], files["folder"]), origin, source)
    same = Project.from_inputs(config, open_inputs(files["ts"], files["folder"]), origin, source)
    other = Project.from_inputs(config, open_inputs(files["ts"], files["folder"], ModelOptions(mean=(0.5,))), origin,
                                Source(str(files["ts"]), str(files["folder"]), ModelOptions(mean=(0.5,))))
    assert first.cache_key == same.cache_key != other.cache_key != config.cache_key()
    run = {"data": "fruit", "model": str(files["ts"]), "classes": list(CLASSES)}
    assert first.owns_run(run) and not first.owns_run({**run, "data": "digits", "model": "demo"})
    assert Project.load(config).owns_run({"data": "digits", "model": "demo", "classes": [str(k) for k in range(10)]})


def test_allow_paths_flag():
    assert AppConfig.from_env({}).allow_paths is False
    assert AppConfig.from_env({"PLINT_ALLOW_PATHS": "TRUE"}).allow_paths is True
    assert AppConfig.from_env({"PLINT_ALLOW_PATHS": "0"}).allow_paths is False
    with pytest.raises(PlintError, match="PLINT_ALLOW_PATHS='maybe'"):
        AppConfig.from_env({"PLINT_ALLOW_PATHS": "maybe"})
