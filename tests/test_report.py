"""The self-contained HTML report of a run: ``runs report`` and what the file holds."""
from __future__ import annotations

import base64
import json
import re

import numpy as np

from plint_core import __version__
from plint_core.cli import main
from plint_core.data.loading import load_data
from plint_core.pipeline import load_run
from plint_core.report.html import render_report
from plint_core.store import RunStore

pytest_plugins = ("app_fixtures",)  # stored_run: class 3 moved on the digits, in the app tests' run store


def test_runs_report_writes_one_self_contained_file(app_runs, stored_run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["runs", "report", stored_run.run_id, "--out", str(out), "--runs-dir", str(app_runs)]) == 0
    assert "wrote" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size <= 5_300_000, "the digits report fits in 5.3 MB (4.9 MB before the path's animation)"
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text), \
        "no external script or stylesheet"
    # 3 matrices, 2 differences, the validation curves, the trade-off path, the path's animation and the test
    # embedding; plotly.js inlined once
    assert text.count("Plotly.newPlot(") == 9 and text.count("plotly.js v") == 1
    assert "Trade-off path" in text and "The map while the PLI run trained" in text and "addFrames" in text
    assert stored_run.run_id in text and f"plint {__version__}" in text
    assert text.count('<img alt="moved images of move 1" src="data:image/png;base64,') == 1, "the move's thumbnails"
    moved = int(np.asarray(stored_run.moved).sum())
    assert f"24 of the {moved:,} images this move selects" in text
    for label in ("Before fine-tuning", "After PLI fine-tuning", "Control (CE only)", "Per-class precision",
                  "Targeted pair", "Settings", "λ (embedding term)"):
        assert label in text


def test_report_figures_are_the_runs(stored_run):
    run = stored_run
    data = load_data("digits")
    text = render_report(run.result, run.test_embedding, train_targets=run.train_targets, moved=run.moved, data=data)
    after = np.array(run.result["confusion"]["after"])
    # the PLI heatmap's z values, as plotly writes them into the page (a typed array, base64)
    call = text[text.index("Plotly.newPlot(", text.index('id="confusion-after"')):]
    traces, _ = json.JSONDecoder().raw_decode(call[call.index("["):])
    z = traces[0]["z"]
    heat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(after.shape)
    np.testing.assert_array_equal(heat, after)
    acc = run.result["accuracy"]["after"]
    assert f"{acc:.4f}" in text


def test_report_refuses_other_data_and_says_what_to_do(app_runs, stored_run, tmp_path, capsys):
    other = tmp_path / "other.npz"
    rng = np.random.default_rng(0)
    np.savez(other, train_images=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), train_labels=np.arange(20) % 2,
             test_images=rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), test_labels=np.arange(6) % 2)
    out = tmp_path / "r.html"
    assert main(["runs", "report", stored_run.run_id, "--out", str(out), "--runs-dir", str(app_runs),
                 "--data", str(other)]) == 2
    assert "is not the data set run" in capsys.readouterr().err and not out.exists()
    assert main(["runs", "report", "nosuchrun", "--out", str(out), "--runs-dir", str(app_runs)]) == 2
    assert "no finished run 'nosuchrun'" in capsys.readouterr().err
    assert main(["runs", "report", stored_run.run_id, "--runs-dir", str(app_runs)]) == 2
    assert "needs --out report.html" in capsys.readouterr().err
    assert len(RunStore(app_runs).list_runs()) >= 1 and load_run(RunStore(app_runs), stored_run.run_id)


def test_a_report_of_a_picked_checkpoint_shows_that_checkpoint(app_runs, stored_run, tmp_path, capsys):
    """``runs report --step 0``: the PLI checkpoint at step 0 (the starting weights) is what the report shows,
    and it says it was picked; an unknown step is one clear error and writes nothing."""
    out = tmp_path / "step0.html"
    assert main(["runs", "report", stored_run.run_id, "--out", str(out), "--runs-dir", str(app_runs),
                 "--step", "0"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "picked by the user" in text and "PLI checkpoint of step 0" in text
    before = stored_run.result["accuracy"]["before"]
    assert text.count(f"<b>{before:.4f}</b>") == 2, "after PLI shows the accuracy before fine-tuning"
    capsys.readouterr()
    bad = tmp_path / "bad.html"
    assert main(["runs", "report", stored_run.run_id, "--out", str(bad), "--runs-dir", str(app_runs),
                 "--step", "7"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint at step 7" in err and err.count("\n") == 1 and not bad.exists()
