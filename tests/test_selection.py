"""Which weights a fine-tuning run keeps: the best validation checkpoint (the starting weights included), chosen
on the val split or a held-out training slice, never on the test split; early stopping; the same rule for PLI and
the control."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig, training_rows
from plint_core.intervention import InterventionSpec
from plint_core.pipeline import run_intervention, validation_set
from plint_core.store import RunStore
from plint_core.validation import Selector, eval_steps, held_out_slice, validation_rows

SPEC = InterventionSpec.from_dict({"moves": [{"select": {"classes": [3]}, "translate": [-3.0, 0.0],
                                              "contract": 0.8}]})
QUICK = dict(steps=120, evaluations=4, device="cpu")


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.clone() for v in model.state_dict().values()]


def test_selector_keeps_the_latest_of_the_best_and_stops_after_patience():
    torch.manual_seed(0)
    model, start = nn.Linear(3, 2), nn.Linear(3, 2)
    selector = Selector(before=0.5, patience=2)
    snapshots = {}
    for step, score in ((10, 0.6), (20, 0.6), (30, 0.4), (40, 0.3)):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        snapshots[step] = weights(model)
        stop = selector.offer(step, 1, score, model)
        assert stop is (step == 40), "two evaluations in a row below the best stop the run, not one"
    sel = selector.selection
    assert (sel.step, sel.score, sel.stopped_early, sel.steps_run) == (20, 0.6, True, 40)
    assert sel.curve == [(0, 0.5), (10, 0.6), (20, 0.6), (30, 0.4), (40, 0.3)]
    restored = selector.restore(copy.deepcopy(model), start)
    for a, b in zip(weights(restored), snapshots[20]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_when_nothing_beats_the_start_the_start_is_kept():
    model, start = nn.Linear(3, 2), nn.Linear(3, 2)
    selector = Selector(before=0.9, patience=None)
    for step in (1, 2, 3):
        assert selector.offer(step, 1, 0.5, model) is False, "no patience: never stops early"
    assert selector.selection.step == 0 and selector.selection.score == 0.9
    for a, b in zip(weights(selector.restore(model, start)), weights(start)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_evaluation_steps_are_spread_and_end_on_the_last():
    assert eval_steps(1000, 10) == list(range(100, 1001, 100))
    assert eval_steps(82, 10) == [20, 41, 62, 82], "at least 20 steps apart"
    assert eval_steps(16, 10) == [16], "a short run is scored once, at its end"
    assert eval_steps(5, 0) == []


def test_held_out_slice_is_fixed_stratified_and_keeps_moved_classes_scored(digits):
    labels = digits.train.labels
    moved = labels == 3
    held = held_out_slice(labels)
    assert len(held) == round(0.1 * len(labels)) and set(np.unique(labels[held])) == set(range(10))
    rows = validation_rows(labels, 1000)
    assert np.array_equal(rows, held) and np.array_equal(rows, validation_rows(labels, 1000)), "fixed"
    assert moved[rows].any(), "a class moved as a whole is still scored"
    assert len(validation_rows(labels, 50)) == 50
    for n in (None, 600):
        train = training_rows(labels, moved, n, 0, exclude=held)
        assert not np.isin(held, train).any(), "nothing scored is trained on"
        assert moved[train].sum() == moved.sum() - moved[held].sum(), "every other moved point is"


def test_the_val_split_is_used_where_there_is_one(digits):
    with_val = digits.with_splits(val=digits.train.subset(np.arange(200)))
    validation, held = validation_set(with_val, np.zeros(len(digits.train), bool), FinetuneConfig(val_points=150))
    assert validation.source == "val split" and len(validation.labels) == 150 and len(held) == 0
    last, _ = validation_set(with_val, np.zeros(len(digits.train), bool), FinetuneConfig(select="last"))
    assert last.source == "val split", "every rule records its path on the validation images"


def test_the_test_split_never_decides_which_weights_are_kept(tmp_path, digits, demo, demo_embedding):
    """Scrambling the test labels (and images) changes the reported test figures, not the selection."""
    rng = np.random.default_rng(0)
    test = digits.test
    scrambled = digits.with_splits(test=type(test)(test.images.subset(rng.permutation(len(test))),
                                                   rng.permutation(test.labels), test.ids))
    config = FinetuneConfig(lr=3e-3, **QUICK)
    runs = [run_intervention(d, demo, demo_embedding, SPEC, config, store=RunStore(tmp_path / name))
            for name, d in (("real", digits), ("scrambled", scrambled))]
    a, b = (r.result for r in runs)
    assert a["selection"] == b["selection"] and a["validation"] == b["validation"]
    assert a["validation"]["source"] == "held-out slice of the training split"
    assert a["accuracy"]["before"] != b["accuracy"]["before"], "the test figures did change"
    from safetensors.torch import load_file

    for name in ("finetuned", "control"):
        wa, wb = (load_file(r.directory / f"{name}.safetensors") for r in runs)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_a_harmful_setting_cannot_lower_validation_accuracy(tmp_path, digits, demo, demo_embedding):
    config = FinetuneConfig(lr=0.3, patience=2, select="best-val", **QUICK)  # Adam at 0.3 wrecks the demo CNN within a few steps
    result = run_intervention(digits, demo, demo_embedding, SPEC, config, store=RunStore(tmp_path)).result
    before = result["validation"]["before"]
    for name in ("pli", "control"):
        sel = result["selection"][name]
        assert sel["score"] >= before and min(score for _, score in sel["curve"][1:]) < before
        assert sel["step"] == 0 and sel["stopped_early"] and sel["steps_run"] < QUICK["steps"]
    assert result["accuracy"]["after"] == result["accuracy"]["before"] == result["accuracy"]["control"], \
        "a run that kept its starting weights predicts as before"


def test_a_checkpoint_below_the_start_on_the_whole_validation_set_is_not_kept(digits, demo):
    """The sample chose a checkpoint; on the whole validation set it scores below the start: the start is kept."""
    from plint_core.finetune import ValidationSet, _confirm
    from plint_core.latents import predict
    from plint_core.models.spec import ModelBundle
    from plint_core.validation import Selection

    torch.manual_seed(0)
    kept = copy.deepcopy(demo.module)
    with torch.no_grad():
        for p in kept.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images = digits.train.images.subset(np.arange(300))
    start_pred = predict(demo, images)
    kept_pred = predict(ModelBundle(kept, demo.spec, ""), images)
    assert (start_pred != kept_pred).any(), "the perturbed weights must predict differently somewhere"
    for labels, reverted in ((start_pred, True), (kept_pred, False)):
        model = copy.deepcopy(kept)
        sel = Selection("best-val", [(0, 0.5), (100, 0.6)], step=100, epoch=2, score=0.6, steps_run=100)
        _confirm(demo, ValidationSet(images, labels, "val split"), torch.device("cpu"), None, model, None, sel)
        assert sel.confirm["n"] == 300 and sel.confirm["reverted"] is reverted and sel.confirm["kept_step"] == 100
        if reverted:  # the start predicts these labels perfectly, the checkpoint does not
            assert sel.confirm["start"] == 1.0 > sel.confirm["kept"]
            assert (sel.step, sel.epoch, sel.score) == (0, 0, 0.5)
            for a, b in zip(weights(model), weights(demo.module)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        else:
            assert sel.confirm["kept"] == 1.0 > sel.confirm["start"] and (sel.step, sel.score) == (100, 0.6)
            for a, b in zip(weights(model), weights(kept)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_sampled_run_ends_at_least_at_its_start_on_the_whole_validation_slice(tmp_path, digits, demo,
                                                                                   demo_embedding):
    """With 40 of the 144 held-out images scored per evaluation, every run's kept weights still score at least
    the start's on all 144, and result.json says what the check found."""
    from safetensors.torch import load_file

    from plint_core.latents import predict
    from plint_core.models.spec import ModelBundle

    config = FinetuneConfig(lr=3e-3, val_points=40, select="best-val", **QUICK)
    validation, held = validation_set(digits, digits.train.labels == 3, config)
    assert len(validation.labels) == 40 and len(validation.whole.labels) == len(held) == 144
    run = run_intervention(digits, demo, demo_embedding, SPEC, config, store=RunStore(tmp_path))
    whole = digits.train.images.subset(held)
    start = float(np.mean(predict(demo, whole) == digits.train.labels[held]))
    checked = []
    for name, file in (("pli", "finetuned"), ("control", "control")):
        sel = run.result["selection"][name]
        model = copy.deepcopy(demo.module)
        model.load_state_dict(load_file(run.directory / f"{file}.safetensors"))
        after = float(np.mean(predict(ModelBundle(model, demo.spec, ""), whole) == digits.train.labels[held]))
        assert after >= start
        checked.append(sel["confirm"])
        if sel["confirm"] is None:
            assert sel["step"] == 0, "only a run that kept its start goes unchecked"
            continue
        c = sel["confirm"]
        assert c["n"] == 144 and c["start"] == pytest.approx(start) and c["reverted"] is (c["kept"] < c["start"])
        assert sel["step"] == 0 if c["reverted"] else sel["step"] == c["kept_step"] > 0
        assert after == pytest.approx(start if c["reverted"] else c["kept"])
    # (on this machine: the sample, 40 images all right at the start, ties at step 120, which scores below the
    # start on all 144, so the check sent both runs back to their start)
    assert any(c is not None for c in checked)
    assert "confirm" in FinetuneConfig(select="best-val").key_dict()
    assert "confirm" not in FinetuneConfig(select="last").key_dict() and "confirm" not in FinetuneConfig().key_dict()


def test_last_keeps_the_last_step(tmp_path, digits, demo, demo_embedding):
    result = run_intervention(digits, demo, demo_embedding, SPEC, FinetuneConfig(select="last", **QUICK),
                              store=RunStore(tmp_path)).result
    assert result["n_train"] == len(digits.train) - len(held_out_slice(digits.train.labels)), "the path's images"
    for name in ("pli", "control"):
        sel = result["selection"][name]
        assert (sel["rule"], sel["step"], sel["epoch"], sel["steps_run"]) == ("last", 120, 3, 120)
        assert sel["score"] == result["path"][name][-1]["accuracy"] and not sel["stopped_early"]


def test_step_budget_and_epochs_are_keyed_and_checked():
    assert FinetuneConfig().schedule(45) == (23, 1000) and FinetuneConfig(epochs=3).schedule(45) == (3, 135)
    assert "steps" in FinetuneConfig().key_dict() and "epochs" not in FinetuneConfig().key_dict()
    assert "epochs" in FinetuneConfig(epochs=3).key_dict() and "steps" not in FinetuneConfig(epochs=3).key_dict()
    assert FinetuneConfig(select="best-val", patience=3).key_dict() != FinetuneConfig(select="best-val").key_dict()
    assert FinetuneConfig(patience=3).key_dict() == FinetuneConfig().key_dict(), "follow runs every step"
    for bad in ({"select": "best"}, {"patience": 0}, {"evaluations": 0}, {"val_points": 5}, {"steps": 0},
                {"epochs": 0}):
        with pytest.raises(PlintError):
            FinetuneConfig(**bad)


@pytest.mark.parametrize("argv, fragment", [
    (["--patience", "x"], "is not a number of evaluations"),
    (["--select", "best"], "invalid choice"),
    (["--steps", "0"], "steps is 0"),
])
def test_cli_selection_options_are_checked(run_cli, tmp_path, argv, fragment):
    spec = tmp_path / "spec.json"
    spec.write_text(SPEC.to_json())
    code, _, err = run_cli("run", "--data", "digits", "--model", "demo", "--spec", spec, "--out", tmp_path / "o",
                           "--runs-dir", tmp_path / "runs", *argv)
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
