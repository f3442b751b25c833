"""Stage 2 of the pipeline, the classifier C: what a model is, how it is built, read, written and trained.

Modules, one concept each:

* :mod:`.spec` — :class:`ModelSpec` (the JSON sidecar) and :class:`ModelBundle`;
* :mod:`.cnn` — plint's own small CNN;
* :mod:`.torchvision_models` — torchvision architectures built by name, offline;
* :mod:`.architectures` — :func:`build_model` by architecture name;
* :mod:`.weights` — reading a ``state_dict`` safely, writing weights + sidecar, fingerprints;
* :mod:`.sources` — :func:`load_classifier`: TorchScript or a ``state_dict`` as labs bring them;
* :mod:`.training` — :func:`train_classifier`.
"""
from .sources import load_classifier, load_model
from .spec import ModelBundle, ModelSpec
from .training import TrainConfig, train_classifier
from .weights import save_model

__all__ = ["ModelBundle", "ModelSpec", "TrainConfig", "load_classifier", "load_model", "save_model",
           "train_classifier"]
