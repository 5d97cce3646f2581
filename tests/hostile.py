"""Hostile inputs for the tests: images whose header declares far more pixels than the file
holds (decompression bombs), the opening bytes of every format PIL reads, and a way to run a
bomb in a child process and measure the child's peak memory."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, rows: int = 64, color_type: int = 0, depth: int = 8,
             extra_mb: int = 0) -> bytes:
    """A PNG declaring width x height whose data, zeros, deflates to almost nothing: the first
    `rows` rows are really there (at most 64 MB of them), then extra_mb more MB of zeros than the
    picture needs (a decoder that trusts the header, or reads on, allocates for all of it)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = min(min(rows, height) * (1 + width * channels * depth // 8), 64 << 20) + (extra_mb << 20)
    packer = zlib.compressobj(9)
    block = bytes(1 << 20)
    body = b"".join(packer.compress(block[:min(1 << 20, raw - at)]) for at in range(0, raw, 1 << 20))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int, height: int) -> bytes:
    """A GIF89a whose screen and one image declare width x height, with a tiny LZW stream."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + image + b"\x02\x02\x44\x01\x00;"


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG with its frame header (SOF0) rewritten to declare width x height."""
    buf = io.BytesIO()
    Image.new("L", (16, 16), 200).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_bomb(width: int, height: int) -> bytes:
    """A BMP header declaring width x height, 24 bits, followed by a few bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def tiff_bomb(width: int, height: int) -> bytes:
    """A little-endian TIFF declaring width x height, 8-bit gray, one strip of a few bytes."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


def ppm_bomb(width: int, height: int) -> bytes:
    return f"P6\n{width} {height}\n255\n".encode() + b"\x00" * 64


def webp_bomb(width: int, height: int) -> bytes:
    """A small real lossless WebP with its VP8L header rewritten to declare width x height (at
    most 16384 each): 14 bits per side, minus one."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 200, 200)).save(buf, format="WEBP", lossless=True)
    data = bytearray(buf.getvalue())
    at = data.index(b"VP8L") + 9  # past the chunk's name, its size and the 0x2f signature byte
    bits = struct.unpack("<I", bytes(data[at:at + 4]))[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[at:at + 4] = struct.pack("<I", bits)
    return bytes(data)


BOMBS = {"png": png_bomb, "gif": gif_bomb, "jpeg": jpeg_bomb, "bmp": bmp_bomb, "tiff": tiff_bomb,
         "ppm": ppm_bomb, "webp": webp_bomb}
# The largest side each format can declare.
BOMB_SIDES = {"png": 2**31 - 1, "gif": 65535, "jpeg": 65535, "bmp": 2**31 - 1, "tiff": 2**32 - 1,
              "ppm": 10**9, "webp": 16384}


def format_files() -> dict[str, bytes]:
    """A small file of every format PIL can open: a 4x4 image saved in it where PIL writes the
    format, else the format's signature as its plugin looks for it (the tests add the rest)."""
    Image.init()
    files = {}
    sample = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    for fmt in Image.OPEN:
        for mode in ("RGB", "L", "1", "RGBA") if fmt in Image.SAVE else ():
            try:
                buf = io.BytesIO()
                with warnings.catch_warnings():
                    # Every format PIL still opens, those it deprecates (IM) too: they reach kdetect alike.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    sample.convert(mode).save(buf, format=fmt)
                files[fmt] = buf.getvalue()
                break
            except Exception:  # noqa: BLE001 - a writer that wants another mode, or options
                continue
        if fmt not in files:
            files[fmt] = SIGNATURES[fmt]
    return files


# Signatures of the formats PIL reads but does not write (see each PIL plugin's _accept).
SIGNATURES = {
    "AVIF": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
    "BLP": b"BLP2\x01\x00\x00\x00\x04\x00\x04\x00\x00\x00",
    "BUFR": b"BUFR",
    "CUR": b"\x00\x00\x02\x00",
    "DCX": struct.pack("<I", 987654321),
    "EPS": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n",
    "FITS": b"SIMPLE  =                    T",
    "FLI": b"\x00\x00\x00\x00\x11\xaf",
    "FTEX": b"FTEX",
    "GBR": b"\x00\x00\x00\x1c\x00\x00\x00\x02",
    "GRIB": b"GRIB",
    "HDF5": b"\x89HDF\r\n\x1a\n",
    "ICNS": b"icns",
    "IMT": b"width 4\nheight 4\n\x0c",
    "IPTC": b"\x1c\x02",
    "MCIDAS": b"\x00\x00\x00\x00\x00\x00\x00\x04",
    "MPEG": b"\x00\x00\x01\xb3",
    "MSP": b"DanM\x04\x00\x04\x00",
    "PCD": b"\x00" * 2048 + b"PCD_IPI",
    "PIXAR": b"\x80\xe8\x00\x00",
    "PSD": b"8BPS\x00\x01",
    "SUN": b"\x59\xa6\x6a\x95",
    "WMF": b"\xd7\xcd\xc6\x9a\x00\x00",
    "XPM": b"/* XPM */\nstatic char *x[] = {\n",
    "XVTHUMB": b"P7 332\n",
}


BOMB_SCRIPT = """
import sys
from kdetect.errors import InvalidImageError
from kdetect.images import load_image
try:
    load_image(sys.argv[1])
    print("read")
except InvalidImageError as err:
    print("refused", err)
"""

CLI_SCRIPT = "import sys\nfrom kdetect.cli import main\nsys.exit(main(sys.argv[1:]))\n"

# Put before a child's code: at exit it writes its peak resident memory (VmHWM, kB) to the file
# $KDETECT_TEST_PEAK. The child's own figure: what wait4 reports also counts the memory the
# child shared with this (large, TensorFlow-holding) test process between fork and exec.
_PEAK = """
import atexit, os, resource
# A runaway child is stopped, not the machine: CPU seconds, and an address-space ceiling far above
# the 1.5 GB the tests allow (so a breach shows as a large peak, not as a MemoryError).
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))
def _write_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["KDETECT_TEST_PEAK"], "w") as out:
        out.write(peak)
atexit.register(_write_peak)
"""


def run_measured(code: str, args: list[str], timeout_cpu_s: int = 120) -> tuple[int, str, str, float]:
    """Run Python code in a child process with args as sys.argv[1:]; -> (exit code, stdout,
    stderr, the child's peak resident memory in MB)."""
    with tempfile.TemporaryDirectory(prefix="kdetect-child-") as scratch:
        peak_file = Path(scratch) / "peak"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KDETECT_TEST_PEAK": str(peak_file)}
        proc = subprocess.run([sys.executable, "-c", _PEAK.replace("{cpu}", str(timeout_cpu_s)) + code, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, env=env)
        peak_mb = int(peak_file.read_text()) / 1024 if peak_file.is_file() else float("inf")
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), peak_mb


def load_in_child(path: Path) -> tuple[int, str, str, float]:
    """load_image(path) in a fresh Python: (exit code, stdout, stderr, peak MB)."""
    return run_measured(BOMB_SCRIPT, [str(path)])


@st.composite
def format_openings(draw, files: dict[str, bytes]) -> bytes:
    """A format's file cut anywhere past its first bytes, then random bytes."""
    data = files[draw(st.sampled_from(sorted(files)))]
    return data[:draw(st.integers(min(8, len(data)), len(data)))] + draw(st.binary(max_size=512))


@st.composite
def flipped_captchas(draw, captchas: list[bytes]) -> bytes:
    """A real captcha file with 1 to 50 of its bits flipped."""
    data = bytearray(draw(st.sampled_from(captchas)))
    for _ in range(draw(st.integers(1, 50))):
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)
