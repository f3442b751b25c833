"""The trade-off path and the pick: what each checkpoint records, the rules (follow, best-val, last), the stored
weights a pick needs, and the view that follows a pick — on constructed paths and on the digits demo."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from plint_core.finetune import CHECKPOINT_BUDGET_BYTES, FinetuneConfig
from plint_core.intervention import InterventionSpec
from plint_core.latents import predict
from plint_core.models.spec import ModelBundle
from plint_core.path import Checkpoint
from plint_core.pick import best_val, candidates, follow, pick_steps, picked_view, reference_accuracy
from plint_core.pipeline import checkpoint_weights, load_run, run_intervention
from plint_core.store import RunStore
from plint_core.validation import held_out_slice

SPEC = InterventionSpec.from_dict({"moves": [{"select": {"classes": [3]}, "translate": [-3.0, 0.0],
                                              "contract": 0.8}]})


def path(*points: tuple[float, float | None]) -> list[Checkpoint]:
    """Checkpoints every 100 steps from ``(accuracy, distance)`` pairs."""
    return [Checkpoint(100 * i, i, acc, 0, dist, dist) for i, (acc, dist) in enumerate(points)]


def test_follow_takes_the_nearest_checkpoint_within_the_tolerance():
    pli = path((0.90, 10.0), (0.897, 6.0), (0.893, 3.0), (0.899, 4.0))
    control = path((0.90, 10.0), (0.899, 10.0), (0.901, 10.0))
    ref = reference_accuracy(pli[0], control)
    assert ref == 0.901, "the best of the start and the control"
    assert follow(pli, ref, 0.005) == (300, True), "0.893 is 0.8 pp below the reference: step 200 is out"
    assert follow(pli, ref, 0.01) == (200, True)
    assert follow(pli, ref, 0.0) == (0, False), "none reaches the reference: the best validation checkpoint"
    assert best_val(pli) == 0 and best_val(path((0.9, 1.0), (0.9, 2.0))) == 100, "ties: the later step"
    picks = pick_steps("follow", pli, control, 0.005)
    assert (picks["pli"], picks["control"], picks["within"]) == (300, 200, True)
    assert pick_steps("best-val", pli, control)["pli"] == 0 and pick_steps("last", pli, control)["pli"] == 300


def test_nothing_within_the_tolerance_of_either_keeps_the_best_validation_checkpoint():
    pli = path((0.80, 10.0), (0.75, 2.0), (0.78, 1.0))
    control = path((0.80, 10.0), (0.90, 10.0))  # the control improved a lot: no PLI checkpoint comes close
    assert follow(pli, reference_accuracy(pli[0], control), 0.005) == (0, False)


def test_out_of_reach_of_the_control_the_edit_is_followed_near_the_runs_own_best():
    """Where the control's best is out of reach, ``follow`` does not drop the edit: it takes the checkpoint nearest
    the edit within the tolerance of the PLI run's own best (the engine note's digits case, λ 0.7, seed 0: the old
    fallback, the best validation checkpoint, was the start)."""
    pli = [Checkpoint(0, 0, 0.9791, 0, 9.80, None), Checkpoint(900, 8, 0.9721, 0, 2.07, None),
           Checkpoint(1000, 9, 0.9756, 0, 2.14, None)]
    control = [Checkpoint(0, 0, 0.9791, 0, 9.80, None), Checkpoint(300, 3, 0.9861, 0, 9.19, None)]
    picks = pick_steps("follow", pli, control)
    assert (picks["pli"], picks["within"], picks["fallback"]) == (1000, False, "own-best"), \
        "0.9756 is within 0.5 pp of 0.9791, 0.9721 is not"
    assert best_val(pli) == 0
    assert follow([Checkpoint(0, 0, 0.8, 0, None, None)], 0.9) == (0, False), "no distance: the best validation"


def test_the_training_points_distance_counts_where_no_validation_image_is_moved():
    pli = [Checkpoint(0, 0, 0.9, 0, None, 5.0), Checkpoint(100, 1, 0.9, 0, None, 2.0)]
    assert follow(pli, 0.9, 0.005) == (100, True)


def test_candidates_hold_every_step_a_rule_could_still_pick():
    pli = path((0.90, 10.0), (0.91, 6.0), (0.899, 3.0), (0.85, 1.0))
    steps = candidates(pli, 0.91, 0.005)
    assert steps == {300, 100}, "last (300), best-val (100) and follow (100: 0.899 is 1.1 pp below)"
    for k in range(1, len(pli) + 1):  # whatever came later, the final picks are among the kept candidates
        kept = set().union(*(candidates(pli[:j], 0.91, 0.005) for j in range(1, k + 1)))
        for rule in ("follow", "best-val", "last"):
            assert pick_steps(rule, pli[:k], path((0.91, 10.0)))["pli"] in kept


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, digits, demo, demo_embedding):
    store = RunStore(tmp_path_factory.mktemp("pick_runs"))
    config = FinetuneConfig(steps=200, evaluations=4, device="cpu")
    return run_intervention(digits, demo, demo_embedding, SPEC, config, store=store), config


@pytest.mark.numerics
def test_both_runs_record_their_path_and_the_stored_arrays_match(recorded, digits):
    run, config = recorded
    r = run.result
    n_test, n_moved = len(digits.test), int(run.moved.sum())
    for name in ("pli", "control"):
        steps = [c["step"] for c in r["path"][name]]
        assert steps == [0, 50, 100, 150, 200], "the start and every evaluation"
        assert r["path"][name][0] == r["path"]["pli"][0], "the start is scored once for both runs"
    assert r["path"]["n_val"] == len(held_out_slice(digits.train.labels)) and r["path"]["n_val_moved"] > 0
    arrays = run.path_arrays()
    assert arrays["pli_test_xy"].shape == (5, n_test, 2) and arrays["pli_test_pred"].shape == (5, n_test)
    assert arrays["pli_moved_xy"].shape == (5, len(arrays["moved_rows"]), 2) and len(arrays["moved_rows"]) == n_moved
    # the start's test predictions are the embedding's, its coordinates the stored map's
    np.testing.assert_array_equal(arrays["pli_test_pred"][0], run.test_embedding["pred_before"].to_numpy())
    np.testing.assert_allclose(arrays["pli_test_xy"][0], run.test_embedding[["x_before", "y_before"]].to_numpy(),
                               atol=1e-4)
    # the PLI run follows the edit along its path, the control does not
    pli_d = [c["train_distance"] for c in r["path"]["pli"]]
    control_d = [c["train_distance"] for c in r["path"]["control"]]
    assert pli_d[-1] < 0.8 * pli_d[0] and control_d[-1] > 0.95 * control_d[0], (pli_d, control_d)
    assert r["selection"]["pli"]["rule"] == "follow" and r["selection"]["pli"]["pick"]["within"] is True


def test_every_checkpoints_weights_are_stored_and_give_its_recorded_predictions(recorded, digits, demo):
    run, _ = recorded
    arrays = run.path_arrays()
    assert run.result["path"]["stored_weights"] == [0, 50, 100, 150, 200]
    assert 5 * sum(v.numel() * 4 for v in demo.module.state_dict().values()) < CHECKPOINT_BUDGET_BYTES
    from safetensors.torch import load_file

    for k, step in enumerate(arrays["pli_steps"]):
        model = copy.deepcopy(demo.module)
        model.load_state_dict(load_file(checkpoint_weights(run.directory, int(step))))
        pred = predict(ModelBundle(model, demo.spec, ""), digits.test.images)
        np.testing.assert_array_equal(pred, arrays["pli_test_pred"][k])
    own = run.result["selection"]["pli"]["step"]
    assert run.weights(own) == run.directory / "finetuned.safetensors" and run.weights(None) == run.weights(own)
    assert load_file(run.weights(own)).keys() == load_file(checkpoint_weights(run.directory, own)).keys()


def test_a_pick_changes_what_is_shown_and_the_rule_pick_changes_nothing(recorded, digits):
    run, _ = recorded
    r, table = run.result, run.test_embedding
    arrays = run.path_arrays()
    same, same_table = picked_view(r, table, arrays, r["selection"]["pli"]["step"])
    assert same is r and same_table is table
    start, start_table = picked_view(r, table, arrays, 0)
    assert start["accuracy"]["after"] == r["accuracy"]["before"], "step 0 is the model before fine-tuning"
    assert start["confusion"]["after"] == r["confusion"]["before"]
    assert start["selection"]["pli"]["step"] == 0 and start["selection"]["pli"]["picked_by"] == "user"
    np.testing.assert_array_equal(start_table["pred_after"], table["pred_before"])
    assert start["accuracy"]["control"] == r["accuracy"]["control"], "the control keeps its own checkpoint"
    assert r["accuracy"] == load_run(RunStore(run.directory.parent.parent), run.run_id).result["accuracy"]
    with pytest.raises(ValueError, match="not a checkpoint"):
        picked_view(r, table, arrays, 7)


def test_a_large_models_unstored_checkpoint_is_recomputed_bit_for_bit(tmp_path, monkeypatch, digits, demo,
                                                                       demo_embedding):
    """Over the weights budget a run keeps only the checkpoints a rule can pick; any other is recomputed by
    training again up to its step: on the same machine the very weights, whose test predictions are the path's."""
    import plint_core.finetune as finetune_module
    from safetensors.torch import load_file

    from plint_core.replay import replay_checkpoint

    one = sum(v.numel() * v.element_size() for v in demo.module.state_dict().values())
    monkeypatch.setattr(finetune_module, "CHECKPOINT_BUDGET_BYTES", one)  # as if each checkpoint were huge
    config = FinetuneConfig(steps=200, evaluations=4, device="cpu")
    run = run_intervention(digits, demo, demo_embedding, SPEC, config, store=RunStore(tmp_path))
    kept = run.result["path"]["stored_weights"]
    missing = [c["step"] for c in run.result["path"]["pli"] if c["step"] not in kept]
    assert 0 in kept and 200 in kept and run.result["selection"]["pli"]["step"] in kept and missing
    step = missing[0]
    assert checkpoint_weights(run.directory, step) is None and run.weights(step) is None
    replayed = replay_checkpoint(digits, demo, demo_embedding, run, step, device="cpu")
    assert replayed.exact and replayed.path == checkpoint_weights(run.directory, step) == run.weights(step)
    # a stored checkpoint recomputed gives its bytes' weights exactly: the replay is the run's own training
    last = checkpoint_weights(run.directory, 200)
    stored = load_file(last)
    last.unlink()
    again = replay_checkpoint(digits, demo, demo_embedding, run, 200, device="cpu")
    fresh = load_file(again.path)
    for k in stored:
        torch.testing.assert_close(fresh[k], stored[k], rtol=0, atol=0)
    with pytest.raises(Exception, match="no checkpoint at step 7"):
        replay_checkpoint(digits, demo, demo_embedding, run, 7, device="cpu")


def test_the_summary_says_which_fallback_kept_the_checkpoint():
    from plint_core.report.summaries import selection_summary

    def result(pick: dict) -> dict:
        return {"selection": {"pli": {"rule": "follow", "step": 1000, "score": 0.9756, "pick": pick},
                              "control": {"rule": "best-val", "step": 300, "score": 0.9861}}}

    new = selection_summary(result({"within": False, "fallback": "own-best", "tolerance": 0.005, "reference": 0.9861}))
    old = selection_summary(result({"within": False, "tolerance": 0.005, "reference": 0.9861}))  # stored before
    assert "nearest the edit within it of the run's own best" in new and "its best validation one" in old
