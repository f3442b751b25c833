"""The run store: finished embeddings and runs, each in a folder named by its key.

A key is a hash of everything that determines the result, so asking for the
same thing again finds it. Folders are written under a hidden staging name and
renamed into place as the last step: a run killed half-way leaves only a
``.tmp-*`` folder, which nothing lists or loads and which is swept later.

Layout under the root (default ``runs/``)::

    latents/<key>/      meta.json, train.npy, train_pred.npy, test.npy, test_pred.npy (+ val),
                        memory-mapped when read
    embeddings/<key>/   meta.json, coords.npz, embedder/
    runs/<key>/         result.json, spec.json, finetuned.safetensors (+ .json sidecar),
                        control.safetensors (+ .json), embedder/, test_embedding.csv,
                        train_targets.npz
    baselines/<key>/    result.json, baseline.safetensors (+ .json), test_predictions.npz
    flags/<key>.json    a project's flags on images (:class:`plint_core.flags.FlagBook`; a file, changed in place
                        atomically under its lock file ``.<key>.json.lock``)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from .atomic import publish_dir, staging_dir
from .errors import PlintError

DEFAULT_ROOT = "runs"
STALE_SECONDS = 24 * 3600
RESULT = "result.json"
EMBEDDING_META = "meta.json"


def make_key(parts: dict[str, Any]) -> str:
    """A 20-hex-digit SHA-256 key of ``parts`` (JSON with sorted keys)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunStore:
    """Finished embeddings and runs under ``root``."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)

    def latents_dir(self, key: str) -> Path:
        return self.root / "latents" / key

    def has_latents(self, key: str) -> bool:
        return (self.latents_dir(key) / EMBEDDING_META).is_file()

    def embedding_dir(self, key: str) -> Path:
        return self.root / "embeddings" / key

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise PlintError(f"{run_id!r} is not a run id")
        return self.root / "runs" / run_id

    def baseline_dir(self, key: str) -> Path:
        """A finished baseline run (:func:`plint_core.pipeline.run_baseline`): kept apart from the PLI runs, which
        the run history lists."""
        return self.root / "baselines" / self.run_dir(key).name

    def has_embedding(self, key: str) -> bool:
        return (self.embedding_dir(key) / EMBEDDING_META).is_file()

    def has_run(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RESULT).is_file()

    def write(self, final_dir: Path, fill: Callable[[Path], None]) -> Path:
        """Create ``final_dir`` by calling ``fill(staging)`` and renaming staging into place; stale leftovers
        of killed writes beside it are swept first."""
        if final_dir.parent.is_dir():
            self._sweep(final_dir.parent)
        tmp = staging_dir(final_dir)
        try:
            fill(tmp)
            return publish_dir(tmp, final_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def list_runs(self) -> list[dict]:
        """The ``result.json`` of every finished run, newest first."""
        base = self.root / "runs"
        if base.is_dir():
            self._sweep(base)
        return self._results(base)

    def list_baselines(self) -> list[dict]:
        """The ``result.json`` of every finished baseline run (:func:`plint_core.pipeline.run_baseline`), newest
        first."""
        return self._results(self.root / "baselines")

    @staticmethod
    def _results(base: Path) -> list[dict]:
        """The readable ``result.json`` of the finished folders under ``base``, newest first."""
        if not base.is_dir():
            return []
        results = []
        for d in base.iterdir():
            if d.name.startswith(".") or not (d / RESULT).is_file():
                continue
            try:
                results.append(json.loads((d / RESULT).read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(results, key=lambda r: r.get("created", ""), reverse=True)

    def load_run(self, run_id: str) -> dict:
        """The ``result.json`` of run ``run_id``."""
        path = self.run_dir(run_id) / RESULT
        if not path.is_file():
            raise PlintError(f"no finished run {run_id!r} in {self.root}: list the runs to see which exist")
        return json.loads(path.read_text(encoding="utf-8"))

    def delete_run(self, run_id: str) -> None:
        """Remove run ``run_id`` (renamed away first, so it never looks half-deleted)."""
        d = self.run_dir(run_id)
        if not d.is_dir():
            raise PlintError(f"no run {run_id!r} in {self.root}")
        trash = d.with_name(f".tmp-deleted-{run_id}-{time.time_ns()}")
        d.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def _sweep(base: Path) -> None:
        """Remove staging and replaced folders (``.tmp-*``, ``.trash-*``) of killed writes in ``base`` untouched
        for :data:`STALE_SECONDS` (a live write is younger)."""
        now = time.time()
        for d in [*base.glob(".tmp-*"), *base.glob(".trash-*")]:
            try:
                if now - d.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass
