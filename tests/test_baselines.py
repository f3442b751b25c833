"""The practitioner's baselines (plint_core.baselines): the pair's classes up-weighted in the cross-entropy, the
pair's hard training points oversampled, every class weighted by its inverse frequency; each trained exactly like
the CE-only control (same start, seed, batch order generator, step budget, validation images and selection rule),
never selected on the test split."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import plint_core.finetune as finetune_module
from plint_core.baselines import (
    Baseline,
    class_weights,
    finetune_baseline,
    hard_examples,
    inverse_frequency_weights,
    oversampled_rows,
    softmax_margins,
)
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig, TrainingBatchSource
from plint_core.intervention import separate_classes
from plint_core.latents import model_input
from plint_core.pipeline import run_baseline, run_intervention
from plint_core.store import RunStore

PAIR = (3, 8)
QUICK = dict(steps=60, evaluations=3, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def spec(demo_embedding, digits):
    return separate_classes(demo_embedding.train_xy, digits.train.labels, *PAIR, distance=demo_embedding.scale)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.numerics
def test_weight_one_and_one_repeat_are_the_control_bit_for_bit(tmp_path, digits, demo, demo_embedding, spec):
    # Bit for bit on the same machine and kernels: the control and the baselines are trained here, one after another.
    store = RunStore(tmp_path)
    config = FinetuneConfig(**QUICK)
    pair = run_intervention(digits, demo, demo_embedding, spec, config, store=store)
    control = load_file(pair.directory / "control.safetensors")
    results = {}
    for baseline in (Baseline("upweight", PAIR, weight=1.0), Baseline("oversample", PAIR, repeats=1, margin=0.99)):
        result, pred, hit = run_baseline(digits, demo, demo_embedding, spec, config, baseline, store=store)
        results[baseline.kind] = result
        assert not hit
        assert_same_weights(load_file(store.baseline_dir(result["run_id"]) / "baseline.safetensors"), control)
        assert result["selection"][baseline.kind] == pair.result["selection"]["control"], "same rule, same curve"
        assert np.array_equal(pred, pair.test_embedding["pred_control"].to_numpy())
        assert result["accuracy"]["baseline"] == pair.result["accuracy"]["control"]
        assert result["target_distance"]["baseline"] == pytest.approx(pair.result["target_distance"]["control"])
    assert results["oversample"]["n_hard"] > 0, "hard points found, drawn once each"
    again, pred, hit = run_baseline(digits, demo, demo_embedding, spec, config,
                                    Baseline("upweight", PAIR, weight=1.0), store=store)
    assert hit and again == results["upweight"], "a stored baseline is loaded, not retrained"


def test_upweighting_weights_the_pairs_cross_entropy(tmp_path, digits, demo, demo_embedding, spec):
    """The first step sees the same batch as the control's first step; its CE is Σ w_y·ce / Σ w_y with w = 3 for the
    pair's classes and 1 for the others, where the control's is the plain mean. Later weights differ."""
    assert class_weights(10, PAIR, 3.0).tolist() == [1, 1, 1, 3, 1, 1, 1, 1, 3, 1]
    config = FinetuneConfig(select="last", **QUICK)
    first: dict[str, float] = {}

    def record(p):
        if p.epoch == 1 and p.step == 1:
            first[p.run] = p.ce

    store = RunStore(tmp_path)
    pair = run_intervention(digits, demo, demo_embedding, spec, config, store=store, progress=record)
    result, _, _ = run_baseline(digits, demo, demo_embedding, spec, config, Baseline("upweight", PAIR, weight=3.0),
                                store=store, progress=record)
    from plint_core.validation import held_out_slice

    trained = np.setdiff1d(np.arange(len(digits.train)), held_out_slice(digits.train.labels))  # the path's slice out
    assert pair.result["n_train"] == len(trained)
    order = torch.randperm(len(trained), generator=torch.Generator().manual_seed(config.seed))[:config.batch_size]
    rows = trained[order.numpy()]
    torch.manual_seed(config.seed)
    model = copy.deepcopy(demo.module).train()
    images = digits.train.images
    with torch.no_grad():
        logits = model(model_input(demo, images, torch.device("cpu"), model)(images.stored(rows)))
    y = torch.as_tensor(digits.train.labels[rows], dtype=torch.int64)
    per_point = nn.functional.cross_entropy(logits, y, reduction="none")
    w = torch.as_tensor(class_weights(10, PAIR, 3.0))[y]
    assert np.isin(y.numpy(), PAIR).any(), "the first batch holds points of the pair"
    assert first["control"] == pytest.approx(per_point.mean().item(), rel=1e-5)
    assert first["upweight"] == pytest.approx(((w * per_point).sum() / w.sum()).item(), rel=1e-5)
    assert first["upweight"] != pytest.approx(first["control"], rel=1e-3)
    weighted = load_file(store.baseline_dir(result["run_id"]) / "baseline.safetensors")
    control = load_file(pair.directory / "control.safetensors")
    assert any(not torch.equal(weighted[k], control[k]) for k in control)


def test_hard_points_are_the_pairs_misclassified_or_low_margin_ones():
    labels = np.array([3, 3, 8, 8, 1, 1, 3])
    margins = np.array([-0.5, 0.1, 0.3, 0.9, -0.9, 0.0, 0.95])
    assert hard_examples(margins, labels, PAIR, 0.2).tolist() == [True, True, False, False, False, False, False]
    assert hard_examples(margins, labels, PAIR, 0.0).tolist() == [True, False, False, False, False, False, False]
    hard = np.array([False, True, False, True])
    assert oversampled_rows(hard, 3).tolist() == [0, 1, 1, 1, 2, 3, 3, 3]
    assert oversampled_rows(hard, 1).tolist() == [0, 1, 2, 3]


def test_softmax_margins_are_negative_exactly_where_the_model_is_wrong(digits, demo):
    from plint_core.latents import predict

    margins = softmax_margins(demo, digits.test.images, digits.test.labels)
    wrong = predict(demo, digits.test.images) != digits.test.labels
    assert wrong.any() and np.array_equal(margins < 0, wrong)
    assert margins.max() <= 1.0 and margins.min() >= -1.0


class Recording:
    """A loader wrapper that records the view it draws from and every batch's positions in it."""

    def __init__(self, loader, images, log):
        self.loader, self.log = loader, log
        log.append({"source_rows": images.source_rows(), "batches": []})

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.log[-1]["batches"].append(batch["index"].numpy().copy())
            yield batch


@pytest.mark.numerics
def test_oversampling_draws_each_hard_point_k_times_a_pass_the_same_way_for_a_seed(tmp_path, monkeypatch, digits,
                                                                                   demo, demo_embedding, spec):
    log: list[dict] = []
    real = finetune_module.batch_loader

    def recording(images, *args, generator=None, **kwargs):
        loader = real(images, *args, generator=generator, **kwargs)
        return Recording(loader, images, log) if generator is not None else loader

    monkeypatch.setattr(finetune_module, "batch_loader", recording)
    baseline = Baseline("oversample", PAIR, repeats=3, margin=0.999)
    margins = softmax_margins(demo, digits.train.images, digits.train.labels)
    hard = hard_examples(margins, digits.train.labels, PAIR, baseline.margin)
    assert 0 < hard.sum() < np.isin(digits.train.labels, PAIR).sum()
    from plint_core.validation import held_out_slice

    trained = np.ones(len(digits.train), bool)
    trained[held_out_slice(digits.train.labels)] = False  # held out for the path's validation images
    n = int(trained.sum())
    hard_trained = hard & trained
    config = FinetuneConfig(select="last", **{**QUICK, "steps": -(-(n + 2 * int(hard_trained.sum())) // 32)})
    results = []
    for seed, folder in ((0, "a"), (0, "b"), (1, "c")):
        result, _, _ = run_baseline(digits, demo, demo_embedding, spec, replace(config, seed=seed),
                                    baseline, store=RunStore(tmp_path / folder))
        results.append(result)
    assert results[0]["n_hard"] == hard_trained.sum() and results[0]["rows_per_pass"] == n + 2 * hard_trained.sum()
    drawn = [np.concatenate(r["batches"]) for r in log]
    view = log[0]["source_rows"]
    counts = np.bincount(view[drawn[0]], minlength=digits.train.images.source_rows().max() + 1)[
        digits.train.images.source_rows()]
    assert np.array_equal(counts, np.where(hard_trained, 3, np.where(trained, 1, 0))), \
        "a pass draws every trained row once, every hard row 3 times, none held out"
    assert np.array_equal(drawn[0], drawn[1]), "the same seed draws the same order"
    assert not np.array_equal(drawn[0], drawn[2]), "another seed another"
    assert results[0]["accuracy"] == results[1]["accuracy"] and results[0]["selection"] == results[1]["selection"]


@pytest.mark.numerics
def test_baselines_keep_their_best_validation_checkpoint_never_chosen_on_test(tmp_path, digits, demo, demo_embedding,
                                                                             spec):
    """Scrambled test labels change the reported figures, not the kept weights; a harmful learning rate is caught by
    the same rule as the control's (the starting weights kept)."""
    rng = np.random.default_rng(0)
    test = digits.test
    scrambled = digits.with_splits(test=type(test)(test.images.subset(rng.permutation(len(test))),
                                                   rng.permutation(test.labels), test.ids))
    baseline = Baseline("oversample", PAIR, repeats=4, margin=0.999)
    config = FinetuneConfig(**QUICK)
    (a, pa, _), (b, pb, _) = (run_baseline(d, demo, demo_embedding, spec, config, baseline,
                                           store=RunStore(tmp_path / name))
                              for name, d in (("real", digits), ("scrambled", scrambled)))
    assert a["selection"] == b["selection"] and a["validation"] == b["validation"]
    assert a["validation"]["source"] == "held-out slice of the training split"
    assert a["accuracy"]["baseline"] != b["accuracy"]["baseline"], "the test figures did change"
    assert_same_weights(load_file(tmp_path / "real" / "baselines" / a["run_id"] / "baseline.safetensors"),
                        load_file(tmp_path / "scrambled" / "baselines" / b["run_id"] / "baseline.safetensors"))
    harmful = FinetuneConfig(**{**QUICK, "lr": 0.3, "patience": 2, "select": "best-val"})
    for kind in ("upweight", "oversample"):
        result, _, _ = run_baseline(digits, demo, demo_embedding, spec, harmful,
                                    Baseline(kind, PAIR, weight=3.0, repeats=4, margin=0.999),
                                    store=RunStore(tmp_path / "harm"))
        sel = result["selection"][kind]
        assert sel["rule"] == "best-val" and sel["step"] == 0 and sel["stopped_early"]
        assert result["accuracy"]["baseline"] == result["accuracy"]["before"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"kind": "reweight"}, "baseline is 'reweight'"),
    ({"pair": (3, 3)}, "two different class indices"),
    ({"pair": (3,)}, "two different class indices"),
    ({"weight": 0.0}, "weight is 0.0"),
    ({"weight": float("nan")}, "weight is nan"),
    ({"repeats": 0}, "repeats is 0"),
    ({"repeats": 2.5}, "repeats is 2.5"),
    ({"margin": 3.0}, "margin is 3.0"),
    ({"pair": None}, "the upweight baseline needs a class pair"),
    ({"kind": "classweight"}, "takes no pair"),
])
def test_bad_baseline_settings_are_refused_in_one_line(kwargs, fragment):
    with pytest.raises(PlintError) as exc:
        Baseline(**{"kind": "upweight", "pair": PAIR, **kwargs})
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_a_pair_the_model_does_not_have_is_refused(tmp_path, digits, demo, demo_embedding, spec):
    with pytest.raises(PlintError, match="names a class the model does not have"):
        run_baseline(digits, demo, demo_embedding, spec, FinetuneConfig(**QUICK), Baseline("upweight", (3, 12)),
                     store=RunStore(tmp_path))


def _cli(run_cli, tmp_path, spec, *argv) -> tuple[int, str, str]:
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    return run_cli("run", "--data", "digits", "--model", "demo", "--spec", path, "--out", tmp_path / "o",
                   "--runs-dir", tmp_path / "runs",
                   "--tsne-config", '{"n_iter": 200, "early_exaggeration_iter": 50, "pca_iter": 25}',
                   "--steps", "40", "--evaluations", "2", "--threads", "1", *argv)


@pytest.mark.numerics
def test_cli_runs_a_baseline_and_writes_its_result(run_cli, tmp_path, spec):
    import json

    code, out, err = _cli(run_cli, tmp_path, spec, "--baseline", "oversample", "--pair", "3,8", "--repeats", "3",
                          "--margin", "0.99")
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["baseline"] == {"kind": "oversample", "pair": [3, 8], "repeats": 3, "margin": 0.99,
                                  "name": "oversample ×3 (margin 0.99)"}
    assert result["n_hard"] > 0 and 0.9 < result["accuracy"]["baseline"] <= 1.0
    assert result["selection"]["oversample"]["rule"] == "best-val" and "kept step" in err + out


@pytest.mark.parametrize("argv, fragment", [
    (["--pair", "3,3"], "'3,3' is not a class pair"),
    (["--baseline", "upweight"], "needs both --baseline"),
    (["--pair", "3,8"], "needs both --baseline"),
    (["--baseline", "upweight", "--pair", "3,12"], "names a class the model does not have"),
    (["--baseline", "upweight", "--pair", "3,8", "--weight", "0"], "weight is 0.0"),
    (["--baseline", "classweight", "--pair", "3,8"], "takes no --pair"),
])
def test_cli_baseline_options_are_checked_in_one_line(run_cli, tmp_path, spec, argv, fragment):
    code, _, err = _cli(run_cli, tmp_path, spec, *argv)
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_pair_class_without_training_points_is_refused(digits, demo, demo_embedding):
    from plint_core.baselines import finetune_baseline
    from plint_core.finetune import TrainingBatchSource

    rows = np.flatnonzero(digits.train.labels != 8)
    source = TrainingBatchSource(digits.train.images.subset(rows), digits.train.labels[rows],
                                 np.zeros((len(rows), 2), np.float32))
    with pytest.raises(PlintError, match="class 8 of the pair has no training points to oversample"):
        finetune_baseline(demo, demo_embedding.layer, demo_embedding.embedder.module, demo_embedding.scale, source,
                          FinetuneConfig(**QUICK), Baseline("oversample", PAIR))


def test_inverse_frequency_weights_on_constructed_labels():
    """w_k ∝ 1 / n_k, averaging 1 over the classes present; an absent class 0; equal counts all 1."""
    labels = np.array([0] * 10 + [1] * 40 + [3] * 50)
    raw = np.array([1 / 10, 1 / 40, 1 / 50])
    w = inverse_frequency_weights(labels, 4)
    assert w.dtype == np.float32 and w.shape == (4,)
    np.testing.assert_allclose(w[[0, 1, 3]], raw / raw.mean(), rtol=1e-6)
    assert w[2] == 0 and w[[0, 1, 3]].mean() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(4.0) and w[0] / w[3] == pytest.approx(5.0)
    assert inverse_frequency_weights(np.repeat(np.arange(5), 7), 5).tolist() == [1.0] * 5
    for bad, fragment in ((np.array([], dtype=np.int64), "needs training rows"), (np.array([0, 4]), "outside")):
        with pytest.raises(PlintError, match=fragment):
            inverse_frequency_weights(bad, 4)


def test_classweight_takes_no_pair_and_keys_only_its_kind():
    b = Baseline("classweight")
    assert b.pair is None and b.key_dict() == {"kind": "classweight"} and b.name == "class-weighted (1/frequency)"
    assert Baseline("classweight", weight=3.0).key_dict() == b.key_dict(), "the pair kinds' options do not key it"


def test_classweight_weights_each_row_by_its_class_inverse_frequency(digits, demo, demo_embedding):
    """On rows where class 8 is 14 times as frequent as each other class, the first step's CE is
    Σ w_y·ce / Σ w_y with w = inverse_frequency_weights of those rows (the plain mean is far from it)."""
    labels = digits.train.labels
    rows = np.sort(np.concatenate([np.flatnonzero(labels == 8)] +
                                  [np.flatnonzero(labels == k)[:10] for k in range(10) if k != 8]))
    images = digits.train.images.subset(rows)
    source = TrainingBatchSource(images, labels[rows], np.zeros((len(rows), 2), np.float32))
    config = FinetuneConfig(select="last", **{**QUICK, "steps": 2})
    first: dict[str, float] = {}
    _, selection, info = finetune_baseline(demo, demo_embedding.layer, demo_embedding.embedder.module,
                                           demo_embedding.scale, source, config, Baseline("classweight"),
                                           progress=lambda p: first.setdefault(p.run, p.ce))
    w = inverse_frequency_weights(labels[rows], 10)
    assert info["class_weight"] == pytest.approx(w.tolist()) and w[8] < 0.1 < 1.05 < w[0]
    assert selection.steps_run == 2
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(config.seed))[:config.batch_size].numpy()
    torch.manual_seed(config.seed)
    model = copy.deepcopy(demo.module).train()
    with torch.no_grad():
        logits = model(model_input(demo, images, torch.device("cpu"), model)(images.stored(order)))
    y = torch.as_tensor(labels[rows][order], dtype=torch.int64)
    per_point = nn.functional.cross_entropy(logits, y, reduction="none")
    wy = torch.as_tensor(w)[y]
    assert (y == 8).any() and (y != 8).any(), "the first batch mixes the frequent class and the rare ones"
    assert first["classweight"] == pytest.approx(((wy * per_point).sum() / wy.sum()).item(), rel=1e-5)
    assert first["classweight"] != pytest.approx(per_point.mean().item(), rel=1e-2)


def test_classweight_run_is_stored_and_loaded(tmp_path, digits, demo, demo_embedding, spec):
    from plint_core.pipeline import training_source

    store = RunStore(tmp_path)
    config = FinetuneConfig(**QUICK)
    result, pred, hit = run_baseline(digits, demo, demo_embedding, spec, config, Baseline("classweight"), store=store)
    assert not hit and len(pred) == len(digits.test)
    assert result["baseline"] == {"kind": "classweight", "name": "class-weighted (1/frequency)"}
    source, _ = training_source(digits, *spec.targets(demo_embedding.train_xy, digits.train.labels,
                                                      digits.train.ids, digits.class_names), config)
    assert result["class_weight"] == pytest.approx(inverse_frequency_weights(source.labels, 10).tolist())
    assert result["selection"]["classweight"]["rule"] == "best-val" and 0.9 < result["accuracy"]["baseline"] <= 1.0
    assert (store.baseline_dir(result["run_id"]) / "baseline.safetensors").is_file()
    again, pred2, hit = run_baseline(digits, demo, demo_embedding, spec, config, Baseline("classweight"), store=store)
    assert hit and again == result and np.array_equal(pred, pred2)
    upweight, _, _ = run_baseline(digits, demo, demo_embedding, spec, config, Baseline("upweight", PAIR, weight=1.0),
                                  store=store)
    assert upweight["run_id"] != result["run_id"]


def test_cli_runs_the_classweight_baseline_without_a_pair(run_cli, tmp_path, spec):
    import json

    code, _, err = _cli(run_cli, tmp_path, spec, "--baseline", "classweight")
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["baseline"] == {"kind": "classweight", "name": "class-weighted (1/frequency)"}
    assert len(result["class_weight"]) == 10 and np.mean(result["class_weight"]) == pytest.approx(1.0, rel=1e-5)


def test_a_pair_with_inverse_class_weights_trains_both_runs_class_weighted(digits, demo, demo_embedding):
    """``FinetuneConfig(class_weight="inverse")``: the pair's control is the classweight baseline on the same steps
    (the same weights after its last step), and the PLI run's first cross-entropy is the class-weighted one; the
    default keys as before, a bad value is one message."""
    from plint_core.finetune import finetune_pair

    labels = digits.train.labels
    rows = np.sort(np.concatenate([np.flatnonzero(labels == 8)] +
                                  [np.flatnonzero(labels == k)[:10] for k in range(10) if k != 8]))
    targets = demo_embedding.train_xy[rows].astype(np.float32) + np.float32(0.5)
    source = TrainingBatchSource(digits.train.images.subset(rows), labels[rows], targets)
    config = FinetuneConfig(select="last", class_weight="inverse", **{**QUICK, "steps": 6})
    args = (demo, demo_embedding.layer, demo_embedding.embedder.module, demo_embedding.scale, source)
    first: dict[str, float] = {}
    pli, control, _ = finetune_pair(*args, config, progress=lambda p: first.setdefault(p.run, p.ce))
    baseline, _, info = finetune_baseline(*args, config, Baseline("classweight"))
    for name, value in control.state_dict().items():
        torch.testing.assert_close(value, baseline.state_dict()[name], rtol=0, atol=0)
    plain, _, _ = finetune_pair(*args, replace(config, class_weight="none"))
    assert any(not torch.equal(v, plain.state_dict()[k]) for k, v in pli.state_dict().items())
    assert first["pli"] == pytest.approx(first["control"], rel=1e-6), "the same start and first batch"
    assert "class_weight" not in FinetuneConfig().key_dict() and config.key_dict()["class_weight"] == "inverse"
    with pytest.raises(PlintError, match="class weight is 'balanced': use 'none'"):
        FinetuneConfig(class_weight="balanced")
