"""Write web/test/vectors.json: small raw network outputs and what kdetect's Python readers make of them.

One file for Python/JS parity of both stages: the detector's decoding (web/decode.js decode,
kdetect/detector/decode.py) and the two-stage pipeline (proposals, crop centres, first look,
second look, refine: web/decode.js as web/app.js runs it, kdetect/serving/detector_reader.py), each with
and without the alphabet guess, some with a known answer length. The networks are a toy: a
16x48 input, 2 anchors per scale, a 4-character charset, and a glyph reader that is a table of
what the crop around each of the 48 columns reads; so every value fits on a line of the file.
web/test/vectors.test.mjs reads the file; tests/test_web_decode.py fails while it differs from
what this script writes now. Run from the repository root after changing either decoder:

    TF_CPP_MIN_LOG_LEVEL=3 python3 web/test/make_vectors.py
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import decode
from kdetect.glyphs.config import GlyphConfig
from kdetect.readings import Glyph, Reading
from kdetect.serving.detector_reader import DetectorReader, proposing_config
from kdetect.serving.shift_vote import moved_back, pixel_shift, shifted, vote

OUT = Path(__file__).with_name("vectors.json")
CHARSET = "017l"
ANCHORS = ((6, 10), (8, 12), (10, 14), (12, 16))
# Two digit alphabets to one with letters: a glyph between 1 and l reads as a 1 beside digits.
ALPHABETS = ("017", "017", "07l")
DETECTOR = ModelConfig(input_height=16, input_width=48, anchors_per_scale=2, anchors=ANCHORS, charset=CHARSET,
                       score_threshold=0.3, nms_iou=0.4, alphabets=())
READER = GlyphConfig(input_height=16, input_width=48, crop_width=8, charset=CHARSET, reject_threshold=0.5,
                     proposal_threshold=0.15, detector_weight=0.5, relook_step=2, relook_steps=2, relook_separation=4)
# Sizes the images come in: the boxes scale to them (None: the model input's pixels).
SIZES = ((96, 32), (48, 16), (120, 40))


def metadata(cfg: ModelConfig, gcfg: GlyphConfig | None) -> dict:
    """web/model/metadata.json as kdetect/serving/export.py writes it for these configs."""
    meta = {"format": "kdetect-tfjs-1", "kind": "detector", **json.loads(cfg.to_json())}
    if gcfg is not None:
        meta["glyphs"] = json.loads(gcfg.to_json())
    return meta


def random_outputs(rng: np.random.Generator, cfg: ModelConfig, hot: int) -> list[np.ndarray]:
    """Background anchors and `hot` confident ones, one decimal each (float32 and JSON agree on it)."""
    outputs = []
    for s in range(len(cfg.strides)):
        gh, gw = cfg.grid(s)
        raw = np.concatenate([rng.normal(0.0, 1.0, (gh, gw, cfg.anchors_per_scale, 2)),
                              rng.normal(0.0, 0.3, (gh, gw, cfg.anchors_per_scale, 2)),
                              rng.normal(-3.5, 1.5, (gh, gw, cfg.anchors_per_scale, 1)),
                              rng.normal(-1.0, 2.0, (gh, gw, cfg.anchors_per_scale, cfg.num_classes))], -1)
        outputs.append(raw)
    for _ in range(hot):
        s = int(rng.integers(len(outputs)))
        gh, gw, a, _ = outputs[s].shape
        cell = outputs[s][rng.integers(gh), rng.integers(gw), rng.integers(a)]
        cell[4] = rng.uniform(0.5, 4.0)
        cell[5 + rng.integers(cfg.num_classes)] = rng.uniform(1.0, 6.0)
    return [np.round(o, 1) for o in outputs]


def random_table(rng: np.random.Generator, gcfg: GlyphConfig) -> np.ndarray:
    """What the crop around each column reads [W, C + 1]: "no glyph" at about half the columns,
    two decimals, never within 0.02 of the reject threshold (float32 and float64 must agree)."""
    rows = []
    for _ in range(gcfg.input_width):
        row = rng.dirichlet(np.full(gcfg.num_classes, 0.5))
        row[-1] = rng.uniform(0.7, 1.0) if rng.uniform() < 0.5 else rng.uniform(0.0, 0.45)
        row[:-1] *= (1 - row[-1]) / row[:-1].sum()
        rows.append(np.round(row, 2))
    table = np.array(rows)
    near = np.abs(table[:, -1] - gcfg.reject_threshold) < 0.02
    table[near, -1] = gcfg.reject_threshold + 0.05
    return table


class TableReader(DetectorReader):
    """The shipped two-stage reading (DetectorReader._read_arrays), with the networks replaced by
    fixed outputs and a table; it notes the columns the glyph reader is asked to read."""

    def __init__(self, cfg: ModelConfig, gcfg: GlyphConfig | None, outputs: list[np.ndarray], table: np.ndarray | None):
        super().__init__(".")
        self.config, self.glyph_config, self.asked = cfg, gcfg, []
        self._infer = lambda images: [o[None] for o in outputs]
        if gcfg is not None:
            self._proposing = proposing_config(cfg, gcfg)
        self._read_glyphs = self._read_table
        self._table = table
        self._loaded = True

    def _read_table(self, images: np.ndarray, centres: np.ndarray) -> np.ndarray:
        self.asked.append(np.asarray(centres)[0].tolist())
        return self._table[np.asarray(centres)]


def two_stage(cfg, gcfg, outputs, table, size, length, guess, dtype=np.float32) -> tuple[Reading, list[list[int]]]:
    reader = TableReader(cfg, gcfg, [o.astype(dtype) for o in outputs], table.astype(dtype))
    reader.guess_alphabet = guess
    width, height = size
    reading = reader._read_arrays(np.zeros((1, height, width, 3), np.uint8), size, length)[0]
    return reading, reader.asked


def one_stage(cfg, outputs, size, length, guess, dtype=np.float32) -> Reading:
    return decode([o.astype(dtype) for o in outputs], cfg, size, guess_alphabet=guess, length=length)


def as_json(reading: Reading) -> dict:
    return {"text": reading.text, "confidence": reading.confidence,
            "glyphs": [{"char": g.char, "score": g.score, "box": list(g.box)} for g in reading.glyphs]}


def same(a: Reading, b: Reading) -> bool:
    """float32 and float64 read alike: the case sits on no threshold and no tie."""
    return a.text == b.text and np.allclose([g.score for g in a.glyphs], [g.score for g in b.glyphs], rtol=1e-5, atol=0) \
        and np.allclose([g.box for g in a.glyphs], [g.box for g in b.glyphs], atol=1e-3)


def case(name: str, seed: int, stage: str, wants: Callable[[dict], bool], alphabets: tuple[str, ...] = (),
         length: int | None = None, hot: int = 4, reader: GlyphConfig = READER) -> dict:
    """The first draw from `seed` on that reads alike in float32 and float64 and shows what the
    case is for (`wants`, given the case's readings)."""
    cfg = dataclasses.replace(DETECTOR, alphabets=alphabets)
    for attempt in range(seed, seed + 2000):
        rng = np.random.default_rng(attempt)
        outputs = random_outputs(rng, cfg, hot)
        size = SIZES[attempt % len(SIZES)]
        if stage == "detector":
            size = None if attempt % 4 == 0 else size
            table, asked = None, None
            read = {guess: [one_stage(cfg, outputs, size, length, guess, t) for t in (np.float32, np.float64)]
                    for guess in (True, False)}
            plain = one_stage(cfg, outputs, size, None, True)
        else:
            table = random_table(rng, reader)
            runs = {guess: [two_stage(cfg, reader, outputs, table, size, length, guess, t) for t in (np.float32, np.float64)]
                    for guess in (True, False)}
            read = {guess: [r for r, _ in pair] for guess, pair in runs.items()}
            asked = runs[True][0][1]
            plain = two_stage(cfg, reader, outputs, table, size, None, True)[0]
        if not all(same(*pair) for pair in read.values()):
            continue
        found = {"read": read[True][0], "unguessed": read[False][0], "without_length": plain, "cfg": cfg,
                 "outputs": outputs, "table": table, "size": size, "asked": asked}
        if wants(found):
            break
    else:
        raise AssertionError(f"{name}: no draw from seed {seed} shows what the case is for")
    return {
        "name": name, "stage": stage, "seed": attempt,
        "meta": metadata(cfg, reader if stage == "two-stage" else None),
        "image_width": size[0] if size else None, "image_height": size[1] if size else None,
        "length": length,
        "outputs": [o.tolist() for o in outputs],
        **({"table": table.tolist(), "columns": asked[0] if asked else None,
            "relook_columns": asked[1] if asked and len(asked) > 1 else None} if stage == "two-stage" else {}),
        "expected": as_json(read[True][0]),
        "expected_without_alphabet_guess": as_json(read[False][0]),
    }


def second_look_finds(f: dict) -> bool:
    """A glyph only the second look finds: the reader without it reads fewer."""
    without = two_stage(f["cfg"], dataclasses.replace(READER, relook_steps=0), f["outputs"], f["table"], f["size"],
                        None, True)[0]
    return len(f["read"].text) > len(without.text) >= 2


def detector_decides(f: dict) -> bool:
    alone = two_stage(f["cfg"], dataclasses.replace(READER, detector_weight=0.0), f["outputs"], f["table"],
                      f["size"], None, True)[0]
    return alone.text != f["read"].text and len(alone.text) >= 2


def vectors() -> dict:
    """What vectors.json holds; tests/test_web_decode.py checks the committed file against it."""
    cases = [
        case("detector", 1, "detector", lambda f: len(f["read"].glyphs) >= 3 and f["size"] is not None),
        case("detector-model-pixels", 100, "detector", lambda f: len(f["read"].glyphs) >= 2 and f["size"] is None),
        case("detector-alphabet-guess", 200, "detector", lambda f: f["read"].text != f["unguessed"].text,
             alphabets=ALPHABETS, hot=5),
        # A known length: candidates under the threshold fill the glyphs it lost.
        case("detector-length", 300, "detector",
             lambda f: len(f["read"].text) == 4 and len(f["without_length"].text) < 4, length=4),
        case("two-stage-second-look", 400, "two-stage", second_look_finds),
        case("two-stage-detector-weight", 500, "two-stage", detector_decides),
        case("two-stage-alphabet-guess", 600, "two-stage", lambda f: f["read"].text != f["unguessed"].text,
             alphabets=ALPHABETS, hot=5),
        # A known length: the crops likeliest to hold a glyph, no second look.
        case("two-stage-length", 700, "two-stage",
             lambda f: len(f["read"].text) == 3 and f["without_length"].text != f["read"].text
             and len(f["asked"]) == 1, length=3),
    ]
    return {"generator": "web/test/make_vectors.py", "cases": cases, "shift_votes": shift_votes()}


def shift_votes() -> list[dict]:
    """The shift vote's pieces (kdetect/serving/shift_vote.py) on small images: where a shift in
    network pixels lands in the image, the moved pixels with their paper fill, the boxes moved
    back and the reading the vote picks."""
    rng = np.random.default_rng(9)
    meta = {"input_width": 48, "input_height": 16}
    texts = [["17", "1l", "17", "1l"], ["07", "7", "0l"], ["1", "l", "l"], ["l", "1", "1", "l", "l"]]
    out = []
    for k, (shift, size) in enumerate([((2, 0), (48, 16)), ((-3, 1), (96, 32)), ((1, -1), (120, 40)), ((5, 2), (160, 64))]):
        width, height = min(size[0], 9), min(size[1], 6)
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        dx, dy = pixel_shift(shift, size, (meta["input_width"], meta["input_height"]))
        moved_px = shifted(image, dx, dy)
        ballot = [Reading(t, 0.5, tuple(Glyph(c, 0.5, (4.0 * i, 1.0, 4.0 * i + 6, 9.0)) for i, c in enumerate(t)))
                  for t in texts[k % len(texts)]]
        out.append({"shift": list(shift), "size": list(size), "pixel_shift": [dx, dy],
                    "image": image[0].reshape(-1).tolist(), "width": width, "height": height,
                    "shifted": moved_px[0].reshape(-1).tolist(),
                    "texts": texts[k % len(texts)], "voted": ballot.index(vote(ballot)),
                    "moved_back": as_json(moved_back(ballot[0], dx, dy, size))})
    return out


def dumps(value, indent: str = "") -> str:
    """JSON with a list of plain values on one line (an anchor's outputs, a column's reading)."""
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


def main() -> None:
    document = vectors()
    text = dumps(document) + "\n"
    OUT.write_text(text)
    for c in document["cases"]:
        print(f"{c['name']} (seed {c['seed']}): {c['expected']['text']!r}, "
              f"without the guess {c['expected_without_alphabet_guess']['text']!r}")
    print(f"wrote {OUT} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
