"""A montage of selected images: one RGB array, each tile framed green (correct), red (misclassified) or grey, and
flagged images (:mod:`plint_core.flags`) marked with an orange corner."""
from __future__ import annotations

import numpy as np

MAX_THUMBNAILS = 48
TILE_PX = 48
BORDER_PX = 3
CORRECT_RGB, WRONG_RGB, GAP_RGB, PLAIN_RGB = (44, 160, 44), (214, 39, 40), (255, 255, 255), (160, 160, 160)
FLAG_RGB = (255, 127, 14)
"""The corner of a flagged image's tile (:data:`plint_core.report.style.FLAG_COLOR`)."""


def pick(ids: np.ndarray, limit: int = MAX_THUMBNAILS) -> np.ndarray:
    """At most ``limit`` of ``ids``, evenly spread over the (sorted) selection."""
    ids = np.asarray(ids)
    if ids.size <= limit:
        return ids
    return ids[np.linspace(0, ids.size - 1, limit).round().astype(int)]


def montage(images: np.ndarray, correct: np.ndarray | None, columns: int = 12, tile: int = TILE_PX,
            marked: np.ndarray | None = None) -> np.ndarray:
    """Tile ``images`` (``[N, C, H, W]`` in ``[0, 1]``, C = 1 or 3) into a ``uint8`` RGB grid.

    Each image is scaled up by an integer factor to about ``tile`` pixels and
    framed in green where ``correct`` is true, red where it is false, grey
    everywhere when ``correct`` is ``None`` (not known). Where ``marked`` is true (a flagged image) the tile's
    top right corner is an orange triangle over the frame and the image.
    """
    n = len(images)
    if n == 0:
        return np.full((tile, tile, 3), 255, np.uint8)
    c, h, w = images.shape[1:]
    factor = max(1, tile // max(h, w))
    th, tw = h * factor + 2 * BORDER_PX, w * factor + 2 * BORDER_PX
    columns = min(columns, n)
    rows = -(-n // columns)
    gap = 2
    out = np.empty((rows * (th + gap), columns * (tw + gap), 3), np.uint8)
    out[:] = GAP_RGB
    rgb = np.repeat(images, 3, axis=1) if c == 1 else images[:, :3]
    pixels = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    pixels = pixels.repeat(factor, axis=1).repeat(factor, axis=2)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = r * (th + gap), col * (tw + gap)
        out[y:y + th, x:x + tw] = PLAIN_RGB if correct is None else CORRECT_RGB if correct[i] else WRONG_RGB
        out[y + BORDER_PX:y + th - BORDER_PX, x + BORDER_PX:x + tw - BORDER_PX] = pixels[i]
        if marked is not None and marked[i]:
            side = max(4, min(th, tw) // 3)
            corner = np.triu(np.ones((side, side), dtype=bool))  # the upper right half of the corner square
            out[y:y + side, x + tw - side:x + tw][corner] = FLAG_RGB
    return out
