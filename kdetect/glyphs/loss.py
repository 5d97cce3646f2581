"""The glyph reader's loss: cross-entropy over the charset and "no glyph" where a crop has a
class to learn, and with centre offsets a Huber loss on the offset where it has one to learn."""

from __future__ import annotations

from keras import ops


def huber(error, delta: float = 1.0):
    """Squared under delta, linear over it: a crop far off a glyph should not outweigh the rest."""
    size = ops.abs(error)
    return ops.where(size <= delta, 0.5 * ops.square(error), delta * (size - 0.5 * delta))


def glyph_loss(num_classes: int, offset_weight: float):
    """-> loss(targets [N, 2] (class, -1 for none; offset in columns, NaN for none),
    outputs [N, num_classes (+ 1)] logits (and offset)) -> per-crop loss [N]."""

    def loss(targets, outputs):
        labels = targets[:, 0]
        has_class = ops.cast(labels >= 0, outputs.dtype)
        classes = ops.cast(ops.maximum(labels, 0), "int32")
        log_probs = ops.log_softmax(outputs[:, :num_classes], axis=-1)
        cross_entropy = -ops.take_along_axis(log_probs, classes[:, None], axis=1)[:, 0] * has_class
        if outputs.shape[-1] == num_classes or offset_weight == 0:
            return cross_entropy
        target = targets[:, 1]
        has_offset = ops.isfinite(target)
        error = outputs[:, num_classes] - ops.where(has_offset, target, 0.0)
        return cross_entropy + offset_weight * huber(error) * ops.cast(has_offset, outputs.dtype)

    return loss
