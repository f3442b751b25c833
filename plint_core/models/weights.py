"""Weights on disk: reading a ``state_dict`` safely, writing a model and its sidecar, fingerprints.

Nothing read here is ever executed: ``.pt`` files go through
``torch.load(weights_only=True)``, ``.safetensors`` through safetensors.
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_atomic, write_json_atomic
from ..errors import PlintError
from .spec import ModelBundle, sidecar_path


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()



def save_model(bundle: ModelBundle, path: str | Path) -> Path:
    """Write ``path`` (``.pt`` state_dict or ``.safetensors``) and its ``.json`` sidecar, atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        write_atomic(path, lambda p: save_file(state, str(p)))
    elif path.suffix in (".pt", ".pth"):
        write_atomic(path, lambda p: torch.save(state, p))
    else:
        raise PlintError(f"model output {path.name!r} must end in .pt, .pth or .safetensors")
    write_json_atomic(sidecar_path(path), bundle.spec.to_dict())
    return path



def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise PlintError(f"cannot read {path.name!r} as safetensors ({exc}): the file is corrupt or truncated") from exc
    if path.suffix.lower() not in (".pt", ".pth", ".ckpt", ".bin"):
        raise PlintError(f"unsupported model file type {path.suffix!r}: use .pt/.pth (state_dict) or .safetensors")
    try:
        with warnings.catch_warnings():  # a plain-pickle file would add a protocol warning to the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PlintError(f"refused to load {path.name!r}: it holds Python objects that could run code (a whole model "
                         "saved with torch.save?); save model.state_dict(), safetensors or TorchScript instead") from exc
    except Exception as exc:  # a damaged file makes the (safe) weights-only unpickler fail in many ways
        raise PlintError(f"cannot read weights {path.name!r}: the file is corrupt or truncated ({type(exc).__name__})") from exc
    state = _unwrap_checkpoint(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PlintError(f"{path.name!r} is not a state_dict (a mapping of names to tensors)")
    return state



def _unwrap_checkpoint(obj: object) -> object:
    """The state_dict inside a training checkpoint (``{"state_dict": ...}``), without DataParallel's ``module.``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
