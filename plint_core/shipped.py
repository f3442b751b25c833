"""The digits demo's default embedding, shipped in ``data/`` so that a first visit draws its map without a fit.

``data/demo_embedding.zip`` is an embedding archive (:func:`plint_core.runs.archive.export_embedding`): what
``prepare_embedding(load_data("digits"), load_model("demo"), seed=0, config=TSNEConfig())`` fits for the demo
model's default layer, with that layer's latents and the predictions. The app imports it into a run store that
lacks it when it loads the configured project (:func:`install`, called from :mod:`plint_app.resources`), checked
like any import (:func:`~plint_core.runs.archive.import_embedding`: the key computed again from the settings and
fingerprints it records, those fingerprints against the digits and the demo model just loaded). When it no longer
matches (the demo model, the digits or the t-SNE defaults changed), nothing is imported, the app logs why and
fits as before; ``tests/test_shipped.py`` fails until the file is made again:

    python -m plint_core.shipped            # fits in a scratch store (about 25 s on 2 cores), writes the zip
    python -m plint_core.shipped --check    # says whether the shipped file matches, exit 1 if not

The fit runs with one torch thread, as the test suite does. The archive's bytes depend on its content only
(fixed entry times). The same command first writes ``data/digits_test_rows.npy`` again, the digits' split that lets
the demo load without scikit-learn (:data:`plint_core.data.arrays.DIGITS_TEST_ROWS`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import PlintError

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "demo_embedding.zip"
DATA, MODEL, SEED = "digits", "demo", 0
"""What the shipped embedding is of: the data set, the model (as :func:`~plint_core.data.loading.load_data` and
:func:`~plint_core.models.sources.load_model` name them) and the t-SNE seed."""
REGENERATE = "python -m plint_core.shipped"
LOG = logging.getLogger("plint_core.shipped")


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: ``status`` is ``imported``, ``present`` (the store had it), ``not-demo`` (another
    project: nothing to do), ``other-settings`` (t-SNE settings or a seed other than the defaults: nothing to
    do), ``missing`` (no shipped file), ``mismatch`` (the shipped file is not the embedding
    asked for, or its import was refused) or ``failed`` (the store could not be written); ``reason`` says why."""

    status: str
    key: str
    reason: str = ""


def read_manifest(archive: str | Path = SHIPPED) -> dict | None:
    """The shipped archive's ``manifest.json`` (without unpacking the rest), or ``None`` if there is no readable
    one."""
    try:
        with zipfile.ZipFile(archive) as zf:
            value = json.loads(zf.read("manifest.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def mismatch(manifest: dict, data, bundle, layer: str, seed: int, tsne: dict) -> str:
    """In words, how the embedding the manifest describes differs from the one asked for ('' if it does not)."""
    why = []
    if manifest.get("data_fingerprint") != data.fingerprint():
        why.append(f"the data differ (fingerprint {str(manifest.get('data_fingerprint'))[:12]}… shipped, "
                   f"{data.fingerprint()[:12]}… loaded)")
    if manifest.get("model_fingerprint") != bundle.fingerprint:
        why.append(f"the model's weights differ (fingerprint {str(manifest.get('model_fingerprint'))[:12]}… "
                   f"shipped, {bundle.fingerprint[:12]}… loaded)")
    if manifest.get("layer") != layer:
        why.append(f"it is of layer {manifest.get('layer')!r}, not {layer!r}")
    if manifest.get("seed") != seed:
        why.append(f"it has seed {manifest.get('seed')!r}, not {seed}")
    shipped = manifest.get("tsne") if isinstance(manifest.get("tsne"), dict) else {}
    changed = sorted(k for k in set(shipped) | set(tsne) if shipped.get(k) != tsne.get(k))
    if changed:
        why.append("its t-SNE settings differ in " + ", ".join(
            f"{k} ({shipped.get(k)!r} shipped, {tsne.get(k)!r} now)" for k in changed))
    return "; ".join(why)


def install(store, data, bundle, layer: str, config, seed: int = SEED, archive: str | Path = SHIPPED) -> Installed:
    """Import the shipped embedding into ``store`` if it is the embedding of ``data``, ``bundle``, ``layer``,
    ``seed`` and ``config`` (a :class:`~plint_core.embedding.parametric_tsne.TSNEConfig`) and the store lacks it.

    Only the digits with the demo model, the default t-SNE settings and seed 0 are looked up; for them, a shipped
    file of other fingerprints, another layer (``layer`` is the model's default one) or other settings is a
    ``mismatch``: the file is out of date.

    Never raises for a file that does not fit: the result says so, and the caller fits as before.
    """
    from .embedding.parametric_tsne import TSNEConfig
    from .pipeline import embedding_key
    from .runs.archive import Expected, import_embedding

    key = embedding_key(data, bundle, layer, seed, config)
    if (data.name, bundle.source) != (DATA, MODEL):
        return Installed("not-demo", key)
    if seed != SEED or config.to_dict() != TSNEConfig().to_dict():
        return Installed("other-settings", key)  # settings chosen on purpose (PLINT_TSNE_CONFIG): a fit, as before
    if store.has_embedding(key):
        return Installed("present", key)
    manifest = read_manifest(archive)
    if manifest is None:
        return Installed("missing", key, f"{archive} is missing or unreadable")
    why = mismatch(manifest, data, bundle, layer, seed, config.to_dict())
    if why or manifest.get("embedding_key") != key:
        return Installed("mismatch", key, why or f"its key {manifest.get('embedding_key')} is not {key}")
    try:
        report = import_embedding(archive, store, Expected.of(data, bundle))
    except PlintError as exc:
        return Installed("mismatch", key, str(exc))
    except OSError as exc:  # e.g. a read-only or full run store: the fit will say so if it cannot store either
        return Installed("failed", key, f"it could not be written to {store.root} ({exc})")
    if report.key != key:  # the manifest named one key, the embedding inside another: refused above, kept as a guard
        return Installed("mismatch", key, f"it holds embedding {report.key}, not {key}")
    return Installed("imported" if "embedding" in report.added else "present", key)


def install_logged(store, data, bundle, layer: str, config, seed: int = SEED,
                   archive: str | Path = SHIPPED) -> Installed:
    """:func:`install`, logging an import (info) and a shipped file that no longer matches (warning)."""
    outcome = install(store, data, bundle, layer, config, seed, archive)
    if outcome.status == "imported":
        LOG.info("imported the shipped demo embedding %s into %s", outcome.key, store.root)
    elif outcome.status in ("mismatch", "failed", "missing"):
        LOG.warning("the shipped demo embedding %s was not used, so the map is fitted as usual: %s. Regenerate it "
                    "with '%s'", archive, outcome.reason, REGENERATE)
    return outcome


def regenerate(out: str | Path = SHIPPED) -> dict:
    """Fit the demo's default embedding in a scratch store and write it to ``out``; returns the manifest."""
    import tempfile

    import torch

    from .data.arrays import write_digits_test_rows
    from .data.loading import load_data
    from .embedding.parametric_tsne import TSNEConfig
    from .models.sources import load_model
    from .pipeline import prepare_embedding
    from .runs.archive import export_embedding
    from .store import RunStore

    torch.set_num_threads(1)
    write_digits_test_rows()
    data, bundle = load_data(DATA), load_model(MODEL)
    with tempfile.TemporaryDirectory(prefix="plint-shipped-") as tmp:
        store = RunStore(tmp)
        emb = prepare_embedding(data, bundle, seed=SEED, config=TSNEConfig(), store=store, device="cpu")
        return export_embedding(store, emb.key, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plint_core.shipped",
                                     description="Make (or check) data/demo_embedding.zip, the digits demo's "
                                                 "default embedding that the app imports at its first start.")
    parser.add_argument("--out", default=str(SHIPPED), help=f"the archive to write (default {SHIPPED})")
    parser.add_argument("--check", action="store_true", help="only say whether the shipped file matches")
    a = parser.parse_args(argv)
    if a.check:
        from .data.loading import load_data
        from .embedding.parametric_tsne import TSNEConfig
        from .latents import list_layers, pick_default
        from .models.sources import load_model

        data, bundle = load_data(DATA), load_model(MODEL)
        manifest = read_manifest(a.out)
        if manifest is None:
            print(f"{a.out} is missing or unreadable: run '{REGENERATE}'", file=sys.stderr)
            return 1
        why = mismatch(manifest, data, bundle, pick_default(list_layers(bundle)), SEED, TSNEConfig().to_dict())
        print(f"{a.out}: " + (f"does not match: {why}; run '{REGENERATE}'" if why else "matches"), file=sys.stderr)
        return 1 if why else 0
    manifest = regenerate(a.out)
    size = Path(a.out).stat().st_size
    print(f"wrote {a.out} ({size / 1024:.0f} KiB): embedding {manifest['embedding_key']} of layer "
          f"{manifest['layer']}, latents {manifest['latents_key']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
