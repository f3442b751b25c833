"""The panel of latent spaces that ``bench_ptsne.py --panel`` maps (issue 21), built once and cached in bench/out/.

Each space is a named row: whose latents, which layer, how many points.

* ``mnist-e1-logits`` … ``fashion-e3-fc1``: the plint CNN (:func:`common.cached_model`, seed 0; ``e1s5``: seed 5,
  the 1-epoch CNN whose logits issue 21 found mapped at 0.47× openTSNE's recall) trained 1 or 3 epochs on the data set's training split; the latents of its whole training split (MNIST: mnist70k's
  56,000; Fashion-MNIST: 60,000) at layer ``logits`` (10 features) or ``fc1`` (the 128-feature hidden layer,
  before its ReLU).
* ``rgb-resnet18-avgpool``: a torchvision ResNet-18 (random start, 3 channels) trained 2 epochs with Adam in a
  plain PyTorch loop on a made RGB data set, *tinted Fashion-MNIST*: 30,000 training images padded to 32×32,
  each multiplied by its own random colour (so colour is a nuisance the model must ignore); the weights are
  written as safetensors and loaded back through plint's own-model path
  (:func:`plint_core.models.sources.load_classifier` with ``arch="resnet18"``), as a lab's model would be;
  latents are its 512-feature ``avgpool``.
* ``mnist-100k-logits``: the 3-epoch MNIST CNN's logits of mnist70k's training split replicated to 100,000
  images with :func:`plint_core.data.replicate.replicate_train` (what ``PLINT_SCALE_POINTS`` shows).

``python bench/latent_panel.py`` builds every space (about 15 minutes on 2 cores, mostly training).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from common import OUT, cached_model, data_source

from plint_core.data.loading import load_data
from plint_core.data.replicate import replicate_train
from plint_core.latents import extract_latents

SPACES = ("mnist-e1-logits", "mnist-e1s5-logits", "mnist-e3-logits", "fashion-e1-logits", "fashion-e3-logits",
          "mnist-e1-fc1", "mnist-e3-fc1", "fashion-e1-fc1", "fashion-e3-fc1",
          "rgb-resnet18-avgpool", "mnist-100k-logits")
"""The panel's rows, in the order bench_ptsne.py prints them."""

QUICK_SPACES = ("digits-demo-logits", "digits-demo-fc1")
"""``bench_ptsne.py --quick --protocol panel``: the bundled demo CNN's layers on scikit-learn's digits (not cached)."""

RGB_TRAIN = 30_000
RGB_EPOCHS = 2


def panel_latents(space: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(latents float32 [N, F], labels [N])`` of panel row ``space``, cached in bench/out/."""
    if space in QUICK_SPACES:
        data = load_data(data_source("digits"))
        return extract_latents(cached_model("digits", epochs=0), data.train.images, space.split("-")[-1]), \
            np.asarray(data.train.labels)
    if space not in SPACES:
        sys.exit(f"unknown latent space {space!r}: choose from {', '.join(SPACES + QUICK_SPACES)}")
    path = OUT / f"panel_latents_{space}_s{seed}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["X"], f["labels"]
    t = time.perf_counter()
    if space == "rgb-resnet18-avgpool":
        X, labels = _resnet_latents(seed)
    elif space == "mnist-100k-logits":
        data = replicate_train(load_data(data_source("mnist")), 100_000, seed=seed)
        X = extract_latents(cached_model("mnist", epochs=3, seed=seed), data.train.images, "logits")
        labels = np.asarray(data.train.labels)
    else:
        name, epochs, layer = space.split("-")
        epochs, _, model_seed = epochs[1:].partition("s")
        data = load_data(data_source(name))
        model = cached_model(name, epochs=int(epochs), seed=int(model_seed) if model_seed else seed)
        X = extract_latents(model, data.train.images, layer)
        labels = np.asarray(data.train.labels)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X.astype(np.float32), labels=labels)
    print(f"built {space}: {X.shape} in {time.perf_counter() - t:.1f} s", flush=True)
    return X, labels


def tinted_fashion(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``n`` Fashion-MNIST training images as RGB ``[n, 3, 32, 32]`` float in [0, 1], each tinted by its own
    random colour (per channel uniform in [0.3, 1]), with their labels and the class names."""
    data = load_data(data_source("fashion"))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(data.train), size=n, replace=False))
    gray = data.train.images.to_unit(data.train.images.stored(rows)).numpy()[:, 0]  # [n, 28, 28]
    gray = np.pad(gray, ((0, 0), (2, 2), (2, 2)))
    tint = rng.uniform(0.3, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    return (gray[:, None] * tint).astype(np.float32), np.asarray(data.train.labels)[rows], tuple(data.class_names)


def _resnet_latents(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from safetensors.torch import save_file

    from plint_core.models.sources import load_classifier
    from plint_core.models.torchvision_models import build_torchvision

    images, labels, names = tinted_fashion(RGB_TRAIN, seed)
    weights = OUT / f"panel_resnet18_rgb_e{RGB_EPOCHS}_s{seed}.safetensors"
    mean, std = images.mean(axis=(0, 2, 3)), images.std(axis=(0, 2, 3))
    if not weights.exists():
        torch.manual_seed(seed)
        model = build_torchvision("resnet18", len(names))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x_all = torch.from_numpy((images - mean[:, None, None]) / std[:, None, None])
        y_all = torch.from_numpy(labels.astype(np.int64))
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(RGB_EPOCHS):
            t, total = time.perf_counter(), 0.0
            for idx in torch.randperm(len(x_all), generator=gen).split(128):
                loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            print(f"resnet18 epoch {epoch + 1}: loss {total / len(x_all):.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
        save_file({k: v.contiguous() for k, v in model.eval().state_dict().items()}, str(weights))
    bundle = load_classifier(weights, arch="resnet18", classes=names, input_size=(32, 32), channels=3,
                             mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
    return extract_latents(bundle, images, "avgpool"), labels


if __name__ == "__main__":
    for s in sys.argv[1:] or SPACES:
        X, y = panel_latents(s)
        print(f"{s}: {X.shape}, {len(np.unique(y))} classes", flush=True)
