"""Latent layers: listing, default (logits), extraction, unknown names."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from plint_core.errors import PlintError
from plint_core.latents import capture, default_layer, extract_latents, list_layers


def test_layers_are_listed_in_forward_order_with_shapes(demo):
    layers = list_layers(demo)
    names = [info.name for info in layers]
    assert names[0] == "conv1" and names[-1] == "logits"
    assert layers[-1].output_shape == (10,)
    assert dict((i.name, i.n_features) for i in layers)["fc1"] == 128
    assert default_layer(demo) == "logits"


def test_two_class_models_default_to_the_hidden_layer(digits):
    """Two logits hold one number's worth of information: the default moves to the last wider layer."""
    from plint_core.latents import resolve_layer
    from plint_core.models.architectures import build_model
    from plint_core.models.spec import PLINT_CNN, ModelBundle, ModelSpec

    spec = ModelSpec(PLINT_CNN, ("normal", "pneumonia"), (1, 8, 8), (0.5,), (0.25,))
    torch.manual_seed(0)
    bundle = ModelBundle(build_model(spec), spec, "two-class")
    assert list_layers(bundle)[-1].output_shape == (2,)
    assert default_layer(bundle) == resolve_layer(bundle, None) == "act3"
    assert extract_latents(bundle, digits.test.images[:5]).shape == (5, 128)


def test_default_latents_are_the_logits(demo, digits):
    images = digits.test.images[:50]
    latents = extract_latents(demo, images, batch_size=16)
    with torch.no_grad():
        logits = demo.module(demo.preprocess(images)).numpy()
    np.testing.assert_allclose(latents, logits, rtol=1e-5, atol=1e-5)
    assert extract_latents(demo, images, "pool2").shape == (50, 64 * 4 * 4)


def test_unknown_layer_names_the_choices(demo, digits):
    with pytest.raises(PlintError, match="unknown layer 'fc9'.*fc1"):
        extract_latents(demo, digits.test.images[:2], "fc9")


def test_capture_keeps_the_graph_for_fine_tuning(demo, digits):
    x = demo.preprocess(digits.test.images[:4])
    with capture(demo.module, "fc1") as box:
        demo.module(x)
    assert box["out"].shape == (4, 128) and box["out"].requires_grad
