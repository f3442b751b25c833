"""Image folders, their zips, fitting images to a model's input, and torchvision's MNIST from a cache."""
from __future__ import annotations

import gc

import tempfile

import numpy as np
import torch
import pytest
from own_data import CLASSES, files_under, write_image_folder, zip_folder
from PIL import Image

from plint_core.data.dataset import TEST_FRACTION
from plint_core.data.image_folder import load_image_folder
from plint_core.data.loading import load_data
from plint_core.data.torchvision_data import is_cached, load_torchvision_dataset
from plint_core.data.transforms import convert_channels, resize
from plint_core.errors import PlintError
from plint_core.inputs import fit_to_model
from plint_core.models.spec import ModelSpec


def test_class_folders_are_split_stratified_with_the_fixed_seed(tmp_path):
    root = write_image_folder(tmp_path / "fruit")
    (root / "apple" / "notes.txt").write_text("not an image")
    (root / "apple" / ".hidden.png").write_bytes(b"")
    ds = load_data(root)
    assert ds.name == "fruit" and ds.class_names == CLASSES
    assert ds.input_shape == (1, 16, 16) and ds.train.images.dtype == np.float32
    assert len(ds.test) == int(np.ceil(36 * TEST_FRACTION)) and len(ds.train) + len(ds.test) == 36
    assert np.bincount(ds.test.labels).min() >= 2
    np.testing.assert_array_equal(ds.train.ids, np.arange(len(ds.train)))
    assert 0.0 <= np.asarray(ds.train.images).min() and np.asarray(ds.train.images).max() == pytest.approx(220 / 255)
    assert load_data(root).fingerprint() == ds.fingerprint()


def test_train_test_folders_keep_their_split_and_rgb(tmp_path):
    root = write_image_folder(tmp_path / "fruit", rgb=True, split=True)
    (root / "val" / "apple").mkdir(parents=True)
    Image.new("RGB", (16, 16), (10, 200, 30)).save(root / "val" / "apple" / "v.png")
    ds = load_image_folder(root)
    assert ds.input_shape == (3, 16, 16)
    assert (len(ds.train), len(ds.test), len(ds.val)) == (27, 9, 1)
    assert np.bincount(ds.test.labels).tolist() == [3, 3, 3]
    np.testing.assert_allclose(ds.val.images[0, :, 0, 0], np.array([10, 200, 30]) / 255, atol=1e-6)


def test_gray_and_colour_mixed_read_as_rgb_and_16_bit_is_scaled(tmp_path):
    root = write_image_folder(tmp_path / "fruit", n_per_class=4)
    Image.new("RGB", (16, 16), (255, 0, 0)).save(root / "apple" / "red.png")
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(root / "banana" / "wide.png")
    ds = load_image_folder(root)
    assert ds.input_shape == (3, 16, 16)
    everything = np.concatenate([ds.train.images, ds.test.images])
    assert any(np.allclose(img[:, 0, 0], [1, 0, 0]) for img in everything)
    assert any(np.allclose(img, 1.0) for img in everything)


def test_images_of_different_sizes_need_an_input_size(tmp_path):
    root = write_image_folder(tmp_path / "fruit", n_per_class=4)
    Image.new("L", (20, 10)).save(root / "cherry" / "odd.png")
    with pytest.raises(PlintError, match=r"differ in size.*cherry/odd.png.*10×20.*--input-size"):
        load_image_folder(root)
    ds = load_data(root, image_size=(8, 12))
    assert ds.input_shape == (1, 8, 12)


def test_a_zipped_folder_is_read_on_demand_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    root = write_image_folder(tmp_path / "fruit", split=True)
    archive = zip_folder(root, tmp_path / "upload.zip", extra={"__MACOSX/fruit/._x.png": b"junk"})
    ds = load_data(archive)
    assert ds.name == "upload" and ds.class_names == CLASSES and len(ds.test) == 9
    assert files_under(tmp_path / "tmp")  # unpacked while the data set reads it
    first = ds.test.images[0]
    archive.unlink()
    np.testing.assert_array_equal(ds.test.images[0], first)  # read from the unpacked copy, not the zip
    del ds, first
    gc.collect()
    assert files_under(tmp_path / "tmp") == []  # removed with the data set


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "banana" / "000.png").write_bytes(b""), "image 'banana/000.png' is empty"),
    (lambda r: (r / "banana" / "bad.png").write_bytes(b"not a png at all"), "cannot read image 'banana/bad.png'"),
    (lambda r: (r / "banana" / "cut.png").write_bytes((r / "apple" / "000.png").read_bytes()[:60]),
     "cannot read image 'banana/cut.png'"),
    (lambda r: [p.unlink() for p in (r / "banana").iterdir()], r"'banana'\] have fewer than 2 samples"),
    (lambda r: [p.rename(r / p.name) for p in list((r / "banana").iterdir())[:1]], "lies directly in the data folder"),
])
def test_bad_folders_name_the_problem(tmp_path, damage, message):
    root = write_image_folder(tmp_path / "fruit", n_per_class=4)
    damage(root)
    with pytest.raises(PlintError, match=message):
        load_data(root)


def test_split_layout_checks(tmp_path):
    root = write_image_folder(tmp_path / "fruit", split=True)
    for png in (root / "test" / "banana").iterdir():
        png.unlink()
    with pytest.raises(PlintError, match=r"\['banana'\] have no samples in the test split"):
        load_data(root)
    (root / "test").rename(root / "elsewhere")
    with pytest.raises(PlintError, match="no test/"):
        load_data(root)


def test_fewer_than_two_classes(tmp_path):
    root = write_image_folder(tmp_path / "fruit", n_per_class=4)
    for name in ("banana", "cherry"):
        for png in (root / name).iterdir():
            png.unlink()
        (root / name).rmdir()
    with pytest.raises(PlintError, match="at least 2"):
        load_data(root)


def test_fit_to_model_converts_channels_and_size():
    rng = np.random.default_rng(0)
    gray = torch.from_numpy(rng.random((5, 1, 16, 16), dtype=np.float32))
    rgb = convert_channels(gray, 3)
    assert rgb.shape == (5, 3, 16, 16) and torch.equal(rgb[:, 2], gray[:, 0])
    np.testing.assert_allclose(convert_channels(rgb, 1), gray, atol=1e-6)
    small = resize(gray, (8, 8))
    assert small.shape == (5, 1, 8, 8) and 0 <= small.min() and small.max() <= 1
    np.testing.assert_allclose(float(small.mean()), float(gray.mean()), atol=0.02)
    with pytest.raises(PlintError, match="only between grayscale"):
        convert_channels(gray, 2)


def test_fit_to_model_on_a_dataset(digits):
    spec = ModelSpec("resnet18", digits.class_names, (3, 16, 16), (0.5,) * 3, (0.5,) * 3)
    fitted = fit_to_model(digits, spec)
    assert fitted.input_shape == (3, 16, 16) and len(fitted.test) == len(digits.test)
    np.testing.assert_array_equal(fitted.train.labels, digits.train.labels)
    assert fit_to_model(digits, spec.__class__("x", digits.class_names, (1, 8, 8), (0,), (1,))) is digits


def _write_idx(path, array: np.ndarray) -> None:
    dims = array.ndim
    header = bytes([0, 0, 0x08, dims]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_a_cache_and_never_downloads_in_tests(tmp_path, monkeypatch):
    assert not is_cached("mnist", tmp_path)
    with pytest.raises(PlintError, match="not in the cache"):
        load_torchvision_dataset("mnist", root=tmp_path, download=False)
    import torchvision.datasets as tvd

    def offline(*args, download=False, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(PlintError, match="offline"):
        load_torchvision_dataset("mnist", root=tmp_path)
    monkeypatch.undo()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    assert is_cached("mnist", tmp_path)
    ds = load_torchvision_dataset("mnist", root=tmp_path, download=False)
    assert ds.input_shape == (1, 28, 28) and (len(ds.train), len(ds.test)) == (20, 10) and ds.n_classes == 10
    assert ds.train.images.dtype == np.float32 and np.asarray(ds.train.images).max() <= 1.0
