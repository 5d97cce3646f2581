"""TFRecord shards: one tf.train.Example per captcha, and the tf.data reader for them.

Boxes are stored in pixels, [x0, y0, x1, y1) as the renderer reports them. A glyph the wave
pushed entirely out of the image has no box; its character still counts in `text`.
"""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from kdetect.charset import CHAR_TO_ID
from kdetect.errors import DatasetError

MANIFEST = "manifest.json"

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "text": tf.io.FixedLenFeature([], tf.string),
    "font": tf.io.FixedLenFeature([], tf.string),
    "bbox/x0": tf.io.VarLenFeature(tf.float32),
    "bbox/y0": tf.io.VarLenFeature(tf.float32),
    "bbox/x1": tf.io.VarLenFeature(tf.float32),
    "bbox/y1": tf.io.VarLenFeature(tf.float32),
    "bbox/label": tf.io.VarLenFeature(tf.int64),
}


def encode_example(image_bytes: bytes, ann: dict) -> bytes:
    """Serialize one rendered captcha and its annotation."""
    boxes = [b for b in ann["boxes"] if b is not None]

    def floats(i: int) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(b[i]) for b in boxes]))

    feature = {
        "image/encoded": _bytes(image_bytes),
        "image/width": _ints([ann["width"]]),
        "image/height": _ints([ann["height"]]),
        "text": _bytes(ann["text"].encode()),
        "font": _bytes(ann["font"].encode()),
        "bbox/x0": floats(0),
        "bbox/y0": floats(1),
        "bbox/x1": floats(2),
        "bbox/y1": floats(3),
        "bbox/label": _ints([CHAR_TO_ID[b[4]] for b in boxes]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def decode_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """-> image uint8 [H, W, 3], text string [], boxes float32 [N, 4] (x0, y0, x1, y1), labels int32 [N]."""
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    image = tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    coords = [tf.sparse.to_dense(ex[f"bbox/{k}"]) for k in ("x0", "y0", "x1", "y1")]
    return {
        "image": image,
        "text": ex["text"],
        "boxes": tf.stack(coords, axis=-1),
        "labels": tf.cast(tf.sparse.to_dense(ex["bbox/label"]), tf.int32),
    }


def load_manifest(data_dir: str | Path) -> dict:
    """The manifest of a finished TFRecord dataset, after checking every shard is whole."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{data_dir} is not a finished kdetect dataset (no {MANIFEST}); if generation was "
                           "interrupted, run the same `kdetect generate` command again to finish it")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != "tfrecord":
        raise DatasetError(f"{data_dir} holds images, not TFRecord shards; generate it with --tfrecord")
    for shard in manifest["shards"]:
        file = data_dir / shard["file"]
        size = file.stat().st_size if file.is_file() else None
        if size != shard["bytes"]:
            found = "is missing" if size is None else f"has {size} bytes, the manifest says {shard['bytes']}"
            raise DatasetError(f"shard {file} {found}: the dataset is damaged; delete {file} and {path}, then "
                               "run the same `kdetect generate` command again to rebuild it")
    return manifest


def shard_files(data_dir: str | Path) -> list[str]:
    manifest = load_manifest(data_dir)
    return [str(Path(data_dir) / s["file"]) for s in manifest["shards"]]


def read_dataset(data_dir: str | Path, shuffle_seed: int | None = None, limit: int | None = None) -> tf.data.Dataset:
    """Examples of a dataset as dicts (see decode_example); shuffled by file and record when seeded.
    limit: only the dataset's first `limit` images, the same ones on every pass (learning curves)."""
    files = shard_files(data_dir)
    if limit is not None:
        ds = tf.data.TFRecordDataset(files).take(limit)
        if shuffle_seed is not None:
            ds = ds.shuffle(min(limit, 10_000), seed=shuffle_seed)
        return ds.map(decode_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(files), seed=shuffle_seed)
    # Unshuffled reads keep the dataset's order; shuffled ones mix several shards at once.
    cycle = 1 if shuffle_seed is None else min(4, len(files))
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle,
                       deterministic=True, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_seed is not None:
        ds = ds.shuffle(2048, seed=shuffle_seed)
    return ds.map(decode_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def write_mixture(out_dir: str | Path, parts: list[tuple[str | Path, int]], config: dict) -> dict:
    """A dataset made of other datasets' shards, each part's shards listed `repeats` times (as
    links, nothing copied), so that training reads the parts in that proportion: a few hundred
    real captchas beside tens of thousands of rendered ones. config: what the manifest says the
    data was drawn with (its allowed_symbols become the model's alphabets). Returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, images, sources = [], 0, []
    for k, (part, repeats) in enumerate(parts):
        manifest = load_manifest(part)
        sources.append({"data": str(part), "repeats": repeats, "images": manifest["images"]})
        for r in range(repeats):
            for shard in manifest["shards"]:
                name = f"part{k}-r{r}-{shard['file']}"
                link = out / name
                link.unlink(missing_ok=True)
                link.symlink_to((Path(part) / shard["file"]).resolve())
                shards.append({"file": name, "count": shard["count"], "bytes": shard["bytes"]})
                images += shard["count"]
    manifest = {"format": "tfrecord", "source": "mixture", "parts": sources, "config": config,
                "images": images, "seed": None, "preset": None, "shards": shards}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / MANIFEST)
    return manifest
