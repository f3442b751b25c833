"""Decoding one image file into float32 pixels in ``[0, 1]`` (PIL), with a message naming the file if it fails.

Grayscale images (8- or 16-bit) give 1 channel, everything else RGB; 16-bit
pixels are scaled by 1/65535, 8-bit ones by 1/255; floating-point images must
already lie in ``[0, 1]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import PlintError

GRAY_MODES = ("1", "L", "LA", "La")
"""PIL modes read as one channel."""
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
"""16-bit grayscale PIL modes, scaled by 1/65535."""


def read_image(path: Path, shown: str) -> np.ndarray:
    """One image as float32 ``[C, H, W]`` in ``[0, 1]``, C = 1 or 3."""
    try:
        size = path.stat().st_size
    except OSError as exc:  # moved or deleted since the folder was listed, or unreadable
        raise PlintError(f"cannot read image {shown!r}: {exc.strerror or type(exc).__name__}; the data folder "
                         "changed after it was opened: open it again") from exc
    if size == 0:
        raise PlintError(f"image {shown!r} is empty (0 bytes): remove or replace it")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in WIDE_MODES or mode == "F":
                pixels = np.asarray(img, dtype=np.float32)
            else:
                pixels = np.asarray(img.convert("L" if mode in GRAY_MODES else "RGB"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError as exc:
        raise PlintError(f"image {shown!r} is too large to read safely ({exc}): downscale it first") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlintError(f"cannot read image {shown!r}: it is truncated, corrupt or not an image "
                         f"({type(exc).__name__})") from exc
    if mode in WIDE_MODES:
        pixels = np.clip(pixels / 65535.0, 0.0, 1.0)
    elif mode == "F" and not (np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0):
        raise PlintError(f"image {shown!r} holds floating-point pixels outside [0, 1]: save it as 8- or 16-bit")
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))
