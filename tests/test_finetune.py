"""Fine-tuning: the PLI loss pulls the embedding to its targets, the control is CE only, progress, cancel."""
from __future__ import annotations

import copy
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from plint_core.errors import PlintError, RunCancelled
from plint_core.finetune import MOVED_PER_BATCH, FinetuneConfig, TrainingBatchSource, finetune_pair
from plint_core.latents import extract_latents


@pytest.fixture(scope="module")
def setup(digits, demo):
    torch.manual_seed(0)
    embedder = nn.Sequential(nn.Linear(10, 2))
    images = digits.train.images[:300]
    with torch.no_grad():
        y = embedder(torch.as_tensor(extract_latents(demo, images))).numpy()
    targets = y.copy()
    moved = digits.train.labels[:300] == 3
    targets[moved] += np.array([5.0, 0.0], dtype=np.float32)
    scale = float(np.sqrt(((y - y.mean(0)) ** 2).sum(1).mean()))
    return embedder, TrainingBatchSource(images, digits.train.labels[:300], targets), moved, scale


def _distance(module, demo, embedder, source, moved):
    from plint_core.models.spec import ModelBundle
    lat = extract_latents(ModelBundle(module, demo.spec, ""), source.images[moved])
    with torch.no_grad():
        y = embedder(torch.as_tensor(lat)).numpy()
    return float(np.linalg.norm(y - source.targets[moved], axis=1).mean())


@pytest.mark.numerics
def test_pli_follows_targets_and_control_does_not(demo, setup):
    embedder, source, moved, scale = setup
    cfg = FinetuneConfig(lam=0.5, epochs=4, lr=1e-3, batch_size=32, seed=0, device="cpu", weighting="scaled")
    weights = {k: v.clone() for k, v in embedder.state_dict().items()}
    trainable = [p.requires_grad for p in embedder.parameters()]
    pli, control, _ = finetune_pair(demo, "logits", embedder, scale, source, cfg)
    before = _distance(demo.module, demo, embedder, source, moved)
    after = _distance(pli, demo, embedder, source, moved)
    assert after < 0.5 * before
    assert _distance(control, demo, embedder, source, moved) > 2 * after
    for k, v in embedder.state_dict().items():  # E stays frozen: fine-tuning trains a frozen copy of it
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    assert [p.requires_grad for p in embedder.parameters()] == trainable  # and leaves the shared one as it was
    assert demo.module.training is False  # the base model is untouched


def test_lambda_zero_makes_pli_identical_to_control(demo, setup):
    embedder, source, _, scale = setup
    cfg = FinetuneConfig(lam=0.0, epochs=1, batch_size=64, seed=5, device="cpu")
    pli, control, _ = finetune_pair(demo, "logits", embedder, scale, source, cfg)
    for a, b in zip(pli.state_dict().values(), control.state_dict().values()):
        assert torch.equal(a, b)


def test_progress_reports_every_step_of_both_runs(demo, setup):
    embedder, source, _, scale = setup
    events = []
    finetune_pair(demo, "logits", embedder, scale, source,
                  FinetuneConfig(epochs=2, batch_size=100, device="cpu"), progress=events.append)
    assert [e.run for e in events] == ["control"] * 6 + ["pli"] * 6  # the control first: follow's reference
    assert [(e.epoch, e.step) for e in events[6:]] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert events[5].fraction == 1.0 and events[11].fraction == 1.0 and all(np.isfinite([e.ce, e.embed, e.loss]).all() for e in events)


def test_cancel_stops_the_run(demo, setup):
    embedder, source, _, scale = setup
    cancel = threading.Event()

    def progress(p):
        if p.step == 2:
            cancel.set()

    with pytest.raises(RunCancelled):
        finetune_pair(demo, "logits", embedder, scale, source, FinetuneConfig(epochs=3, batch_size=50, device="cpu"),
                      progress=progress, cancel=cancel)


@pytest.mark.parametrize("kwargs, message", [
    ({"lam": 1.5}, "lam is 1.5"), ({"lam": float("nan")}, "lam is nan"), ({"epochs": 0}, "epochs is 0"),
    ({"lr": 0.0}, "learning rate"), ({"batch_size": 0}, "batch size"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(PlintError, match=message):
        FinetuneConfig(**kwargs)


@pytest.mark.numerics
def test_same_spec_and_seed_give_identical_runs(digits, demo, tmp_path):
    """Two runs of one spec and seed on the CPU, each computed in its own store: identical metrics and weights."""
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.intervention import separate_classes
    from plint_core.pipeline import prepare_embedding, run_intervention
    from plint_core.store import RunStore

    small = TSNEConfig(n_iter=60, early_exaggeration_iter=20, pca_iter=10, n_landmarks=0, hidden=(32,))
    emb = prepare_embedding(digits, demo, config=small, store=RunStore(tmp_path / "emb"), device="cpu")
    spec = separate_classes(emb.train_xy, digits.train.labels, 1, 8, distance=emb.scale)
    cfg = FinetuneConfig(epochs=2, seed=3, device="cpu")
    runs = [run_intervention(digits, demo, emb, spec, cfg, store=RunStore(tmp_path / f"runs{k}")) for k in (0, 1)]
    assert not runs[1].cache_hit
    for key in ("accuracy", "confusion", "per_class", "target_distance"):
        assert runs[0].result[key] == runs[1].result[key], key
    for name in ("finetuned.safetensors", "control.safetensors"):
        assert (runs[0].directory / name).read_bytes() == (runs[1].directory / name).read_bytes()


def test_embed_on_moved_ignores_the_targets_of_unmoved_points(demo, setup):
    """With ``embed_on="moved"`` the embedding term acts on the moved rows only: the unmoved rows' targets
    do not matter (with ``all`` they do)."""
    embedder, source, moved, scale = setup
    garbage = source.targets.copy()
    garbage[~moved] += 50.0
    results = {}
    for embed_on in ("moved", "all"):
        cfg = FinetuneConfig(lam=0.5, epochs=1, batch_size=32, device="cpu", embed_on=embed_on, select="last")
        a, _, _ = finetune_pair(demo, "logits", embedder, scale,
                                TrainingBatchSource(source.images, source.labels, source.targets, moved), cfg)
        b, _, _ = finetune_pair(demo, "logits", embedder, scale,
                                TrainingBatchSource(source.images, source.labels, garbage, moved), cfg)
        results[embed_on] = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert results == {"moved": True, "all": False}
    with pytest.raises(PlintError, match="which training points were moved"):
        finetune_pair(demo, "logits", embedder, scale, source, FinetuneConfig(epochs=1, embed_on="moved"))


def test_moved_per_batch_gives_every_pli_step_its_pull_and_leaves_the_control_as_it_was(demo, setup):
    """With ``embed_on="moved"`` and few moved rows most batches hold none, and their embedding term is 0;
    ``moved_per_batch`` adds that many moved rows to every PLI step, so every step pulls. Cross-entropy stays on
    the batch's own rows, and the control (λ 0) trains exactly as without it."""
    embedder, source, _, scale = setup
    few = np.zeros(len(source.labels), dtype=bool)
    few[np.flatnonzero(source.labels == 3)[:4]] = True  # 4 of 300 rows: most batches of 32 hold none
    src = TrainingBatchSource(source.images, source.labels, source.targets, few)
    embeds, models = {}, {}
    for k in (0, 3):
        seen = []
        cfg = FinetuneConfig(lam=0.5, steps=12, batch_size=32, device="cpu", embed_on="moved", select="last",
                             moved_per_batch=k)
        models[k] = finetune_pair(demo, "logits", embedder, scale, src, cfg,
                                  progress=lambda p, seen=seen: seen.append(p))
        embeds[k] = [p.embed for p in seen if p.run == "pli"]
    assert len(embeds[0]) == len(embeds[3]) == 12
    assert min(embeds[0]) == 0.0, "without it, some batches carry no moved row"
    assert min(embeds[3]) > 0.0, "with it, every step's embedding term pulls"
    (pli0, control0, _), (pli3, control3, _) = models[0], models[3]
    assert all(torch.equal(a, b) for a, b in zip(control0.state_dict().values(), control3.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(pli0.state_dict().values(), pli3.state_dict().values()))
    assert FinetuneConfig().key_dict()["moved_per_batch"] == MOVED_PER_BATCH == 8
    for off in (FinetuneConfig(moved_per_batch=0), FinetuneConfig(embed_on="all"), FinetuneConfig(embed_on="balanced")):
        assert "moved_per_batch" not in off.key_dict()  # where it is off or unused, runs keep their earlier keys
    with pytest.raises(PlintError, match="moved per batch is -1"):
        FinetuneConfig(moved_per_batch=-1)


@pytest.mark.parametrize("config", [
    FinetuneConfig(), FinetuneConfig(embed_on="all"), FinetuneConfig(moved_per_batch=0),
    FinetuneConfig(embed_on="moved", moved_per_batch=3), FinetuneConfig(embed_on="balanced", class_weight="inverse"),
    FinetuneConfig(train_points=50, epochs=3, select="best-val", patience=2)])
def test_a_stored_runs_key_gives_back_the_config_it_was_made_with(config):
    """A run's stored ``key_dict`` leaves out fields at the one value they take there; reading it back must give
    that value, not today's default (a run made with ``embed_on="all"`` before ``auto`` was the default, or before
    ``moved_per_batch`` existed, is replayed as it was made)."""
    back = FinetuneConfig.from_key_dict(config.key_dict())
    assert back.key_dict() == config.key_dict()
    assert back.embed_on == config.embed_on
    old = {k: v for k, v in FinetuneConfig(embed_on="all").key_dict().items()}  # stored before either field
    assert FinetuneConfig.from_key_dict(old).embed_on == "all"
    assert FinetuneConfig.from_key_dict({"lam": 0.5}).moved_per_batch == 0


@pytest.mark.numerics
def test_the_calibrated_weighting_gives_the_embedding_term_its_share_of_the_gradient(demo, setup):
    """At the start, ``lam * m * embed`` pulls ``lam / (1 - lam)`` times as hard as ``(1 - lam) * CE`` (mean gradient
    norms over the calibration batches), whatever the map's scale; the paper's weighting (m = 1) and the scaled
    one (m = 1 / s²) are plain multipliers, and without moved points in the batches it falls back to the scaled."""
    from plint_core.finetune import _multiplier

    embedder, source, moved, scale = setup
    sels = {}
    for weighting in ("calibrated", "paper", "scaled"):
        cfg = FinetuneConfig(lam=0.5, steps=5, batch_size=32, device="cpu", weighting=weighting, select="last")
        _, _, sels[weighting] = finetune_pair(demo, "logits", embedder, scale, source, cfg)
    cal = sels["calibrated"]["pli"].calibration
    assert cal["batches"] == 10, "300 rows in batches of 32: all of them, at most 16"
    assert cal["multiplier"] == pytest.approx(cal["ce_grad"] / cal["embed_grad"]) and cal["used"] == cal["multiplier"]
    assert sels["paper"]["pli"].calibration is None and sels["calibrated"]["control"].calibration is None
    cfg = FinetuneConfig()
    assert _multiplier(replace(cfg, weighting="paper"), scale, None) == 1.0
    assert _multiplier(replace(cfg, weighting="scaled"), scale, None) == pytest.approx(1 / scale ** 2)
    assert _multiplier(cfg, scale, {"multiplier": None}) == pytest.approx(1 / scale ** 2)
    # the multiplier follows the map's scale: a map twice as large has squared distances, and their gradient, four
    # times as large, and a quarter of the multiplier: the embedding term pulls as hard as before
    doubled = TrainingBatchSource(source.images, source.labels, 2 * source.targets, moved)
    cfg = FinetuneConfig(lam=0.5, steps=5, batch_size=32, device="cpu", select="last")
    _, _, sel = finetune_pair(demo, "logits", lambda_scaled(embedder, 2.0), 2 * scale, doubled, cfg)
    assert sel["pli"].calibration["multiplier"] == pytest.approx(cal["multiplier"] / 4, rel=1e-3)


def lambda_scaled(embedder, factor):
    """``embedder`` with its output scaled by ``factor`` (the same map, twice as large)."""
    scaled = copy.deepcopy(embedder)
    with torch.no_grad():
        for p in scaled.parameters():
            p.mul_(factor)
    return scaled


@pytest.mark.numerics
def test_the_three_weightings_and_sgd_train_differently_and_sgd_follows_the_edit(demo, setup):
    embedder, source, moved, scale = setup
    finals = {}
    for name, kw in (("calibrated", {}), ("paper", {"weighting": "paper"}), ("sgd", {"optimizer": "sgd", "lr": 0.01})):
        cfg = FinetuneConfig(lam=0.5, epochs=2, batch_size=32, device="cpu", select="last", **kw)
        pli, control, _ = finetune_pair(demo, "logits", embedder, scale, source, cfg)
        finals[name] = (pli, control)
    first = lambda m: next(iter(m.state_dict().values()))  # noqa: E731
    assert not torch.equal(first(finals["calibrated"][0]), first(finals["paper"][0]))
    assert not torch.equal(first(finals["calibrated"][0]), first(finals["sgd"][0]))
    pli, control = finals["sgd"]
    assert _distance(pli, demo, embedder, source, moved) < _distance(control, demo, embedder, source, moved)


@pytest.mark.parametrize("kwargs, message", [
    ({"weighting": "strong"}, "weighting is 'strong'"), ({"optimizer": "rmsprop"}, "optimizer is 'rmsprop'"),
    ({"select": "best"}, "select is 'best'"), ({"tolerance": -0.1}, "tolerance is -0.1"),
])
def test_bad_pick_and_weighting_settings(kwargs, message):
    with pytest.raises(PlintError, match=message):
        FinetuneConfig(**kwargs)


def test_balanced_weights_give_moved_and_unmoved_rows_half_the_term_each():
    from plint_core.finetune import balanced_weights

    moved = np.zeros(100, dtype=bool)
    moved[:4] = True
    w = balanced_weights(moved)
    assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0)
    assert w[moved].sum() == pytest.approx(w[~moved].sum()) == pytest.approx(50.0)
    assert w[0] == pytest.approx(12.5) and w[-1] == pytest.approx(50 / 96)
    for every in (np.zeros(7, dtype=bool), np.ones(7, dtype=bool)):  # nothing to balance: the plain mean
        assert np.array_equal(balanced_weights(every), np.ones(7, dtype=np.float32))


@pytest.mark.numerics
def test_embed_on_balanced_holds_the_unmoved_points_and_pulls_the_moved_ones_harder(demo, setup):
    """``balanced`` keeps every row's target (the unmoved rows' targets matter, unlike ``moved``), is ``all``
    itself where every row was moved, and with the same multiplier pulls the few moved rows (the 3s, a tenth of
    the rows) nearer their targets than ``all`` does: balanced ÷ all was 0.50 here, and 0.35-0.56 over seeds 0-4,
    the same under ``ATEN_CPU_CAPABILITY`` avx2 and default (2026-12-04, 2-core AVX-512 machine); the limit 0.8."""
    embedder, source, moved, scale = setup
    cfg = FinetuneConfig(lam=0.5, epochs=1, batch_size=32, device="cpu", embed_on="balanced", select="last",
                         weighting="scaled")
    garbage = source.targets.copy()
    garbage[~moved] += 50.0
    a, _, _ = finetune_pair(demo, "logits", embedder, scale,
                            TrainingBatchSource(source.images, source.labels, source.targets, moved), cfg)
    b, _, _ = finetune_pair(demo, "logits", embedder, scale,
                            TrainingBatchSource(source.images, source.labels, garbage, moved), cfg)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    every = np.ones(len(moved), dtype=bool)
    c, _, _ = finetune_pair(demo, "logits", embedder, scale,
                            TrainingBatchSource(source.images, source.labels, source.targets, every), cfg)
    d, _, _ = finetune_pair(demo, "logits", embedder, scale, source, replace(cfg, embed_on="all"))
    assert all(torch.equal(x, y) for x, y in zip(c.state_dict().values(), d.state_dict().values()))
    balanced = _distance(a, demo, embedder, source, moved)
    plain = _distance(d, demo, embedder, source, moved)
    print(f"moved rows' distance: balanced {balanced:.3f}, all {plain:.3f}")
    assert balanced < 0.8 * plain


def test_resolve_embed_on_takes_the_moved_rows_only_for_a_small_edit():
    from plint_core.finetune import AUTO_MOVED_SHARE, resolve_embed_on

    few = np.zeros(1000, dtype=bool)
    few[:int(AUTO_MOVED_SHARE * 1000) - 1] = True
    many = np.zeros(1000, dtype=bool)
    many[:int(AUTO_MOVED_SHARE * 1000)] = True
    assert resolve_embed_on("auto", few) == "moved" and resolve_embed_on("auto", many) == "all"
    assert resolve_embed_on("auto", np.zeros(10, dtype=bool)) == "all" and resolve_embed_on("auto", None) == "all"
    for explicit in ("all", "moved", "balanced"):
        assert resolve_embed_on(explicit, few) == explicit
    assert FinetuneConfig().embed_on == "auto" and "embed_on" in FinetuneConfig().key_dict()
    assert "embed_on" not in FinetuneConfig(embed_on="all").key_dict(), "an explicit all keeps the older runs' keys"


def test_embed_on_auto_is_moved_for_a_few_moved_rows_and_all_for_a_class(demo, setup):
    """The default resolves per edit, to exactly what the named setting does, and the run records which."""
    embedder, source, moved, scale = setup
    few = np.zeros_like(moved)
    few[np.flatnonzero(moved)[:5]] = True  # 5 of 300 rows: an instance edit
    cfg = FinetuneConfig(lam=0.5, epochs=1, batch_size=32, device="cpu", select="last")

    def weights(embed_on, mask):
        m, _, info = finetune_pair(demo, "logits", embedder, scale,
                                   TrainingBatchSource(source.images, source.labels, source.targets, mask),
                                   replace(cfg, embed_on=embed_on))
        return [v.clone() for v in m.state_dict().values()], info

    for mask, named in ((few, "moved"), (moved, "all")):  # the 3s are a tenth of the rows: a class edit
        auto, info = weights("auto", mask)
        same, _ = weights(named, mask)
        assert all(torch.equal(x, y) for x, y in zip(auto, same)), named
        assert info["pli"].embed_on == named and info["control"].embed_on is None
