"""The digits demo's shipped default embedding (``data/demo_embedding.zip``, :mod:`plint_core.shipped`): it is the
embedding the demo's defaults give, a fresh run store gets it without a t-SNE fit, and one that no longer matches
is refused, logged and fitted as before."""
from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from plint_core.embedding.parametric_tsne import ParametricTSNE, TSNEConfig
from plint_core.latents import list_layers, pick_default
from plint_core.pipeline import embedding_key, prepare_embedding
from plint_core.runs.archive import EMBEDDING_FORMAT, Expected, import_embedding
from plint_core.shipped import REGENERATE, SHIPPED, install, install_logged, read_manifest
from plint_core.store import RunStore

MAX_BYTES = 512 * 1024


@pytest.fixture
def no_fit(monkeypatch):
    """Make any t-SNE fit (and any latent computation) fail the test."""
    def fit(self, *args, **kwargs):
        raise AssertionError("ParametricTSNE.fit was called")

    def forward(*args, **kwargs):
        raise AssertionError("latents were computed")

    monkeypatch.setattr(ParametricTSNE, "fit", fit)
    monkeypatch.setattr("plint_core.latent_cache.forward_pass", forward)


def default_key(digits, demo) -> str:
    return embedding_key(digits, demo, pick_default(list_layers(demo)), 0, TSNEConfig())


def test_the_shipped_embedding_is_the_demo_default_and_small(digits, demo):
    manifest = read_manifest()
    assert manifest is not None, f"{SHIPPED} is missing: make it with '{REGENERATE}'"
    assert manifest["format"] == EMBEDDING_FORMAT
    assert manifest["embedding_key"] == default_key(digits, demo), (
        f"{SHIPPED.name} is not the embedding the digits demo's defaults give (the demo model, the digits, the "
        f"default layer or TSNEConfig's defaults changed): regenerate it with '{REGENERATE}' and commit it")
    assert manifest["latents_key"], "it carries the default layer's latents"
    assert SHIPPED.stat().st_size < MAX_BYTES, f"{SHIPPED.name} is {SHIPPED.stat().st_size:,} bytes"


def test_a_fresh_store_gets_the_embedding_without_a_fit(digits, demo, tmp_path, no_fit):
    store = RunStore(tmp_path / "runs")
    layer = pick_default(list_layers(demo))
    outcome = install(store, digits, demo, layer, TSNEConfig())
    assert outcome.status == "imported" and outcome.key == default_key(digits, demo)
    emb = prepare_embedding(digits, demo, seed=0, store=store, device="cpu")
    assert emb.cache_hit and emb.key == outcome.key and emb.layer == layer
    assert emb.train_xy.shape == (len(digits.train), 2) and emb.test_pred.shape == (len(digits.test),)
    assert install(store, digits, demo, layer, TSNEConfig()).status == "present"
    meta = json.loads((store.embedding_dir(emb.key) / "meta.json").read_text())
    assert store.has_latents(meta["latents"]), "the latents came with it"


def test_the_app_puts_it_into_a_fresh_store_at_its_first_start(tmp_path, no_fit):
    from plint_app.config import AppConfig
    from plint_app.project import Project
    from plint_app.resources import install_shipped_embedding

    proj = Project.load(AppConfig.from_env({"PLINT_RUNS_DIR": str(tmp_path / "runs"), "PLINT_DEVICE": "cpu"}))
    assert not proj.has_stored_embedding(proj.default_layer, 0)
    assert install_shipped_embedding(proj).status == "imported"
    assert proj.has_stored_embedding(proj.default_layer, 0)
    assert proj.embedding(proj.default_layer, 0).cache_hit
    assert not proj.has_stored_embedding(proj.default_layer, 1), "another seed is fitted as before"


def test_the_embedding_page_draws_the_map_on_a_fresh_store_without_a_fit(tmp_path, monkeypatch, no_fit):
    from app_helpers import APP
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PLINT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PLINT_DEVICE", "cpu")
    monkeypatch.delenv("PLINT_TSNE_CONFIG", raising=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/embedding.py").run()
    assert not at.exception, at.exception
    names = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {str(k) for k in range(10)} <= names


def test_other_settings_or_another_project_are_left_alone(digits, demo, tmp_path):
    store = RunStore(tmp_path / "runs")
    layer = pick_default(list_layers(demo))
    assert install(store, digits, demo, layer, TSNEConfig(n_iter=200)).status == "other-settings"
    assert install(store, digits, demo, layer, TSNEConfig(), seed=1).status == "other-settings"
    assert install(store, replace(digits, name="mine"), demo, layer, TSNEConfig()).status == "not-demo"
    assert not (tmp_path / "runs").exists()


def test_an_out_of_date_file_is_logged_and_the_map_is_fitted_as_before(digits, demo, tmp_path, caplog):
    """A changed demo model (another fingerprint) or default layer: nothing imported, a warning saying why and how
    to regenerate; the store stays empty, so the app's embedding job fits."""
    store = RunStore(tmp_path / "runs")
    retrained = replace(demo, fingerprint="f" * 64)
    with caplog.at_level(logging.WARNING, logger="plint_core.shipped"):
        outcome = install_logged(store, digits, retrained, pick_default(list_layers(demo)), TSNEConfig())
    assert outcome.status == "mismatch" and "model's weights differ" in outcome.reason
    assert REGENERATE in caplog.text and "fitted as usual" in caplog.text
    assert install(store, digits, demo, "act3", TSNEConfig()).reason == "it is of layer 'logits', not 'act3'"
    assert not store.has_embedding(outcome.key) and not (tmp_path / "runs").exists()


def rewrite(archive: Path, out: Path, change) -> Path:
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    return out


def test_an_edited_archive_is_refused_and_nothing_is_written(digits, demo, tmp_path):
    """The manifest still names the default embedding, but the settings inside were edited: the key computed again
    from them differs, so the import is refused (a mismatch: the app fits)."""
    def edit(name: str, data: bytes) -> bytes:
        if name.startswith("embeddings/") and name.endswith("/meta.json") and "embedder" not in name:
            return json.dumps(dict(json.loads(data), seed=7)).encode()
        return data

    edited = rewrite(SHIPPED, tmp_path / "edited.zip", edit)
    store = RunStore(tmp_path / "runs")
    outcome = install(store, digits, demo, pick_default(list_layers(demo)), TSNEConfig(), archive=edited)
    assert outcome.status == "mismatch" and "do not give its key" in outcome.reason
    assert not store.has_embedding(outcome.key)
    assert not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))
    from plint_core.errors import PlintError

    with pytest.raises(PlintError, match="different data"):
        import_embedding(SHIPPED, store, Expected("0" * 64, demo.fingerprint))
    with pytest.raises(PlintError, match="not a plint embedding export"):
        import_embedding(rewrite(SHIPPED, tmp_path / "nolatents.zip",
                                 lambda n, d: None if n.endswith("/train.npy") else d), store)
    assert install(store, digits, demo, "logits", TSNEConfig(), archive=tmp_path / "absent.zip").status == "missing"


def test_the_digits_load_without_scikit_learn_and_are_the_same_data_set(digits):
    """``data/digits_test_rows.npy`` is still the split scikit-learn draws, and the demo's data load without
    importing scikit-learn (in a fresh interpreter: this one may have imported it already)."""
    import subprocess
    import sys

    from plint_core.data.arrays import _digits_with_sklearn

    assert digits.fingerprint() == _digits_with_sklearn().fingerprint(), (
        f"data/digits_test_rows.npy is no longer the digits' split: regenerate it with '{REGENERATE}'")
    code = ("import sys; from plint_core.data.loading import load_data; d = load_data('digits'); "
            "print(d.fingerprint(), 'sklearn' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert out == [digits.fingerprint(), "False", "False"]


def test_the_first_visit_imports_neither_scikit_learn_nor_scipy(tmp_path):
    """Model & data, then the Embedding page, on a fresh store, in a fresh interpreter: the map is drawn without
    importing scikit-learn or SciPy (1-3 s on the 2-core machine; bench/RESULTS.md, First visit)."""
    import subprocess
    import sys

    from app_helpers import APP

    code = f"""
import os, sys
os.environ.update(PLINT_RUNS_DIR={str(tmp_path / 'runs')!r}, PLINT_DEVICE="cpu")
os.environ.pop("PLINT_TSNE_CONFIG", None)
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({APP!r}, default_timeout=120).run()
at.switch_page("pages/embedding.py").run()
assert not at.exception and at.get("plotly_chart"), at.exception
print(sorted(m for m in ("sklearn", "scipy") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
