"""The YOLOv3-tiny glyph detector: config, model, anchors, targets, loss, decoding."""
