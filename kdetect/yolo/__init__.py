"""Our YOLOv3-tiny: config, model, anchors, targets, loss, decoding."""
