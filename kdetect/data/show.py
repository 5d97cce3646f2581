"""Grids of captchas with their boxes and texts drawn, for a person to look at."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from kdetect.errors import DatasetError

# Distinct colours so neighbouring glyph boxes can be told apart.
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0)]


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    text: str
    boxes: list  # [x0, y0, x1, y1, char] with x1, y1 exclusive; empty where none are known


def load_samples(folder: str | Path, count: int) -> list[Sample]:
    """The first `count` samples of a generated dataset (images or TFRecords) or a labels.tsv folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("format") == "tfrecord":
        return _from_tfrecord(folder, count)
    if (folder / "annotations.jsonl").is_file():
        anns = [json.loads(line) for line in (folder / "annotations.jsonl").open()][:count]
        return [Sample(Image.open(folder / a["file"]).convert("RGB"), a["text"], [b for b in a["boxes"] if b])
                for a in anns]
    if (folder / "labels.tsv").is_file():
        rows = [line.rstrip("\n").split("\t") for line in (folder / "labels.tsv").open() if line.strip()][:count]
        return [Sample(Image.open(folder / name).convert("RGB"), text, []) for name, text in rows]
    raise DatasetError(f"{folder} holds neither a kdetect dataset (annotations.jsonl / manifest.json) "
                       "nor labels.tsv; point at a folder made by `kdetect generate`")


def _from_tfrecord(folder: Path, count: int) -> list[Sample]:
    from kdetect.charset import CHARSET
    from kdetect.data.tfrecord import read_dataset

    samples = []
    for ex in read_dataset(folder).take(count).as_numpy_iterator():
        boxes = [[*map(float, b), CHARSET[c]] for b, c in zip(ex["boxes"], ex["labels"])]
        image = Image.open(io.BytesIO(_png(ex["image"])))
        samples.append(Sample(image, ex["text"].decode(), boxes))
    return samples


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def draw_sample(sample: Sample, scale: int = 2) -> Image.Image:
    """The captcha enlarged, its boxes outlined, its text written underneath."""
    w, h = sample.image.size
    tile = Image.new("RGB", (w * scale, h * scale + 14), "white")
    tile.paste(sample.image.resize((w * scale, h * scale), Image.NEAREST))
    draw = ImageDraw.Draw(tile)
    for i, (x0, y0, x1, y1, _) in enumerate(sample.boxes):
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=PALETTE[i % len(PALETTE)])
    draw.text((4, h * scale + 1), sample.text, fill="black")
    return tile


def save_grid(samples: list[Sample], out: str | Path, columns: int = 4, scale: int = 2) -> None:
    if not samples:
        raise DatasetError("no samples to draw")
    tiles = [draw_sample(s, scale) for s in samples]
    tw = max(t.width for t in tiles) + 4
    th = max(t.height for t in tiles) + 4
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (tw * columns, th * rows), (200, 200, 200))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * tw + 2, (i // columns) * th + 2))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    grid.save(tmp)
    tmp.replace(out)
