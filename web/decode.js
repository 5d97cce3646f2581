// From the detector's raw head outputs to an answer, in plain JavaScript (no TF.js), so it runs
// the same in Node (tests) and in the browser (demo). It mirrors kdetect/detector/decode.py step by
// step: sigmoid/exp box decoding, score threshold, greedy NMS ignoring class, sort by x, and the
// guess of the captcha's alphabet where the metadata lists the training alphabets.
//
// Outputs convention
// ------------------
// `outputs` is an array with one entry per scale. Each entry is either
//   - {data, shape}: `data` a flat row-major Float32Array (or any array-like of numbers) and
//     `shape` [gh, gw, A, 5 + C], or [1, gh, gw, A, 5 + C] (a batch dimension of 1 is dropped);
//   - or a nested array [gh][gw][A][5 + C] (optionally wrapped in a batch of 1).
// The last axis holds tx, ty, tw, th, the objectness logit, then C class logits.
// The order of the entries does not matter: each scale s of `meta.strides` is matched to the
// entry whose grid (gh, gw) equals (input_height / stride, input_width / stride).
//
// `meta` is web/model/metadata.json: input_height, input_width, charset, anchors ([w, h] in
// model-input pixels, anchors_per_scale per scale, scales in `strides` order), strides,
// anchors_per_scale, score_threshold, nms_iou, and optionally alphabets.
//
// decode() returns {text, confidence, glyphs: [{char, score, box: [x0, y0, x1, y1]}]}, boxes in
// the pixels of an image of imageWidth x imageHeight (model-input pixels when those are omitted).

export function sigmoid(x) {
  return 1 / (1 + Math.exp(-x));
}

function clip(x, lo, hi) {
  return Math.min(Math.max(x, lo), hi);
}

function flattenNested(value, out) {
  if (Array.isArray(value)) {
    for (const v of value) flattenNested(v, out);
  } else {
    out.push(Number(value));
  }
  return out;
}

function nestedShape(value) {
  const shape = [];
  while (Array.isArray(value)) {
    shape.push(value.length);
    value = value[0];
  }
  return shape;
}

/** {data, shape} or a nested array -> {data (flat), shape}, a leading batch of 1 dropped. */
function flatOutput(output, rank, layout) {
  let data;
  let shape;
  if (Array.isArray(output)) {
    shape = nestedShape(output);
    data = flattenNested(output, []);
  } else if (output && output.data !== undefined && output.shape !== undefined) {
    ({ data, shape } = output);
    shape = Array.from(shape);
  } else {
    throw new TypeError(`an output must be {data, shape} or a nested array ${layout}`);
  }
  if (shape.length === rank + 1 && shape[0] === 1) shape = shape.slice(1);
  if (shape.length !== rank) {
    throw new Error(`an output must have shape ${layout} (or with a batch of 1), got [${shape}]`);
  }
  return { data, shape };
}

/** One output in any accepted form -> {data, shape} with shape [gh, gw, A, 5 + C]. */
export function toTensorLike(output) {
  const { data, shape } = flatOutput(output, 4, '[gh, gw, A, 5 + C]');
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) {
    throw new Error(`output data has ${data.length} values but shape [${shape}] needs ${size}`);
  }
  return { data, shape };
}

/** Every anchor of all scales: {boxes: [[x0, y0, x1, y1] in 0..1], objectness, logits}, in the
 * order scale by scale (meta.strides order), then row-major (gy, gx, anchor) within a scale.
 * logits(i) gives anchor i's class logits. */
function anchorsOf(outputs, meta) {
  const tensors = outputs.map(toTensorLike);
  const A = meta.anchors_per_scale;
  const C = meta.charset.length;
  const sources = [];
  const W = meta.input_width;
  const H = meta.input_height;
  const boxes = [];
  const objectness = [];
  meta.strides.forEach((stride, s) => {
    const gh = Math.floor(H / stride);
    const gw = Math.floor(W / stride);
    const found = tensors.filter((t) => t.shape[0] === gh && t.shape[1] === gw);
    if (found.length !== 1) {
      const got = tensors.map((t) => `[${t.shape}]`).join(', ');
      throw new Error(`expected exactly one output with grid ${gh}x${gw} (stride ${stride}); got ${got}`);
    }
    const { data, shape } = found[0];
    if (shape[2] !== A || shape[3] !== 5 + C) {
      throw new Error(`output for stride ${stride} has shape [${shape}]; expected [${gh},${gw},${A},${5 + C}]`);
    }
    const anchors = meta.anchors.slice(s * A, (s + 1) * A);
    const depth = 5 + C;
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        for (let a = 0; a < A; a++) {
          const o = ((gy * gw + gx) * A + a) * depth;
          const cx = (sigmoid(data[o]) + gx) / gw;
          const cy = (sigmoid(data[o + 1]) + gy) / gh;
          const w = Math.exp(clip(data[o + 2], -8, 8)) * (anchors[a][0] / W);
          const h = Math.exp(clip(data[o + 3], -8, 8)) * (anchors[a][1] / H);
          boxes.push([
            clip(cx - w / 2, 0, 1), clip(cy - h / 2, 0, 1),
            clip(cx + w / 2, 0, 1), clip(cy + h / 2, 0, 1),
          ]);
          objectness.push(sigmoid(data[o + 4]));
          sources.push([data, o + 5]);
        }
      }
    }
  });
  const logits = (i) => Array.from({ length: C }, (_, c) => sources[i][0][sources[i][1] + c]);
  return { boxes, objectness, logits };
}

/** Each anchor's best class among `symbols` (all characters when null) -> {scores, classes}:
 * score = objectness x that class's probability. */
function bestClasses(anchors, meta, symbols) {
  const allowed = Array.from(meta.charset, (c) => symbols === null || symbols.includes(c));
  const scores = [];
  const classes = [];
  anchors.objectness.forEach((obj, i) => {
    const logits = anchors.logits(i);
    let best = 0;
    let bestLogit = -Infinity;
    logits.forEach((logit, c) => {
      // Strictly greater: ties keep the first class, as numpy's argmax does.
      if (allowed[c] && logit > bestLogit) {
        bestLogit = logit;
        best = c;
      }
    });
    // sigmoid is monotonic: the largest class probability is sigmoid of the largest logit.
    scores.push(obj * sigmoid(bestLogit));
    classes.push(best);
  });
  return { scores, classes };
}

function area(b) {
  return (b[2] - b[0]) * (b[3] - b[1]);
}

/** Intersection over union of two [x0, y0, x1, y1] boxes (denominator at least 1e-12). */
export function iou(a, b) {
  const w = Math.max(Math.min(a[2], b[2]) - Math.max(a[0], b[0]), 0);
  const h = Math.max(Math.min(a[3], b[3]) - Math.max(a[1], b[1]), 0);
  const inter = w * h;
  return inter / Math.max(area(a) + area(b) - inter, 1e-12);
}

/** Greedy non-maximum suppression ignoring class. Returns the kept indices, best score first;
 * equal scores keep their input order. A box is dropped when its IoU with a kept one is
 * greater than iouThreshold. */
export function nms(boxes, scores, iouThreshold) {
  let order = scores.map((_, i) => i);
  order.sort((i, j) => scores[j] - scores[i]); // Array.prototype.sort is stable
  const keep = [];
  while (order.length > 0) {
    const best = order.shift();
    keep.push(best);
    order = order.filter((i) => iou(boxes[best], boxes[i]) <= iouThreshold);
  }
  return keep;
}

// With a known answer length, candidates down to this score may fill a glyph the threshold lost.
export const LENGTH_FLOOR = 0.02;

/** The lowest score a glyph may have (decode.py's score_floor). */
function scoreFloor(threshold, length) {
  return length === null ? threshold : Math.min(threshold, LENGTH_FLOOR);
}

/** Candidate indices of one image's glyphs, left to right: score threshold, then NMS; with a
 * known answer length, the `length` best that NMS keeps down to the floor. */
function glyphIndices(all, meta, length = null) {
  const floor = scoreFloor(meta.score_threshold, length);
  const sure = [];
  all.scores.forEach((score, i) => {
    if (score >= floor) sure.push(i);
  });
  let keep = nms(sure.map((i) => all.boxes[i]), sure.map((i) => all.scores[i]), meta.nms_iou).map((k) => sure[k]);
  if (length !== null) keep = keep.slice(0, length);
  const centreX = (i) => (all.boxes[i][0] + all.boxes[i][2]) / 2;
  return keep.sort((i, j) => centreX(i) - centreX(j));
}

/** The training alphabets (a repeated one drawn that often) -> {names, logPrior, ratio}:
 * distinct alphabets, log prior, and u_A(c) / m(c) per alphabet and class (kdetect/alphabet.py). */
export function alphabetTable(alphabets, charset) {
  const counts = new Map();
  for (const a of alphabets) counts.set(a, (counts.get(a) ?? 0) + 1);
  const names = [...counts.keys()];
  const prior = names.map((a) => counts.get(a) / alphabets.length);
  const uniform = names.map((a) => Array.from(charset, (c) => (a.includes(c) ? 1 / new Set(a).size : 0)));
  const marginal = Array.from(charset, (_, c) => names.reduce((m, _a, k) => m + prior[k] * uniform[k][c], 0));
  const ratio = uniform.map((row) => row.map((u, c) => (marginal[c] > 0 ? u / marginal[c] : 0)));
  return { names, logPrior: prior.map(Math.log), ratio };
}

/** The most probable training alphabet for one answer's glyphs, from their class scores
 * (one array of sigmoids per glyph); null without glyphs or alphabets. Mirrors alphabet.py. */
export function guessAlphabet(classProbs, alphabets, charset) {
  if (classProbs.length === 0 || !alphabets || alphabets.length === 0) return null;
  const { names, logPrior, ratio } = alphabetTable(alphabets, charset);
  const total = logPrior.slice();
  for (const p of classProbs) {
    const sum = Math.max(p.reduce((a, b) => a + b, 0), 1e-30);
    ratio.forEach((row, k) => {
      const evidence = row.reduce((e, r, c) => e + (p[c] / sum) * r, 0);
      total[k] += Math.log(Math.max(evidence, 1e-300));
    });
  }
  let best = 0;
  total.forEach((v, k) => {
    if (v > total[best]) best = k;
  });
  return names[best];
}

/** One image's raw outputs -> {text, confidence, glyphs}. See the header for the conventions.
 * Where meta.alphabets lists the training alphabets, the captcha is read with the one its glyphs
 * point to, unless options.guessAlphabet is false. options.length (else meta.answer_length, a
 * fine-tuned site's) is the answer length, if known. */
export function decode(outputs, meta, imageWidth, imageHeight, options = {}) {
  return decodeWithClasses(outputs, meta, imageWidth, imageHeight, options).reading;
}

/** decode(), and each glyph's class probabilities (sigmoids of its logits) as classProbs. */
function decodeWithClasses(outputs, meta, imageWidth, imageHeight, { guessAlphabet: guess = true, length } = {}) {
  const answerLength = length ?? meta.answer_length ?? null;
  const anchors = anchorsOf(outputs, meta);
  let all = { boxes: anchors.boxes, ...bestClasses(anchors, meta, null) };
  let keep = glyphIndices(all, meta, answerLength);
  if (guess && meta.alphabets && meta.alphabets.length > 0) {
    const probs = keep.map((i) => anchors.logits(i).map(sigmoid));
    // Only the classes change: the boxes stay those decoded above.
    all = { boxes: anchors.boxes, ...bestClasses(anchors, meta, guessAlphabet(probs, meta.alphabets, meta.charset)) };
    keep = glyphIndices(all, meta, answerLength);
  }
  const w = imageWidth ?? meta.input_width;
  const h = imageHeight ?? meta.input_height;
  const glyphs = keep.map((i) => ({
    char: meta.charset[all.classes[i]],
    score: all.scores[i],
    box: [all.boxes[i][0] * w, all.boxes[i][1] * h, all.boxes[i][2] * w, all.boxes[i][3] * h],
  }));
  const confidence = glyphs.length ? glyphs.reduce((p, g) => p * g.score, 1) : 0;
  const classProbs = keep.map((i) => anchors.logits(i).map(sigmoid));
  return { reading: { text: glyphs.map((g) => g.char).join(''), confidence, glyphs }, classProbs };
}

/** The fixed-length classifier baseline's output -> {text, confidence, glyphs}, as
 * kdetect/classifier/decode.py reads it: per position the most probable character; the
 * confidence is the product of those probabilities. Glyphs have no boxes (`box: null`).
 * `output` is {data, shape} or a nested array of shape [length, classes] (or [1, length, classes]). */
export function decodeClassifier(output, meta) {
  const { data, shape } = flatOutput(output, 2, '[length, classes]');
  const [length, classes] = shape;
  if (data.length !== length * classes) throw new Error(`output data has ${data.length} values, shape [${shape}]`);
  if (classes !== meta.charset.length || length !== meta.length) {
    throw new Error(`classifier output [${shape}] does not fit metadata (length ${meta.length}, ${meta.charset.length} classes)`);
  }
  const glyphs = [];
  for (let p = 0; p < length; p += 1) {
    let best = 0;
    for (let c = 1; c < classes; c += 1) if (data[p * classes + c] > data[p * classes + best]) best = c;
    glyphs.push({ char: meta.charset[best], score: data[p * classes + best], box: null });
  }
  const confidence = glyphs.reduce((prod, g) => prod * g.score, 1);
  return { text: glyphs.map((g) => g.char).join(''), confidence, glyphs };
}

// The second stage (kdetect/glyphs/decode.py), where meta.glyphs describes a glyph reader:
// proposals() gives the detector's glyphs down to the reader's proposal threshold, cropCentres()
// the columns the reader crops around, and refine() keeps and names the glyphs from the
// reader's probabilities (the last class of each row: no glyph centred there).

/** The detector's proposals for the glyph reader: its candidates down to
 * min(score_threshold, glyphs.proposal_threshold) (and the length floor, with a known answer
 * length), NMS, left to right, no alphabet guess. */
export function proposals(outputs, meta, imageWidth, imageHeight, { length } = {}) {
  const answerLength = length ?? meta.answer_length ?? null;
  const threshold = scoreFloor(Math.min(meta.score_threshold, meta.glyphs.proposal_threshold), answerLength);
  const proposing = { ...meta, score_threshold: threshold, answer_length: null };
  const { reading, classProbs } = decodeWithClasses(outputs, proposing, imageWidth, imageHeight, { guessAlphabet: false });
  return { ...reading, classProbs };
}

/** The reader's rows [K][C + 1] with the char part weighed by the detector's class
 * probabilities ** weight (each row normalised first), kept summing to 1 - p(no glyph). */
function combine(rows, classProbs, weight) {
  if (!classProbs || weight === 0) return rows;
  return rows.map((row, k) => {
    const C = row.length - 1;
    const total = Math.max(classProbs[k].reduce((a, b) => a + b, 0), 1e-9);
    const chars = row.slice(0, C).map((p, c) => p * (classProbs[k][c] / total) ** weight);
    const sum = Math.max(chars.reduce((a, b) => a + b, 0), 1e-12);
    return [...chars.map((p) => (p / sum) * (1 - row[C])), row[C]];
  });
}

/** Each proposal's box centre as a column of the reader's input -> Int32Array [K], K the
 * proposals (at least 1, at most glyphs.max_glyphs; an unused slot stays 0). */
export function cropCentres(proposal, imageWidth, meta) {
  const g = meta.glyphs;
  const count = Math.min(Math.max(proposal.glyphs.length, 1), g.max_glyphs);
  const centres = new Int32Array(count);
  proposal.glyphs.slice(0, count).forEach((glyph, k) => {
    centres[k] = Math.floor(((glyph.box[0] + glyph.box[2]) / 2) * (g.input_width / imageWidth) + 0.5);
  });
  return centres;
}

/** The glyph reader's outputs ({data, shape [K, C + 1]} or nested) -> rows [count][C + 1]
 * combined with the detector's (decode.py first_look), and the indices the reject threshold keeps. */
function firstLook(proposal, probs, meta) {
  const g = meta.glyphs;
  const { data, shape } = flatOutput(probs, 2, '[glyphs, classes]');
  const C = g.charset.length;
  if (shape[1] !== C + 1) throw new Error(`glyph reader output [${shape}] needs ${C + 1} values per glyph`);
  const count = Math.min(proposal.glyphs.length, g.max_glyphs, shape[0]);
  const all = combine(Array.from({ length: count }, (_, k) => Array.from(data.slice(k * (C + 1), (k + 1) * (C + 1)))),
    proposal.classProbs, g.detector_weight ?? 0);
  const kept = [];
  for (let k = 0; k < count; k += 1) if (all[k][C] < g.reject_threshold) kept.push(k);
  return { all, kept, C };
}

/** Where a second look reads, in columns from the first: +s, -s, +2s, -2s, ... */
function relookOffsets(g) {
  const offsets = [];
  for (let step = 1; step <= (g.relook_steps ?? 0); step += 1) offsets.push(step * g.relook_step, -step * g.relook_step);
  return offsets;
}

/** The second look (decode.py relook_centres, one image): the proposals the first look drops
 * are read again a few columns either side. -> {columns: Int32Array [M] (M at least 1), slots:
 * the slot k * L + j each column stands for}, or null when there is nothing to read again (a
 * known answer length, no second look configured, or nothing dropped). */
export function relookCentres(proposal, probs, columns, meta, { length } = {}) {
  const g = meta.glyphs;
  const answerLength = length ?? meta.answer_length ?? null;
  const offsets = relookOffsets(g);
  if (answerLength !== null || offsets.length === 0) return null;
  const { all, kept } = firstLook(proposal, probs, meta);
  const slots = [];
  for (let k = 0; k < all.length; k += 1) {
    if (!kept.includes(k)) offsets.forEach((_, j) => slots.push(k * offsets.length + j));
  }
  if (slots.length === 0) return null;
  const out = new Int32Array(slots.length);
  slots.forEach((slot, i) => {
    const k = Math.floor(slot / offsets.length);
    out[i] = clip(columns[k] + offsets[slot % offsets.length], 0, g.input_width - 1);
  });
  return { columns: out, slots };
}

/** The second look's outputs ({data, shape [M, C + 1]} or nested) and relookCentres' slots
 * -> rows by slot (a Map), for refine's `second`. */
export function secondLooks(probs, slots, meta) {
  const W = meta.glyphs.charset.length + 1;
  const { data } = flatOutput(probs, 2, '[glyphs, classes]');
  return new Map(slots.map((slot, i) => [slot, Array.from(data.slice(i * W, (i + 1) * W))]));
}

/** A proposal (from proposals(): its classProbs, the detector's class probabilities, weigh in as
 * glyphs.detector_weight says) and the reader's probabilities for its crops ({data, shape [K, C + 1]} or nested,
 * a batch of 1 allowed) -> {text, confidence, glyphs}. With a known answer length (options, else
 * meta.answer_length) the `length` crops likeliest to hold a glyph are kept. Without one,
 * options.columns (cropCentres') and options.second (secondLooks') give the second look at the
 * dropped proposals (decode.py relook); columns also order the glyphs, where a second look moved one. */
export function refine(proposal, probs, meta, { guessAlphabet: guess = true, length, columns, second } = {}) {
  const answerLength = length ?? meta.answer_length ?? null;
  const g = meta.glyphs;
  const { all, kept: firstKept, C } = firstLook(proposal, probs, meta);
  const count = all.length;
  const none = (k) => all[k][C];
  const centres = columns ? Array.from({ length: count }, (_, k) => columns[k]) : null;
  let kept = firstKept;
  if (answerLength !== null) {
    // Array.prototype.sort is stable, as numpy's argsort(kind="stable").
    const order = Array.from({ length: count }, (_, k) => k).sort((a, b) => none(a) - none(b));
    kept = order.slice(0, answerLength).sort((a, b) => a - b);
  } else if (second && columns && relookOffsets(g).length) {
    const offsets = relookOffsets(g);
    const placed = [...kept];
    for (let k = 0; k < count; k += 1) {
      if (placed.includes(k)) continue;
      for (let j = 0; j < offsets.length; j += 1) {
        const column = columns[k] + offsets[j];
        if (column < 0 || column >= g.input_width) continue;
        const raw = second.get(k * offsets.length + j);
        const [row] = combine([raw.slice(0, C + 1)], proposal.classProbs ? [proposal.classProbs[k]] : null,
          g.detector_weight ?? 0);
        if (row[C] < g.reject_threshold) {
          // A glyph there that a kept one already stands on means this box was doubled.
          if (placed.every((c) => Math.abs(column - centres[c]) >= g.relook_separation)) {
            placed.push(k);
            all[k] = row;
            centres[k] = column;
          }
          break;
        }
      }
    }
    kept = placed;
  }
  // Left to right by where each glyph was read (without columns, kept is in proposal order).
  if (centres) kept = [...kept].sort((a, b) => centres[a] - centres[b] || a - b);
  const rows = kept.map((k) => all[k].slice(0, C));
  let symbols = null;
  if (guess && meta.alphabets && meta.alphabets.length > 0 && rows.length > 0) {
    symbols = guessAlphabet(rows, meta.alphabets, g.charset);
  }
  const glyphs = kept.map((k, n) => {
    let best = 0;
    let bestP = -Infinity;
    rows[n].forEach((p, c) => {
      const masked = symbols === null || symbols.includes(g.charset[c]) ? p : 0;
      // Strictly greater: ties keep the first class, as numpy's argmax does.
      if (masked > bestP) {
        bestP = masked;
        best = c;
      }
    });
    return { char: g.charset[best], score: bestP, box: proposal.glyphs[k].box };
  });
  const confidence = glyphs.length ? glyphs.reduce((p, x) => p * x.score, 1) : 0;
  return { text: glyphs.map((x) => x.char).join(''), confidence, glyphs };
}

// The shift vote (kdetect/serving/shift_vote.py): an unsure captcha is read again moved a few
// pixels, and the answer most readings give wins.

/** A shift in the network input's pixels -> the same shift in a width x height image (halves round up). */
export function pixelShift([dx, dy], width, height, meta) {
  return [Math.floor((dx * width) / meta.input_width + 0.5), Math.floor((dy * height) / meta.input_height + 0.5)];
}

/** RGB pixels (row-major [height, width, 3]) with their content moved dx right and dy down; the
 * uncovered edge takes the paper colour, each channel's median over the top and bottom rows. */
export function shiftPixels(pixels, width, height, dx, dy) {
  const paper = [0, 1, 2].map((ch) => {
    const values = [];
    for (const y of [0, height - 1]) for (let x = 0; x < width; x += 1) values.push(pixels[(y * width + x) * 3 + ch]);
    values.sort((a, b) => a - b);
    const n = values.length;
    const median = n % 2 ? values[(n - 1) / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    return Math.floor(median);
  });
  const out = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const sx = x - dx;
      const sy = y - dy;
      const inside = sx >= 0 && sx < width && sy >= 0 && sy < height;
      for (let ch = 0; ch < 3; ch += 1) {
        out[(y * width + x) * 3 + ch] = inside ? pixels[(sy * width + sx) * 3 + ch] : paper[ch];
      }
    }
  }
  return out;
}

/** A reading of an image shifted by (dx, dy), its boxes put back in the original image's pixels. */
export function movedBack(reading, dx, dy, width, height) {
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const glyphs = reading.glyphs.map((g) => ({
    ...g,
    box: g.box ? [clamp(g.box[0] - dx, width), clamp(g.box[1] - dy, height),
      clamp(g.box[2] - dx, width), clamp(g.box[3] - dy, height)] : g.box,
  }));
  return { ...reading, glyphs };
}

/** The reading whose text most readings give; a tie goes to the text read first. */
export function vote(readings) {
  const counts = new Map();
  for (const r of readings) counts.set(r.text, (counts.get(r.text) || 0) + 1);
  const best = Math.max(...counts.values());
  return readings.find((r) => counts.get(r.text) === best);
}
