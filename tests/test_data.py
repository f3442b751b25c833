"""Data sources: digits, MedMNIST-layout and images/labels .npz, and the messages for bad files."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_npz_arrays

from plint_core.data.dataset import SPLIT_SEED, TEST_FRACTION
from plint_core.data.loading import load_data
from plint_core.errors import PlintError


def test_digits_is_split_stratified_with_stable_ids(digits):
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert digits.train.images.shape == (1437, 1, 8, 8) and digits.test.images.shape == (360, 1, 8, 8)
    assert digits.train.images.dtype == np.float32
    assert 0.0 <= np.asarray(digits.train.images).min() and np.asarray(digits.train.images).max() <= 1.0
    np.testing.assert_array_equal(digits.train.ids, np.arange(1437))
    test_share = np.bincount(digits.test.labels) / np.bincount(np.concatenate([digits.train.labels, digits.test.labels]))
    assert np.allclose(test_share, TEST_FRACTION, atol=0.02)


def test_split_is_the_same_on_every_load(digits):
    again = load_data("digits")
    np.testing.assert_array_equal(again.test.images, digits.test.images)
    assert again.fingerprint() == digits.fingerprint()
    assert SPLIT_SEED == 2006_12902  # changing it would silently leak test rows of old models


def test_images_labels_npz(tmp_path):
    images, labels = make_npz_arrays(n_per_class=10)
    path = tmp_path / "bands.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["top", "middle", "bottom"]))
    ds = load_data(path)
    assert ds.class_names == ("top", "middle", "bottom")
    assert len(ds.train) == 24 and len(ds.test) == 6
    assert ds.input_shape == (1, 8, 8)
    assert np.asarray(ds.train.images).max() <= 1.0 and np.asarray(ds.train.images).max() > 0.8  # uint8 scaled by 1/255


def test_medmnist_layout_with_rgb_and_column_labels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 6, 6, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(tmp_path / "med.npz", **arrays)
    ds = load_data(tmp_path / "med.npz")
    assert ds.train.images.shape == (20, 3, 6, 6)
    assert ds.val is not None and len(ds.val) == 6 and len(ds.test) == 8
    np.testing.assert_allclose(ds.train.images[0, 2], arrays["train_images"][0, :, :, 2] / 255.0, atol=1e-6)
    assert ds.train.labels.shape == (20,)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros(3)}, "expected train_images"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0, 1, 0])}, "4 images but 3 labels"),
    ({"images": np.full((6, 8, 8), 2.0), "labels": np.array([0, 1] * 3)}, "outside [0, 1]"),
    ({"images": np.full((6, 8, 8), np.nan), "labels": np.array([0, 1] * 3)}, "NaN"),
    ({"images": np.zeros((6, 8, 8), np.uint8), "labels": np.zeros(6, int)}, "at least 2"),
    ({"images": np.zeros((6, 8, 8), np.uint8), "labels": np.array([0, 1, 0, 1, 0, -1])}, "0..K-1"),
    ({"images": np.zeros((6, 8, 8), np.uint8), "labels": np.array([0.0, 1.0] * 3)}, "integer"),
    ({"images": np.zeros((6, 8, 8), np.uint8), "labels": np.array([0, 0, 0, 1, 1, 2])}, "fewer than 2 samples"),
    ({"train_images": np.zeros((4, 8, 8), np.uint8), "train_labels": np.array([0, 1, 0, 1]),
      "test_images": np.zeros((2, 8, 8), np.uint8), "test_labels": np.array([0, 0])}, "no samples in the test split"),
])
def test_bad_npz_is_rejected_with_a_message(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(PlintError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_data(path)


def test_missing_truncated_and_wrong_type_files(tmp_path):
    with pytest.raises(PlintError, match="does not exist"):
        load_data(tmp_path / "nope.npz")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(PlintError, match="unsupported data file type"):
        load_data(tmp_path / "data.csv")
    images, labels = make_npz_arrays()
    np.savez(tmp_path / "ok.npz", images=images, labels=labels)
    blob = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PlintError, match="cannot read"):
        load_data(tmp_path / "cut.npz")
