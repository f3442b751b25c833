"""Runs carried between machines from the Fine-tune page (:mod:`plint_core.runs.archive`).

A run computed where there is a GPU is downloaded as one ``.zip`` (*Download
run*) and uploaded on another server's Fine-tune page (*Import a run*), where
it is checked against that session's project before it enters the run store.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from plint_core.runs.archive import Expected, ImportReport, export_run, import_run
from plint_core.scratch import scratch_dir
from plint_core.workspace import MAX_UPLOAD_BYTES, Workspace

from .project import Project
from .sources import Upload


def expected_of(proj: Project) -> Expected:
    """The fingerprints an imported run must carry to belong to ``proj``."""
    return Expected.of(proj.base_data, proj.bundle, None if proj.data is proj.base_data else proj.data)


def import_upload(proj: Project, workspace: Workspace, upload: Upload, max_bytes: int = MAX_UPLOAD_BYTES
                  ) -> ImportReport:
    """Check the uploaded run archive against ``proj`` and put it into ``proj``'s run store (raises
    ``PlintError`` and stores nothing otherwise); the upload itself is not kept."""
    upload.seek(0)
    path = workspace.save_upload(upload.name, upload, max_bytes=max_bytes)
    try:
        return import_run(path, proj.store, expected_of(proj))
    finally:
        path.unlink(missing_ok=True)


def export_bytes(proj: Project, run_id: str) -> bytes:
    """Run ``run_id`` of ``proj``'s store as a run archive (built when the user asks for it)."""
    with tempfile.TemporaryDirectory(prefix="plint-export-", dir=scratch_dir()) as tmp:
        out = Path(tmp) / f"plint-run-{run_id}.zip"
        export_run(proj.store, run_id, out)
        return out.read_bytes()
