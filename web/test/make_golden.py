"""Write web/test/golden.json: random raw head outputs and what kdetect.detector.decode reads from them.

The Node test (decode.test.mjs) runs web/decode.js on the same outputs and must get the same
reading; tests/test_web_decode.py fails while the file differs from what the Python decoder
reads now. Run from the repository root after changing the Python decoder:

    TF_CPP_MIN_LOG_LEVEL=3 python3 web/test/make_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import candidates, decode, pairwise_iou

OUT = Path(__file__).with_name("golden.json")


def metadata(cfg: ModelConfig) -> dict:
    """The fields of web/model/metadata.json that decoding uses."""
    return {"format": "kdetect-tfjs-1", "kind": "detector",
            "input_height": cfg.input_height, "input_width": cfg.input_width, "charset": cfg.charset,
            "anchors": [list(a) for a in cfg.anchors], "strides": list(cfg.strides),
            "anchors_per_scale": cfg.anchors_per_scale,
            "score_threshold": cfg.score_threshold, "nms_iou": cfg.nms_iou, "alphabets": list(cfg.alphabets)}


def random_outputs(rng: np.random.Generator, cfg: ModelConfig, hot: int, hot_chars: str | None = None,
                   rival: tuple[str, str] | None = None) -> list[np.ndarray]:
    """Mostly background logits, with `hot` random cells pushed to a confident glyph (of hot_chars
    if given). rival (a, b): one more glyph whose class logit for a is a little above b's. Values
    are rounded to 2 decimals so golden.json stays small and float32 round-trips through JSON."""
    chars = [cfg.charset.index(c) for c in (hot_chars or cfg.charset)]
    outputs = []
    for s in range(len(cfg.strides)):
        gh, gw = cfg.grid(s)
        shape = (gh, gw, cfg.anchors_per_scale, 5 + cfg.num_classes)
        raw = rng.normal(0.0, 1.0, shape)
        raw[..., 2:4] = rng.normal(0.0, 0.4, shape[:-1] + (2,))
        raw[..., 4] = rng.normal(-4.5, 1.2, shape[:-1])  # the odd background cell nears the threshold
        raw[..., 5:] = rng.normal(-1.0, 2.0, shape[:-1] + (cfg.num_classes,))
        if hot_chars:  # glyphs as a trained model sees them: quiet background, one clear class each
            raw[..., 4] -= 4.0
        for _ in range(hot):
            gy, gx, a = rng.integers(gh), rng.integers(gw), rng.integers(cfg.anchors_per_scale)
            raw[gy, gx, a, 4] = rng.uniform(2.0, 6.0)
            if hot_chars:
                raw[gy, gx, a, 5:] = rng.normal(-7.0, 1.0, cfg.num_classes)
            raw[gy, gx, a, 5 + rng.choice(chars)] = rng.uniform(4.0, 8.0)
        outputs.append(np.round(raw, 2))
    if rival:
        cell = outputs[0][1, 2, 0]  # stride 8, row 1, column 2: left of most glyphs, rarely overlapped
        cell[5:] = -7.0
        cell[4], cell[5 + cfg.charset.index(rival[0])], cell[5 + cfg.charset.index(rival[1])] = 5.0, 1.0, 0.6
    return outputs


def case(name: str, rng: np.random.Generator, cfg: ModelConfig, hot: int,
         image_size: tuple[int, int] | None, **hot_options) -> dict:
    outputs = random_outputs(rng, cfg, hot, **hot_options)
    reading = decode([o.astype(np.float32) for o in outputs], cfg, image_size)
    assert len(reading.glyphs) >= 4, f"{name}: only {len(reading.glyphs)} glyphs survive; pick other logits"
    # float32 (numpy) and float64 (JS) must not fall on different sides of a threshold.
    boxes, scores, _ = candidates([o.astype(np.float32) for o in outputs], cfg)
    assert np.abs(scores - cfg.score_threshold).min() > 1e-4, f"{name}: a score sits on the threshold"
    sure = boxes[scores >= cfg.score_threshold]
    overlaps = pairwise_iou(sure)
    assert np.abs(overlaps - cfg.nms_iou).min() > 1e-4, f"{name}: an IoU sits on the NMS threshold"
    return {
        "name": name,
        "meta": metadata(cfg),
        "image_width": image_size[0] if image_size else None,
        "image_height": image_size[1] if image_size else None,
        # Flat row-major values; the rounded float64 values, so JS's Float32Array gets the same float32.
        "outputs": [{"shape": list(o.shape), "data": [float(v) for v in o.reshape(-1)]} for o in outputs],
        "expected": {
            "text": reading.text,
            "confidence": reading.confidence,
            "glyphs": [{"char": g.char, "score": g.score, "box": list(g.box)} for g in reading.glyphs],
            "text_without_alphabet_guess": decode([o.astype(np.float32) for o in outputs], cfg, image_size,
                                                  guess_alphabet=False).text,
        },
    }


def golden_document() -> dict:
    """What golden.json holds; tests/test_web_decode.py checks the committed file against it."""
    rng = np.random.default_rng(0)
    cases = [
        # The deployed shape (64x160, strides 8 and 16) with its own anchors and thresholds,
        # boxes scaled to a 160x80 KCAPTCHA picture.
        case("default-shape", rng,
             ModelConfig(anchors=((12, 28), (17, 38), (23, 45), (27, 49), (33, 54), (42, 58)),
                         score_threshold=0.3, nms_iou=0.4), hot=7, image_size=(160, 80)),
        # A small, odd configuration: 2 anchors per scale, other thresholds, no image size
        # (boxes stay in model-input pixels).
        case("small-config", rng,
             ModelConfig(input_height=32, input_width=96, strides=(8, 16), anchors_per_scale=2,
                         anchors=((10, 20), (16, 26), (24, 30), (30, 32)),
                         score_threshold=0.2, nms_iou=0.5), hot=6, image_size=None),
        # Training alphabets known: digits beside a glyph a little more "l" than "1" read as digits.
        case("alphabet-guess", rng,
             ModelConfig(anchors=((12, 28), (17, 38), (23, 45), (27, 49), (33, 54), (42, 58)), score_threshold=0.3,
                         nms_iou=0.4, alphabets=("0123456789", "0123456789", "23456789abcdegikpqsvxyz",
                                                 "0123456789abcdefghijklmnopqrstuvwxyz")),
             hot=6, image_size=(160, 60), hot_chars="0123456789", rival=("l", "1")),
    ]
    guessed = cases[-1]["expected"]
    differ = [(a, b) for a, b in zip(guessed["text"], guessed["text_without_alphabet_guess"]) if a != b]
    assert differ == [("1", "l")], \
        "the alphabet-guess case must read its rival glyph as 1 with the guess and l without; pick other logits"
    return {"generator": "web/test/make_golden.py", "cases": cases}


def main() -> None:
    document = golden_document()
    text = json.dumps(document, separators=(",", ":"))
    OUT.write_text(text + "\n")
    for c in document["cases"]:
        print(f"{c['name']}: {c['expected']['text']!r} ({len(c['expected']['glyphs'])} glyphs)")
    print(f"wrote {OUT} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
