"""The glyph reader's loss: cross-entropy over the charset and "no glyph" where a crop has a
class to learn."""

from __future__ import annotations

from keras import ops


def glyph_loss(num_classes: int):
    """-> loss(labels [N] (the class, -1 where a crop has none to learn), logits [N, num_classes])
    -> per-crop loss [N], 0 for a crop without a class."""

    def loss(labels, outputs):
        labels = ops.reshape(labels, (-1,))
        has_class = ops.cast(labels >= 0, outputs.dtype)
        classes = ops.cast(ops.maximum(labels, 0), "int32")
        log_probs = ops.log_softmax(outputs[:, :num_classes], axis=-1)
        return -ops.take_along_axis(log_probs, classes[:, None], axis=1)[:, 0] * has_class

    return loss
