"""Turning whatever a user holds into an RGB uint8 array, or a clear InvalidImageError."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdetect.errors import InvalidImageError

ImageLike = Any  # path, bytes, binary file, PIL image or numpy array


def load_image(image: ImageLike) -> np.ndarray:
    """-> uint8 [H, W, 3]. Accepts a path, bytes, a binary file, a PIL image, or an array that is
    gray [H, W] / [H, W, 1], RGB or RGBA, uint8 or float (0..1, or 0..255 if larger)."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image, "the PIL image")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"{path}: no such file")
        return _from_bytes(path.read_bytes(), str(path))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(image), "the given bytes")
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise InvalidImageError("the file object gave text, not bytes: open it in binary mode ('rb')")
        return _from_bytes(data, getattr(image, "name", "the file object"))
    raise InvalidImageError(f"cannot read an image from a {type(image).__name__}; give a path, bytes, a binary "
                            "file, a PIL image or a numpy array")


def _from_bytes(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise InvalidImageError(f"{name}: empty (0 bytes)")
    try:
        pil = Image.open(io.BytesIO(data))
        pil.load()
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: not an image (JPEG, PNG or GIF expected)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InvalidImageError(f"{name}: corrupt or truncated image ({err})") from None
    return _from_pil(pil, name)


def _from_pil(pil: Image.Image, name: str) -> np.ndarray:
    if pil.width < 1 or pil.height < 1:
        raise InvalidImageError(f"{name}: the image has no pixels")
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        # Transparent areas are paper: put the picture on white, as a browser would show it.
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    return np.asarray(pil.convert("RGB"), dtype=np.uint8)


def _from_array(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidImageError(f"array of shape {a.shape} is not an image: expected [H, W], [H, W, 1], "
                                "[H, W, 3] or [H, W, 4]")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InvalidImageError(f"array of shape {a.shape} has no pixels")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InvalidImageError(f"array of dtype {a.dtype} is not an image: use uint8 or float")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InvalidImageError("float image holds NaN or infinite values")
        a = np.rint(a * 255.0 if a.max() <= 1.0 else a)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        return (a[..., :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return a
