"""Sample grids: a batch of images written as one PNG (like torchvision's ``save_image``); the store
writes one per image generation (``grids/gen_XXXX.png``), the report shows them."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from genloop.errors import DataError


def make_grid(images: np.ndarray, nrow: int = 8, *, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``images`` ``(n, C, H, W)`` in [-1, 1] into one uint8 image ``(H', W', C)``.

    ``nrow`` images per row (the last row may be short); ``padding`` pixels of
    ``pad_value`` (in [-1, 1]; 1 = white) between and around tiles. Values are clipped to
    [-1, 1] and mapped to 0..255 by ``round((x + 1) * 127.5)``.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise DataError(f"images must have shape (n, C, H, W) with n >= 1, got {arr.shape}")
    if arr.shape[1] not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, got {arr.shape[1]} (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise DataError("images must be finite numbers")
    if nrow < 1:
        raise DataError(f"nrow must be >= 1, got {nrow}")
    if padding < 0:
        raise DataError(f"padding must be >= 0, got {padding}")
    n, C, H, W = arr.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    pix = np.rint((np.clip(arr.astype(np.float64), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    fill = int(np.rint((np.clip(pad_value, -1.0, 1.0) + 1.0) * 127.5))
    grid = np.full((padding + nrows * (H + padding), padding + ncol * (W + padding), C), fill, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[top : top + H, left : left + W] = pix[k].transpose(1, 2, 0)
    return grid


def save_sample_grid(
    images: np.ndarray,
    path: str | os.PathLike[str],
    nrow: int = 8,
    *,
    padding: int = 1,
    scale: int = 1,
) -> Path:
    """Write ``images`` ``(n, C, H, W)`` in [-1, 1] as one PNG grid at ``path``; return the path.

    ``nrow`` images per row; ``scale`` enlarges every pixel to ``scale × scale`` (nearest
    neighbour), which makes 8×8 digits readable. Parent folders are created.
    """
    from PIL import Image

    if scale < 1:
        raise DataError(f"scale must be >= 1, got {scale}")
    grid = make_grid(images, nrow, padding=padding)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(grid[:, :, 0], mode="L") if grid.shape[2] == 1 else Image.fromarray(grid, mode="RGB")
    img.save(path, format="PNG")
    return path


__all__ = ["make_grid", "save_sample_grid"]
