"""Bring your own classifier: TorchScript, torchvision state_dicts, plint's CNN without sidecar, refusals,
and the CLI end to end (embed + run) on image folders and zips."""
from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from own_data import (
    CLASSES,
    WritesAFile,
    files_under,
    save_scripted,
    save_torchscript,
    write_evil_pickle,
    write_image_folder,
    zip_folder,
)
from safetensors.torch import save_file
from torch import nn

from plint_core.cli import main
from plint_core.errors import PlintError
from plint_core.inputs import open_inputs
from plint_core.latents import extract_latents, list_layers, predict, resolve_layer
from plint_core.models.sources import IMAGENET_MEAN, OUTPUT_LAYER, ModelOptions, load_classifier, load_model
from plint_core.models.torchvision_models import build_torchvision
from plint_core.models.weights import save_model, state_fingerprint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Shared inputs: a gray image folder, an RGB split folder zipped, a TorchScript CNN, resnet18 weights."""
    base = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    resnet = build_torchvision("resnet18", 3).eval()
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, str(base / "resnet18.safetensors"))
    return {
        "base": base,
        "folder": write_image_folder(base / "fruit"),
        "zip": zip_folder(write_image_folder(base / "fruit_rgb", rgb=True, split=True), base / "fruit_rgb.zip"),
        "ts": save_torchscript(base / "cnn.pt"),
        "resnet": base / "resnet18.safetensors",
        "resnet_module": resnet,
    }


# ---------------------------------------------------------------- TorchScript

@pytest.mark.parametrize("trace", [False, True])
def test_torchscript_exposes_its_output_as_the_only_layer(tmp_path, files, trace):
    path = save_torchscript(tmp_path / "m.ts", trace=trace)
    bundle = load_classifier(path, input_size=(16, 16), channels=1, classes=CLASSES)
    assert bundle.spec.arch == "torchscript" and bundle.spec.input_shape == (1, 16, 16)
    assert [(i.name, i.output_shape) for i in list_layers(bundle)] == [(OUTPUT_LAYER, (3,))]
    images = np.random.default_rng(0).random((5, 1, 16, 16), dtype=np.float32)
    with torch.no_grad():
        logits = bundle.module(bundle.preprocess(images)).numpy()
    np.testing.assert_allclose(extract_latents(bundle, images), logits, atol=1e-6)
    with pytest.raises(PlintError, match="unknown layer 'fc1'.*TorchScript model exposes only its output"):
        resolve_layer(bundle, "fc1")


def test_torchscript_copies_are_trainable_and_independent(files):
    bundle = load_classifier(files["ts"], input_size=(16, 16), channels=1)
    clone = copy.deepcopy(bundle.module).train()
    assert all(p.is_leaf and p.requires_grad for p in clone.parameters())
    opt = torch.optim.SGD(clone.parameters(), lr=0.1)
    clone(torch.randn(4, 1, 16, 16)).sum().backward()
    opt.step()
    assert state_fingerprint(clone) != state_fingerprint(bundle.module)
    assert state_fingerprint(bundle.module) == state_fingerprint(load_classifier(files["ts"], input_size=(16, 16),
                                                                                  channels=1).module)


def test_torchscript_sidecar_states_shape_classes_and_normalisation(tmp_path):
    side = {"classes": list(CLASSES), "input_shape": [1, 16, 16], "mean": [0.5], "std": [0.25]}
    path = save_torchscript(tmp_path / "m.ts", sidecar=side)
    bundle = load_classifier(path)
    assert bundle.spec.classes == CLASSES and bundle.spec.mean == (0.5,) and bundle.spec.std == (0.25,)
    other = load_classifier(path, mean=(0.4,))
    assert other.spec.mean == (0.4,) and other.fingerprint != bundle.fingerprint


def test_torchscript_checks_explain_what_does_not_fit(tmp_path):
    path = save_torchscript(tmp_path / "m.ts")
    with pytest.raises(PlintError, match="state the input size and channels of TorchScript model 'm.ts'"):
        load_classifier(path)
    with pytest.raises(PlintError, match=r"has 3 outputs but there are 5 classes \(a, b, c, d, e\)"):
        load_classifier(path, input_size=(16, 16), channels=1, classes=tuple("abcde"))
    with pytest.raises(PlintError, match=r"rejects input of shape 3×16×16.*--channels"):
        load_classifier(path, input_size=(16, 16), channels=3)
    save_scripted(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), tmp_path / "fixed.ts")
    with pytest.raises(PlintError, match=r"rejects input of shape 1×32×32.*--input-size"):
        load_classifier(tmp_path / "fixed.ts", input_size=(32, 32), channels=1)


def test_non_torchscript_and_damaged_torchscript_files(tmp_path, files):
    torch.save(files["resnet_module"].state_dict(), tmp_path / "weights.ts")
    with pytest.raises(PlintError, match="'weights.ts' is not TorchScript"):
        load_classifier(tmp_path / "weights.ts", input_size=(16, 16), channels=1)
    (tmp_path / "cut.ts").write_bytes(files["ts"].read_bytes()[:2000])
    with pytest.raises(PlintError, match="cut.ts.*corrupt or truncated"):
        load_classifier(tmp_path / "cut.ts", input_size=(16, 16), channels=1)


# ---------------------------------------------------------------- state_dicts

def test_resnet18_state_dict_takes_classes_and_channels_from_its_weights(files):
    bundle = load_classifier(files["resnet"], arch="resnet18", input_size=(32, 32))
    spec = bundle.spec
    assert spec.classes == ("0", "1", "2") and spec.input_shape == (3, 32, 32) and spec.mean == IMAGENET_MEAN
    names = [i.name for i in list_layers(bundle)]
    assert names[-1] == "fc" and {"layer4", "avgpool", "layer4.1.conv2"} <= set(names)
    images = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = files["resnet_module"](bundle.preprocess(images)).argmax(1).numpy()
    np.testing.assert_array_equal(predict(bundle, images), expected)
    assert load_classifier(files["resnet"], arch="resnet18").spec.input_shape == (3, 224, 224)


def test_grayscale_stem_and_checkpoint_wrappers_are_understood(tmp_path):
    model = build_torchvision("resnet18", 4, in_channels=1)
    wrapped = {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    bundle = load_classifier(tmp_path / "ckpt.pth", arch="resnet18", input_size=(32, 32))
    assert bundle.spec.input_shape == (1, 32, 32) and len(bundle.spec.classes) == 4
    assert bundle.spec.mean == (0.0,) and bundle.spec.std == (1.0,)


def test_torchvision_bundle_round_trips_through_its_sidecar(tmp_path, files):
    bundle = load_classifier(files["resnet"], arch="resnet18", input_size=(32, 32), classes=CLASSES)
    saved = save_model(bundle, tmp_path / "mine.safetensors")
    again = load_model(saved)
    assert again.spec == bundle.spec and again.fingerprint == state_fingerprint(again.module)
    images = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(predict(again, images), predict(bundle, images))


def test_plint_cnn_without_sidecar(tmp_path, demo):
    torch.save(demo.module.state_dict(), tmp_path / "cnn.pt")
    bundle = load_classifier(tmp_path / "cnn.pt", arch="plint-cnn", input_size=(8, 8), mean=demo.spec.mean,
                             std=demo.spec.std, classes=demo.spec.classes)
    assert bundle.spec.arch_kwargs == demo.spec.arch_kwargs and bundle.spec.input_shape == (1, 8, 8)
    assert state_fingerprint(bundle.module) == state_fingerprint(demo.module)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no sidecar 'resnet18.json' stating its architecture: state it"),
    ({"arch": "resnet9000"}, "unknown architecture 'resnet9000'"),
    ({"arch": "resnet34"}, "do not fit architecture 'resnet34'"),
    ({"arch": "resnet18", "classes": tuple("abcde")}, "has 3 outputs but there are 5 classes"),
    ({"arch": "resnet18", "channels": 1}, "do not fit architecture 'resnet18' with 3 classes and 1 input channels"),
    ({"arch": "resnet18", "mean": (0.1, 0.2)}, "mean has 2 values but the model takes 3 channels"),
])
def test_state_dict_mismatches_are_explained(files, kwargs, message):
    with pytest.raises(PlintError, match=message):
        load_classifier(files["resnet"], **kwargs)


# ---------------------------------------------------------------- refusals

def test_pickles_that_would_run_code_are_refused_and_write_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    with open(tmp_path / "raw.pt", "wb") as fh:
        pickle.dump({"conv1.weight": WritesAFile(marker)}, fh)
    torch.save({"conv1.weight": WritesAFile(marker)}, tmp_path / "zipped.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "whole_module.pth")
    for name in ("raw.pt", "zipped.pt", "whole_module.pth"):
        with pytest.raises(PlintError, match="could run code"):
            load_classifier(tmp_path / name, arch="resnet18")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.onnx", "model.h5", "model.pkl", "model"])
def test_unsupported_model_file_types(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00" * 16)
    with pytest.raises(PlintError, match="unsupported model file type"):
        load_classifier(tmp_path / name, arch="resnet18")


def test_corrupt_and_truncated_weights(tmp_path, files):
    blob = files["resnet"].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    torch.save(files["resnet_module"].state_dict(), tmp_path / "zip.pt")
    (tmp_path / "cutzip.pt").write_bytes((tmp_path / "zip.pt").read_bytes()[:100_000])
    for name in ("cut.safetensors", "cutzip.pt"):
        with pytest.raises(PlintError, match="corrupt or truncated"):
            load_classifier(tmp_path / name, arch="resnet18")
    with pytest.raises(PlintError, match="refused|corrupt"):
        load_classifier(tmp_path / "noise.pt", arch="resnet18")


# ---------------------------------------------------------------- open_inputs and the CLI

def test_open_inputs_fills_from_the_data_and_fits_the_images(files):
    inputs = open_inputs(files["ts"], files["folder"])
    assert inputs.bundle.spec.classes == CLASSES and inputs.data.input_shape == (1, 16, 16)
    assert any("class names taken from the data" in n for n in inputs.notes)
    inputs = open_inputs(files["resnet"], files["folder"], ModelOptions(arch="resnet18", input_size=(24, 24)))
    assert inputs.data.input_shape == (3, 24, 24) and inputs.bundle.spec.input_shape == (3, 24, 24)
    assert any("converted from 1×24×24" in n for n in inputs.notes)
    renamed = open_inputs(files["ts"], files["folder"], ModelOptions(classes=("x", "banana", "z")))
    assert any("x=apple, z=cherry" in n for n in renamed.notes)


SPEC = {"moves": [{"select": {"classes": ["banana"]}, "translate": [3.0, 0.0], "contract": 0.8}]}
SMALL_TSNE = '{"n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 25}'
"""The own-model CLI checks are about inputs and layers, not the map: a short fit of the 36 images."""


def _embed_and_run(tmp_path, capsys, model_args, data, layer=None):
    runs, out = tmp_path / "runs", tmp_path / "out"
    common = ["--data", str(data), *model_args, "--runs-dir", str(runs), "--device", "cpu"]
    if layer:
        common += ["--layer", layer]
    assert main(["embed", *common, "--tsne-config", SMALL_TSNE, "--out", str(out / "emb")]) == 0, \
        capsys.readouterr().err
    table = pd.read_csv(out / "emb" / "embedding.csv")
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    assert main(["run", *common, "--tsne-config", SMALL_TSNE, "--spec", str(tmp_path / "spec.json"), "--epochs", "1",
                 "--batch-size", "16",
                 "--out", str(out / "run")]) == 0, capsys.readouterr().err
    result = json.loads((out / "run" / "result.json").read_text())
    assert set(result["accuracy"]) == {"before", "after", "control"} and result["n_moved"] > 0
    assert result["classes"] == list(CLASSES) and result["cache_hit"] is False
    assert (Path(result["run_dir"]) / "finetuned.safetensors").is_file()
    return table, result, capsys.readouterr().err


def test_cli_torchscript_on_an_image_folder(tmp_path, capsys, files):
    table, result, err = _embed_and_run(tmp_path, capsys, ["--model", str(files["ts"])], files["folder"])
    assert len(table) == 36 and set(table.label) == {0, 1, 2}
    assert np.load(tmp_path / "out" / "emb" / "latents.npy").shape == (36, 3)
    assert result["layer"] == OUTPUT_LAYER and "class names taken from the data" in err


def test_cli_resnet18_state_dict_on_a_zip(tmp_path, capsys, files):
    table, result, err = _embed_and_run(tmp_path, capsys, ["--model", str(files["resnet"]), "--arch", "resnet18",
                                                           "--input-size", "32"], files["zip"], layer="avgpool")
    assert (table.split == "test").sum() == 9 and result["layer"] == "avgpool"
    assert np.load(tmp_path / "out" / "emb" / "latents.npy").shape == (36, 512)
    assert "ImageNet" in err


def _no_outputs(tmp_path):
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "runs" / "embeddings").exists() or files_under(tmp_path / "runs" / "embeddings") == []


def _bad_inputs(tmp_path, files) -> dict:
    bad = {}
    bad["five"] = save_torchscript(tmp_path / "five.pt", n_classes=5)
    bad["fixed"] = save_scripted(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), tmp_path / "fixed.pt")
    bad["dotdot_zip"] = zip_folder(files["folder"], tmp_path / "escape.zip",
                                   extra={"../escape.png": (files["folder"] / "apple" / "000.png").read_bytes()})
    bad["evil"] = write_evil_pickle(tmp_path / "evil.pt", tmp_path / "pwned.txt")
    bad["empty_img"] = write_image_folder(tmp_path / "holey", n_per_class=4)
    (bad["empty_img"] / "cherry" / "001.png").write_bytes(b"")
    (tmp_path / "table.csv").write_text("a,b\n")
    bad["csv"] = tmp_path / "table.csv"
    return bad


@pytest.mark.parametrize("model, data, extra, message", [
    ("five", "folder", [], "the model has 5 outputs but there are 3 classes (apple, banana, cherry)"),
    ("fixed", "folder", ["--input-size", "32"], "rejects input of shape 1×32×32"),
    ("ts", "folder", ["--layer", "fc1"], "unknown layer 'fc1': this model's layers are output; a TorchScript"),
    ("ts", "dotdot_zip", [], "'../escape.png', which points outside the folder"),
    ("evil", "folder", ["--arch", "resnet18"], "could run code"),
    ("resnet", "folder", [], "stating its architecture: state it (--arch resnet18"),
    ("ts", "empty_img", [], "image 'cherry/001.png' is empty"),
    ("ts", "csv", [], "unsupported data file type '.csv'"),
])
def test_cli_rejections_exit_2_with_one_line_and_leave_nothing(tmp_path, capsys, files, model, data, extra, message):
    bad = _bad_inputs(tmp_path, files)
    source = {**files, **bad}
    argv = ["embed", "--data", str(source[data]), "--model", str(source[model]), *extra,
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plint_core: error: ") and message in err, err
    _no_outputs(tmp_path)
    assert not (tmp_path / "pwned.txt").exists() and not (tmp_path / "escape.png").exists()


def test_cli_layers_lists_a_torchscript_models_output(files):
    proc = subprocess.run([sys.executable, "-m", "plint_core", "layers", "--model", str(files["ts"]),
                           "--input-size", "16", "--channels", "1"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "output\tIdentity\t[3]  (default)\n"


def test_cli_bad_option_values_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["layers", "--model", "demo", "--input-size", "big"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a size" in err
