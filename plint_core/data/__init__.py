"""Stage 1 of the pipeline, the data: every source plint reads, as a :class:`Dataset` of splits.

Modules, one concept each:

* :mod:`.dataset` — the containers (:class:`Dataset`, :class:`Split`) and their checks;
* :mod:`.arrays` — scikit-learn's digits and ``.npz`` files;
* :mod:`.image_folder` — ImageFolder layouts and their ``.zip``;
* :mod:`.torchvision_data` — torchvision's MNIST and FashionMNIST;
* :mod:`.transforms` — bringing images to a model's input size and channels;
* :mod:`.loading` — :func:`load_data`, the one entry point.
"""
from .dataset import SPLIT_SEED, TEST_FRACTION, Dataset, Split
from .loading import load_data

__all__ = ["SPLIT_SEED", "TEST_FRACTION", "Dataset", "Split", "load_data"]
