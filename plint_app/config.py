"""The dashboard's configuration, read from environment variables.

========================  =========================================================
``PLINT_RUNS_DIR``        run store folder (default ``runs``); tests use a temp dir
``PLINT_DATA``            data source for :func:`plint_core.data.load_data` (``digits``)
``PLINT_MODEL``           model for :func:`plint_core.classifier.load_model` (``demo``)
``PLINT_DEVICE``          ``auto`` (CUDA if available), ``cpu`` or ``cuda``
``PLINT_TSNE_CONFIG``     JSON object of :class:`~plint_core.parametric_tsne.TSNEConfig`
                          fields overriding the defaults (e.g. a fast preset)
``PLINT_SCALE_POINTS``    >0: show and fine-tune a training split of this many points,
                          the real one replicated with pixel jitter, projected through
                          the embedding fitted on the real data (for benchmarks)
``PLINT_TORCH_THREADS``   torch's thread count; default: torch's own, capped at the
                          container's CPU quota (:func:`plint_core.device.cpu_quota`)
``PLINT_ALLOW_PATHS``     ``1``/``true``: the Model & data page may also open a model
                          and data by their paths on the server (default off, as on
                          Streamlit Cloud, where viewers may upload files only)
``PLINT_MEMORY_GB``       the memory the app and its workers may use, in GB; default:
                          the container's cgroup limit, if any
                          (:func:`plint_core.device.memory_limit`). Below 4 GB, large
                          images get a smaller preset batch
                          (:func:`plint_core.finetune.preset_batch_size`)
``PLINT_MAP_MAX_POINTS``  the most points the map draws (default 30,000); a larger
                          split is drawn as a random sample of this many over a
                          density map of all (:mod:`plint_app.map_thinning`)
========================  =========================================================
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from plint_core.device import DEVICE_CHOICES, memory_limit
from plint_core.embedding.parametric_tsne import TSNEConfig
from plint_core.env_settings import env_count
from plint_core.errors import PlintError

from .map_thinning import DEFAULT_MAX_POINTS


@dataclass(frozen=True)
class AppConfig:
    """Where the app keeps its runs and what it loads."""

    runs_dir: Path = Path("runs")
    data: str = "digits"
    model: str = "demo"
    device: str = "auto"
    tsne: TSNEConfig = field(default_factory=TSNEConfig)
    scale_points: int = 0
    torch_threads: int = 0
    """0 = automatic (:func:`plint_core.device.choose_threads`)."""
    allow_paths: bool = False
    """Whether users may open files by server path (``PLINT_ALLOW_PATHS``); uploads are always allowed."""
    memory_bytes: int | None = None
    """The memory the app may use (``PLINT_MEMORY_GB``, else the cgroup's limit); ``None``: not limited."""
    map_max_points: int = DEFAULT_MAX_POINTS
    """The most points the map draws (``PLINT_MAP_MAX_POINTS``); more are thinned (:mod:`plint_app.map_thinning`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AppConfig":
        """Read the ``PLINT_*`` variables; a malformed value raises :class:`PlintError`."""
        env = os.environ if env is None else env
        device = env.get("PLINT_DEVICE", "auto")
        if device not in DEVICE_CHOICES:
            raise PlintError(f"PLINT_DEVICE={device!r}: use one of {', '.join(DEVICE_CHOICES)}")
        return cls(runs_dir=Path(env.get("PLINT_RUNS_DIR") or "runs"), data=env.get("PLINT_DATA") or "digits",
                   model=env.get("PLINT_MODEL") or "demo", device=device,
                   tsne=_tsne_config(env.get("PLINT_TSNE_CONFIG", "")),
                   scale_points=env_count("PLINT_SCALE_POINTS", minimum=0, what="points", default=0, env=env,
                                          hint="0 = off"),
                   torch_threads=env_count("PLINT_TORCH_THREADS", minimum=0, what="threads", default=0, env=env,
                                           hint="0 = torch's own choice"),
                   allow_paths=_flag(env.get("PLINT_ALLOW_PATHS", ""), "PLINT_ALLOW_PATHS"),
                   memory_bytes=_memory(env.get("PLINT_MEMORY_GB", "")),
                   map_max_points=env_count("PLINT_MAP_MAX_POINTS", minimum=1, what="points", default=DEFAULT_MAX_POINTS,
                                            env=env, hint=f"the most points the map draws; unset: {DEFAULT_MAX_POINTS:,}"))

    def cache_key(self) -> str:
        """A string naming everything loaded (and the memory it may use, which decides presets, and the most points
        its map draws), for in-memory caches shared by sessions."""
        return json.dumps({"runs": str(self.runs_dir.resolve()), "data": self.data, "model": self.model,
                           "device": self.device, "tsne": self.tsne.to_dict(), "scale": self.scale_points,
                           "memory": self.memory_bytes, "map": self.map_max_points}, sort_keys=True)


def _memory(text: str) -> int | None:
    if not text.strip():
        return memory_limit()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise PlintError(f"PLINT_MEMORY_GB={text!r} is not an amount of memory: give GB as a positive number, "
                         "such as 2.7, or leave it unset")
    return int(value * 1e9)


def _tsne_config(text: str) -> TSNEConfig:
    return TSNEConfig.from_json(text, "PLINT_TSNE_CONFIG")


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise PlintError(f"{name}={text!r}: use 1 or true to turn it on, 0 or false (or leave it unset) for off")

