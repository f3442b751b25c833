"""Classifiers as labs bring them: TorchScript, or a state_dict plus an architecture.

Accepted files (nothing in them is ever executed as Python):

* **TorchScript** (``torch.jit.save``; ``.pt``/``.pth``/``.ts``/``.torchscript``/``.jit``,
  recognised by its content), loaded on the CPU with ``torch.jit.load``. Only its
  output (layer ``output``, the logits) can be a latent layer: TorchScript does
  not run Python forward hooks on its submodules.
* **state_dict** (``.pt``/``.pth``/``.ckpt``/``.bin`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``), for plint's own CNN
  (``plint-cnn``) or any torchvision classification model by name
  (``resnet18``, ``densenet121``, ``efficientnet_b0``, …), built without
  downloading weights.

What is known about a model — architecture, class names, input size and
channels, normalisation — comes, field by field, from what the caller states,
else from the JSON sidecar beside the weights (as ``plint_core train`` writes
it; any subset of its keys), else from the weights themselves (number of
outputs, input channels, CNN widths), else from defaults: torchvision models
take 224×224 and, with 3 channels, ImageNet's mean/std; other models take no
normalisation (mean 0, std 1). Every model is then tried with one sample, so an
input it rejects or an output count that does not match the classes is
reported before anything long starts.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ..errors import PlintError
from .architectures import build_model
from .spec import DEMO, DEMO_WEIGHTS, PLINT_CNN, ModelBundle, ModelSpec, sidecar_path
from .torchvision_models import classification_architectures, drop_aux_weights, infer_from_state, is_torchvision_arch
from .weights import _read_state_dict, state_fingerprint

TORCHSCRIPT = "torchscript"
"""``ModelSpec.arch`` of a TorchScript model."""
OUTPUT_LAYER = "output"
"""The one latent layer of a TorchScript model: its output."""
STATE_DICT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")
SAFETENSORS_SUFFIX = ".safetensors"
DEFAULT_TORCHVISION_SIZE = (224, 224)
"""Input size (H, W) of a torchvision model when nothing states one."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_INPUT_SIDE = 4096
"""Largest input height or width accepted, in pixels."""


@dataclass(frozen=True)
class ModelOptions:
    """What is stated about a model; ``None`` leaves a field to the sidecar, the weights or a default.

    ``input_size`` is ``(height, width)`` in pixels; ``mean``/``std`` are per
    channel for images in ``[0, 1]`` (one value is used for every channel).
    ``arch_kwargs`` is read from sidecars only.
    """

    arch: str | None = None
    classes: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    arch_kwargs: dict | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            classes = tuple(str(c).strip() for c in self.classes)
            if len(classes) < 2 or any(not c for c in classes) or len(set(classes)) != len(classes):
                raise PlintError(f"classes {list(classes)} must be at least 2 distinct, non-empty names")
            object.__setattr__(self, "classes", classes)
        if self.input_size is not None:
            size = tuple(int(s) for s in self.input_size)
            if len(size) != 2 or not all(1 <= s <= MAX_INPUT_SIDE for s in size):
                raise PlintError(f"input size {self.input_size} must be height and width, "
                                 f"each from 1 to {MAX_INPUT_SIDE} pixels")
            object.__setattr__(self, "input_size", size)
        if self.channels is not None and not 1 <= int(self.channels) <= 4:
            raise PlintError(f"channels is {self.channels}: images have 1 (grayscale) or 3 (RGB) channels")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is None:
                continue
            values = tuple(float(v) for v in values)
            if not values or not all(math.isfinite(v) for v in values) or (name == "std" and min(values) <= 0):
                raise PlintError(f"{name} {list(values)} must be finite numbers{', all > 0' if name == 'std' else ''}")
            object.__setattr__(self, name, values)

    def as_kwargs(self) -> dict:
        """The user-facing fields as keyword arguments of :func:`load_classifier`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "arch_kwargs"}

    def over(self, fallback: "ModelOptions") -> "ModelOptions":
        """These options, with ``fallback``'s value wherever a field is ``None``."""
        return ModelOptions(**{f.name: getattr(fallback, f.name) if getattr(self, f.name) is None
                               else getattr(self, f.name) for f in fields(self)})


def parse_size(text: str) -> tuple[int, int]:
    """``64`` → (64, 64); ``224x288`` → (224, 288) (height × width, pixels); raises :class:`PlintError`."""
    try:
        parts = [int(v) for v in str(text).strip().lower().replace("×", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise PlintError(f"{text!r} is not a size: give pixels, e.g. 64 or 224x288 (height x width)")
    return (parts[0], parts[-1])


def parse_floats(text: str) -> tuple[float, ...]:
    """``0.5`` → (0.5,); ``0.485,0.456,0.406`` → three values; raises :class:`PlintError`."""
    try:
        return tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise PlintError(f"{text!r} is not a number or comma-separated numbers, e.g. 0.5 or "
                         "0.485,0.456,0.406") from None


def parse_names(text: str) -> tuple[str, ...]:
    """``a, b,c`` → ("a", "b", "c") (class names in output order)."""
    return tuple(v.strip() for v in str(text).split(","))


class TorchScriptClassifier(nn.Module):
    """A TorchScript classifier as an ordinary module whose output is the hookable layer ``output``."""

    layer_note = (f"a TorchScript model exposes only its output ({OUTPUT_LAYER!r}); to embed an inner layer, "
                  "give its state_dict and architecture instead")

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.net = scripted
        self.output = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(x))

    def __deepcopy__(self, memo: dict) -> "TorchScriptClassifier":
        # copy.deepcopy of a ScriptModule yields non-leaf parameters that no optimiser
        # accepts; a save/load round trip gives a faithful, trainable copy.
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not removed
            torch.jit.save(self.net, buffer)
        buffer.seek(0)
        device = next(self.net.parameters(), torch.empty(0)).device
        clone = TorchScriptClassifier(_jit_load(buffer, device))
        return clone.train(self.training)


def available_architectures() -> tuple[str, ...]:
    """Architectures a state_dict can be loaded into: ``plint-cnn`` and torchvision's classifiers."""
    return (PLINT_CNN, *classification_architectures())


def model_format(path: Path) -> str:
    """``torchscript``, ``state_dict`` or ``safetensors``, from the suffix and (for zips) the content."""
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if suffix not in STATE_DICT_SUFFIXES + TORCHSCRIPT_SUFFIXES:
        raise PlintError(f"unsupported model file type {path.suffix or '(none)'!r} for {path.name!r}: give TorchScript "
                         f"(torch.jit.save), a state_dict ({', '.join(STATE_DICT_SUFFIXES)}) or {SAFETENSORS_SUFFIX}")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise PlintError(f"cannot read model {path.name!r}: the file is corrupt or truncated ({exc})") from exc
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return TORCHSCRIPT
        if suffix in TORCHSCRIPT_SUFFIXES:
            raise PlintError(f"{path.name!r} is not TorchScript (it holds no TorchScript code; a torch.save "
                             "state_dict?): save with torch.jit.save, or name it .pt and state its architecture")
        return "state_dict"
    if suffix in TORCHSCRIPT_SUFFIXES:
        raise PlintError(f"cannot read {path.name!r} as TorchScript: the file is corrupt or truncated, "
                         "or was not written by torch.jit.save")
    return "state_dict"


def read_sidecar(path: Path) -> ModelOptions:
    """The options stated in the JSON sidecar at ``path`` (any subset of ``ModelSpec``'s keys)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlintError(f"sidecar {path.name!r} is not valid JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise PlintError(f"sidecar {path.name!r} must be a JSON object with arch, classes, input_shape, mean, std")
    try:
        shape = d.get("input_shape")
        if shape is not None and len(shape) != 3:
            raise ValueError(f"input_shape {shape} is not [channels, height, width]")
        return ModelOptions(arch=None if d.get("arch") is None else str(d["arch"]),
                            classes=None if d.get("classes") is None else tuple(d["classes"]),
                            input_size=None if shape is None else (shape[1], shape[2]),
                            channels=None if shape is None else int(shape[0]),
                            mean=None if d.get("mean") is None else tuple(d["mean"]),
                            std=None if d.get("std") is None else tuple(d["std"]),
                            arch_kwargs=None if d.get("arch_kwargs") is None else dict(d["arch_kwargs"]))
    except (TypeError, ValueError) as exc:
        raise PlintError(f"sidecar {path.name!r} is malformed ({exc})") from exc


def model_path(src: str | Path) -> Path:
    """The file ``src`` names (``demo`` → the shipped CNN), which must exist."""
    path = DEMO_WEIGHTS if str(src) == DEMO else Path(src)
    if not path.is_file():
        raise PlintError(f"model file {str(path)!r} does not exist: give 'demo', a TorchScript file or a state_dict")
    return path


def stated_options(src: str | Path, options: ModelOptions = ModelOptions(), sidecar: str | Path | None = None
                   ) -> tuple[ModelOptions, ModelOptions]:
    """``(sidecar's options, options over the sidecar's)`` for model ``src``; reads no weights."""
    path = model_path(src)
    side = Path(sidecar) if sidecar is not None else sidecar_path(path)
    if sidecar is not None and not side.is_file():
        raise PlintError(f"sidecar {str(side)!r} does not exist")
    from_side = read_sidecar(side) if side.is_file() else ModelOptions()
    return from_side, options.over(from_side)


def load_classifier(src: str | Path, *, arch: str | None = None, classes: tuple[str, ...] | None = None,
                    input_size: tuple[int, int] | None = None, channels: int | None = None,
                    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                    sidecar: str | Path | None = None) -> ModelBundle:
    """Load ``demo``, a TorchScript file or a state_dict (+ architecture) as a checked :class:`ModelBundle`.

    Arguments override the sidecar (``sidecar``, default: the ``.json`` beside
    ``src``). Raises :class:`PlintError` with what to do for a missing or
    unsupported file, a pickle that would run code, corrupt weights, weights
    that do not fit the architecture, a class count that differs from the
    model's outputs, or an input the model rejects.
    """
    stated = ModelOptions(arch, classes, input_size, channels, mean, std)
    path = model_path(src)
    from_side, hints = stated_options(src, stated, sidecar)
    fmt = model_format(path)
    if fmt == TORCHSCRIPT:
        module, spec, identity = _load_torchscript(path, hints)
    else:
        module, spec = _load_state_dict(path, hints)
        identity = state_fingerprint(module)
    # Runs are keyed by the model fingerprint; when the spec (normalisation, classes)
    # is not exactly the one stored with the weights, it becomes part of the identity.
    if fmt != TORCHSCRIPT and hints == from_side:
        fingerprint = identity
    else:
        salt = json.dumps(spec.to_dict(), sort_keys=True).encode()
        fingerprint = hashlib.sha256(identity.encode() + b"\x1f" + salt).hexdigest()
    bundle = ModelBundle(module.eval(), spec, fingerprint, DEMO if str(src) == DEMO else str(path))
    validate_model(bundle)
    return bundle


def load_model(src: str | Path) -> ModelBundle:
    """Load ``demo``, a model written by :func:`plint_core.models.weights.save_model`, or any model file
    with a complete sidecar; never executes code from the file (see :func:`load_classifier`)."""
    return load_classifier(src)


def validate_model(bundle: ModelBundle) -> None:
    """Run one zero image of ``spec.input_shape`` through the model; explain what does not fit."""
    spec = bundle.spec
    shape = "×".join(str(s) for s in spec.input_shape)
    try:
        with torch.no_grad():
            out = bundle.module.eval()(bundle.preprocess(torch.zeros((1, *spec.input_shape))))
    except Exception as exc:  # any failure of a foreign forward pass means: input rejected
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise PlintError(f"the model rejects input of shape {shape} (channels×height×width): {first}; state the "
                         "input size and channels it was trained on (--input-size, --channels)") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        what = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise PlintError(f"the model returns {what} for one image: plint needs logits of shape [N, classes]")
    if out.shape[1] != len(spec.classes):
        raise PlintError(_outputs_message(int(out.shape[1]), spec.classes))


def describe(spec: ModelSpec) -> str:
    """One line: architecture, input shape, classes and normalisation."""
    c, h, w = spec.input_shape
    return f"{spec.arch}, input {c}×{h}×{w}, {len(spec.classes)} classes, normalisation {normalisation_text(spec)}"


def normalisation_text(spec: ModelSpec) -> str:
    """``none``, ``ImageNet's mean/std`` or the per-channel values."""
    if all(m == 0 for m in spec.mean) and all(s == 1 for s in spec.std):
        return "none"
    if spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD:
        return "ImageNet's mean/std"
    return f"mean {_fmt(spec.mean)}, std {_fmt(spec.std)}"


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _outputs_message(n_outputs: int, classes: tuple[str, ...]) -> str:
    shown = ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")
    return (f"the model has {n_outputs} outputs but there are {len(classes)} classes ({shown}): use a model "
            f"trained on these classes, or state the {n_outputs} classes it was trained on (--classes)")


def _jit_load(source: Path | io.BytesIO, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not removed
        return torch.jit.load(source, map_location=device)


def _load_torchscript(path: Path, hints: ModelOptions) -> tuple[nn.Module, ModelSpec, str]:
    if hints.input_size is None or hints.channels is None:
        raise PlintError(f"state the input size and channels of TorchScript model {path.name!r} "
                         f"(--input-size, --channels) or put input_shape in a sidecar {sidecar_path(path).name!r}")
    try:
        scripted = _jit_load(path)
    except Exception as exc:  # torch.jit raises RuntimeError and others for damaged archives
        raise PlintError(f"cannot read TorchScript model {path.name!r}: the file is corrupt or truncated "
                         f"({type(exc).__name__})") from exc
    module = TorchScriptClassifier(scripted).eval()
    input_shape = (hints.channels, *hints.input_size)
    classes = hints.classes
    if classes is None:
        n_out = _probe_outputs(module, input_shape)
        classes = tuple(str(i) for i in range(n_out))
    mean, std = _normalisation(hints, TORCHSCRIPT, hints.channels)
    spec = ModelSpec(TORCHSCRIPT, classes, input_shape, mean, std, {})
    return module, spec, hashlib.sha256(path.read_bytes()).hexdigest()


def _probe_outputs(module: nn.Module, input_shape: tuple[int, int, int]) -> int:
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *input_shape)))
    except Exception:
        return 0  # validate_model reports the rejected input with its reason
    return int(out.shape[1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else 0


def _load_state_dict(path: Path, hints: ModelOptions) -> tuple[nn.Module, ModelSpec]:
    if hints.arch is None:
        raise PlintError(f"model {path.name!r} has no sidecar {sidecar_path(path).name!r} stating its architecture: "
                         f"state it (--arch resnet18, {PLINT_CNN}, …) or give a TorchScript file")
    if hints.arch == TORCHSCRIPT:
        raise PlintError(f"{path.name!r} holds weights of a TorchScript model: load the TorchScript file itself")
    if hints.arch != PLINT_CNN and not is_torchvision_arch(hints.arch):
        raise PlintError(f"unknown architecture {hints.arch!r}: use {PLINT_CNN!r} or a torchvision classification "
                         f"model ({', '.join(classification_architectures()[:6])}, …)")
    state = _read_state_dict(path)
    if hints.arch == PLINT_CNN:
        in_ch, n_out, inferred_kwargs = _plint_cnn_from_state(state)
        size = hints.input_size
        if size is None:
            raise PlintError(f"state the input size of {PLINT_CNN} model {path.name!r} (--input-size) "
                             "or give its sidecar")
    else:
        state = drop_aux_weights(hints.arch, state)
        (in_ch, n_out), inferred_kwargs = infer_from_state(hints.arch, state), {}
        size = hints.input_size or DEFAULT_TORCHVISION_SIZE
    channels = hints.channels or in_ch or 3
    classes = hints.classes or (tuple(str(i) for i in range(n_out)) if n_out else None)
    if classes is None:
        raise PlintError(f"cannot tell how many classes {path.name!r} has: state them (--classes a,b,c)")
    if n_out is not None and n_out != len(classes):
        raise PlintError(_outputs_message(n_out, classes))
    mean, std = _normalisation(hints, hints.arch, channels)
    arch_kwargs = hints.arch_kwargs if hints.arch_kwargs is not None else inferred_kwargs
    spec = ModelSpec(hints.arch, classes, (channels, *size), mean, std, arch_kwargs)
    module = build_model(spec)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:400]
        raise PlintError(f"weights in {path.name!r} do not fit architecture {spec.arch!r} with {len(classes)} "
                         f"classes and {channels} input channels: {detail}") from exc
    return module, spec


def _plint_cnn_from_state(state: dict[str, torch.Tensor]) -> tuple[int | None, int | None, dict]:
    try:
        return (int(state["conv1.weight"].shape[1]), int(state["logits.weight"].shape[0]),
                {"width": int(state["conv1.weight"].shape[0]), "hidden": int(state["fc1.weight"].shape[0])})
    except (KeyError, IndexError):
        return None, None, {}


def _normalisation(hints: ModelOptions, arch: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    imagenet = arch not in (PLINT_CNN, TORCHSCRIPT) and channels == 3  # torchvision's convention
    result = []
    for name, stated, default in (("mean", hints.mean, IMAGENET_MEAN if imagenet else (0.0,)),
                                  ("std", hints.std, IMAGENET_STD if imagenet else (1.0,))):
        values = stated if stated is not None else default
        if len(values) == 1:
            values = values * channels
        if len(values) != channels:
            raise PlintError(f"{name} has {len(values)} values but the model takes {channels} channels: "
                             f"give one value or one per channel")
        result.append(tuple(values))
    return result[0], result[1]
