"""Portable runs: one ``.zip`` with everything the run store holds for a run, and its import into another store.

A run computed on a lab's GPU machine can then be shown by an app elsewhere (for
example on Streamlit Community Cloud, which has no GPU): import it there, and
the same settings on the same data and model find it (``cache_hit``), because
run and embedding keys name what determines a result, not where it was computed.

The archive mirrors the store's layout (:mod:`plint_core.store`)::

    manifest.json              format, version, the keys and fingerprints below, when and where it was exported
    runs/<run id>/…            the run: result.json, spec.json, both fine-tuned models, E, test embedding, targets
    embeddings/<key>/…         the embedding the run was made on (coordinates and the fitted network), if stored
    latents/<key>/…            that embedding's latents (optional: ``latents=False``; they can be recomputed)

Importing checks an archive as strictly as any upload before anything is
written to the store: it is unpacked with the limits of
:func:`plint_core.safe_zip.extract_zip` into a scratch folder; the manifest and
every part must have the expected files and fields; the run id and the
embedding key are computed again from what the archive records and must match
(a hand-edited spec or setting is refused); and, when the project's data and
model are given, their fingerprints must match the run's, otherwise the error
says which differs. Only then is each part published into the store by the
store's own atomic rename, the embedding before the run, so a store never holds
a run without its embedding. Parts the store holds already are left as they are.

An embedding can also travel alone (:func:`export_embedding`, :func:`import_embedding`): the same
``embeddings/<key>/`` and ``latents/<key>/`` parts under a manifest of format ``plint-embedding``, checked the
same way. The digits demo's default embedding ships so in ``data/`` (:mod:`plint_core.shipped`).
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..atomic import write_atomic
from ..errors import PlintError
from ..intervention import InterventionSpec
from ..latent_cache import latents_key_of
from ..pipeline import embedding_key_of, run_key_of
from ..safe_zip import ZipLimits, extract_zip
from ..scratch import scratch_dir
from ..store import EMBEDDING_META, RESULT, RunStore

__all__ = ["EMBEDDING_FORMAT", "FORMAT", "VERSION", "EmbeddingImport", "Expected", "ImportReport",
           "export_embedding", "export_run", "import_embedding", "import_run"]

FORMAT = "plint-run"
"""``manifest.json``'s ``format``."""
EMBEDDING_FORMAT = "plint-embedding"
"""``manifest.json``'s ``format`` of an embedding-only archive (:func:`export_embedding`)."""
VERSION = 1
"""The newest archive version this plint reads and the one it writes."""
MANIFEST = "manifest.json"
LIMITS = ZipLimits(max_total_bytes=8 << 30)
"""Unpacking limits: as for any upload, but up to 8 GiB (two fine-tuned ResNets and 100k latents fit easily)."""
RUN_FILES = (RESULT, "spec.json", "finetuned.safetensors", "control.safetensors", "test_embedding.csv",
             "train_targets.npz", "embedder")
EMBEDDING_FILES = (EMBEDDING_META, "coords.npz", "embedder")
_KEY = re.compile(r"^[0-9a-f]{20}$")
_FIXED_TIME = (2026, 1, 1, 0, 0, 0)
"""The entries' time in an embedding archive: its bytes depend on its content only."""
_REDO = {FORMAT: "Export the run again with 'python -m plint_core runs export RUN_ID --out run.zip' (or the app's "
                 "'Download run')",
         EMBEDDING_FORMAT: "Export the embedding again from a store that holds it"}
_AGAIN = {FORMAT: "Export the run again from its own store", EMBEDDING_FORMAT: "Export the embedding again from its "
          "own store"}


@dataclass(frozen=True)
class Expected:
    """The fingerprints of the project an archive is imported into (see :meth:`of`)."""

    data: str
    """Fingerprint of the data the embedding is fitted on."""
    model: str
    """Fingerprint of the model's weights."""
    run_data: str | None = None
    """Fingerprint of the data the run fine-tunes on, where it differs from :attr:`data` (a replicated split)."""

    @classmethod
    def of(cls, data, bundle, run_data=None) -> "Expected":
        """From a :class:`~plint_core.data.dataset.Dataset` and a :class:`~plint_core.models.spec.ModelBundle`."""
        return cls(data.fingerprint(), bundle.fingerprint, None if run_data is None else run_data.fingerprint())


@dataclass
class ImportReport:
    """What :func:`import_run` found and did."""

    run_id: str
    result: dict
    added: list[str] = field(default_factory=list)
    """The parts published into the store (``run``, ``embedding``, ``latents``)."""
    present: list[str] = field(default_factory=list)
    """The parts the store held already (left as they were)."""

    def describe(self) -> str:
        r = self.result
        where = f"computed on {str(r.get('device', '?')).upper()}"
        if r.get("executor"):
            where += f" by the {r['executor']} executor"
        added = f"added the {', '.join(self.added)}" if self.added else "added nothing"
        present = f"; the store held the {', '.join(self.present)} already" if self.present else ""
        return f"run {self.run_id} ({r.get('data', '?')}, layer {r.get('layer', '?')}, {where}): {added}{present}"


def export_run(store: RunStore, run_id: str, out: str | Path, *, latents: bool = True) -> dict:
    """Write run ``run_id`` of ``store``, its embedding and (with ``latents``) that embedding's latents to the
    zip ``out`` (written atomically); returns the manifest."""
    if not store.has_run(run_id):
        raise PlintError(f"no finished run {run_id!r} in {store.root}: list the runs to see which exist")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise PlintError(f"--out {str(out)!r} must end in .zip")
    result = store.load_run(run_id)
    parts: dict[str, Path] = {f"runs/{run_id}": store.run_dir(run_id)}
    embedding_key = result.get("embedding_key")
    embedding_meta = None
    if embedding_key and store.has_embedding(embedding_key):
        embedding_meta = _read_json(store.embedding_dir(embedding_key) / EMBEDDING_META, "the embedding's meta.json")
        if not {"data_fingerprint", "model_fingerprint"} <= set(embedding_meta):
            raise PlintError(f"embedding {embedding_key} was stored by an earlier plint that did not record the data "
                             "and model fingerprints, so an importer could not check it: delete "
                             f"{store.embedding_dir(embedding_key)} and run again to store it anew, then export")
        parts[f"embeddings/{embedding_key}"] = store.embedding_dir(embedding_key)
    else:
        embedding_key = None  # a projected (replicated) embedding is not stored as such: the run goes alone
    latents_key = embedding_meta.get("latents") if embedding_meta and latents else None
    if latents_key and store.has_latents(latents_key):
        parts[f"latents/{latents_key}"] = store.latents_dir(latents_key)
    else:
        latents_key = None
    manifest = {
        "format": FORMAT, "version": VERSION, "run_id": run_id, "embedding_key": embedding_key,
        "latents_key": latents_key,
        "data_fingerprint": embedding_meta.get("data_fingerprint") if embedding_meta else None,
        "model_fingerprint": result.get("model_fingerprint"),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(),
    }

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
            for prefix, folder in parts.items():
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        zf.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")

    write_atomic(out, write)
    return manifest


def import_run(archive: str | Path, store: RunStore, expected: Expected | None = None) -> ImportReport:
    """Check the archive ``archive`` (written by :func:`export_run`) and put its parts into ``store``.

    With ``expected`` (the importing project's fingerprints) a run made on
    other data or another model is refused with a message saying which differs.
    Raises :class:`~plint_core.errors.PlintError` and writes nothing to
    ``store`` if anything is wrong.
    """
    archive = Path(archive)
    name = archive.name
    with tempfile.TemporaryDirectory(prefix="plint-import-", dir=scratch_dir()) as scratch:
        root = extract_zip(archive, Path(scratch) / "run", LIMITS)
        manifest = _manifest(root, name)
        run_id, embedding_key, latents_key = manifest["run_id"], manifest["embedding_key"], manifest["latents_key"]
        parts = {"run": (f"runs/{run_id}", store.run_dir(run_id))}
        if embedding_key:
            parts["embedding"] = (f"embeddings/{embedding_key}", store.embedding_dir(embedding_key))
        if latents_key:
            parts["latents"] = (f"latents/{latents_key}", store.latents_dir(latents_key))
        _only_parts(root, [prefix for prefix, _ in parts.values()], name)
        result = _check_run(root / "runs" / run_id, run_id, embedding_key, name)
        meta = _check_embedding(root / "embeddings" / embedding_key, embedding_key, result, latents_key,
                                name) if embedding_key else None
        if latents_key:
            _check_latents(root / "latents" / latents_key, latents_key, meta, name)
        if expected is not None:
            _check_expected(expected, result, meta, name)
        report = ImportReport(run_id, result)
        for part in ("latents", "embedding", "run"):  # the run last: never stored without its embedding
            if part not in parts:
                continue
            prefix, final = parts[part]
            have = (final / (RESULT if part == "run" else EMBEDDING_META)).is_file()
            if have:
                report.present.append(part)
                continue
            source = root / prefix
            store.write(final, lambda tmp, source=source: _move_contents(source, tmp))
            report.added.append(part)
        return report


@dataclass
class EmbeddingImport:
    """What :func:`import_embedding` found and did."""

    key: str
    meta: dict
    """The embedding's ``meta.json``."""
    added: list[str] = field(default_factory=list)
    """The parts published into the store (``embedding``, ``latents``)."""
    present: list[str] = field(default_factory=list)
    """The parts the store held already (left as they were)."""


def export_embedding(store: RunStore, key: str, out: str | Path, *, latents: bool = True) -> dict:
    """Write embedding ``key`` of ``store`` and (with ``latents``) its latents to the zip ``out`` (written
    atomically, entries in a fixed order with fixed times, so the same embedding gives the same bytes); returns
    the manifest."""
    if not store.has_embedding(key):
        raise PlintError(f"no embedding {key!r} in {store.root}")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise PlintError(f"{str(out)!r} must end in .zip")
    meta = _read_json(store.embedding_dir(key) / EMBEDDING_META, "the embedding's meta.json")
    if not {"data_fingerprint", "model_fingerprint"} <= set(meta):
        raise PlintError(f"embedding {key} was stored by an earlier plint that did not record the data and model "
                         f"fingerprints, so an importer could not check it: delete {store.embedding_dir(key)} and "
                         "fit it again")
    parts: dict[str, Path] = {f"embeddings/{key}": store.embedding_dir(key)}
    latents_key = meta.get("latents") if latents else None
    if latents_key and store.has_latents(latents_key):
        parts[f"latents/{latents_key}"] = store.latents_dir(latents_key)
    else:
        latents_key = None
    manifest = {"format": EMBEDDING_FORMAT, "version": VERSION, "embedding_key": key, "latents_key": latents_key,
                **{f: meta.get(f) for f in ("data", "model", "data_fingerprint", "model_fingerprint", "layer", "seed",
                                            "tsne")}}

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr(zipfile.ZipInfo(MANIFEST, _FIXED_TIME), json.dumps(manifest, indent=2) + "\n",
                        compress_type=zipfile.ZIP_DEFLATED)
            for prefix, folder in parts.items():
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        info = zipfile.ZipInfo(f"{prefix}/{path.relative_to(folder).as_posix()}", _FIXED_TIME)
                        zf.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)

    write_atomic(out, write)
    return manifest


def import_embedding(archive: str | Path, store: RunStore, expected: Expected | None = None) -> EmbeddingImport:
    """Check the archive ``archive`` (written by :func:`export_embedding`) and put its parts into ``store``.

    Checked like a run archive: limits, manifest, expected files, the key computed again from the settings and
    fingerprints ``meta.json`` records, the latents' key and owner; with ``expected``, the fingerprints of the
    importing project's data and model. Raises :class:`~plint_core.errors.PlintError` and writes nothing to
    ``store`` if anything is wrong; the latents are published before the embedding.
    """
    archive = Path(archive)
    name = archive.name
    with tempfile.TemporaryDirectory(prefix="plint-import-", dir=scratch_dir()) as scratch:
        root = extract_zip(archive, Path(scratch) / "embedding", LIMITS)
        manifest = _manifest(root, name, EMBEDDING_FORMAT)
        key, latents_key = manifest["embedding_key"], manifest["latents_key"]
        parts = {"embedding": (f"embeddings/{key}", store.embedding_dir(key))}
        if latents_key:
            parts["latents"] = (f"latents/{latents_key}", store.latents_dir(latents_key))
        _only_parts(root, [prefix for prefix, _ in parts.values()], name, EMBEDDING_FORMAT)
        meta = _check_embedding_part(root / "embeddings" / key, key, latents_key, name, EMBEDDING_FORMAT)
        if latents_key:
            _check_latents(root / "latents" / latents_key, latents_key, meta, name, EMBEDDING_FORMAT)
        if expected is not None:
            _check_expected(expected, {}, meta, name)
        report = EmbeddingImport(key, meta)
        for part in ("latents", "embedding"):  # the embedding last: never stored without the latents it names
            if part not in parts:
                continue
            prefix, final = parts[part]
            if (final / EMBEDDING_META).is_file():
                report.present.append(part)
                continue
            source = root / prefix
            store.write(final, lambda tmp, source=source: _move_contents(source, tmp))
            report.added.append(part)
        return report


# ------------------------------------------------------------------------------------------------ checks
def _bad(name: str, what: str, kind: str = FORMAT) -> PlintError:
    noun = "run" if kind == FORMAT else "embedding"
    return PlintError(f"{name} is not a plint {noun} export: {what}. {_REDO[kind]}")


def _read_json(path: Path, what: str, name: str | None = None, kind: str = FORMAT) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise (_bad(name, f"{what} is missing", kind) if name else PlintError(f"{what} ({path}) is missing")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise (_bad(name, f"{what} cannot be read ({exc})", kind) if name
               else PlintError(f"{what} ({path}) cannot be read: {exc}")) from None
    if not isinstance(value, dict):
        raise _bad(name or str(path), f"{what} is not a JSON object", kind)
    return value


def _manifest(root: Path, name: str, kind: str = FORMAT) -> dict:
    m = _read_json(root / MANIFEST, MANIFEST, name, kind)
    if m.get("format") != kind:
        raise _bad(name, f"its {MANIFEST} names format {m.get('format')!r}, not {kind!r}", kind)
    version = m.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(name, f"its {MANIFEST} has no valid version", kind)
    if version > VERSION:
        raise PlintError(f"{name} was written by a newer plint (archive version {version}; this one reads up to "
                         f"{VERSION}): update plint here, or export it with the same version")
    if kind == FORMAT and (not isinstance(m.get("run_id"), str) or not _KEY.match(m["run_id"])):
        raise _bad(name, f"its {MANIFEST} has no valid run id", kind)
    if kind == EMBEDDING_FORMAT and not m.get("embedding_key"):
        raise _bad(name, f"its {MANIFEST} names no embedding", kind)
    for key in ("embedding_key", "latents_key"):
        value = m.get(key)
        if value is not None and (not isinstance(value, str) or not _KEY.match(value)):
            raise _bad(name, f"its {MANIFEST} has an invalid {key}", kind)
    if m.get("latents_key") and not m.get("embedding_key"):
        raise _bad(name, "it has latents but no embedding", kind)
    return m


def _only_parts(root: Path, prefixes: list[str], name: str, kind: str = FORMAT) -> None:
    allowed = [PurePosixPath(p) for p in prefixes]
    for path in root.rglob("*"):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if rel == PurePosixPath(MANIFEST) or any(rel == a or a in rel.parents or rel in a.parents for a in allowed):
            continue
        raise _bad(name, f"it holds {str(rel)!r}, which belongs to no part its {MANIFEST} names", kind)


def _need_files(folder: Path, names: tuple[str, ...], what: str, name: str, kind: str = FORMAT) -> None:
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise _bad(name, f"{what} lacks {', '.join(missing)}", kind)


def _check_run(folder: Path, run_id: str, embedding_key: str | None, name: str) -> dict:
    _need_files(folder, RUN_FILES, f"run {run_id}", name)
    result = _read_json(folder / RESULT, f"run {run_id}'s {RESULT}", name)
    for key, kind in (("run_id", str), ("embedding_key", str), ("spec", dict), ("finetune", dict),
                      ("accuracy", dict), ("confusion", dict), ("classes", list)):
        if not isinstance(result.get(key), kind):
            raise _bad(name, f"run {run_id}'s {RESULT} has no valid {key!r}")
    if result["run_id"] != run_id:
        raise _bad(name, f"its {MANIFEST} names run {run_id} but the run's {RESULT} says {result['run_id']}")
    if embedding_key is not None and result["embedding_key"] != embedding_key:
        raise _bad(name, f"its run was made on embedding {result['embedding_key']}, not on the {embedding_key} "
                         "it holds")
    spec_dict = _read_json(folder / "spec.json", f"run {run_id}'s spec.json", name)
    try:
        spec = InterventionSpec.from_dict(spec_dict).to_dict()
    except (PlintError, ValueError, TypeError, KeyError) as exc:
        raise _bad(name, f"run {run_id}'s spec.json is not a valid spec ({exc})") from None
    if spec != result["spec"] or run_key_of(result["embedding_key"], spec, result["finetune"]) != run_id:
        raise PlintError(f"{name}: run {run_id}'s spec or settings do not give its run id (edited after the run?); "
                         "nothing was imported. Export the run again from its own store")
    try:
        with np.load(folder / "train_targets.npz", allow_pickle=False) as t:
            if not {"targets", "moved"} <= set(t.files):
                raise ValueError("it lacks 'targets' or 'moved'")
    except (OSError, ValueError) as exc:
        raise _bad(name, f"run {run_id}'s train_targets.npz cannot be read ({exc})") from None
    if (folder / "path.npz").exists() or result.get("path"):  # a run that recorded its path (plint_core.path)
        try:
            with np.load(folder / "path.npz", allow_pickle=False) as z:
                needed = {"moved_rows"} | {f"{run}_{part}" for run in ("pli", "control")
                                           for part in ("steps", "test_pred", "test_xy", "moved_xy")}
                if not needed <= set(z.files):
                    raise ValueError(f"it lacks {sorted(needed - set(z.files))[0]!r}")
                if len(z["pli_steps"]) != len((result.get("path") or {}).get("pli") or []):
                    raise ValueError("its checkpoints are not those of the run's result.json")
        except (OSError, ValueError) as exc:
            raise _bad(name, f"run {run_id}'s path.npz cannot be read ({exc})") from None
    return result


def _check_embedding(folder: Path, key: str, result: dict, latents_key: str | None, name: str) -> dict:
    meta = _check_embedding_part(folder, key, latents_key, name)
    if meta["layer"] != result.get("layer"):
        raise _bad(name, f"its run uses layer {result.get('layer')!r} but its embedding {meta['layer']!r}")
    return meta


def _check_embedding_part(folder: Path, key: str, latents_key: str | None, name: str, kind: str = FORMAT) -> dict:
    """An archive's ``embeddings/<key>/``: its files, its key from its settings, its latents' key; its meta."""
    _need_files(folder, EMBEDDING_FILES, f"embedding {key}", name, kind)
    meta = _read_json(folder / EMBEDDING_META, f"embedding {key}'s {EMBEDDING_META}", name, kind)
    fields = ("data_fingerprint", "model_fingerprint", "layer", "seed", "tsne")
    if any(f not in meta for f in fields) or meta.get("key") != key:
        raise _bad(name, f"embedding {key}'s {EMBEDDING_META} lacks its key, fingerprints or settings", kind)
    if embedding_key_of(meta["data_fingerprint"], meta["model_fingerprint"], meta["layer"], meta["seed"],
                        meta["tsne"]) != key:
        raise PlintError(f"{name}: embedding {key}'s settings do not give its key (edited after it was fitted?); "
                         f"nothing was imported. {_AGAIN[kind]}")
    if latents_key is not None and meta.get("latents") != latents_key:
        raise _bad(name, f"its latents {latents_key} are not those of its embedding", kind)
    try:
        with np.load(folder / "coords.npz", allow_pickle=False) as c:
            if not {"train_xy", "test_xy", "train_pred", "test_pred"} <= set(c.files):
                raise ValueError("it lacks some coordinates")
    except (OSError, ValueError) as exc:
        raise _bad(name, f"embedding {key}'s coords.npz cannot be read ({exc})", kind) from None
    return meta


def _check_latents(folder: Path, key: str, embedding: dict, name: str, kind: str = FORMAT) -> None:
    meta = _read_json(folder / EMBEDDING_META, f"latents {key}'s {EMBEDDING_META}", name, kind)
    if meta.get("key") != key:
        raise _bad(name, f"latents {key}'s {EMBEDDING_META} names another key", kind)
    if latents_key_of(meta) != key or any(meta.get(f) != embedding.get(f) for f in
                                           ("data_fingerprint", "model_fingerprint", "layer")):
        raise PlintError(f"{name}: latents {key} do not belong to its embedding, or their settings do not give "
                         f"their key (edited?); nothing was imported. {_AGAIN[kind]}")
    arrays = sorted(folder.glob("*.npy"))
    if not {"train", "test", "train_pred", "test_pred"} <= {p.stem for p in arrays}:
        raise _bad(name, f"latents {key} lack train or test arrays", kind)
    for path in arrays:
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _bad(name, f"latents {key}'s {path.name} cannot be read ({exc})", kind) from None


def _check_expected(expected: Expected, result: dict, meta: dict | None, name: str) -> None:
    model = result.get("model_fingerprint") or (meta or {}).get("model_fingerprint")
    if model is None:
        raise _bad(name, "its run records no model fingerprint to check against this project")
    if model != expected.model:
        raise PlintError(f"{name} was computed with a different model (weights fingerprint {model[:12]}…, this "
                         f"project's model is {expected.model[:12]}…): open the model the run was made with, then "
                         "import it")
    base = (meta or {}).get("data_fingerprint")
    run_data = result.get("data_fingerprint")
    mine_run = expected.run_data or expected.data
    if (base is not None and base != expected.data) or (run_data is not None and run_data != mine_run) or (
            base is None and run_data is None):
        theirs = (base or run_data or "none recorded")[:12]
        raise PlintError(f"{name} was computed on different data (data fingerprint {theirs}…, this project's data "
                         f"is {expected.data[:12]}…): open the data set the run was made on, then import it")


def _move_contents(source: Path, dest: Path) -> None:
    for child in source.iterdir():
        shutil.move(str(child), str(dest / child.name))
