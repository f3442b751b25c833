"""The bounded data path: memory-mapped .npz members, images read per batch, the latent cache, and
results identical to computing on whole in-memory arrays."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from plint_core.data import npz as npz_module
from plint_core.data.images import ArrayImages
from plint_core.data.loading import load_data
from plint_core.data.npz import open_npz
from plint_core.embedding.parametric_tsne import TSNEConfig
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig, training_rows
from plint_core.inputs import fit_to_model
from plint_core.intervention import separate_classes
from plint_core.latent_cache import cached_latents
from plint_core.latents import forward_pass
from plint_core.models.spec import ModelSpec
from plint_core.pipeline import prepare_embedding, run_intervention
from plint_core.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SMALL_TSNE = TSNEConfig(n_iter=60, early_exaggeration_iter=20, pca_iter=10, n_landmarks=0, hidden=(32,))


# ------------------------------------------------------------------ .npz members
def test_large_npz_members_are_memory_mapped_stored_or_compressed(tmp_path, monkeypatch):
    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 9, 7, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, images=images, labels=labels)
        arrays = open_npz(path)
        assert isinstance(arrays["images"], np.memmap) and not arrays["images"].flags.writeable
        assert not isinstance(arrays["labels"], np.memmap)  # small: simply read
        np.testing.assert_array_equal(arrays["images"], images)
        np.testing.assert_array_equal(arrays["labels"], labels)


def test_large_temporary_files_go_to_disk_not_memory(tmp_path, monkeypatch):
    """A compressed member is inflated into $PLINT_TMPDIR if set; without it, into the system's temporary folder
    unless that is a tmpfs (memory, counted against a container's limit), then /var/tmp."""
    import os

    from plint_core.scratch import SCRATCH_ENV, mount_type, scratch_dir

    mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n"
    assert mount_type(Path("/tmp/x/y"), mounts) == "tmpfs" and mount_type(Path("/var/tmp"), mounts) == "ext4"
    monkeypatch.delenv(SCRATCH_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", "/tmp")
    if os.access("/var/tmp", os.W_OK):
        assert scratch_dir(mounts) == Path("/var/tmp")
    assert scratch_dir("/dev/vda / ext4 rw 0 0\n") == Path("/tmp")

    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    images = np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint8)
    np.savez_compressed(tmp_path / "c.npz", images=images, labels=np.arange(40) % 2)
    arrays = open_npz(tmp_path / "c.npz")
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.islink(f"/proc/self/fd/{fd}")]
    assert any(link.startswith(str(scratch)) for link in held), held
    assert list(scratch.iterdir()) == []  # unlinked at once: nothing to clean up
    np.testing.assert_array_equal(arrays["images"], images)

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "absent"))
    with pytest.raises(PlintError, match="PLINT_TMPDIR=.* is not a folder this process can write"):
        open_npz(tmp_path / "c.npz")


def test_a_full_scratch_disk_gets_one_message(tmp_path, monkeypatch):
    import errno
    import shutil

    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    np.savez_compressed(tmp_path / "c.npz", images=np.zeros((40, 16, 16), np.uint8), labels=np.arange(40) % 2)

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    with pytest.raises(PlintError, match=r"no room left in .* to unpack c.npz's compressed 'images'.*PLINT_TMPDIR"):
        load_data(tmp_path / "c.npz")


def test_npz_with_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("images.npy", "w") as f:
        np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PlintError, match="Python objects"):
        load_data(path)


def test_splits_of_one_array_are_views_not_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    images = np.random.default_rng(1).integers(0, 256, (200, 16, 16), dtype=np.uint8)
    labels = np.arange(200) % 4
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    data = load_data(tmp_path / "d.npz")
    assert data.train.images.array is data.test.images.array  # one memory map, two row sets
    assert len(data.train) + len(data.test) == 200
    rows = data.train.images.rows
    np.testing.assert_allclose(data.train.images[np.arange(5)][:, 0], images[rows[:5]] / 255.0, atol=0)
    assert data.train.images.dtype == np.float32 and data.train.images.stored(np.arange(3)).dtype == torch.uint8


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_float_images_stay_in_their_stored_dtype(tmp_path, monkeypatch, dtype):
    """float64 (or float16) pixels in [0, 1] stay the memory map they are: read as float32 per batch, no whole
    float32 copy; out-of-range values are still refused."""
    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    images = np.random.default_rng(2).random((120, 8, 8)).astype(dtype)
    np.savez(tmp_path / "f.npz", images=images, labels=np.arange(120) % 3)
    data = load_data(tmp_path / "f.npz")
    assert isinstance(data.train.images.array, np.memmap) and data.train.images.array.dtype == dtype
    rows = data.train.images.rows[:4]
    np.testing.assert_array_equal(data.train.images[np.arange(4)][:, 0], images[rows].astype(np.float32))
    images[7, 3, 3] = 1.5
    np.savez(tmp_path / "bad.npz", images=images, labels=np.arange(120) % 3)
    with pytest.raises(PlintError, match=r"floats outside \[0, 1\]"):
        load_data(tmp_path / "bad.npz")


def test_fingerprint_follows_content_not_storage(tmp_path, monkeypatch):
    images = np.random.default_rng(2).integers(0, 256, (120, 8, 8), dtype=np.uint8)
    labels = np.arange(120) % 3
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    np.savez_compressed(tmp_path / "b.npz", images=images, labels=labels)
    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    mapped = load_data(tmp_path / "a.npz").fingerprint()
    assert load_data(tmp_path / "b.npz").fingerprint() == mapped
    images[7, 3, 3] ^= 1
    np.savez(tmp_path / "c.npz", images=images, labels=labels)
    assert load_data(tmp_path / "c.npz").fingerprint() != mapped


# ------------------------------------------------------------------ conversion per batch
def test_conversion_to_the_model_input_happens_per_read(digits):
    spec = ModelSpec("resnet18", digits.class_names, (3, 32, 32), (0.5,) * 3, (0.5,) * 3)
    fitted = fit_to_model(digits, spec)
    assert fitted.train.images.source_token is digits.train.images.source_token  # nothing was copied
    batch = fitted.train.images[np.arange(4)]
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == np.float32
    assert np.array_equal(batch[:, 0], batch[:, 2]) and 0 <= batch.min() and batch.max() <= 1
    native = fitted.train.images.native(np.arange(4))
    assert native.shape == (4, 1, 8, 8)  # thumbnails read the stored form


# ------------------------------------------------------------------ streaming = in memory
def test_streamed_latents_equal_a_whole_array_forward_pass(digits, demo):
    whole = np.asarray(digits.test.images)  # the old path: the whole split as one float array
    with torch.no_grad():
        logits = demo.module.eval()(demo.preprocess(whole)).numpy()
    latents, preds = forward_pass(demo, digits.test.images, "logits", batch_size=37)
    np.testing.assert_array_equal(latents, logits)
    np.testing.assert_array_equal(preds, logits.argmax(1))


def test_concurrent_passes_on_one_model_do_not_mix(digits, demo):
    """The app serves every session with one model: two passes at once (two layers, two image orders) each get
    exactly what they get alone, and leave no hook behind."""
    import threading

    images = digits.train.images
    backwards = images.subset(np.arange(len(images))[::-1])
    alone = {k: forward_pass(demo, im, layer, batch_size=8) for k, (im, layer) in
             {"a": (images, "logits"), "b": (backwards, "fc1")}.items()}
    together: dict = {}
    start = threading.Barrier(2)

    def worker(key, im, layer):
        start.wait()
        together[key] = forward_pass(demo, im, layer, batch_size=8)

    threads = [threading.Thread(target=worker, args=("a", images, "logits")),
               threading.Thread(target=worker, args=("b", backwards, "fc1"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key in ("a", "b"):
        np.testing.assert_array_equal(together[key][0], alone[key][0])
        np.testing.assert_array_equal(together[key][1], alone[key][1])
    assert not any(m._forward_hooks for m in demo.module.modules())


@pytest.mark.numerics
def test_memory_mapped_file_gives_the_same_coordinates_and_metrics_as_in_memory(tmp_path, monkeypatch, digits, demo):
    # Bitwise: both fits and runs are made in this process, on the same machine and kernels.
    from sklearn.datasets import load_digits

    monkeypatch.setattr(npz_module, "MAP_FROM_BYTES", 1000)
    bunch = load_digits()
    np.savez(tmp_path / "digits.npz", images=(bunch.images / 16.0).astype(np.float32), labels=bunch.target)
    mapped = load_data(tmp_path / "digits.npz")
    assert isinstance(mapped.train.images.array, np.memmap)
    assert not isinstance(digits.train.images.array, np.memmap)
    results = []
    for k, data in enumerate((digits, mapped)):
        store = RunStore(tmp_path / f"store{k}")
        emb = prepare_embedding(data, demo, config=SMALL_TSNE, store=store, device="cpu")
        spec = separate_classes(emb.train_xy, data.train.labels, 1, 8, distance=emb.scale)
        run = run_intervention(data, demo, emb, spec, FinetuneConfig(epochs=1, seed=2, device="cpu"), store=store)
        results.append((emb, run))
    (emb_a, run_a), (emb_b, run_b) = results
    np.testing.assert_array_equal(emb_a.train_xy, emb_b.train_xy)
    np.testing.assert_array_equal(emb_a.test_xy, emb_b.test_xy)
    for key in ("accuracy", "confusion", "per_class", "target_distance"):
        assert run_a.result[key] == run_b.result[key], key


# ------------------------------------------------------------------ the latent cache
def test_latents_are_computed_once_whatever_seed_follows(tmp_path, digits, demo, monkeypatch):
    import plint_core.latent_cache as cache_module

    calls = []
    real = cache_module.forward_pass
    monkeypatch.setattr(cache_module, "forward_pass", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    store = RunStore(tmp_path)
    first = prepare_embedding(digits, demo, seed=0, config=SMALL_TSNE, store=store, device="cpu")
    n_calls = len(calls)
    assert n_calls and sum(c for c in calls if c > 1) == len(digits.train) + len(digits.test)
    second = prepare_embedding(digits, demo, seed=1, config=SMALL_TSNE, store=store, device="cpu")
    assert len(calls) == n_calls, "a second seed must not push the images through the network again"
    assert not np.array_equal(first.train_xy, second.train_xy)
    lat = cached_latents(digits, demo, "logits", store)
    assert lat.cache_hit and isinstance(lat.latents("train"), np.memmap)
    assert lat.latents("train").shape == (len(digits.train), 10) and lat.meta["precision"] == "float32"
    np.testing.assert_array_equal(lat.predictions("test"), first.test_pred)


def test_a_killed_latent_pass_leaves_nothing_behind(tmp_path, digits, demo):
    store = RunStore(tmp_path)

    def boom(fraction: float) -> None:
        if fraction > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_latents(digits, demo, "logits", store, progress=boom)
    assert list((tmp_path / "latents").iterdir()) == []


# ------------------------------------------------------------------ sizing the fine-tune
@pytest.mark.parametrize("workers", [0, 1])
def test_loader_leaves_torchs_global_random_stream_alone(digits, workers):
    """Dropout draws from torch's global generator: two training passes over the loader, with or without
    (persistent) workers, leave it exactly where it was, so fine-tuning does not change with the worker count."""
    from plint_core.data.loader import batch_loader

    loader = batch_loader(digits.train.images, 64, torch.device("cpu"), generator=torch.Generator().manual_seed(1),
                          workers=workers)
    torch.manual_seed(123)
    for _ in range(2):
        assert sum(len(b["index"]) for b in loader) == len(digits.train.images)
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(3), rtol=0, atol=0)


def test_loader_workers_follow_the_containers_cpu_quota(monkeypatch):
    """A hosted container sees its host's cores but may use its quota's: image files get one worker per
    spare usable core (at most 4), arrays on the CPU none, and $PLINT_LOADER_WORKERS wins."""
    from plint_core.data import loader
    from plint_core.data.images import FileImages

    files = FileImages(1.0, paths=(Path("a.png"),), shown=("a.png",))
    monkeypatch.delenv(loader.WORKERS_ENV, raising=False)
    monkeypatch.setattr(loader.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    for quota, expected in ((None, 4), (2, 1), (1, 0), (3, 2)):
        monkeypatch.setattr(loader, "cpu_quota", lambda quota=quota: quota)
        assert loader.default_workers(files, torch.device("cpu")) == expected, quota
    assert loader.default_workers(ArrayImages(255.0, array=np.zeros((2, 4, 4), np.uint8), layout="NHW"),
                                  torch.device("cpu")) == 0
    monkeypatch.setenv(loader.WORKERS_ENV, "3")
    assert loader.default_workers(files, torch.device("cpu")) == 3


def test_training_rows_are_stratified_and_keep_every_moved_point():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    moved = np.zeros(len(labels), bool)
    moved[[5, 450, 990]] = True
    rows = training_rows(labels, moved, 200, seed=0)
    assert len(rows) == 200 and set(np.flatnonzero(moved)) <= set(rows.tolist())
    counts = np.bincount(labels[rows], minlength=4)
    np.testing.assert_allclose(counts / 200, [0.4, 0.3, 0.2, 0.1], atol=0.02)
    np.testing.assert_array_equal(rows, training_rows(labels, moved, 200, seed=0))
    assert not np.array_equal(rows, training_rows(labels, moved, 200, seed=1))
    assert len(training_rows(labels, moved, None, seed=0)) == 1000
    np.testing.assert_array_equal(training_rows(labels, moved, 2, seed=0), np.flatnonzero(moved))


def test_run_on_a_subset_reports_it_and_estimates_time_left(tmp_path, digits, demo, demo_embedding):
    spec = separate_classes(demo_embedding.train_xy, digits.train.labels, 1, 8, distance=demo_embedding.scale)
    events = []
    config = FinetuneConfig(epochs=2, train_points=300, device="cpu")
    run = run_intervention(digits, demo, demo_embedding, spec, config, store=RunStore(tmp_path), progress=events.append)
    n_moved = run.result["n_moved"]
    assert run.result["n_train"] == 300 and n_moved > 0 and run.result["finetune"]["train_points"] == 300
    assert events[0].steps == -(-300 // config.batch_size)
    assert [e.seconds_left for e in events[:4]] == [None] * 4
    left = [e.seconds_left for e in events[4:]]
    assert all(s is not None and s >= 0 for s in left) and left[-1] == pytest.approx(0.0, abs=1e-9)
    full = FinetuneConfig(epochs=2, device="cpu")
    assert "train_points" not in full.key_dict()  # runs without a subset keep their earlier keys


@pytest.mark.numerics
def test_amp_on_the_cpu_runs_in_bfloat16_and_stays_close(tmp_path, digits, demo, demo_embedding):
    # Measured (2 epochs, fine-tuning seeds 0-2, each under ATEN_CPU_CAPABILITY default / avx2 / avx512 on that
    # kernel set's own demo embedding, 2026-12-03): |float32 - bfloat16| at most 0.0028 (one test image of 360),
    # after and control; the bound 0.03 (11 images) leaves a tenfold margin.
    spec = separate_classes(demo_embedding.train_xy, digits.train.labels, 1, 8, distance=demo_embedding.scale)
    plain = run_intervention(digits, demo, demo_embedding, spec, FinetuneConfig(epochs=2, device="cpu"),
                             store=RunStore(tmp_path / "a"))
    mixed = run_intervention(digits, demo, demo_embedding, spec, FinetuneConfig(epochs=2, device="cpu", amp=True),
                             store=RunStore(tmp_path / "b"))
    assert plain.result["precision"] == "float32" and mixed.result["precision"] == "bfloat16"
    for name in ("after", "control"):
        assert abs(plain.result["accuracy"][name] - mixed.result["accuracy"][name]) <= 0.03


# ------------------------------------------------------------------ image files read on demand
def test_an_image_broken_after_loading_is_named_when_read(tmp_path):
    from own_data import write_image_folder

    root = write_image_folder(tmp_path / "fruit", n_per_class=6)
    data = load_data(root)
    victim = next((root / "banana").iterdir())
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(PlintError, match=rf"cannot read image 'banana/{victim.name}'"):
        np.asarray(data.train.images), np.asarray(data.test.images)
    victim.unlink()  # deleted since the folder was listed: one message, not a FileNotFoundError
    with pytest.raises(PlintError, match=rf"cannot read image 'banana/{victim.name}': .*open it again"):
        np.asarray(data.train.images), np.asarray(data.test.images)


def test_image_files_through_loader_workers(tmp_path, monkeypatch, demo):
    from own_data import write_image_folder

    from plint_core.data.loader import WORKERS_ENV

    root = write_image_folder(tmp_path / "fruit", n_per_class=6)
    data = load_data(root, image_size=(8, 8))
    bundle = demo
    spec = ModelSpec(bundle.spec.arch, data.class_names, (1, 8, 8), bundle.spec.mean, bundle.spec.std)
    images = fit_to_model(data, spec).train.images
    _, in_process = forward_pass(bundle, images, None, workers=0)
    monkeypatch.setenv(WORKERS_ENV, "1")
    _, with_worker = forward_pass(bundle, images, None)
    np.testing.assert_array_equal(in_process, with_worker)
    victim = images.paths[int(images.source_rows()[-1])]  # a training image
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(PlintError) as caught:  # raised in the worker, shown as its own one line
        forward_pass(bundle, images, None)
    assert str(caught.value).startswith(f"cannot read image '{victim.parent.name}/{victim.name}'")
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------ bounded memory
PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from plint_core.embedding.parametric_tsne import TSNEConfig
    from plint_core.inputs import open_inputs
    from plint_core.models.sources import ModelOptions
    from plint_core.pipeline import prepare_embedding
    from plint_core.store import RunStore
    data_path, model_path, runs = sys.argv[1:4]
    inputs = open_inputs(model_path, data_path, ModelOptions(input_size=(224, 224), channels=3))
    assert inputs.data.input_shape == (3, 224, 224)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = rss()
    config = TSNEConfig(n_iter=60, early_exaggeration_iter=20, pca_iter=10, n_landmarks=0, hidden=(32,))
    emb = prepare_embedding(inputs.data, inputs.bundle, config=config, store=RunStore(runs), device="cpu")
    print(json.dumps({"before_mb": before, "peak_mb": rss(), "n": len(emb.train_xy) + len(emb.test_xy)}))
""")


def test_embedding_224px_images_stays_bounded(tmp_path):
    """2,500 grayscale images shown to a tiny CNN as 3×224×224: as one float array the splits would take
    1.5 GB; streamed, the whole embedding adds less than a fifth of that to the process."""
    from plint_core.models.spec import ModelBundle, ModelSpec
    from plint_core.models.architectures import build_model
    from plint_core.models.weights import save_model, state_fingerprint

    rng = np.random.default_rng(0)
    n = 2500
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    images[labels == 1, 10:18, :] = 200
    np.savez(tmp_path / "xrays.npz", images=images, labels=labels)
    spec = ModelSpec("plint-cnn", ("0", "1"), (3, 224, 224), (0.5,) * 3, (0.25,) * 3, {"width": 4, "hidden": 8})
    torch.manual_seed(0)
    module = build_model(spec)
    save_model(ModelBundle(module, spec, state_fingerprint(module)), tmp_path / "tiny.pt")
    materialised_mb = n * 3 * 224 * 224 * 4 / 2**20
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "xrays.npz"), str(tmp_path / "tiny.pt"),
                           str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["n"] == n
    grown = probe["peak_mb"] - probe["before_mb"]
    assert grown < 0.2 * materialised_mb, (grown, materialised_mb)


LOADER_OWNER = """
import os, sys, time
import numpy as np, torch
sys.path.insert(0, {repo!r})
from plint_core.data.images import ArrayImages
from plint_core.data.loader import batch_loader, iterate
images = ArrayImages(255.0, array=np.zeros((64, 8, 8), np.uint8), layout="NHW")
loader = batch_loader(images, 8, torch.device("cpu"), workers=1)
next(iter(iterate(loader)))
print(" ".join(str(p.pid) for p in loader._iterator._workers), flush=True)
time.sleep(120)
"""


def test_loader_workers_end_with_a_killed_owner(tmp_path):
    """A loader worker must not outlive the process that made its loader (killed server or worker process)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    owner = subprocess.Popen([sys.executable, "-c", LOADER_OWNER.format(repo=str(Path(__file__).parent.parent))],
                             stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in owner.stdout.readline().split()]
    assert workers, "the loader started a worker process"
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() and
                                              Path(f"/proc/{w}/stat").read_text().split()[2] != "Z" for w in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{w}").exists() and Path(f"/proc/{w}/stat").read_text().split()[2] != "Z"
                   for w in workers), "the loader worker outlived its owner"


def test_a_loader_worker_whose_owner_died_before_it_started_exits_at_once():
    """The race torch's own check misses: the owner was gone before the worker looked (its parent is init)."""
    import subprocess
    import sys

    code = ("import sys, time; sys.path.insert(0, %r); from plint_core.data.loader import _exit_with_owner; "
            "_exit_with_owner(-1, 0); time.sleep(60)") % str(__import__("pathlib").Path(__file__).parent.parent)
    proc = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert proc.returncode == 0
