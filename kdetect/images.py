"""Turning whatever a user holds into an RGB uint8 array, or a clear InvalidImageError.

Captchas are small (KCAPTCHA's are 160x60 or 160x80), so an input far larger than that is a
mistake or an attack: a 20 KB PNG may declare 13000x13000 pixels and take gigabytes to decode.
Every input is therefore held to two limits, checked before anything is decoded:

- MAX_PIXELS: width x height, read from the file's header (PIL opens lazily) or an array's shape;
- MAX_FILE_BYTES: the size of a file, bytes or file object, read no further than that.

Change them for a process with `kdetect.images.MAX_PIXELS = ...` (None: the default), or
with the environment variables KDETECT_MAX_PIXELS and KDETECT_MAX_FILE_BYTES.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdetect.errors import ConfigError, InvalidImageError

ImageLike = Any  # path, bytes, binary file, PIL image or numpy array

# 4 megapixels: a full-HD screenshot fits, and decoding one costs well under 100 MB.
DEFAULT_MAX_PIXELS = 4_000_000
# A 4-megapixel image stored without compression, 16 bits per channel with alpha, is 32 MB.
DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024
# Set these to change the limits for this process; None: the environment's, else the defaults.
MAX_PIXELS: int | None = None
MAX_FILE_BYTES: int | None = None

# The formats a captcha is served in. PIL knows some forty more; each is a decoder a hostile
# file can aim at (EPS even starts Ghostscript), and none of them is a captcha.
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM")


def pixel_limit() -> int:
    """The most pixels (width x height) an input may have."""
    return _limit(MAX_PIXELS, "KDETECT_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def file_size_limit() -> int:
    """The most bytes an image file may have."""
    return _limit(MAX_FILE_BYTES, "KDETECT_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)


def _limit(value: int | None, env: str, default: int) -> int:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a whole number; set it to a positive number, "
                              f"or unset it for the default {default:,}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"the image limit {env.removeprefix('KDETECT_')} must be a positive whole number, "
                          f"not {value!r}")
    return value


def load_image(image: ImageLike) -> np.ndarray:
    """-> uint8 [H, W, 3]. Accepts a path, bytes, a binary file, a PIL image, or an array that is
    gray [H, W] / [H, W, 1], RGB or RGBA, of any integer or float type: uint8 as it is, uint16
    (16-bit images) scaled to 8 bits, other integers as 8-bit values where they fit (else as 16
    bits, else scaled by the type's range), floats as 0..1 (or 0..255 if larger).

    Anything over pixel_limit() or file_size_limit(), or not a readable image, raises
    InvalidImageError."""
    if isinstance(image, np.ndarray):
        return _from_array(image, f"array of shape {image.shape}")
    if isinstance(image, Image.Image):
        return _from_pil(image, "the PIL image")
    if isinstance(image, (str, Path)):
        return _from_bytes(read_file(image), str(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        _check_file_size(len(data), "the given bytes")
        return _from_bytes(data, "the given bytes")
    if hasattr(image, "read"):
        name = str(getattr(image, "name", "the file object"))
        try:
            data = image.read(file_size_limit() + 1)
        except (OSError, ValueError) as err:
            raise InvalidImageError(f"{name}: cannot be read ({err})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidImageError("the file object gave text, not bytes: open it in binary mode ('rb')")
        _check_file_size(len(data), name)
        return _from_bytes(bytes(data), name)
    raise InvalidImageError(f"cannot read an image from a {type(image).__name__}; give a path, bytes, a binary "
                            "file, a PIL image or a numpy array")


def read_file(path: str | Path) -> bytes:
    """An image file's bytes, refusing what is not a regular file or is over file_size_limit()
    before reading it (and reading no more than the limit, should the file grow meanwhile)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidImageError(f"{path}: no such file") from None
    except OSError as err:
        raise InvalidImageError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidImageError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidImageError(f"{path}: not a regular file (a device, pipe or socket); give an image file")
    _check_file_size(info.st_size, str(path))
    limit = file_size_limit()
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise InvalidImageError(f"{path}: cannot be read ({err.strerror or err})") from None
    _check_file_size(len(data), str(path))
    return data


def _check_file_size(size: int, name: str) -> None:
    limit = file_size_limit()
    if size > limit:
        raise InvalidImageError(f"{name}: over {limit:,} bytes, too large for a captcha; raise the limit with "
                                "KDETECT_MAX_FILE_BYTES (or kdetect.images.MAX_FILE_BYTES) if it really is one")


def _check_pixels(width: int, height: int, name: str) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(f"{name}: the image has no pixels")
    limit = pixel_limit()
    if width * height > limit:
        raise InvalidImageError(f"{name}: {width}x{height} pixels, over the limit of {limit:,}: too large for a "
                                "captcha; raise the limit with KDETECT_MAX_PIXELS (or kdetect.images.MAX_PIXELS) "
                                "if it really is one")


def _from_bytes(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise InvalidImageError(f"{name}: empty (0 bytes)")
    try:
        # Lazy: this reads the header only, so the size is known before any pixel is decoded.
        pil = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: not an image ({', '.join(FORMATS)} expected)") from None
    except Image.DecompressionBombError:
        raise InvalidImageError(f"{name}: declares far more pixels than the limit of {pixel_limit():,} "
                                "(a decompression bomb?)") from None
    except Exception as err:  # noqa: BLE001 - PIL's format plugins raise many kinds on hostile headers
        raise InvalidImageError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err})") from None
    return _from_pil(pil, name)


# PIL modes holding more than 8 bits per pixel, which convert("RGB") would clip rather than scale.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _from_pil(pil: Image.Image, name: str) -> np.ndarray:
    try:
        width, height = pil.size
    except Exception as err:  # noqa: BLE001 - a damaged or closed image object
        raise InvalidImageError(f"{name}: cannot be read ({err})") from None
    _check_pixels(width, height, name)
    try:
        pil.load()
        if pil.mode in _WIDE_MODES:
            return _from_array(np.asarray(pil), name)
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            # Transparent areas are paper: put the picture on white, as a browser would show it.
            rgba = pil.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            pil = Image.alpha_composite(background, rgba)
        return np.asarray(pil.convert("RGB"), dtype=np.uint8)
    except InvalidImageError:
        raise
    except ValueError as err:
        if "closed" in str(err):
            raise InvalidImageError(f"{name} was closed before it was read; pass it open, or open the file "
                                    "again") from None
        raise InvalidImageError(f"{name}: corrupt or unreadable image ({err})") from None
    except Exception as err:  # noqa: BLE001 - PIL's decoders raise many kinds on hostile data
        raise InvalidImageError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err})") from None


def _from_array(array: np.ndarray, name: str) -> np.ndarray:
    try:
        a = np.asarray(array)
    except Exception as err:  # noqa: BLE001 - an array-like that cannot become an array
        raise InvalidImageError(f"{name}: not an array of pixels ({err})") from None
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidImageError(f"array of shape {a.shape} is not an image: expected [H, W], [H, W, 1], "
                                "[H, W, 3] or [H, W, 4]")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InvalidImageError(f"array of shape {a.shape} has no pixels")
    _check_pixels(a.shape[1], a.shape[0], f"array of shape {a.shape}")
    # By kind: numpy counts timedelta64 as an integer type, and bool, complex and the rest are no pixels.
    if a.dtype.kind not in "uif":
        raise InvalidImageError(f"array of dtype {a.dtype} is not an image: use uint8, uint16 or float")
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise InvalidImageError("float image holds NaN or infinite values")
        a = np.rint(a * 255.0 if a.max() <= 1.0 else a)
    elif a.dtype != np.uint8:
        a = np.rint(_eight_bit_scale(a) * a.astype(np.float64))
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        return (a[..., :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return a


def _eight_bit_scale(a: np.ndarray) -> float:
    """What multiplies an integer image's values onto 0..255. uint16 says it holds 16 bits. Wider
    types (PIL's 32-bit "I", an int64 copy of an 8-bit image) say nothing, so their values do:
    8-bit values stay, 16-bit ones are scaled as such, larger ones by the type's range."""
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:
        return 255.0 / 65535.0
    top = int(a.max())
    if top <= 255:
        return 1.0
    if top <= 65535:
        return 255.0 / 65535.0
    return 255.0 / float(np.iinfo(a.dtype).max)
