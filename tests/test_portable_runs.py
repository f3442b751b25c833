"""Portable runs: ``runs export`` → ``runs import`` (CLI and the Fine-tune page) → the same settings are a cache hit;
archives that are unsafe, edited, malformed or from another project are refused with one message and nothing
written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from plint_core.cli import main
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig
from plint_core.intervention import InterventionSpec
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.runs.archive import Expected, import_run
from plint_core.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"moves": [{"select": {"classes": [3]}, "translate": [-3.0, 0.0], "contract": 0.8}]}
EPOCHS = 1


@pytest.fixture(scope="module")
def source_store(tmp_path_factory, demo_runs, digits, demo):
    """A store holding the demo embedding and one finished run (as a GPU machine's store would)."""
    root = tmp_path_factory.mktemp("portable") / "gpu_store"
    shutil.copytree(demo_runs, root)
    store = RunStore(root)
    emb = prepare_embedding(digits, demo, seed=0, store=store, device="cpu")
    run = run_intervention(digits, demo, emb, InterventionSpec.from_dict(SPEC),
                           FinetuneConfig(epochs=EPOCHS, device="cpu"), store=store)
    return store, run


@pytest.fixture(scope="module")
def archive(source_store, tmp_path_factory) -> Path:
    store, run = source_store
    out = tmp_path_factory.mktemp("archive") / "run.zip"
    assert main(["runs", "export", run.run_id, "--out", str(out), "--runs-dir", str(store.root)]) == 0
    return out


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def rewrite(archive: Path, out: Path, change) -> Path:
    """A copy of ``archive`` with each entry's bytes passed through ``change(name, data)`` (``None`` drops it)."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    return out


def refused(capsys, archive: Path, store: Path, *extra: str) -> str:
    """Import ``archive`` into ``store`` by the CLI; assert exit 2, one line, and nothing written; the line."""
    assert main(["runs", "import", str(archive), "--runs-dir", str(store), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plint_core: error:") and "\n" not in err
    assert files_under(store) == [], "a refused archive writes nothing"
    return err


def test_export_holds_the_run_its_embedding_and_latents(archive, source_store):
    store, run = source_store
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "plint-run" and manifest["run_id"] == run.run_id
    assert manifest["embedding_key"] == run.result["embedding_key"] and manifest["latents_key"]
    for prefix, folder in ((f"runs/{run.run_id}", store.run_dir(run.run_id)),
                           (f"embeddings/{manifest['embedding_key']}", store.embedding_dir(manifest["embedding_key"])),
                           (f"latents/{manifest['latents_key']}", store.latents_dir(manifest["latents_key"]))):
        expected = {f"{prefix}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
        assert expected and expected <= set(names)


def test_import_then_the_same_settings_are_a_cache_hit(archive, source_store, tmp_path, capsys):
    _, run = source_store
    target = tmp_path / "cloud_store"
    assert main(["runs", "import", str(archive), "--runs-dir", str(target), "--data", "digits", "--model", "demo"]) == 0
    err = capsys.readouterr().err
    assert f"run {run.run_id}" in err and "added the latents, embedding, run" in err
    store = RunStore(target)
    assert store.has_run(run.run_id) and store.load_run(run.run_id) == run.result
    # importing again changes nothing
    assert main(["runs", "import", str(archive), "--runs-dir", str(target)]) == 0
    assert "added nothing; the store held the latents, embedding, run already" in capsys.readouterr().err
    # the same spec and settings on the importing machine find the imported embedding and run
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    proc = subprocess.run([sys.executable, "-m", "plint_core", "run", "--data", "digits", "--model", "demo",
                           "--spec", str(tmp_path / "spec.json"), "--runs-dir", str(target), "--epochs", str(EPOCHS),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["cache_hit"] is True and result["run_id"] == run.run_id and "(cached run)" in proc.stderr
    assert result["accuracy"] == run.result["accuracy"]
    assert "pli epoch" not in proc.stderr and "fit: 0%" not in proc.stderr, "nothing was fitted or fine-tuned"


def test_export_without_latents_and_bad_export_requests(source_store, tmp_path, capsys):
    store, run = source_store
    out = tmp_path / "small.zip"
    assert main(["runs", "export", run.run_id, "--out", str(out), "--runs-dir", str(store.root), "--no-latents"]) == 0
    assert "the run, its embedding\n" in capsys.readouterr().err
    with zipfile.ZipFile(out) as zf:
        assert not any(n.startswith("latents/") for n in zf.namelist())
    imported = import_run(out, RunStore(tmp_path / "s"))
    assert imported.added == ["embedding", "run"]
    for argv, fragment in ((["runs", "export", "0" * 20, "--out", str(tmp_path / "x.zip")], "no finished run"),
                           (["runs", "export", run.run_id], "needs --out"),
                           (["runs", "export", run.run_id, "--out", str(tmp_path / "x.tar")], "must end in .zip"),
                           (["runs", "import"], "needs the archive"),
                           (["runs", "import", str(out), "--data", "digits"], "both --data and --model")):
        assert main([*argv, "--runs-dir", str(store.root)]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err
    assert not (tmp_path / "x.zip").exists()


def test_an_entry_escaping_with_dotdot_is_refused_and_nothing_is_written(archive, tmp_path, capsys):
    tampered = tmp_path / "tampered.zip"
    shutil.copy(archive, tampered)
    with zipfile.ZipFile(tampered, "a") as zf:
        zf.writestr("../escaped.txt", "outside")
    proc = subprocess.run([sys.executable, "-m", "plint_core", "runs", "import", str(tampered), "--runs-dir",
                           str(tmp_path / "store")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "../escaped.txt" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "store").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_an_edited_spec_or_setting_is_refused(archive, source_store, tmp_path, capsys):
    _, run = source_store

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("/spec.json") or name.endswith("/result.json"):
            obj = json.loads(data)
            spec = obj if name.endswith("spec.json") else obj["spec"]
            spec["moves"][0]["translate"] = [-30.0, 0.0]
            return json.dumps(obj).encode()
        return data

    err = refused(capsys, rewrite(archive, tmp_path / "edited.zip", edit), tmp_path / "store")
    assert "do not give its run id" in err

    def retune(name: str, data: bytes) -> bytes:
        if name.startswith("embeddings/") and name.endswith("/meta.json") and "embedder" not in name:
            obj = json.loads(data)
            obj["seed"] = 7
            return json.dumps(obj).encode()
        return data

    assert "do not give its key" in refused(capsys, rewrite(archive, tmp_path / "seed.zip", retune), tmp_path / "s2")


@pytest.mark.parametrize("change, fragment", [
    (lambda n, d: None if n == "manifest.json" else d, "manifest.json is missing"),
    (lambda n, d: json.dumps(dict(json.loads(d), version=99)).encode() if n == "manifest.json" else d, "newer plint"),
    (lambda n, d: json.dumps(dict(json.loads(d), format="x")).encode() if n == "manifest.json" else d, "names format"),
    (lambda n, d: None if n.endswith("/control.safetensors") else d, "lacks control.safetensors"),
    (lambda n, d: b"{not json" if n.endswith("/result.json") else d, "cannot be read"),
])
def test_malformed_archives_are_refused(archive, tmp_path, capsys, change, fragment):
    err = refused(capsys, rewrite(archive, tmp_path / "bad.zip", change), tmp_path / "store")
    assert fragment in err


def test_an_entry_outside_the_named_parts_is_refused(archive, tmp_path, capsys):
    extra = tmp_path / "extra.zip"
    shutil.copy(archive, extra)
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("runs/ffffffffffffffffffff/result.json", "{}")
    assert "belongs to no part" in refused(capsys, extra, tmp_path / "store")
    assert "is not a valid zip file" in refused(capsys, Path(__file__), tmp_path / "store2")


def test_another_data_set_or_model_is_named(archive, digits, demo, tmp_path):
    store = RunStore(tmp_path / "store")
    with pytest.raises(PlintError, match="different data"):
        import_run(archive, store, Expected("0" * 64, demo.fingerprint))
    with pytest.raises(PlintError, match="different model"):
        import_run(archive, store, Expected(digits.fingerprint(), "f" * 64))
    assert files_under(store.root) == []
    assert import_run(archive, store, Expected.of(digits, demo)).added == ["latents", "embedding", "run"]


def test_an_imported_run_belongs_to_the_project_whatever_its_paths(archive, source_store, tmp_path):
    """A run made where the files had other names is matched by fingerprints (run history, Compare)."""
    from plint_app.config import AppConfig
    from plint_app.project import Project

    _, run = source_store
    store = RunStore(tmp_path / "store")
    report = import_run(archive, store, None)
    result = store.load_run(report.run_id)
    project = Project.load(AppConfig.from_env({"PLINT_RUNS_DIR": str(store.root)}))
    assert project.owns_run(result)
    assert project.owns_run(dict(result, data="/lab/gpu/digits.npz", model="/lab/gpu/demo.safetensors"))
    assert not project.owns_run(dict(result, data_fingerprint="0" * 64))
    assert [r["run_id"] for r in project.runs()] == [run.run_id]


# --- the Fine-tune page -----------------------------------------------------------------------------------------
pytest_plugins = ("app_fixtures",)  # app_runs, app_environment, stored_run


def test_finetune_page_imports_an_archive_and_offers_each_run_as_one(app_environment, stored_run, monkeypatch,
                                                                     tmp_path, request):
    from app_helpers import APP
    from streamlit.runtime.caching import clear_session_resource_cache
    from streamlit.testing.v1 import AppTest

    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_app.run_archives import export_bytes
    from plint_core import workspace as workspace_module

    project = Project.load(AppConfig.from_env({"PLINT_RUNS_DIR": str(app_environment)}))
    data = export_bytes(project, stored_run.run_id)  # what 'Download run' hands the browser
    cloud = tmp_path / "cloud_store"
    monkeypatch.setenv("PLINT_RUNS_DIR", str(cloud))
    monkeypatch.setattr(workspace_module, "SESSIONS_DIR", tmp_path / "sessions")
    clear_session_resource_cache("test session id")  # AppTest's session: a fresh upload folder under the patch
    request.addfinalizer(lambda: clear_session_resource_cache("test session id"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/finetune.py").run()
    assert not at.exception and any("No runs stored yet" in c.value for c in at.caption)

    def upload(name: str, content: bytes) -> None:
        at.file_uploader(key="w_run_archive").set_value((name, content, "application/zip"))
        at.button(key="w_import").click().run()
        assert not at.exception

    bad = tmp_path / "bad.zip"
    (tmp_path / "good.zip").write_bytes(data)
    rewrite(tmp_path / "good.zip", bad, lambda n, d: None if n.endswith("/spec.json") else d)
    upload("bad.zip", bad.read_bytes())
    assert any("Not imported" in e.value and "lacks spec.json" in e.value for e in at.error)
    assert files_under(cloud) == [], "a refused archive stores nothing"
    upload("run.zip", data)
    assert any(f"Imported run {stored_run.run_id}" in s.value for s in at.success)
    assert stored_run.run_id in set(at.dataframe[0].value["run id"]), "the imported run is in the history"
    assert at.session_state["plint"].current_run_id == stored_run.run_id
    assert "Download run" in [d.label for d in at.get("download_button")]
    assert RunStore(cloud).load_run(stored_run.run_id) == stored_run.result
    assert list((tmp_path / "sessions").rglob("*.zip")) == [], "the uploaded archives themselves are not kept"
    assert (tmp_path / "sessions").is_dir(), "(the uploads went to this session's folder)"


def test_latents_that_are_not_the_embeddings_are_refused(archive, tmp_path, capsys):
    def swap(name: str, data: bytes) -> bytes:
        if name.startswith("latents/") and name.endswith("/meta.json"):
            return json.dumps(dict(json.loads(data), layer="conv2")).encode()
        return data

    err = refused(capsys, rewrite(archive, tmp_path / "latents.zip", swap), tmp_path / "store")
    assert "do not belong to its embedding" in err
