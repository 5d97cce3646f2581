// Tests of web/decode.js with Node's built-in runner: `npm test` inside web/, i.e.
// `node --test test/*.test.mjs` (not `node --test test/`: Node 21+ no longer searches a directory).
// Hand-built cases here; parity with the Python readers is vectors.test.mjs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decode, decodeClassifier, iou, nms, sigmoid, toTensorLike } from '../decode.js';

const META = {
  format: 'kdetect-tfjs-1',
  kind: 'detector',
  input_height: 64,
  input_width: 160,
  charset: '0123456789abcdefghijklmnopqrstuvwxyz',
  anchors: [[14, 30], [18, 40], [22, 46], [26, 50], [32, 52], [40, 56]],
  strides: [8, 16],
  anchors_per_scale: 3,
  score_threshold: 0.25,
  nms_iou: 0.45,
};

function close(actual, expected, tol, what) {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs expected ${expected} (tol ${tol})`);
}

function closeBox(actual, expected, tol, what) {
  assert.equal(actual.length, 4, what);
  actual.forEach((v, k) => close(v, expected[k], tol, `${what}[${k}]`));
}

/** Background-only outputs for META ({data, shape} per scale) and a setter for one anchor:
 * tx = ty = tw = th = 0 puts the box's centre mid-cell with the anchor's own size. */
function blank(meta = META) {
  const depth = 5 + meta.charset.length;
  const outputs = meta.strides.map((stride) => {
    const shape = [meta.input_height / stride, meta.input_width / stride, meta.anchors_per_scale, depth];
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = i % depth >= 4 ? -20 : 0;
    return { data, shape };
  });
  const put = (scale, gy, gx, a, { obj, char, logit, t = [0, 0, 0, 0] }) => {
    const { data, shape } = outputs[scale];
    const o = ((gy * shape[1] + gx) * shape[2] + a) * depth;
    data.set(t, o);
    data[o + 4] = obj;
    data[o + 5 + meta.charset.indexOf(char)] = logit;
  };
  return { outputs, put };
}

/** The hand-built picture: four glyphs, a duplicate and a faint candidate. */
function handBuilt() {
  const { outputs, put } = blank();
  // Strongest glyph, stride 16, cell (gy 1, gx 7), anchor 26x50: centre (120, 24) -> box
  // (107, -1, 133, 49), clipped at the top to y0 = 0.
  put(1, 1, 7, 0, { obj: 6, char: 'k', logit: 6 });
  // A weaker 'x' at nearly the same place (stride 8, cell (2, 14), anchor 22x46: box
  // (105, 0, 127, 43)): IoU with the 'k' is 0.63, so NMS must drop it whatever its class.
  put(0, 2, 14, 2, { obj: 2, char: 'x', logit: 2 });
  // 'a': stride 8, cell (3, 8), anchor 14x30 -> box (61, 13, 75, 43).
  put(0, 3, 8, 0, { obj: 3, char: 'a', logit: 5 });
  // 'b' right next to it: cell (3, 9) -> box (69, 13, 83, 43); IoU with 'a' is 0.27, kept.
  put(0, 3, 9, 0, { obj: 1, char: 'b', logit: 1 });
  // '3' comes after 'a' and 'b' in candidate order (a lower row) but is leftmost:
  // cell (4, 3), anchor 18x40 -> box (19, 16, 37, 56).
  put(0, 4, 3, 1, { obj: 4, char: '3', logit: 3 });
  // Below the threshold: sigmoid(-1) * sigmoid(0) = 0.13.
  put(0, 5, 18, 0, { obj: -1, char: 'z', logit: 0 });
  return outputs;
}

const s = sigmoid;
const HAND_EXPECTED = [
  // Boxes in a 320x128 picture: model-input pixels times 2.
  { char: '3', score: s(4) * s(3), box: [38, 32, 74, 112] },
  { char: 'a', score: s(3) * s(5), box: [122, 26, 150, 86] },
  { char: 'b', score: s(1) * s(1), box: [138, 26, 166, 86] },
  { char: 'k', score: s(6) * s(6), box: [214, 0, 266, 98] },
];

test('hand-built prediction reads "3abk" with known boxes and scores', () => {
  const reading = decode(handBuilt(), META, 320, 128);
  assert.equal(reading.text, '3abk');
  assert.equal(reading.glyphs.length, HAND_EXPECTED.length);
  reading.glyphs.forEach((g, k) => {
    const want = HAND_EXPECTED[k];
    assert.equal(g.char, want.char);
    close(g.score, want.score, 1e-7, `score of ${want.char}`);
    closeBox(g.box, want.box, 1e-4, `box of ${want.char}`);
  });
});

test('confidence is the product of the glyph scores', () => {
  const reading = decode(handBuilt(), META, 320, 128);
  const product = HAND_EXPECTED.reduce((p, g) => p * g.score, 1);
  close(reading.confidence, product, 1e-9, 'confidence');
  close(reading.confidence, reading.glyphs.reduce((p, g) => p * g.score, 1), 1e-12, 'confidence');
});

test('without an image size, boxes are in model-input pixels', () => {
  const reading = decode(handBuilt(), META);
  closeBox(reading.glyphs[3].box, [107, 0, 133, 49], 1e-4, 'box of k');
});

test('the order of the outputs does not matter (matched by grid shape)', () => {
  const outputs = handBuilt();
  assert.equal(decode([outputs[1], outputs[0]], META, 320, 128).text, '3abk');
});

test('nested arrays and a batch dimension of 1 are accepted', () => {
  const nest = ({ data, shape }) => {
    const build = (offset, dims) => {
      if (dims.length === 0) return data[offset];
      const stride = dims.slice(1).reduce((a, b) => a * b, 1);
      return Array.from({ length: dims[0] }, (_, i) => build(offset + i * stride, dims.slice(1)));
    };
    return build(0, shape);
  };
  const outputs = handBuilt();
  assert.equal(decode(outputs.map(nest), META, 320, 128).text, '3abk');
  assert.equal(decode(outputs.map((o) => [nest(o)]), META, 320, 128).text, '3abk');
  const batched = outputs.map(({ data, shape }) => ({ data, shape: [1, ...shape] }));
  assert.equal(decode(batched, META, 320, 128).text, '3abk');
});

test('nothing over the threshold reads an empty string with confidence 0', () => {
  const reading = decode(blank().outputs, META, 160, 64);
  assert.deepEqual(reading, { text: '', confidence: 0, glyphs: [] });
});

test('a score exactly at the threshold is kept', () => {
  const { outputs, put } = blank();
  // sigmoid(0) * sigmoid(0) = 0.25 exactly.
  put(0, 3, 10, 0, { obj: 0, char: '7', logit: 0 });
  assert.equal(decode(outputs, META).text, '7');
});

test('shapes that do not fit the metadata are rejected', () => {
  const outputs = handBuilt();
  assert.throws(() => decode([outputs[0]], META), /grid 4x10/);
  const wrongDepth = { data: new Float32Array(8 * 20 * 3 * 40), shape: [8, 20, 3, 40] };
  assert.throws(() => decode([wrongDepth, outputs[1]], META), /expected \[8,20,3,41\]/);
  assert.throws(() => toTensorLike({ data: new Float32Array(5), shape: [1, 2, 3, 4] }), /needs 24/);
});

test('iou of known boxes', () => {
  close(iou([0, 0, 2, 2], [1, 1, 3, 3]), 1 / 7, 1e-12, 'quarter overlap');
  assert.equal(iou([0, 0, 1, 1], [0, 0, 1, 1]), 1);
  assert.equal(iou([0, 0, 1, 1], [2, 2, 3, 3]), 0);
  assert.equal(iou([0, 0, 1, 1], [1, 0, 2, 1]), 0); // touching edges
  assert.equal(iou([1, 1, 1, 1], [1, 1, 1, 1]), 0); // empty boxes: no division by zero
});

test('nms keeps neighbours that barely overlap and drops real duplicates', () => {
  // Unit-height boxes 1 wide: shifting by d gives IoU (1 - d) / (1 + d).
  const shifted = (d) => [d, 0, d + 1, 1];
  // IoU 0.4 (d = 3/7) is kept at threshold 0.45; IoU 0.5 (d = 1/3) is dropped.
  const boxes = [shifted(0), shifted(3 / 7), shifted(-1 / 3), shifted(5)];
  const scores = [0.9, 0.8, 0.7, 0.6];
  assert.deepEqual(nms(boxes, scores, 0.45), [0, 1, 3]);
  // IoU equal to the threshold is kept (only IoU > threshold suppresses).
  assert.deepEqual(nms([[0, 0, 2, 1], [0, 0, 1, 1]], [0.9, 0.8], 0.5), [0, 1]);
});

test('nms sorts by score, best first, and equal scores keep their input order', () => {
  const far = (k) => [k * 10, 0, k * 10 + 1, 1];
  assert.deepEqual(nms([far(0), far(1), far(2), far(3)], [0.3, 0.9, 0.3, 0.5], 0.45), [1, 3, 0, 2]);
  // A tie between two overlapping boxes: the earlier candidate wins.
  assert.deepEqual(nms([far(0), far(0)], [0.5, 0.5], 0.45), [0]);
});

test('classifier: the most probable character per position, confidence their product', () => {
  const meta = { ...META, kind: 'classifier', length: 2, charset: '0123456789' };
  const probs = [
    [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.6, 0.08, 0.04], // 7
    [0.9, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02], // 0
  ];
  const reading = decodeClassifier([probs], meta);
  assert.equal(reading.text, '70');
  close(reading.confidence, 0.6 * 0.9, 1e-9, 'confidence');
  assert.deepEqual(reading.glyphs.map((g) => g.box), [null, null]);
  const flat = decodeClassifier({ data: Float32Array.from(probs.flat()), shape: [1, 2, 10] }, meta);
  assert.equal(flat.text, '70');
  assert.throws(() => decodeClassifier([[probs[0]]], meta), /does not fit/);
});
