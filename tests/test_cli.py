"""The CLI contract end to end on digits: embed, run, run again (cache hit), and exit 2 on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from plint_core.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plint_core", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, demo_runs):
    base = tmp_path_factory.mktemp("cli")
    out = base / "emb"
    proc = cli("embed", "--data", "digits", "--model", "demo", "--out", str(out), "--runs-dir", str(demo_runs), "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    return base, demo_runs, out


@pytest.mark.numerics
def test_embed_writes_the_contract_files(embedded, digits):
    _, _, out = embedded
    table = pd.read_csv(out / "embedding.csv")
    assert list(table.columns) == ["id", "split", "label", "pred", "x", "y"]
    assert (table.split == "train").sum() == len(digits.train) and (table.split == "test").sum() == len(digits.test)
    np.testing.assert_array_equal(table[table.split == "train"].label, digits.train.labels)
    latents = np.load(out / "latents.npy")
    assert latents.dtype == np.float32 and latents.shape == (len(table), 10)
    quality = json.loads((out / "embedding_quality.json").read_text())
    assert set(quality) >= {"knn_acc10", "knn_recall10", "trustworthiness5", "fit_seconds"}
    # The demo embedding (default t-SNE, seed 0) measured knn_acc10 0.989-0.994 and trustworthiness5 0.989 under
    # ATEN_CPU_CAPABILITY default / avx2 / avx512 (2026-12-03): the bounds leave 0.09.
    assert quality["knn_acc10"] > 0.9 and quality["trustworthiness5"] > 0.9


SMALL_TSNE = {"n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 25, "hidden": [64, 64]}
"""A small t-SNE preset for the refit check: the mechanism (same inputs, same bits) is the default config's."""


@pytest.mark.numerics
def test_embed_in_a_fresh_runs_dir_refits_identical_coordinates(digits, demo, tmp_path):
    """A refit in another process, in an empty runs folder, gives the coordinates of a fit in this process: bitwise
    on the same machine and kernels (the subprocess inherits ATEN_CPU_CAPABILITY and conftest's one torch thread).
    Both fits are made here and now, never compared with an embedding fitted or shipped from another machine."""
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.pipeline import prepare_embedding
    from plint_core.store import RunStore

    here = prepare_embedding(digits, demo, seed=0, config=TSNEConfig(**SMALL_TSNE), store=RunStore(tmp_path / "here"),
                             device="cpu")
    fresh = cli("embed", "--tsne-config", json.dumps(SMALL_TSNE), "--data", "digits", "--model", "demo",
                "--out", str(tmp_path / "fresh"), "--runs-dir", str(tmp_path / "fresh_runs"))
    assert fresh.returncode == 0 and "cached embedding" not in fresh.stderr, fresh.stderr
    table = pd.read_csv(tmp_path / "fresh" / "embedding.csv")
    xy = table[["x", "y"]].to_numpy().astype(np.float32)  # float32 written in its shortest round-trip form
    np.testing.assert_array_equal(xy[: len(digits.train)], here.train_xy)
    np.testing.assert_array_equal(xy[len(digits.train):], here.test_xy)


def test_run_then_run_again_is_a_cache_hit(embedded):
    base, runs, out = embedded
    train = pd.read_csv(out / "embedding.csv").query("split == 'train'")
    ids = train[(train.x > train.x.median()) & (train.label == 3)].id.astype(int).tolist()
    spec = {"moves": [{"select": {"ids": ids}, "translate": [-4.0, 0.0], "contract": 0.8}]}
    (base / "spec.json").write_text(json.dumps(spec))
    # One epoch on a 400-point subset (the moved points included): the contract, not the fine-tuning, is checked.
    args = ["run", "--data", "digits", "--model", "demo", "--spec", str(base / "spec.json"), "--runs-dir", str(runs),
            "--epochs", "1", "--train-points", "400"]
    first = cli(*args, "--out", str(base / "r1"))
    assert first.returncode == 0, first.stderr
    result = json.loads((base / "r1" / "result.json").read_text())
    for key in ("accuracy", "confusion", "per_class", "target_distance"):
        assert set(result[key]) == {"before", "after", "control"}
    assert {"device", "seconds", "cache_hit", "run_id"} <= set(result)
    assert result["cache_hit"] is False and result["device"] == "cpu"
    assert result["executor"] == "local" and "compute_seconds" not in result  # computed in a worker process
    assert "pli epoch " in first.stderr and "(cached run)" not in first.stderr, "the worker's progress is shown"
    assert "done:" not in first.stderr
    assert np.asarray(result["confusion"]["after"]).sum() == 360
    assert result["n_moved"] == len(ids)
    second = cli(*args, "--out", str(base / "r2"))
    again = json.loads((base / "r2" / "result.json").read_text())
    assert second.returncode == 0 and again["cache_hit"] is True and again["run_id"] == result["run_id"]
    assert "(cached run)" in second.stderr
    assert again["accuracy"] == result["accuracy"]
    listed = cli("runs", "list", "--runs-dir", str(runs))
    assert result["run_id"] in listed.stdout


def test_train_writes_weights_and_sidecar(tmp_path):
    out = tmp_path / "m.pt"
    assert main(["train", "--data", "digits", "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 0
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["arch"] == "plint-cnn"


def _one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["embed", "--data", "nope.npz", "--model", "demo", "--out", "x"], "does not exist"),
    (["embed", "--data", "digits", "--model", "nope.pt", "--out", "x"], "model file 'nope.pt' does not exist"),
    (["embed", "--data", "digits", "--model", "demo", "--out", "x", "--layer", "fc9"], "unknown layer 'fc9'"),
    (["train", "--data", "digits", "--out", "m.txt"], "must end in .pt"),
    (["run", "--data", "digits", "--model", "demo", "--out", "x", "--spec", "missing.json"], "does not exist"),
    (["run", "--data", "digits", "--model", "demo", "--out", "x", "--spec", "SPEC", "--lam", "2"], "lam is 2.0"),
    (["runs", "show", "--runs-dir", "RUNS"], "needs a run id"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, argv, fragment):
    spec = tmp_path / "spec.json"
    spec.write_text('{"moves": [{"select": {"classes": [1]}, "translate": [1, 0]}]}')
    argv = [str(spec) if a == "SPEC" else str(tmp_path) if a == "RUNS" else a for a in argv]
    _one_line_error(capsys, argv, fragment)


@pytest.mark.parametrize("spec_text, fragment", [
    ('{"moves": [{"select": {"classes": [12]}, "translate": [1, 0]}]}', "unknown class index 12"),
    ('{"moves": [{"select": {"ids": [1]}, "translate": [NaN, 0]}]}', "NaN"),
    ('{"moves": [{"select": {"ids": [1]}, "contract": 0}]}', "(0, 1]"),
    ('{"moves": [', "not valid JSON"),
])
def test_bad_specs_exit_2_with_one_line(embedded, capsys, spec_text, fragment):
    base, runs, _ = embedded
    spec = base / "bad_spec.json"
    spec.write_text(spec_text)
    _one_line_error(capsys, ["run", "--data", "digits", "--model", "demo", "--spec", str(spec), "--out",
                             str(base / "bad"), "--runs-dir", str(runs)], fragment)
    assert not (base / "bad" / "result.json").exists()


@pytest.mark.parametrize("text, fragment", [("{n_iter: 5}", "--tsne-config is not valid JSON"),
                                            ("[1]", "--tsne-config must be a JSON object"),
                                            ('{"n_itre": 5}', "--tsne-config is invalid: TSNEConfig: unknown keys")])
def test_bad_tsne_config_is_one_line(capsys, tmp_path, text, fragment):
    _one_line_error(capsys, ["embed", "--data", "digits", "--model", "demo", "--out", str(tmp_path / "e"),
                             "--runs-dir", str(tmp_path / "runs"), "--tsne-config", text], fragment)
    assert not (tmp_path / "runs").exists()


def test_moved_per_batch_reaches_the_run_and_a_bad_value_is_one_line():
    from plint_core.cli import build_parser
    from plint_core.finetune import FinetuneConfig

    argv = ["run", "--data", "digits", "--model", "demo", "--spec", "s.json", "--out", "x"]
    assert build_parser().parse_args(argv).moved_per_batch == FinetuneConfig.moved_per_batch == 8
    assert build_parser().parse_args([*argv, "--moved-per-batch", "8"]).moved_per_batch == 8
    proc = cli(*argv, "--moved-per-batch", "-2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a number of moved rows" in proc.stderr


def test_argparse_errors_are_one_line_too():
    proc = cli("embed", "--data", "digits")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "required" in proc.stderr


def test_threads_option_sets_torch_threads(capsys):
    import torch

    try:
        assert main(["layers", "--model", "demo", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        assert "logits" in capsys.readouterr().out
    finally:
        torch.set_num_threads(1)  # the suite's setting (conftest)
    proc = cli("layers", "--model", "demo", "--threads", "many")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a number of threads" in proc.stderr
