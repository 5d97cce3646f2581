"""A research head (not served, not installed: open issue 26 may continue it): glyph centres
read column by column from the detector's features.

The two-stage reader finds glyphs where the detector's boxes are, and the detector's NMS keeps
one box where two 1s are packed 6 px apart (their boxes overlap past any threshold that also
drops doubled boxes). This head skips boxes: on the frozen detector's stride-4 and stride-8
features it says, for every 4-column cell of the input, which glyph's centre lies in that cell
(or none) and where in the cell it lies. Two packed 1s then fall in different cells, and two
cells that point at one centre are one glyph. docs/experiments.md has what it measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from kdetect.alphabet import guess_alphabet
from kdetect.detector.config import ModelConfig
from kdetect.preprocess import preprocess
from kdetect.readings import symbol_mask

STRIDE = 4  # the centre head's cells, on the detector's stride-4 features
COLUMN_STRIDE = 2  # the column reader's, on its own features
# A cell beside a glyph's own cell whose centre lies this close to the glyph's centre (the
# glyph's centre is within 1 px of the cells' border) is too ambiguous to call "no glyph".
AMBIGUOUS_PX = 3.0


def centre_head(detector: keras.Model, cfg: ModelConfig) -> keras.Model:
    """A frozen detector -> a model: preprocessed images [B, H, W, 3] -> [B, W / 4, C + 2] per cell
    logits over the charset and "no glyph", and the glyph centre's offset from the cell's, px."""
    detector.trainable = False
    fine = detector.get_layer("c3_act").output  # stride 4: strokes, where each one is
    coarse = detector.get_layer("c5_act").output  # stride 8: what the detector knows of glyphs
    features = keras.Model(detector.input, [fine, coarse], name="detector_features")
    image = keras.Input((cfg.input_height, cfg.input_width, 3), name="image")
    fine, coarse = features(image, training=False)
    x = layers.Concatenate()([fine, layers.UpSampling2D(2)(coarse)])
    for i in range(2):
        x = layers.LeakyReLU(0.1)(layers.Conv2D(64, 3, padding="same", name=f"ch_conv{i + 1}")(x))
    # The whole height of a cell's column at once: the glyph zig-zags up and down.
    x = layers.Conv2D(96, (cfg.input_height // STRIDE, 1), name="ch_column")(x)
    x = layers.Reshape((cfg.input_width // STRIDE, 96))(layers.LeakyReLU(0.1)(x))
    for i, rate in enumerate((1, 2, 4)):
        x = layers.LeakyReLU(0.1)(layers.Conv1D(96, 3, padding="same", dilation_rate=rate, name=f"ch_row{i + 1}")(x))
    outputs = layers.Conv1D(cfg.num_classes + 2, 1, name="ch_out")(x)
    return keras.Model(image, outputs, name="centre_head")


def column_reader(cfg: ModelConfig) -> keras.Model:
    """Its own features instead of the detector's, at full resolution and pooled only in height
    after the first layer -> [B, W / 2, C + 2], as centre_head's outputs."""
    image = keras.Input((cfg.input_height, cfg.input_width, 3), name="image")
    x = image
    for i, (filters, pool) in enumerate(((32, (2, 2)), (48, (2, 1)), (64, (2, 1)), (96, (2, 1)))):
        x = layers.LeakyReLU(0.1)(layers.Conv2D(filters, 3, padding="same", name=f"ch_conv{i + 1}")(x))
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Conv2D(128, (cfg.input_height // 16, 1), name="ch_column")(x)
    x = layers.Reshape((cfg.input_width // COLUMN_STRIDE, 128))(layers.LeakyReLU(0.1)(x))
    for i, rate in enumerate((1, 2, 4, 8)):
        x = layers.LeakyReLU(0.1)(layers.Conv1D(128, 3, padding="same", dilation_rate=rate, name=f"ch_row{i + 1}")(x))
    return keras.Model(image, layers.Conv1D(cfg.num_classes + 2, 1, name="ch_out")(x), name="column_reader")


def centre_targets(centres: tf.Tensor, labels: tf.Tensor, cells: int, none_class: int,
                   stride: int = STRIDE) -> tf.Tensor:
    """Glyph centres [N] (input px) and classes [N] -> per cell targets [cells, 2]: the class of
    the glyph whose centre lies in the cell, none_class, or -1 (ambiguous); the centre's offset
    from the cell's centre in px, NaN where the cell holds no glyph."""
    # A glyph far off the input stands in for none, so an image whose glyphs all left it works too.
    centres = tf.concat([tf.cast(centres, tf.float32), [-1e9]], 0)
    labels = tf.concat([tf.cast(labels, tf.int32), [none_class]], 0)
    middles = tf.range(cells, dtype=tf.float32) * stride + stride / 2
    own = tf.equal(tf.cast(tf.floor(centres / stride), tf.int32)[None, :], tf.range(cells)[:, None])  # [cells, N + 1]
    holds = tf.reduce_any(own, 1)
    which = tf.argmax(tf.cast(own, tf.int32), 1, output_type=tf.int32)
    near = tf.reduce_any((tf.abs(middles[:, None] - centres[None, :]) < AMBIGUOUS_PX) & ~own, 1)
    classes = tf.where(holds, tf.gather(labels, which), tf.where(near, -1, none_class))
    offsets = tf.where(holds, tf.gather(centres, which) - middles, float("nan"))
    return tf.stack([tf.cast(classes, tf.float32), offsets], 1)


def centre_examples(examples: tf.data.Dataset, cfg: ModelConfig, batch_size: int, stride: int = STRIDE) -> tf.data.Dataset:
    """Decoded captchas -> batches of (preprocessed images, per cell targets)."""
    cells = cfg.input_width // stride

    def one(example: dict) -> tuple[tf.Tensor, tf.Tensor]:
        width = tf.cast(tf.shape(example["image"])[1], tf.float32)
        centres = (example["boxes"][:, 0] + example["boxes"][:, 2]) / 2 * cfg.input_width / width
        return preprocess(example["image"], cfg), centre_targets(centres, example["labels"], cells, cfg.num_classes, stride)

    return examples.map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def huber(error, delta: float = 1.0):
    """Squared under delta, linear over it: a cell far off a centre should not outweigh the rest."""
    size = keras.ops.abs(error)
    return keras.ops.where(size <= delta, 0.5 * keras.ops.square(error), delta * (size - 0.5 * delta))


def centre_loss(num_classes: int, offset_weight: float) -> Callable:
    """Cell by cell: [B, cells, 2] targets (class, -1 for none; offset in px, NaN for none) and
    [B, cells, C + 2] outputs (logits, offset) -> per cell loss [B * cells]: the cross-entropy
    where a cell has a class, and offset_weight x a Huber loss where it has an offset."""
    from kdetect.glyphs.loss import glyph_loss

    cross_entropy = glyph_loss(num_classes)

    def loss(targets, outputs):
        targets = keras.ops.reshape(targets, (-1, 2))
        outputs = keras.ops.reshape(outputs, (-1, num_classes + 1))
        offset = targets[:, 1]
        has_offset = keras.ops.isfinite(offset)
        error = outputs[:, num_classes] - keras.ops.where(has_offset, offset, 0.0)
        return (cross_entropy(targets[:, 0], outputs[:, :num_classes])
                + offset_weight * huber(error) * keras.ops.cast(has_offset, outputs.dtype))

    return loss


def cell_glyphs(outputs: np.ndarray, cfg: ModelConfig, reject: float = 0.5,
                distance: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """One image's outputs [cells, C + 2] -> (the glyphs' centres [K] in input px, left to right;
    their class probabilities [K, C]): cells whose "no glyph" is under reject, the likelier
    first, each dropped where its centre lies under `distance` px from one kept."""
    probs = softmax(outputs[:, :cfg.num_classes + 1])
    stride = cfg.input_width / len(outputs)
    centres = np.arange(len(outputs)) * stride + stride / 2 + outputs[:, -1]
    kept: list[int] = []
    for k in np.argsort(probs[:, -1], kind="stable"):
        if probs[k, -1] >= reject:
            break
        if all(abs(centres[k] - centres[j]) >= distance for j in kept):
            kept.append(int(k))
    kept.sort(key=lambda k: centres[k])
    return centres[kept], probs[kept, :-1]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Logits [..., K] -> probabilities over the last axis."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def text_of(chars: np.ndarray, cfg: ModelConfig, symbols: str | None = None) -> str:
    """Class probabilities [K, C], left to right -> the text, in the alphabet they point to."""
    if not len(chars):
        return ""
    if symbols is None and cfg.alphabets:
        symbols = guess_alphabet(chars, cfg.alphabets, cfg.charset)
    return "".join(cfg.charset[c] for c in (chars * symbol_mask(cfg.charset, symbols)).argmax(-1))


def read_cells(outputs: np.ndarray, cfg: ModelConfig, reject: float = 0.5, distance: float = 3.0,
               symbols: str | None = None) -> str:
    """One image's outputs [cells, C + 2] -> its text (cell_glyphs, then text_of)."""
    return text_of(cell_glyphs(outputs, cfg, reject, distance)[1], cfg, symbols)


def cell_accuracy(head: keras.Model, images: np.ndarray, targets: np.ndarray, num_classes: int) -> float:
    """The share of labelled cells whose class the head reads right."""
    outputs = head.predict(images, batch_size=64, verbose=0)
    labels = targets[..., 0]
    right = outputs[..., :num_classes + 1].argmax(-1) == labels
    return float(right[labels >= 0].mean())


def save_head(head: keras.Model, path: Path) -> None:
    """The head's own layers' weights (the detector's stay in its package)."""
    import os

    weights = {w.path: w.numpy() for layer in head.layers if layer.name.startswith("ch_") for w in layer.weights}
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **weights)
    os.replace(tmp, path)


def load_head(head: keras.Model, path: Path) -> None:
    saved = np.load(path)
    for layer in head.layers:
        for w in layer.weights if layer.name.startswith("ch_") else []:
            w.assign(saved[w.path])


def train_centre_head(package: str, train_data: str, val_data: str, out_dir: str, epochs: int = 10,
                      steps_per_epoch: int = 500, batch_size: int = 32, learning_rate: float = 1e-3,
                      offset_weight: float = 0.5, augment: float = 0.3, val_images: int = 500, seed: int = 0,
                      own_features: bool = False, log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Train the head on the frozen detector of `package` (with own_features, a column reader of
    its own: the package gives only its input size and alphabets); out_dir/head.npz (the best epoch's by
    held-out cell accuracy), out_dir/history.jsonl; a run found in out_dir resumes after its
    last epoch. -> the history."""
    import json

    from kdetect.data.augment import augment_dataset
    from kdetect.data.tfrecord import read_dataset
    from kdetect.fsutil import write_atomic
    from kdetect.package import load_package

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(package=package, train_data=train_data, val_data=val_data, epochs=epochs,
                    steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
                    offset_weight=offset_weight, augment=augment, val_images=val_images, seed=seed,
                    own_features=own_features)
    write_atomic(out / "settings.json", json.dumps(settings, indent=2) + "\n")
    keras.utils.set_random_seed(seed)
    detector, cfg = load_package(package)
    head = column_reader(cfg) if own_features else centre_head(detector, cfg)
    stride = COLUMN_STRIDE if own_features else STRIDE
    history_file = out / "history.jsonl"
    history = [json.loads(line) for line in history_file.read_text().splitlines()] if history_file.exists() else []
    if history:
        load_head(head, out / "last.npz")
    val = centre_examples(read_dataset(val_data).take(val_images), cfg, 64, stride)
    val_images_, val_targets = (np.concatenate(a) for a in zip(*val.as_numpy_iterator()))
    examples = read_dataset(train_data, shuffle_seed=seed + len(history)).repeat()
    if augment:
        examples = augment_dataset(examples, seed=seed + len(history), fraction=augment)
    data = centre_examples(examples, cfg, batch_size, stride)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch, alpha=0.05)
    head.compile(optimizer=keras.optimizers.Adam(schedule), loss=centre_loss(cfg.num_classes + 1, offset_weight))
    head.optimizer.iterations.assign(len(history) * steps_per_epoch)
    best = max([h["cell_accuracy"] for h in history] + [0.0])
    for epoch in range(len(history) + 1, epochs + 1):
        fit = head.fit(data, steps_per_epoch=steps_per_epoch, epochs=1, verbose=0)
        accuracy = cell_accuracy(head, val_images_, val_targets, cfg.num_classes)
        save_head(head, out / "last.npz")
        if accuracy > best:
            best = accuracy
            save_head(head, out / "head.npz")
        history.append({"epoch": epoch, "loss": float(fit.history["loss"][-1]), "cell_accuracy": accuracy})
        write_atomic(history_file, "".join(json.dumps(h) + "\n" for h in history))
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f}, held-out cell accuracy {accuracy:.4f}")
    return history


def read_folder(head: keras.Model, cfg: ModelConfig, folder: Path, limit: int | None = None,
                glyph_reader: keras.Model | None = None, crop_width: int = 40,
                **decoding) -> list[tuple[str, str, str]]:
    """A folder of captchas with labels.tsv -> (file, truth, read) for each, read by the head; with
    a glyph reader (kdetect/glyphs), the head only places the glyphs and the reader names each
    from its crop there."""
    from kdetect.glyphs.model import crop_columns
    from kdetect.images import load_image
    from kdetect.serving.evaluate import read_labels

    rows = read_labels(folder)[:limit]
    results = []
    for start in range(0, len(rows), 64):
        chunk = rows[start:start + 64]
        batch = np.stack([np.asarray(preprocess(load_image(path), cfg)) for path, _ in chunk])
        found = [cell_glyphs(o, cfg, **decoding) for o in head.predict(batch, verbose=0)]
        if glyph_reader is not None:
            columns = np.zeros((len(chunk), max([len(c) for c, _ in found] + [1])), np.int32)
            for i, (centres, _) in enumerate(found):
                columns[i, :len(centres)] = np.clip(np.round(centres), 0, cfg.input_width - 1)
            crops = np.asarray(crop_columns(batch, columns, crop_width)).reshape((-1,) + batch.shape[1:2] + (crop_width, 3))
            logits = glyph_reader.predict(crops, batch_size=512, verbose=0)[:, :cfg.num_classes + 1]
            probs = softmax(logits).reshape(len(chunk), columns.shape[1], -1)
            found = [(centres, probs[i, :len(centres), :-1]) for i, (centres, _) in enumerate(found)]
        results += [(path.name, truth, text_of(chars, cfg)) for (path, truth), (_, chars) in zip(chunk, found)]
    return results
